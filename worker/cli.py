"""The `framedrift` command: models, the worker, the fleet's status and operators' commands.

Subcommands: train, calibrate, budget, produce, worker, status, accept, rollback, silence,
reset, retire, fleet, alertmanager, demo, evaluate, seeds, schema.

This is the composition root. With the evaluation commands, it is the only code under
`worker/` that reaches into `producers/` and `deploy/`, and it imports them inside the
subcommand that needs them: building the parser imports none of them, so a running
`framedrift worker` never loads them. `produce`, `evaluate` and `seeds` keep their
options beside their code and get their part of the command line untouched.

A user error (a bad path, an unreachable broker, a bad setting or option) ends the
command with one `framedrift: ...` line and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from framedrift.worker.usage import UsageError

if TYPE_CHECKING:
    from framedrift.schemas.status import SourceStatus
    from framedrift.worker.detection.calibration import Calibration
    from framedrift.worker.model.artifact import ModelArtifact
    from framedrift.worker.ops.settings import Settings

# `framedrift train`'s reference images when no --data is given: the sample shipped
# in framedrift.producers (resolved in `_train`, so that only `train` imports it).
SAMPLE_REFERENCE_IMAGES = "fashion-mnist-reference-images-idx3-ubyte.gz"


def _schema(args: argparse.Namespace) -> int:
    from framedrift.schemas.export import SCHEMA_DIR, generated_schemas, write_schemas

    directory: Path = args.out or SCHEMA_DIR
    if args.check:
        stale = [
            name
            for name, text in generated_schemas().items()
            if not (directory / name).is_file() or (directory / name).read_text() != text
        ]
        if stale:
            print(f"out of date: {', '.join(stale)}; run `framedrift schema`", file=sys.stderr)
            return 1
        print(f"{directory} is up to date")
        return 0
    try:
        written = write_schemas(directory)
    except OSError as error:
        raise UsageError(f"cannot write the schemas into {directory}: {error}") from error
    for path in written:
        print(path)
    return 0


def _settings() -> Settings:
    # Imported here, not at the top: even pydantic takes a quarter of a second, and
    # `main` must install its SIGTERM handler before anything slow runs.
    from framedrift.worker.ops.settings import settings_from_env

    return settings_from_env()


def _save(artifact: ModelArtifact, path: Path) -> None:
    try:
        artifact.save(path)
    except OSError as error:
        raise UsageError(f"cannot write the model to {path}: {error}") from error


def _train(args: argparse.Namespace) -> int:
    from framedrift.producers.datasets import SAMPLE_DATA_DIR, DatasetError, load_images
    from framedrift.worker.detection.calibration import CalibrationRefused
    from framedrift.worker.model.autoencoder import AutoencoderConfig
    from framedrift.worker.model.preprocessing import Preprocessing, resized_for_model
    from framedrift.worker.model.training import TrainingPlan, train_autoencoder

    data: Path = args.data or SAMPLE_DATA_DIR / SAMPLE_REFERENCE_IMAGES
    try:
        config = AutoencoderConfig(
            height=args.height,
            width=args.width,
            channels=args.channels,
            filters=args.filters,
            architecture=args.architecture,
        )
        plan = TrainingPlan(
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            validation_fraction=args.validation_fraction,
            seed=args.seed,
        )
    except ValueError as error:
        raise UsageError(f"train: {error}") from error
    settings = _settings()
    output = args.out or settings.model_path
    try:
        # A folder's images are resized to the model's input as they are read: any sizes,
        # and only that much held in memory.
        preprocessing = Preprocessing.for_model(config)
        dataset = load_images(
            data,
            mode="RGB" if config.channels == 3 else "L",
            keep=lambda image: resized_for_model(image, preprocessing),
        )
    except DatasetError as error:
        raise UsageError(f"train --data: {error}") from error
    images = dataset.images[: args.limit] if args.limit else dataset.images
    print(f"training on {len(images)} images from {data}", file=sys.stderr)
    try:
        artifact = train_autoencoder(
            images, config, plan, settings.detector_parameters(), source_description=str(data)
        )
    except CalibrationRefused as error:
        raise UsageError(
            f"train: the detectors cannot be calibrated on this model's validation images "
            f"(FRAMEDRIFT_{error.parameter.upper()}): {error}"
        ) from error
    _save(artifact, output)
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
    from framedrift.worker.stream.assembly import recalibrated

    settings = _settings()
    path = args.model or settings.model_path
    artifact = recalibrated(ModelArtifact.load(path), settings)
    _save(artifact, path)
    print(f"wrote {path}")
    _print_calibration(artifact.calibration)
    return 0


def _budget(args: argparse.Namespace) -> int:
    from framedrift.worker.detection.calibration import (
        QUESTIONS,
        SECONDS_PER_DAY,
        SIMULATED_EVENTS,
        fleet_ert,
        max_ert,
    )

    events_per_day = args.sources * args.fps * SECONDS_PER_DAY
    ert = fleet_ert(args.sources, args.fps, args.alarms_per_day)
    print(
        f"{args.sources:,} sources x {args.fps:g} frames/s x {SECONDS_PER_DAY:,} s/day"
        f" = {events_per_day:,.0f} events a day"
    )
    print(
        f"{QUESTIONS} questions x {events_per_day:,.0f} events a day / {args.alarms_per_day:g}"
        f" false alarms a day = one false alarm per {ert:,.0f} events of each source and question"
    )
    days = ert / args.fps / SECONDS_PER_DAY
    print(f"each clean source: one false alarm of each question every {days:,.1f} days")
    ceiling = max_ert(SIMULATED_EVENTS)
    if ert > ceiling:
        raise UsageError(
            f"budget: an ERT of {ert:.3g} is beyond what the calibration can set "
            f"(about {ceiling:.2g}); allow more false alarms a day"
        )
    print(f"FRAMEDRIFT_ERT={ert:.0f}")
    return 0


def _produce(args: argparse.Namespace) -> int:
    from framedrift.producers import cli as producer_cli
    from framedrift.producers.datasets import DatasetError

    options = producer_cli.parse_arguments(args.arguments)
    settings = _settings()
    try:
        sent = producer_cli.run(options, settings.bootstrap_servers, settings.input_topic)
    except DatasetError as error:
        raise UsageError(f"produce: {error}") from error
    except producer_cli.BrokerUnreachableError as error:
        raise UsageError(f"{error}: check FRAMEDRIFT_BOOTSTRAP_SERVERS") from error
    print(f"sent {sum(sent.values())} events to {settings.input_topic} from {len(sent)} sources")
    return 0


def _worker(args: argparse.Namespace) -> int:
    from framedrift.worker.ops.logs import configure_logging
    from framedrift.worker.stream.assembly import build_worker

    settings = _settings()
    configure_logging(settings.log_format, settings.log_level)
    build_worker(settings).run()
    return 0


def _operate(args: argparse.Namespace) -> int:
    """accept, rollback, silence, reset, retire: one command record per source on the
    input topic, keyed by the source and sent to the partition its frames live on (as the
    store recorded it: the producers' partitioner may not be this one's), so it lands in
    order with them. A source the store does not know is refused (a typo would otherwise
    create it), unless `--new` says it is expected."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    from framedrift.worker.stream.operator_commands import (
        command_record,
        default_operator,
        new_command,
        parse_duration,
    )

    try:
        silence_for = parse_duration(args.duration) if args.command == "silence" else None
    except ValueError as error:
        raise UsageError(f"silence --for: {error}") from error
    sources = list(args.sources)
    if getattr(args, "labels", None):
        sources += [s.source_id for s in _fleet(args.labels) if s.source_id not in sources]
        if not sources:
            raise UsageError(f"{args.command}: no source in the store has {_shown(args.labels)}")
    if not sources:
        raise UsageError(f"{args.command}: name a SOURCE (or --label for silence)")
    try:
        commands = [
            new_command(
                args.command, source, args.reason, args.by or default_operator(), silence_for
            )
            for source in sources
        ]
    except ValueError as error:  # pydantic's: a source id or reason out of bounds
        raise UsageError(f"{args.command}: {error}") from error
    settings = _settings()
    partitions = _home_partitions(settings, sources)
    unknown = [source for source in sources if source not in partitions]
    if unknown and not args.new:
        raise UsageError(
            f"{args.command}: the store knows no source {', '.join(unknown[:5])} (a typo?); "
            "--new sends to sources that have not sent yet"
        )
    try:
        producer = KafkaProducer(
            **settings.kafka_client_options(), acks="all", bootstrap_timeout_ms=5000
        )
    except KafkaError as error:
        raise UsageError(
            f"{args.command}: no Kafka broker answered at {settings.bootstrap_servers}: "
            "check FRAMEDRIFT_BOOTSTRAP_SERVERS"
        ) from error
    try:
        for command in commands:
            key, value, headers = command_record(command)
            producer.send(
                settings.input_topic,
                key=key,
                value=value,
                headers=headers,
                partition=partitions.get(command.source_id),
            ).get(timeout=30)
            print(f"{command.command} {command.source_id}: sent as {command.command_id}")
    except KafkaError as error:
        raise UsageError(f"{args.command}: the broker did not take the command: {error}") from error
    finally:
        producer.close()
    print("each takes effect at its place in the source's stream; `framedrift status` shows it")
    return 0


def _home_partitions(settings: Settings, sources: list[str]) -> dict[str, int]:
    """Source id -> the input topic's partition its state lives on, for those the store
    knows there."""
    from framedrift.worker.model.artifact import ModelArtifact
    from framedrift.worker.stream.assembly import state_store
    from framedrift.worker.stream.state_store import StoreUnavailable

    store = state_store(settings, ModelArtifact.load(settings.model_path).model_version)
    try:
        homes = store.load_sources(sources).homes
    except StoreUnavailable as error:
        raise UsageError(f"Redis at {settings.redis_url}: {error}") from error
    found = {}
    for source, home in homes.items():  # `partition_label`: "topic[partition]"
        topic, _, partition = home.rpartition("[")
        if topic == settings.input_topic and partition[:-1].isdigit():
            found[source] = int(partition[:-1])
    return found


def _fleet(labels: dict[str, str]) -> list[SourceStatus]:
    """Every source's status from the store, those with all of `labels` only."""
    from framedrift.worker.model.artifact import ModelArtifact
    from framedrift.worker.stream.assembly import state_store
    from framedrift.worker.stream.fleet_status import source_status
    from framedrift.worker.stream.state_store import StoreUnavailable

    settings = _settings()
    store = state_store(settings, ModelArtifact.load(settings.model_path).model_version)
    try:
        states = store.load_all_sources()
    except StoreUnavailable as error:
        raise UsageError(f"Redis at {settings.redis_url}: {error}") from error
    return [
        source_status(source, state)
        for source, state in states.items()
        if labels.items() <= state.labels.items()
    ]


def _shown(labels: dict[str, str]) -> str:
    return ", ".join(f"{name}={value}" for name, value in labels.items())


def _status(args: argparse.Namespace) -> int:
    from framedrift.worker.stream.fleet_status import render

    statuses = [
        status
        for status in _fleet(args.labels)
        if not args.sources or status.source_id in args.sources
    ]
    print(render(statuses, as_json=args.json))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from framedrift.deploy.demo import run_demo
    from framedrift.deploy.local_servers import ServerNotInstalledError

    try:
        return run_demo(retrain=args.retrain)
    except ServerNotInstalledError as error:
        raise UsageError(f"demo: {error}") from error


def _evaluate(args: argparse.Namespace) -> int:
    from framedrift.worker.evaluation import evaluate

    return evaluate.main(args.arguments)


def _alertmanager(args: argparse.Namespace) -> int:
    from framedrift.worker.stream import alertmanager

    return alertmanager.main(args.arguments)


def _fleet_grouping(args: argparse.Namespace) -> int:
    from framedrift.worker.stream import fleet_grouping

    return fleet_grouping.main(args.arguments)


def _seeds(args: argparse.Namespace) -> int:
    from framedrift.worker.evaluation import seeds

    return seeds.main(args.arguments)


# Commands whose options live beside their code (`framedrift produce --help` shows them):
# name -> (handler, one-line description).
DELEGATED_COMMANDS = {
    "produce": (_produce, "stream dataset images as events, with drift"),
    "evaluate": (_evaluate, "detection delays and false alarms over replayed scenarios"),
    "seeds": (_seeds, "rerun the seed documents' experiments, our figures beside theirs"),
    "fleet": (_fleet_grouping, "group incidents of sources sharing a label into fleet incidents"),
    "alertmanager": (_alertmanager, "post incidents to Prometheus Alertmanager (API v2)"),
}


# An operator's word on sources, sent on the input topic (`schemas/commands.py`).
OPERATOR_COMMANDS = {
    "accept": "what SOURCE shows now is its new normal (it learns it again; rollback undoes)",
    "rollback": "back to SOURCE's previous normal, before the last accept",
    "silence": "announce no new incident of SOURCE for a while (maintenance)",
    "reset": "restart every detector of SOURCE, closing its open incidents",
    "retire": "SOURCE is gone: close its incidents, drop it from the status topic",
}


def _label(text: str) -> tuple[str, str]:
    name, _, value = text.partition("=")
    if not name or not value:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


class _Labels(argparse.Action):
    """Repeated --label NAME=VALUE options into one dict."""

    def __call__(self, parser, namespace, value, option_string=None):  # type: ignore[no-untyped-def]
        labels = dict(getattr(namespace, self.dest) or {})
        name, text = value
        labels[name] = text
        setattr(namespace, self.dest, labels)


def _add_label_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument(
        "--label",
        dest="labels",
        type=_label,
        action=_Labels,
        default={},
        metavar="NAME=VALUE",
        help=help_text,
    )


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}")
    return value


def _add_delegated(commands: argparse._SubParsersAction, name: str) -> None:
    handler, description = DELEGATED_COMMANDS[name]
    delegated = commands.add_parser(name, help=description, add_help=False)
    delegated.add_argument("arguments", nargs=argparse.REMAINDER)
    delegated.set_defaults(handler=handler)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="framedrift", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train the autoencoder and record its baseline")
    train.add_argument(
        "--data",
        type=Path,
        default=None,
        help="reference images: IDX (.gz), .npz or a folder of PNG/JPEG "
        "(default: the Fashion-MNIST sample shipped with framedrift)",
    )
    train.add_argument("--out", type=Path, default=None, help="default: FRAMEDRIFT_MODEL_PATH")
    train.add_argument("--epochs", type=_positive_int, default=5)
    train.add_argument("--batch-size", type=_positive_int, default=128)
    train.add_argument("--learning-rate", type=float, default=1e-3)
    train.add_argument("--validation-fraction", type=float, default=0.2)
    train.add_argument(
        "--limit", type=_positive_int, default=None, help="use only the first N images"
    )
    train.add_argument("--height", type=_positive_int, default=28)
    train.add_argument("--width", type=_positive_int, default=28)
    train.add_argument("--channels", type=int, default=1, choices=[1, 3])
    train.add_argument("--filters", type=_positive_int, default=32)
    train.add_argument(
        "--architecture",
        choices=["seed", "strided"],
        default="seed",
        help="seed: the seed's model, the default for small images; strided: about 5 "
        "times faster on camera frames (64×64 and up), see README 'Throughput'",
    )
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(handler=_train)

    calibrate = commands.add_parser(
        "calibrate", help="set the detector thresholds of a model for the FRAMEDRIFT_* settings"
    )
    calibrate.add_argument(
        "--model", type=Path, default=None, help="default: FRAMEDRIFT_MODEL_PATH"
    )
    calibrate.set_defaults(handler=_calibrate)

    budget = commands.add_parser(
        "budget", help="the per-source FRAMEDRIFT_ERT for a fleet's false alarms a day"
    )
    budget.add_argument("--sources", type=_positive_int, required=True, help="cameras")
    budget.add_argument("--fps", type=_positive_float, required=True, help="frames a second each")
    budget.add_argument(
        "--alarms-per-day", type=_positive_float, required=True, help="for the whole fleet"
    )
    budget.set_defaults(handler=_budget)

    _add_delegated(commands, "produce")

    worker = commands.add_parser("worker", help="run the drift worker (settings from FRAMEDRIFT_*)")
    worker.set_defaults(handler=_worker)

    status = commands.add_parser(
        "status", help="every source's condition from the store, the most urgent first"
    )
    status.add_argument("sources", nargs="*", help="only these sources (default: all)")
    status.add_argument("--json", action="store_true", help="one JSON object per source")
    _add_label_option(status, "only sources with this label (repeat: all of them)")
    status.set_defaults(handler=_status)

    for name, description in OPERATOR_COMMANDS.items():
        operate = commands.add_parser(name, help=description)
        operate.add_argument("sources", nargs="*" if name == "silence" else "+", metavar="SOURCE")
        operate.add_argument("--reason", required=True, help="why, for the source's history")
        operate.add_argument("--by", default=None, help="who (default: user@host)")
        operate.add_argument(
            "--new",
            action="store_true",
            help="also to sources the store does not know yet (one about to send)",
        )
        if name == "silence":
            operate.add_argument(
                "--for",
                dest="duration",
                required=True,
                help="how long: 90s, 15m, 2h, 1d (0s lifts a silence)",
            )
            _add_label_option(
                operate, "also every source in the store with this label (repeat: all of them)"
            )
        operate.set_defaults(handler=_operate)

    demo = commands.add_parser(
        "demo", help="local servers, a model, fixed cameras with faults, alerts"
    )
    demo.add_argument("--retrain", action="store_true", help="train even if the demo model exists")
    demo.set_defaults(handler=_demo)

    _add_delegated(commands, "fleet")
    _add_delegated(commands, "alertmanager")
    _add_delegated(commands, "evaluate")
    _add_delegated(commands, "seeds")

    schema = commands.add_parser("schema", help="write the JSON Schema files of the contracts")
    schema.add_argument(
        "--out", type=Path, default=None, help="folder (default: framedrift's schemas/json)"
    )
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
    if args.command in DELEGATED_COMMANDS:
        # REMAINDER misses options that look like this parser's; the command's own parser
        # reads them all.
        args.arguments = unparsed + args.arguments
    elif unparsed:
        parser.error(f"unrecognized arguments: {' '.join(unparsed)}")
    try:
        return int(args.handler(args))
    except (UsageError, SettingsError, ArtifactError) as error:
        print(f"framedrift: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
