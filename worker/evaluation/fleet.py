"""The camera-fleet section of `framedrift evaluate`: does each camera's own normal stay
quiet on long clean streams, and how fast does it catch each camera fault?

Cameras come from `framedrift.producers.camera_fleet` (real photographs, sensor noise,
shake, moving objects, one day cycle over `day_period` frames). Every frame goes through
what the worker computes for the *changed* question: `frame_signals` at the frame's own
resolution, the reconstruction error of a 64×64 colour autoencoder trained on clean
frames of the whole fleet, and one `OwnNormal` per camera.

Each camera is one job: its clean stream, frame 0 to `frames`, in time order. The fault
runs branch off these streams: at a run's onset the camera's `OwnNormal` is copied, and
the copy sees `horizon` frames of the faulty camera while the original goes on clean.
So a fault run's warm-up and clean frames are the clean stream's own (no frame is made
twice), its onset falls at any hour of the camera's day, and an alarm before the onset
is a clean camera's false alarm, counted once, there. A signal already alarming at an
onset (latched by such a false alarm) cannot start a new alarm: the runs where that
happened are counted (`alarming_at_onset`).

Model: trained on first use on `training_frames` clean frames spread over every camera's
day, and cached (`DEFAULT_FLEET_MODEL`); a cached file is used as it is.
"""

from __future__ import annotations

import copy
import multiprocessing
import queue
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from framedrift.producers.camera_fleet import (
    CORNERS,
    FAULTS,
    CameraFleet,
    ColourCast,
    DayCycle,
    ExposureLoss,
    Fault,
    Knocked,
    Occlusion,
    Region,
    Smudge,
)
from framedrift.worker.detection.frame_quality import frame_signals
from framedrift.worker.detection.own_normal import OwnNormal, OwnNormalParameters, SignalChange
from framedrift.worker.detection.scores import TILE_GRID, TILE_NAMES
from framedrift.worker.model.artifact import ModelArtifact
from framedrift.worker.model.autoencoder import AutoencoderConfig
from framedrift.worker.model.scoring import Scorer
from framedrift.worker.model.training import TrainingPlan, train_autoencoder
from framedrift.worker.ops.settings import settings_from_env

DEFAULT_FLEET_MODEL = Path("artifacts/camera-fleet-64.pt")
FLEET_MODEL_CONFIG = AutoencoderConfig(height=64, width=64, channels=3)
DEFAULT_FLEET_ERT = 1_000_000  # events per source between false alarms of the changed question
# Frames are box-averaged by this factor (640×480 -> 128×96) before the scorer resizes
# them to the model's 64×64, 4 ms a frame less than resizing the full frame in floating
# point. The model's input then differs from the full-frame path by 0.8 grey levels on
# average (13.7 at most, on sharp edges; measured on six cameras' frames).
MODEL_INPUT_REDUCTION = 5
SCORING_BATCH = 32  # frames scored per model call
PROGRESS_EVERY = 64  # frames between a worker's progress reports


@dataclass(frozen=True)
class FleetSize:
    """How much of the fleet to run: cameras, their clean frames, fault runs."""

    cameras: int = 6
    frames: int = 20_000  # clean frames per camera, time-ordered from frame 0
    runs: int = 10  # runs per fault
    faults: tuple[str, ...] = tuple(FAULTS)
    clean_after_warmup: int = 300  # clean frames after the warm-up before the first onset
    horizon: int = 500  # faulty frames per run
    day_period: int = 20_000  # frames per day cycle
    training_frames: int = 1_500
    epochs: int = 5
    processes: int = 2
    seed: int = 0
    warmup_frames: int = 2048  # each camera's own-normal warm-up (FRAMEDRIFT_WARMUP_FRAMES)

    def own_normal(self, ert: float) -> OwnNormalParameters:
        """The own-normal test the worker runs with these settings."""
        reference_size = OwnNormalParameters.reference_size
        return OwnNormalParameters(ert=ert, refresh_every=self.warmup_frames // reference_size)

    @classmethod
    def quick(cls) -> FleetSize:
        """For tests: two short cameras, one run of three faults (well under a minute)."""
        return cls(
            cameras=2,
            frames=720,
            runs=1,
            faults=("frozen", "exposure", "knocked"),
            clean_after_warmup=50,
            horizon=120,
            training_frames=200,
            epochs=1,
            warmup_frames=512,
        )


@dataclass(frozen=True)
class FaultRun:
    """One fault applied to one camera from `onset` on, for `horizon` frames."""

    fault: str
    run: int
    camera: int
    onset: int
    variant: Fault


@dataclass(frozen=True)
class CameraJob:
    """One worker's share: a camera's clean stream and the fault runs branching off it."""

    camera: int
    size: FleetSize
    ert: float
    runs: tuple[FaultRun, ...]


@dataclass
class CameraOutcome:
    camera: int
    name: str
    frames: int
    # Each clean alarm: the frame, the signals that began to alarm, the day's light then.
    alarms: list[dict[str, Any]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)


def fault_variant(name: str, run: int) -> Fault:
    """Fault `name` as run `run` applies it: each run takes the next corner, place,
    direction, colour or exposure direction, so that the runs cover them all."""
    variants: dict[str, Fault] = {
        "smudge": Smudge(corner=list(CORNERS)[run % len(CORNERS)]),
        "knocked": Knocked(direction_deg=30.0 + 72.0 * run),
        "occlusion": Occlusion(
            centre=[(0.3, 0.3), (0.7, 0.3), (0.5, 0.5), (0.3, 0.7), (0.7, 0.7)][run % 5]
        ),
        "colour_cast": ColourCast(towards=("red", "green", "blue")[run % 3]),
        "exposure": ExposureLoss(direction=("under", "over")[run % 2]),
    }
    return variants.get(name) or FAULTS[name]()


def plan_runs(size: FleetSize, warmup_frames: int) -> list[FaultRun]:
    """Every fault run: cameras in rotation, onsets spread over each camera's stream
    (in an order shuffled per camera, so no fault keeps to one hour of the day)."""
    first_onset = warmup_frames + size.clean_after_warmup
    last_onset = size.frames - size.horizon
    if last_onset < first_onset:
        raise ValueError(
            f"{size.frames} frames per camera leave no room for a fault run: it needs "
            f"{warmup_frames} warm-up + {size.clean_after_warmup} clean + {size.horizon} "
            "faulty frames"
        )
    pairs = [(fault, run) for fault in size.faults for run in range(size.runs)]
    by_camera: dict[int, list[tuple[str, int]]] = {}
    for index, pair in enumerate(pairs):
        by_camera.setdefault(index % size.cameras, []).append(pair)
    plan = []
    for camera, assigned in by_camera.items():
        onsets = np.linspace(first_onset, last_onset, len(assigned)).round().astype(int)
        order = np.random.default_rng([size.seed, camera]).permutation(len(assigned))
        for (fault, run), onset in zip(assigned, onsets[order], strict=True):
            plan.append(FaultRun(fault, run, camera, int(onset), fault_variant(fault, run)))
    return plan


def model_sized(frame: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(frame).reduce(MODEL_INPUT_REDUCTION))


def fleet_model(size: FleetSize, path: Path = DEFAULT_FLEET_MODEL) -> ModelArtifact:
    """The colour autoencoder of the fleet, trained on clean frames spread over every
    camera's day; cached at `path` (used as it is when there)."""
    if path.is_file():
        return ModelArtifact.load(path)
    fleet = _fleet(size)
    frame_indices = np.linspace(0, size.day_period, size.training_frames, endpoint=False)
    images = np.stack(
        [
            model_sized(next(fleet.frames(index % size.cameras, start=int(start))))
            for index, start in enumerate(tqdm(frame_indices, desc="fleet training frames"))
        ]
    )
    print(f"training the fleet model on {len(images)} clean frames", file=sys.stderr)
    artifact = train_autoencoder(
        images,
        FLEET_MODEL_CONFIG,
        TrainingPlan(epochs=size.epochs, batch_size=64, seed=size.seed),
        settings_from_env().detector_parameters(),
        source_description=f"camera fleet: {size.training_frames} clean frames of "
        f"{size.cameras} cameras, seed {size.seed}, over a day of {size.day_period} frames",
    )
    artifact.save(path)
    return artifact


def _fleet(size: FleetSize) -> CameraFleet:
    return CameraFleet(size.cameras, seed=size.seed, day=DayCycle(period=size.day_period))


# --- The worker processes ------------------------------------------------------------------

# Set once per worker process by `_start_worker`: the model's scorer and where progress goes.
_scorer: Scorer | None = None
_progress: Any = None


def _start_worker(model_path: Path, progress: Any) -> None:
    global _scorer, _progress
    _scorer = ModelArtifact.load(model_path).scorer(torch_threads=1)
    _progress = progress


def _chunks(frames: Iterable[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    iterator = iter(frames)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _watch(
    normal: OwnNormal, frames: Iterable[np.ndarray], first: int
) -> Iterator[tuple[int, list[SignalChange]]]:
    """Each frame's index and the alarms it starts, scoring `SCORING_BATCH` frames at once."""
    assert _scorer is not None, "_start_worker sets the scorer"
    index = first
    for chunk in _chunks(frames, SCORING_BATCH):
        scored = _scorer.score_frames([model_sized(frame) for frame in chunk])
        errors = scored.scores.error
        for frame, error, tiles in zip(chunk, errors, scored.tile_errors, strict=True):
            yield index, normal.observe(frame_signals(frame), float(error), tiles)
            index += 1


def _changes(changes: list[SignalChange]) -> list[dict[str, Any]]:
    return [
        {
            "signal": change.signal,
            "direction": change.direction,
            "deviation_sd": round(change.deviation_sd, 2),
        }
        for change in changes
    ]


def region_tiles(region: Region) -> set[str]:
    """The tiles of the grid that `region` overlaps."""
    return {
        TILE_NAMES[row * TILE_GRID + column]
        for row in range(TILE_GRID)
        for column in range(TILE_GRID)
        if region.left < (column + 1) / TILE_GRID
        and region.right > column / TILE_GRID
        and region.top < (row + 1) / TILE_GRID
        and region.bottom > row / TILE_GRID
    }


def _fault_run(fleet: CameraFleet, run: FaultRun, normal: OwnNormal, horizon: int) -> dict:
    """One run, on a copy of the camera's normal as it stood at the onset.

    It ends one test window after its first alarm (the rest of the horizon is not made):
    the signals and tiles that begin to alarm in that window are what the fault's alerts
    name, as tiles often follow a frame signal by a few frames.
    """
    branch = copy.deepcopy(normal)
    latched = [
        name for name, alarming in zip(branch.signals, branch.alarming, strict=True) if alarming
    ]
    frames = fleet.frames(run.camera, run.onset, horizon, fault=run.variant, onset=run.onset)
    first_alarm: tuple[int, list[SignalChange]] | None = None
    named: dict[str, None] = {}  # the signals named, in the order they began to alarm
    for index, changes in _watch(branch, frames, run.onset):
        if changes and first_alarm is None:
            first_alarm = (index, changes)
        if first_alarm is not None:
            named.update(dict.fromkeys(change.signal for change in changes))
            if index - first_alarm[0] >= branch.parameters.window:
                break
    _progress.put(horizon)
    region = run.variant.region
    return {
        "fault": run.fault,
        "variant": repr(run.variant),
        "run": run.run,
        "camera": fleet.cameras[run.camera].name,
        "onset": run.onset,
        "light_at_onset": round(fleet.cameras[run.camera].brightness(run.onset), 3),
        "alarming_at_onset": latched,
        "delay": None if first_alarm is None else first_alarm[0] - run.onset,
        "first_signals": [] if first_alarm is None else _changes(first_alarm[1]),
        "named_within_a_window": list(named),
        "fault_tiles": None if region is None else sorted(region_tiles(region)),
    }


def watch_camera(job: CameraJob) -> CameraOutcome:
    """A camera's clean stream through its own `OwnNormal`, branching off its fault runs."""
    fleet = _fleet(job.size)
    camera = fleet.cameras[job.camera]
    normal = OwnNormal(parameters=job.size.own_normal(job.ert))
    outcome = CameraOutcome(job.camera, camera.name, job.size.frames)
    position = 0
    onsets = sorted(job.runs, key=lambda run: run.onset)
    for stop, run in [*((run.onset, run) for run in onsets), (job.size.frames, None)]:
        clean = fleet.frames(job.camera, position, stop - position)
        for index, changes in _watch(normal, clean, position):
            if changes:
                light = round(camera.brightness(index), 3)
                signals = _changes(changes)
                outcome.alarms.append({"frame": index, "light": light, "signals": signals})
            if (index + 1) % PROGRESS_EVERY == 0:
                _progress.put(PROGRESS_EVERY)
        position = stop
        if run is not None:
            outcome.runs.append(_fault_run(fleet, run, normal, job.size.horizon))
    return outcome


# --- The evaluation -------------------------------------------------------------------------


def _run_jobs(jobs: list[CameraJob], model_path: Path, processes: int) -> list[CameraOutcome]:
    """The jobs over `processes` worker processes, with one progress bar of frames.

    Spawned rather than forked: the parent has run torch's thread pool (training), which
    a forked child can inherit in a locked state.
    """
    context = multiprocessing.get_context("spawn")
    progress_queue = context.Queue()
    # Clean frames are counted in whole PROGRESS_EVERY, fault runs at their end.
    total = sum(
        job.size.frames // PROGRESS_EVERY * PROGRESS_EVERY + len(job.runs) * job.size.horizon
        for job in jobs
    )
    bar = tqdm(total=total, desc="fleet frames", unit="frame", smoothing=0.05)
    with context.Pool(processes, _start_worker, (model_path, progress_queue)) as pool:
        pending = pool.map_async(watch_camera, jobs, chunksize=1)
        while not pending.ready() or not progress_queue.empty():
            try:
                bar.update(progress_queue.get(timeout=0.5))
            except queue.Empty:
                continue
        outcomes = pending.get()
    bar.close()
    return outcomes


def _percentile(values: list[int], level: float) -> float | None:
    return float(np.percentile(values, level)) if values else None


def _fault_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    delays = [run["delay"] for run in runs if run["delay"] is not None]
    first_signals = Counter(change["signal"] for run in runs for change in run["first_signals"])
    named = Counter(signal for run in runs for signal in run["named_within_a_window"])
    named_tiles = [
        [name for name in run["named_within_a_window"] if name in TILE_NAMES] for run in runs
    ]
    local = runs[0]["fault_tiles"] is not None
    return {
        "runs": len(runs),
        "detected": len(delays),
        "detection_rate": len(delays) / len(runs),
        "median_delay": _percentile(delays, 50),
        "p90_delay": _percentile(delays, 90),
        # How many runs' first alarm named each signal, most often named first.
        "first_signals": dict(first_signals.most_common()),
        # Every signal and tile named within a window of the first alarm, in how many runs.
        "named_within_a_window": dict(named.most_common()),
        "runs_naming_tiles": sum(bool(tiles) for tiles in named_tiles),
        # Local faults: runs whose named tiles all lie where the fault is (and name some).
        "runs_naming_only_fault_tiles": (
            sum(
                bool(tiles) and set(tiles) <= set(run["fault_tiles"])
                for tiles, run in zip(named_tiles, runs, strict=True)
            )
            if local
            else None
        ),
        "alarming_at_onset": sum(bool(run["alarming_at_onset"]) for run in runs),
        "runs_detail": sorted(runs, key=lambda run: run["run"]),
    }


def _clean_summary(outcomes: list[CameraOutcome], warmup: int, ert: float) -> dict[str, Any]:
    cameras = []
    for outcome in sorted(outcomes, key=lambda outcome: outcome.camera):
        signals = Counter(
            change["signal"] for alarm in outcome.alarms for change in alarm["signals"]
        )
        cameras.append(
            {
                "camera": outcome.name,
                "frames": outcome.frames,
                "tested_frames": max(outcome.frames - warmup, 0),
                "false_alarms": len(outcome.alarms),
                "by_signal": dict(signals.most_common()),
                "alarms": outcome.alarms,
            }
        )
    tested = sum(camera["tested_frames"] for camera in cameras)
    alarms = sum(camera["false_alarms"] for camera in cameras)
    by_signal: Counter[str] = Counter()
    for camera in cameras:
        by_signal.update(camera["by_signal"])
    total = {
        "frames": sum(camera["frames"] for camera in cameras),
        "tested_frames": tested,
        "false_alarms": alarms,
        # What the ERT allows on these frames: one alarm per `ert` tested frames.
        "expected_at_ert": tested / ert,
        "by_signal": dict(by_signal.most_common()),
    }
    return {"cameras": cameras, "all": total}


def evaluate_fleet(
    size: FleetSize = FleetSize(),
    ert: float = DEFAULT_FLEET_ERT,
    model_path: Path = DEFAULT_FLEET_MODEL,
) -> dict[str, Any]:
    """The fleet section of the evaluation (module docstring): clean cameras' false
    alarms and each fault's detection rate, delays and first signals."""
    started = time.perf_counter()
    parameters = size.own_normal(ert)
    artifact = fleet_model(size, model_path)
    runs = plan_runs(size, parameters.warmup_frames)
    jobs = [
        CameraJob(camera, size, ert, tuple(run for run in runs if run.camera == camera))
        for camera in range(size.cameras)
    ]
    outcomes = _run_jobs(jobs, model_path, size.processes)
    fault_runs = [run for outcome in outcomes for run in outcome.runs]
    return {
        "parameters": {
            **{name: getattr(size, name) for name in FleetSize.__dataclass_fields__},
            "faults": list(size.faults),
            "ert": ert,
            "warmup_frames": parameters.warmup_frames,
            "reference_size": parameters.reference_size,
            "window": parameters.window,
            "beyond": parameters.beyond,
            "model_version": artifact.model_version,
            "model_input": f"{FLEET_MODEL_CONFIG.width}×{FLEET_MODEL_CONFIG.height}×3",
        },
        "clean": _clean_summary(outcomes, parameters.warmup_frames, ert),
        "faults": {
            fault: _fault_summary([run for run in fault_runs if run["fault"] == fault])
            for fault in size.faults
        },
        "elapsed_s": round(time.perf_counter() - started, 1),
    }


# --- The report -----------------------------------------------------------------------------


def _delay(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def _named(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} ({count})" for name, count in counts.items()) or "–"


def markdown_table(results: dict[str, Any]) -> str:
    setup = results["parameters"]
    clean = results["clean"]
    lines = [
        f"Camera fleet: {setup['cameras']} cameras, own-normal test at ERT {setup['ert']:,.0f} "
        f"frames per camera (warm-up {setup['warmup_frames']} frames, alarm when "
        f"{setup['beyond']} of {setup['window']} frames leave the reference's range); "
        f"{setup['runs']} runs per fault, onset at least {setup['clean_after_warmup']} clean "
        f"frames after the warm-up, {setup['horizon']} faulty frames; "
        f"{results['elapsed_s']:,.0f} s.",
        "",
        "| fault | detected | median delay | p90 delay | first signals (runs) | "
        "frame signals named within a window (runs) | runs naming tiles | "
        "only the fault's tiles | latched at onset |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in results["faults"].items():
        frame_signals_named = {
            signal: runs
            for signal, runs in row["named_within_a_window"].items()
            if signal not in TILE_NAMES
        }
        only_fault_tiles = row["runs_naming_only_fault_tiles"]
        lines.append(
            f"| {name} | {row['detected']}/{row['runs']} | {_delay(row['median_delay'])} | "
            f"{_delay(row['p90_delay'])} | {_named(row['first_signals'])} | "
            f"{_named(frame_signals_named)} | {row['runs_naming_tiles']} | "
            f"{'global' if only_fault_tiles is None else only_fault_tiles} | "
            f"{row['alarming_at_onset']} |"
        )
    lines += [
        "",
        "| clean camera | frames | tested | false alarms | signals |",
        "| --- | --- | --- | --- | --- |",
    ]
    for camera in clean["cameras"]:
        lines.append(
            f"| {camera['camera']} | {camera['frames']:,} | {camera['tested_frames']:,} | "
            f"{camera['false_alarms']} | {_named(camera['by_signal'])} |"
        )
    total = clean["all"]
    lines += [
        f"| all | {total['frames']:,} | {total['tested_frames']:,} | {total['false_alarms']} | "
        f"{_named(total['by_signal'])} |",
        "",
        f"At ERT {setup['ert']:,.0f} the clean cameras' tested frames allow "
        f"{total['expected_at_ert']:.3f} false alarms. A run latched at its onset had a "
        "signal alarming already (a clean false alarm), which then cannot alarm anew.",
    ]
    return "\n".join(lines) + "\n"


def plot_fleet(results: dict[str, Any], path: Path) -> None:
    """Per fault: median and p90 delay, with the detection rate; per clean camera: false alarms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    faults = results["faults"]
    cameras = results["clean"]["cameras"]
    figure, (delays, alarms) = plt.subplots(
        1, 2, figsize=(13, 4.2), gridspec_kw={"width_ratios": [2, 1]}
    )
    positions = np.arange(len(faults))
    for offset, key, colour in ((-0.2, "median_delay", "tab:blue"), (0.2, "p90_delay", "tab:red")):
        heights = [row[key] if row[key] is not None else 0.0 for row in faults.values()]
        delays.bar(positions + offset, heights, 0.4, color=colour, label=key.replace("_", " "))
    top = max([row["p90_delay"] or 0.0 for row in faults.values()] + [1.0])
    for position, row in zip(positions, faults.values(), strict=True):
        delays.text(position, top * 1.03, f"{row['detection_rate']:.0%}", ha="center", fontsize=8)
    delays.set_xticks(positions, list(faults), rotation=20, fontsize=8)
    delays.set_ylim(0, top * 1.15)
    delays.set_ylabel("frames from onset to first alarm")
    delays.set_title("Faults: delay (numbers above: detection rate)", fontsize=10)
    delays.legend(fontsize=8)
    names = [camera["camera"] for camera in cameras]
    alarms.bar(names, [camera["false_alarms"] for camera in cameras], color="0.4")
    alarms.set_xticks(range(len(names)), names, rotation=30, fontsize=8, ha="right")
    alarms.set_ylabel("false alarms")
    frames = cameras[0]["frames"] if cameras else 0
    alarms.set_title(f"Clean cameras, {frames:,} frames each", fontsize=10)
    alarms.set_ylim(0, max([camera["false_alarms"] for camera in cameras] + [1]) * 1.2)
    figure.suptitle(f"Camera fleet, own-normal test at ERT {results['parameters']['ert']:,.0f}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
