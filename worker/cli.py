"""The `framedrift` command: train, calibrate, produce, worker, demo, evaluate, seeds, schema.

This is the composition root. It is the one module of `worker/` that reaches into
`producers/`, `deploy/` and `bench/` (for `train`'s dataset readers, `produce`, `demo`,
`evaluate` and `seeds`), and it imports them inside the subcommand, so the running
service never loads them.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from framedrift.worker.detection.calibration import Calibration
    from framedrift.worker.ops.settings import Settings


def _schema(args: argparse.Namespace) -> int:
    from framedrift.schemas.export import SCHEMA_DIR, generated_schemas, write_schemas

    if args.check:
        stale = [
            name
            for name, text in generated_schemas().items()
            if not (SCHEMA_DIR / name).is_file() or (SCHEMA_DIR / name).read_text() != text
        ]
        if stale:
            print(f"out of date: {', '.join(stale)}; run `framedrift schema`", file=sys.stderr)
            return 1
        print("schemas/json is up to date")
        return 0
    for path in write_schemas():
        print(path)
    return 0


def _settings() -> Settings:
    # Imported here, not at the top: even pydantic takes a quarter of a second, and
    # `main` must install its SIGTERM handler before anything slow runs.
    from framedrift.worker.ops.settings import settings_from_env

    return settings_from_env()


def _train(args: argparse.Namespace) -> int:
    from framedrift.producers.datasets import load_images
    from framedrift.worker.model.autoencoder import AutoencoderConfig
    from framedrift.worker.model.training import TrainingPlan, train_autoencoder

    settings = _settings()
    output = args.out or settings.model_path
    dataset = load_images(args.data)
    images = dataset.images[: args.limit] if args.limit else dataset.images
    print(f"training on {len(images)} images from {args.data}", file=sys.stderr)
    artifact = train_autoencoder(
        images,
        AutoencoderConfig(
            height=args.height, width=args.width, channels=args.channels, filters=args.filters
        ),
        TrainingPlan(
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            validation_fraction=args.validation_fraction,
            seed=args.seed,
        ),
        settings.detector_parameters(),
        source_description=str(args.data),
    )
    artifact.save(output)
    summary = artifact.baseline.summary()
    print(
        f"wrote {output}: model {artifact.model_version}, validation error "
        f"mean {summary['mean']:.4f} std {summary['std']:.4f} over {summary['size']} images"
    )
    _print_calibration(artifact.calibration)
    return 0


def _print_calibration(calibration: Calibration) -> None:
    parameters = calibration.parameters
    print(
        f"calibrated to ERT {parameters.ert:,} events in {calibration.seconds:.1f} s "
        f"({calibration.simulated_events:,} simulated clean events); each of "
        f"{len(calibration.thresholds)} detectors set to ERT {calibration.detector_ert:,.0f}:"
    )
    for detector, threshold in calibration.thresholds.items():
        print(f"  {detector:<18} threshold {threshold:.4f}")
    print(
        f"  adwin (delta {parameters.adwin_delta}): {calibration.adwin_alarms} false alarms "
        f"in {calibration.adwin_events:,} clean events"
    )


def _calibrate(args: argparse.Namespace) -> int:
    from framedrift.worker.model.artifact import ModelArtifact

    settings = _settings()
    path = args.model or settings.model_path
    artifact = ModelArtifact.load(path).recalibrated(settings.detector_parameters())
    artifact.save(path)
    print(f"wrote {path}")
    _print_calibration(artifact.calibration)
    return 0


def _produce(args: argparse.Namespace) -> int:
    from framedrift.producers import cli as producer_cli

    settings = _settings()
    sent = producer_cli.run(args, settings.bootstrap_servers, settings.input_topic)
    print(f"sent {sum(sent.values())} events to {settings.input_topic} from {len(sent)} sources")
    return 0


def _worker(args: argparse.Namespace) -> int:
    from framedrift.worker.ops.logs import configure_logging
    from framedrift.worker.stream.service import DriftWorker

    settings = _settings()
    configure_logging(settings.log_format, settings.log_level)
    DriftWorker(settings).run()
    return 0


def _demo(args: argparse.Namespace) -> int:
    from framedrift.deploy.demo import run_demo

    return run_demo(retrain=args.retrain)


# Commands whose options live with their code in bench/ (`framedrift evaluate --help`).
BENCH_COMMANDS = {
    "evaluate": (
        "framedrift.worker.evaluation.evaluate",
        "detection delays and false alarms over replayed scenarios",
    ),
    "seeds": (
        "framedrift.worker.evaluation.seeds",
        "rerun the seed documents' experiments, our figures beside theirs",
    ),
}


def _bench(args: argparse.Namespace) -> int:
    module = importlib.import_module(BENCH_COMMANDS[args.command][0])
    return int(module.main(args.bench_arguments))


def build_parser() -> argparse.ArgumentParser:
    from framedrift.producers import cli as producer_cli
    from framedrift.producers.datasets import SAMPLE_DATA_DIR

    parser = argparse.ArgumentParser(prog="framedrift", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train the autoencoder and record its baseline")
    train.add_argument(
        "--data",
        type=Path,
        default=SAMPLE_DATA_DIR / "fashion-mnist-reference-images-idx3-ubyte.gz",
        help="reference images: IDX (.gz), .npz or a folder of PNG/JPEG",
    )
    train.add_argument("--out", type=Path, default=None, help="default: FRAMEDRIFT_MODEL_PATH")
    train.add_argument("--epochs", type=int, default=5)
    train.add_argument("--batch-size", type=int, default=128)
    train.add_argument("--learning-rate", type=float, default=1e-3)
    train.add_argument("--validation-fraction", type=float, default=0.2)
    train.add_argument("--limit", type=int, default=None, help="use only the first N images")
    train.add_argument("--height", type=int, default=28)
    train.add_argument("--width", type=int, default=28)
    train.add_argument("--channels", type=int, default=1, choices=[1, 3])
    train.add_argument("--filters", type=int, default=32)
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(handler=_train)

    calibrate = commands.add_parser(
        "calibrate", help="set the detector thresholds of a model for the FRAMEDRIFT_* settings"
    )
    calibrate.add_argument(
        "--model", type=Path, default=None, help="default: FRAMEDRIFT_MODEL_PATH"
    )
    calibrate.set_defaults(handler=_calibrate)

    produce = commands.add_parser("produce", help="stream dataset images as events, with drift")
    producer_cli.add_arguments(produce)
    produce.set_defaults(handler=_produce)

    worker = commands.add_parser("worker", help="run the drift worker (settings from FRAMEDRIFT_*)")
    worker.set_defaults(handler=_worker)

    demo = commands.add_parser("demo", help="local servers, a model, drifting sources, alerts")
    demo.add_argument("--retrain", action="store_true", help="train even if the demo model exists")
    demo.set_defaults(handler=_demo)

    for name, (_, description) in BENCH_COMMANDS.items():
        bench = commands.add_parser(name, help=description, add_help=False)
        bench.add_argument("bench_arguments", nargs=argparse.REMAINDER)
        bench.set_defaults(handler=_bench)

    schema = commands.add_parser("schema", help="write the JSON Schema files into schemas/json")
    schema.add_argument("--check", action="store_true", help="only check they are up to date")
    schema.set_defaults(handler=_schema)
    return parser


def _exit_before_work(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)  # nothing read, nothing to checkpoint


def main(argv: list[str] | None = None) -> int:
    # A stop request during start-up (seconds of imports and model loading) is a clean
    # exit, not a kill; the worker loop installs its own finish-the-batch handler later.
    signal.signal(signal.SIGTERM, _exit_before_work)
    from framedrift.worker.model.artifact import ArtifactError  # imports torch: after the handler
    from framedrift.worker.ops.settings import SettingsError

    parser = build_parser()
    args, unparsed = parser.parse_known_args(argv)
    if args.command in BENCH_COMMANDS:
        # REMAINDER misses options that look like this parser's; the bench parser reads all.
        args.bench_arguments = unparsed + args.bench_arguments
    elif unparsed:
        parser.error(f"unrecognized arguments: {' '.join(unparsed)}")
    try:
        return int(args.handler(args))
    except (SettingsError, ArtifactError) as error:
        print(f"framedrift: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
