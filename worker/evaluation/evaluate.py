"""`framedrift evaluate`: how fast each kind of drift is caught, and how often clean streams alarm.

Replays scenarios through the worker's own scoring (`ModelArtifact.scorer`'s model,
latent map and image statistics) and detector code (`SourceMonitor`), without Kafka:
every image of a scenario's pool is scored once, then many single-source streams with
different seeds are drawn from the pools and fed event by event.

Model: the autoencoder trained on Fashion-MNIST split A (70% of the training images,
seed 42, as in seed 004), calibrated to the configured ERT; it is trained on first use
and cached in `artifacts/fashion-mnist-a.pt`.

A second section, the camera fleet (`fleet.py`), asks the other question, whether a
camera *changed* against its own normal: false alarms of clean cameras on long
time-ordered streams through a day, and how fast each camera fault is caught. It needs
no `--data` (its scenes ship with scikit-image); `--no-fleet` leaves it out,
`--fleet-only` runs it alone, the `--fleet-*` options size it.

Outputs in `--out` (default `framedrift-results/evaluation/` in the current directory):
`evaluation.json`, `evaluation.md` (the tables of the sections run), `traces.png` (an
error trace per scenario with onset and alarms), `reconstructions.png` (inputs and
reconstructions, clean and drifted), `fleet.png` (fault delays, clean cameras' false
alarms). The datasets come from `--data` (see DATA_HELP).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from framedrift.producers.datasets import DatasetError, LabelledImages, load_images
from framedrift.producers.scenarios import ScenarioParameters, ScenarioSampler
from framedrift.worker.detection.coverage import OUTSIDE_BY
from framedrift.worker.detection.monitor import (
    EventRef,
    MonitorConfig,
    SourceMonitor,
    SourceState,
    scored_images,
)
from framedrift.worker.detection.registry import DETECTOR_NAMES
from framedrift.worker.detection.scores import SIGNALS, ImageScores
from framedrift.worker.evaluation import fleet
from framedrift.worker.model.artifact import ModelArtifact
from framedrift.worker.model.autoencoder import AutoencoderConfig
from framedrift.worker.model.preprocessing import dataset_to_model_input
from framedrift.worker.model.scoring import score_inputs
from framedrift.worker.model.training import TrainingPlan, train_autoencoder
from framedrift.worker.ops.settings import settings_from_env
from framedrift.worker.usage import UsageError

DETECTORS = DETECTOR_NAMES  # in the order the monitor runs them
SNEAKER = 7  # Fashion-MNIST's label for sneakers
DEFAULT_MODEL = Path("artifacts/fashion-mnist-a.pt")
DEFAULT_EPOCHS = 4
DEFAULT_OUT = Path("framedrift-results/evaluation")
DATA_HELP = (
    "the folder with fashion-mnist/, mnist/ and notmnist/, each holding the train- and "
    "t10k- images and labels as gzipped IDX files (as their publishers ship them; "
    "Fashion-MNIST is also the Debian package dataset-fashion-mnist)"
)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    clean_pool: str  # where the events before the onset come from
    drifted_pool: str  # where drifted events come from
    ramp: int = 0  # events over which the drifted share grows from 0 to 1 (gradual drift)
    drop_sneakers: bool = False  # label shift: 90% of sneakers never arrive


SCENARIOS = (
    Scenario("covariate", "seed 004's B_shift: 7×7 and back, brightness +0.1", "b_raw", "b_shift"),
    Scenario(
        "label-shift", "seed 004: 90% of sneakers dropped", "b_raw", "b_raw", drop_sneakers=True
    ),
    Scenario("noise-0.5", "Gaussian noise σ 0.5, clipped (seed 000)", "test", "noise_0_5"),
    Scenario("noise-0.1", "Gaussian noise σ 0.1, clipped (mild)", "test", "noise_0_1"),
    Scenario("novel-mnist", "MNIST digits instead of clothes", "test", "mnist"),
    Scenario("novel-notmnist", "notMNIST letters instead of clothes", "test", "notmnist"),
    Scenario("blur", "Gaussian blur, radius 1.5 px", "test", "blur"),
    Scenario("brightness", "brightness +0.3", "test", "brightness"),
    Scenario("occlusion", "a grey patch over a quarter of the image", "test", "occlusion"),
    Scenario(
        "gradual-covariate",
        "B_shift's share ramps 0 → 100% over 4,000 events",
        "b_raw",
        "b_shift",
        ramp=4000,
    ),
)
CLEAN_POOLS = {"test": "Fashion-MNIST test set", "b_raw": "seed 004's B_raw (30% split)"}


@dataclass
class Pools:
    """Scored images per pool, the labels where known, and a few images for the figures."""

    scores: dict[str, ImageScores]
    labels: dict[str, np.ndarray]
    images: dict[str, np.ndarray]


def seed_004_split(train: LabelledImages) -> tuple[np.ndarray, np.ndarray]:
    """Seed 004's A/B split: a 70/30 permutation of the training images with seed 42."""
    order = np.random.default_rng(42).permutation(len(train))
    cut = round(0.7 * len(train))
    return order[:cut], order[cut:]


DATASETS = {
    "train": "fashion-mnist/train-images-idx3-ubyte.gz",
    "test": "fashion-mnist/t10k-images-idx3-ubyte.gz",
    "mnist": "mnist/t10k-images-idx3-ubyte.gz",
    "mnist_train": "mnist/train-images-idx3-ubyte.gz",
    "notmnist": "notmnist/t10k-images-idx3-ubyte.gz",
}
EVALUATION_DATASETS = ("train", "test", "mnist", "notmnist")  # what `framedrift evaluate` reads


def load_data(
    data: Path, names: tuple[str, ...] = EVALUATION_DATASETS
) -> dict[str, LabelledImages]:
    try:
        return {name: load_images(data / DATASETS[name]) for name in names}
    except DatasetError as error:
        raise UsageError(f"--data needs {DATA_HELP}: {error}") from error


def require_data(data: Path | None, names: tuple[str, ...]) -> Path:
    """`data`, if it holds the images and labels of `names`; else a UsageError naming them."""
    if data is None:
        raise UsageError(f"--data is required: {DATA_HELP}")
    needed = [DATASETS[name] for name in names]
    needed += [file.replace("images-idx3", "labels-idx1") for file in needed]
    missing = [file for file in needed if not (data / file).is_file()]
    if missing:
        raise UsageError(f"--data {data} lacks {', '.join(missing)}; it needs {DATA_HELP}")
    return data


def cached_model(
    path: Path, images: np.ndarray, plan: TrainingPlan, description: str
) -> ModelArtifact:
    """A model trained on `images`, calibrated for the current settings; cached at `path`."""
    parameters = settings_from_env().detector_parameters()
    if path.is_file():
        # Calibrated afresh (seconds), so that the figures are those of this version's
        # calibration code, whichever version trained the cached model.
        return ModelArtifact.load(path).recalibrated(parameters)
    print(f"training on {description} ({len(images)} images)", file=sys.stderr)
    artifact = train_autoencoder(
        images, AutoencoderConfig(), plan, parameters, source_description=description
    )
    artifact.save(path)
    return artifact


def fashion_model(
    data: dict[str, LabelledImages], path: Path = DEFAULT_MODEL, epochs: int = DEFAULT_EPOCHS
) -> ModelArtifact:
    """The model trained on seed 004's split A."""
    split_a, _ = seed_004_split(data["train"])
    return cached_model(
        path,
        data["train"].images[split_a],
        TrainingPlan(epochs=epochs),
        "Fashion-MNIST train, seed 004 split A (70%, seed 42)",
    )


def transformed(
    source: LabelledImages, scenario: str, seed: int = 7, **parameters: float
) -> np.ndarray:
    """Every image of `source` through one scenario's transform (`producers/scenarios.py`)."""
    sampler = ScenarioSampler(
        scenario, source, np.random.default_rng(seed), parameters=ScenarioParameters(**parameters)
    )
    return np.stack([sampler.transform(image) for image in source.images])


def build_pools(artifact: ModelArtifact, data: dict[str, LabelledImages]) -> Pools:
    """Every pool's images, transformed where the scenario says so, scored once."""
    _, split_b = seed_004_split(data["train"])
    b_raw = LabelledImages(data["train"].images[split_b], data["train"].labels[split_b])
    test = data["test"]
    raw_pools = {
        "test": test.images,
        "b_raw": b_raw.images,
        "b_shift": transformed(b_raw, "covariate"),
        "noise_0_5": transformed(test, "noise", noise_sigma=0.5),
        "noise_0_1": transformed(test, "noise", noise_sigma=0.1),
        "mnist": data["mnist"].images,
        "notmnist": data["notmnist"].images,
        "blur": transformed(test, "blur"),
        "brightness": transformed(test, "brightness"),
        "occlusion": transformed(test, "occlusion"),
    }
    model = artifact.build_model()
    scores = {}
    for name, images in tqdm(raw_pools.items(), desc="scoring pools", unit="pool"):
        inputs = dataset_to_model_input(images, artifact.preprocessing)
        scores[name] = score_inputs(model, artifact.latent_map, inputs)
    labels = {"b_raw": b_raw.labels, "test": test.labels}
    return Pools(scores, labels, {name: images[:8] for name, images in raw_pools.items()})


def replay(config: MonitorConfig, scores: ImageScores) -> list[tuple[int, str]]:
    """One source's stream through a fresh monitor: (event index, detector) of each alarm."""
    monitor = SourceMonitor(config, SourceState.fresh(config))
    alarms = []
    for index, image in enumerate(scored_images(scores, config.reference)):
        for firing in monitor.update(image, EventRef("", 0, index, 0.0)):
            alarms.append((index, firing.detector))
    return alarms


def drifted_stream(
    scenario: Scenario, pools: Pools, rng: np.random.Generator, onset: int, length: int
) -> ImageScores:
    clean = pools.scores[scenario.clean_pool]
    drifted = pools.scores[scenario.drifted_pool]
    before = rng.integers(0, len(clean), onset)
    if scenario.drop_sneakers:
        keep = np.where(pools.labels[scenario.drifted_pool] == SNEAKER, 0.1, 1.0)
        after = rng.choice(len(drifted), length - onset, p=keep / keep.sum())
    else:
        after = rng.integers(0, len(drifted), length - onset)
    stream = ImageScores.concatenate([clean.take(before), drifted.take(after)])
    if scenario.ramp:
        # Before the ramp completes, each event is drifted with probability t / ramp.
        steps = np.arange(length - onset)
        still_clean = rng.random(length - onset) >= np.minimum(1.0, (steps + 1) / scenario.ramp)
        replacements = clean.take(rng.integers(0, len(clean), int(still_clean.sum())))
        for name, values in stream.as_arrays().items():
            values[onset:][still_clean] = getattr(replacements, name)
    return stream


def delays_summary(delays: list[int | None]) -> dict[str, float | None]:
    found = [delay for delay in delays if delay is not None]
    return {
        "detection_rate": len(found) / len(delays),
        "median_delay": float(np.median(found)) if found else None,
        "p90_delay": float(np.percentile(found, 90)) if found else None,
    }


def replay_scenario(
    config: MonitorConfig,
    pools: Pools,
    scenario: Scenario,
    runs: int,
    onset: int,
    horizon: int,
    progress: tqdm,
) -> tuple[dict, dict]:
    """Detection rate and delays of `runs` streams drifting at `onset`; the first run's trace."""
    first_any: list[int | None] = []
    first_by: dict[str, list[int | None]] = {detector: [] for detector in DETECTORS}
    pre_onset_alarms = 0
    trace: dict = {}
    signal_shifts: dict[str, float] = {}
    for run in range(runs):
        rng = np.random.default_rng(2000 + run)
        stream = drifted_stream(scenario, pools, rng, onset, onset + horizon)
        alarms = replay(config, stream)
        pre_onset_alarms += sum(index < onset for index, _ in alarms)
        after = [(index - onset, detector) for index, detector in alarms if index >= onset]
        first_any.append(after[0][0] if after else None)
        for detector in DETECTORS:
            first_by[detector].append(next((d for d, name in after if name == detector), None))
        if run == 0:
            trace = {"error": stream.error.tolist(), "alarms": alarms}
            fully_drifted = stream.take(slice(onset + scenario.ramp, None))
            signal_shifts = {
                name: config.reference.shift_in_std(
                    name, float(getattr(fully_drifted, name).mean())
                )
                for name in SIGNALS
            }
        progress.update()
    summary = {
        "description": scenario.description,
        **delays_summary(first_any),
        "by_detector": {detector: delays_summary(first_by[detector]) for detector in DETECTORS},
        "alarms_before_onset": pre_onset_alarms,
        # What an alert's `signals` report once its window holds only drifted images.
        "signal_shifts_in_std": signal_shifts,
    }
    return summary, trace


def evaluate(
    artifact: ModelArtifact,
    pools: Pools,
    runs: int,
    clean_events: int,
    onset: int,
    horizon: int,
) -> dict:
    config = artifact.monitor_config(0.999)
    results: dict = {"clean": {}, "drift": {}, "traces": {}}
    total_jobs = len(CLEAN_POOLS) * runs + len(SCENARIOS) * runs
    progress = tqdm(total=total_jobs, desc="replaying streams", unit="stream")

    clean_alarms: dict[str, int] = defaultdict(int)
    clean_total = 0
    for pool, description in CLEAN_POOLS.items():
        alarms_here: dict[str, int] = defaultdict(int)
        first_alarms = []
        for run in range(runs):
            rng = np.random.default_rng(1000 + run)
            stream = pools.scores[pool].take(rng.integers(0, len(pools.scores[pool]), clean_events))
            alarms = replay(config, stream)
            first_alarms.append(alarms[0][0] if alarms else None)
            for _, detector in alarms:
                alarms_here[detector] += 1
                clean_alarms[detector] += 1
            progress.update()
        events = runs * clean_events
        clean_total += events
        results["clean"][pool] = {
            "description": description,
            "events": events,
            "false_alarms": sum(alarms_here.values()),
            "false_alarms_by_detector": dict(alarms_here),
            "false_alarms_per_100k": 1e5 * sum(alarms_here.values()) / events,
            "runs_with_an_alarm": sum(first is not None for first in first_alarms),
        }
    all_alarms = sum(clean_alarms.values())
    results["clean"]["all"] = {
        "events": clean_total,
        "false_alarms": all_alarms,
        "false_alarms_per_100k": 1e5 * all_alarms / clean_total,
        # Renewal estimate: every alarm re-arms the detectors, so events per alarm is the
        # mean run length between false alarms.
        "run_length": clean_total / all_alarms if all_alarms else None,
        "run_length_by_detector": {
            detector: (clean_total / clean_alarms[detector] if clean_alarms[detector] else None)
            for detector in DETECTORS
        },
    }

    for scenario in SCENARIOS:
        summary, trace = replay_scenario(config, pools, scenario, runs, onset, horizon, progress)
        results["drift"][scenario.name] = summary
        results["traces"][scenario.name] = trace
    progress.close()
    results["parameters"] = {
        "runs": runs,
        "clean_events_per_run": clean_events,
        "onset": onset,
        "horizon": horizon,
        "calibration": artifact.calibration.to_dict(),
        "model_version": artifact.model_version,
    }
    return results


def _delay(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def markdown_table(results: dict) -> str:
    calibration = results["parameters"]["calibration"]
    ert = calibration["parameters"]["ert"]
    clean = results["clean"]
    setup = results["parameters"]
    lines = [
        f"ERT {ert:,} events; {setup['runs']} runs per scenario, onset at event "
        f"{setup['onset']:,}, {setup['horizon']:,} events after it.",
        "",
        "| scenario | detected | median delay | p90 delay | first to fire (median delay) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, row in results["drift"].items():
        fastest = sorted(
            (
                (summary["median_delay"], detector)
                for detector, summary in row["by_detector"].items()
                if summary["median_delay"] is not None and summary["detection_rate"] >= 0.5
            )
        )[:2]
        fastest_text = ", ".join(f"{detector} ({_delay(delay)})" for delay, detector in fastest)
        lines.append(
            f"| {name} | {row['detection_rate']:.0%} | {_delay(row['median_delay'])} | "
            f"{_delay(row['p90_delay'])} | {fastest_text or '–'} |"
        )
    lines += [
        "",
        "How each signal's mean moved under drift, in standard deviations of the baseline "
        "images (what alerts report as `signals`):",
        "",
        f"| scenario | {' | '.join(name.replace('_', ' ') for name in SIGNALS)} |",
        f"| --- |{' --- |' * len(SIGNALS)}",
    ]
    for name, row in results["drift"].items():
        shifts = row["signal_shifts_in_std"]
        cells = " | ".join(f"{shifts[signal]:+.2f}" for signal in SIGNALS)
        lines.append(f"| {name} | {cells} |")
    lines += [
        "",
        "| clean stream | events | false alarms | per 100,000 events |",
        "| --- | --- | --- | --- |",
    ]
    for pool, row in clean.items():
        if pool == "all":
            continue
        lines.append(
            f"| {row['description']} | {row['events']:,} | {row['false_alarms']} | "
            f"{row['false_alarms_per_100k']:.2f} |"
        )
    everything = clean["all"]
    run_length = everything["run_length"]
    lines += [
        f"| all clean streams | {everything['events']:,} | {everything['false_alarms']} | "
        f"{everything['false_alarms_per_100k']:.2f} |",
        "",
        f"Measured run length between false alarms, all detectors: "
        f"{'no alarm' if run_length is None else f'{run_length:,.0f} events'} (ERT {ert:,}).",
        "",
        "| detector | threshold | calibrated to ERT | clean run length measured |",
        "| --- | --- | --- | --- |",
    ]
    lines += detector_rows(calibration, everything)
    return "\n".join(lines) + "\n"


def detector_rows(calibration: dict, everything: dict) -> list[str]:
    """One table row per detector: its threshold, what it was set for, and the run
    length measured between its false alarms on the clean streams (`everything`)."""
    rows = []
    for detector in DETECTORS:
        measured = everything["run_length_by_detector"][detector]
        measured_text = (
            f"> {everything['events']:,} (no alarm)" if measured is None else f"{measured:,.0f}"
        )
        if detector == "adwin":
            delta = calibration["parameters"]["adwin_delta"]
            threshold, target = f"delta {delta}", "not tuned (measured)"
        elif detector == "coverage":
            threshold, target = f"{OUTSIDE_BY} spreads beyond p99", "a fixed level"
        else:
            threshold = f"{calibration['thresholds'][detector]:.4f}"
            target = f"{calibration['detector_ert']:,.0f}"
        rows.append(f"| {detector} | {threshold} | {target} | {measured_text} |")
    return rows


def plot_traces(results: dict, onset: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    traces = results["traces"]
    columns = 2
    rows = -(-len(traces) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(13, 2.4 * rows), sharex=True)
    colours = dict(zip(DETECTORS, plt.cm.tab10.colors, strict=False))
    for axis, (name, trace) in zip(axes.ravel(), traces.items(), strict=False):
        error = np.array(trace["error"])
        axis.plot(error, lw=0.3, color="0.6")
        smooth = np.convolve(error, np.ones(50) / 50, mode="valid")
        axis.plot(np.arange(49, len(error)), smooth, lw=1.0, color="0.1")
        axis.axvline(onset, color="red", lw=1.0, ls="--")
        for index, detector in trace["alarms"]:
            axis.axvline(index, color=colours[detector], lw=1.2, alpha=0.9)
        delay = results["drift"][name]["median_delay"]
        axis.set_title(f"{name}: median delay {_delay(delay)} events", fontsize=9)
        axis.set_ylabel("error (BCE)", fontsize=8)
    for axis in axes.ravel()[len(traces) :]:
        axis.set_visible(False)
    handles = [plt.Line2D([], [], color=colours[d], lw=2, label=d) for d in DETECTORS]
    handles.append(plt.Line2D([], [], color="red", ls="--", label="onset"))
    figure.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8)
    figure.suptitle("Reconstruction error of one run per scenario; vertical lines: alarms")
    figure.tight_layout(rect=(0, 0.04, 1, 0.97))
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_reconstructions(artifact: ModelArtifact, pools: Pools, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["test", "b_shift", "noise_0_5", "mnist", "notmnist", "blur", "brightness", "occlusion"]
    model = artifact.build_model()
    figure, axes = plt.subplots(len(names), 12, figsize=(12, 1.1 * len(names)))
    for row, name in enumerate(names):
        inputs = dataset_to_model_input(pools.images[name][:6], artifact.preprocessing)
        with torch.inference_mode():
            reconstructions = model(inputs)[0]
        for column in range(6):
            for offset, tensor in ((0, inputs), (6, reconstructions)):
                axis = axes[row, column + offset]
                axis.imshow(tensor[column, 0].numpy(), cmap="gray", vmin=0, vmax=1)
                axis.set_xticks([])
                axis.set_yticks([])
        axes[row, 0].set_ylabel(name, rotation=0, ha="right", fontsize=8)
    axes[0, 0].set_title("inputs", fontsize=8, loc="left")
    axes[0, 6].set_title("reconstructions", fontsize=8, loc="left")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="framedrift evaluate", description=__doc__.splitlines()[0]
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    if not args.fleet_only:
        require_data(args.data, EVALUATION_DATASETS)
    return run(args)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", type=Path, default=None, help=f"required but with --fleet-only: {DATA_HELP}"
    )
    parser.add_argument(
        "--model", type=Path, default=DEFAULT_MODEL, help="cached model (trained if missing)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the results")
    parser.add_argument("--runs", type=int, default=20, help="streams per scenario")
    parser.add_argument("--clean-events", type=int, default=50_000, help="events per clean stream")
    parser.add_argument("--onset", type=int, default=2000, help="clean events before drift")
    parser.add_argument("--horizon", type=int, default=6000, help="events after the onset")
    parser.add_argument(
        "--epochs", type=int, default=DEFAULT_EPOCHS, help="when the model is trained"
    )
    add_fleet_arguments(parser)


def add_fleet_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--no-fleet", action="store_true", help="leave the camera fleet out")
    which.add_argument(
        "--fleet-only", action="store_true", help="only the camera fleet (needs no --data)"
    )
    default = fleet.FleetSize()
    parser.add_argument("--fleet-cameras", type=int, default=default.cameras, help="clean cameras")
    parser.add_argument(
        "--fleet-frames",
        type=int,
        default=default.frames,
        help=f"time-ordered frames per camera (a day is {default.day_period:,})",
    )
    parser.add_argument("--fleet-runs", type=int, default=default.runs, help="runs per fault")
    parser.add_argument(
        "--fleet-seed",
        type=int,
        default=default.seed,
        help="another seed: other cameras (scenes, lenses, objects) and onsets, for a check "
        "on cameras the test was not tuned on",
    )
    parser.add_argument(
        "--fleet-processes", type=int, default=default.processes, help="worker processes"
    )
    parser.add_argument(
        "--fleet-ert",
        type=float,
        default=fleet.DEFAULT_FLEET_ERT,
        help="frames per camera between false alarms of the own-normal test",
    )
    parser.add_argument(
        "--fleet-model",
        type=Path,
        default=fleet.DEFAULT_FLEET_MODEL,
        help="cached 64×64 colour model of the fleet (trained if missing)",
    )
    parser.add_argument(
        "--fleet-readings",
        type=Path,
        default=None,
        help="replay the test on the readings a previous run saved (its fleet-readings.npz) "
        "instead of making and scoring the frames again; the --fleet-* sizes are then its",
    )


def dataset_section(args: argparse.Namespace) -> tuple[dict, str]:
    """The Fashion-MNIST scenarios: their results, table and plots."""
    torch.manual_seed(0)
    data = load_data(args.data)
    artifact = fashion_model(data, args.model, args.epochs)
    pools = build_pools(artifact, data)
    results = evaluate(artifact, pools, args.runs, args.clean_events, args.onset, args.horizon)
    traces = results.pop("traces")
    plot_traces({**results, "traces": traces}, args.onset, args.out / "traces.png")
    plot_reconstructions(artifact, pools, args.out / "reconstructions.png")
    return results, markdown_table(results)


def fleet_section(args: argparse.Namespace) -> tuple[dict, str]:
    """The camera fleet: its results, table and plot."""
    if args.fleet_readings:
        readings = fleet.load_readings(args.fleet_readings)
    else:
        size = fleet.FleetSize(
            cameras=args.fleet_cameras,
            frames=args.fleet_frames,
            runs=args.fleet_runs,
            processes=args.fleet_processes,
            seed=args.fleet_seed,
        )
        readings = fleet.read_fleet(size, args.fleet_model)
        fleet.save_readings(args.out / "fleet-readings.npz", readings)
    results = fleet.evaluate_fleet(readings, args.fleet_ert)
    fleet.plot_fleet(results, args.out / "fleet.png")
    fleet.plot_against_ert(results, args.out / "fleet-ert.png")
    return results, fleet.markdown_table(results)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    tables = []
    if not args.fleet_only:
        results, table = dataset_section(args)
        tables.append(table)
    if not args.no_fleet:
        results["fleet"], table = fleet_section(args)
        tables.append(table)
    text = "\n".join(tables)
    (args.out / "evaluation.md").write_text(text)
    (args.out / "evaluation.json").write_text(json.dumps(results, indent=2) + "\n")
    print(text)
    plots = [] if args.fleet_only else ["traces.png", "reconstructions.png"]
    plots += [] if args.no_fleet else ["fleet.png", "fleet-ert.png", "fleet-readings.npz"]
    print(
        f"wrote {args.out}/evaluation.{{json,md}}, {', '.join(plots)} "
        f"in {time.perf_counter() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
