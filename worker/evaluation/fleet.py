"""The camera-fleet section of `framedrift evaluate`: does each camera's own normal stay
quiet on long clean streams, and how fast does it catch each camera fault?

Cameras come from `framedrift.producers.camera_fleet` (real photographs, sensor noise,
shake, moving objects, one day cycle over `day_period` frames). Every frame goes through
what the worker computes for the *changed* question: `frame_signals` at the frame's own
resolution, the reconstruction error of a 64×64 colour autoencoder trained on clean
frames of the whole fleet, and one `OwnNormal` per camera.

Two stages. *Reading* (worker processes, the costly part): each camera is one job, its
clean stream from frame 0 to `frames` in time order, each frame read as the worker reads
it (`OwnNormal.read`: the watched signals and each tile's motion); at a fault run's
onset the reader is copied, and the copy reads `horizon` frames of the faulty camera.
The readings can be saved and loaded (`save_readings`, `load_readings`). *Replaying*
(the parent): the test (`OwnNormal.observe_reading`) runs over each clean stream and
branches off a copy at every onset. So a fault run's warm-up and clean frames are the
clean stream's own (no frame is made twice), its onset falls at any hour of the
camera's day, and an alarm before the onset is a clean camera's false alarm, counted
once, there. A signal already alarming at an onset (latched by such a false alarm)
cannot start a new alarm: the runs where that happened are counted
(`alarming_at_onset`). Replaying is cheap, so it is done at the configured ERT and at
each of `SWEEP_ERTS`.

Model: trained on first use on `training_frames` clean frames spread over every camera's
day, and cached (`DEFAULT_FLEET_MODEL`); a cached file is used as it is.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import multiprocessing
import queue
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
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
    frames_over_the_day,
)
from framedrift.worker.detection.frame_quality import frame_signals
from framedrift.worker.detection.own_normal import (
    WATCHED_SIGNALS,
    FrameReading,
    OwnNormal,
    OwnNormalParameters,
    SignalChange,
)
from framedrift.worker.detection.scores import TILE_GRID, TILE_NAMES, tile_of
from framedrift.worker.model.artifact import ModelArtifact
from framedrift.worker.model.autoencoder import AutoencoderConfig
from framedrift.worker.model.preprocessing import Preprocessing, resized_for_model
from framedrift.worker.model.scoring import Scorer
from framedrift.worker.model.training import TrainingPlan, train_autoencoder
from framedrift.worker.ops.settings import settings_from_env

DEFAULT_FLEET_MODEL = Path("artifacts/camera-fleet-64-strided.pt")
FLEET_MODEL_CONFIG = AutoencoderConfig(height=64, width=64, channels=3, architecture="strided")
DEFAULT_FLEET_ERT = 1_000_000  # events per source between false alarms of the changed question
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


def fleet_model(size: FleetSize, path: Path = DEFAULT_FLEET_MODEL) -> ModelArtifact:
    """The colour autoencoder of the fleet, trained on clean frames spread over every
    camera's day; cached at `path` (used as it is when there)."""
    if path.is_file():
        return ModelArtifact.load(path)
    model_input = partial(
        resized_for_model, preprocessing=Preprocessing.for_model(FLEET_MODEL_CONFIG)
    )
    images = frames_over_the_day(
        _fleet(size), range(size.cameras), size.training_frames, model_input
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


# --- The worker processes: frames made, scored and read -------------------------------------

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


@dataclass
class CameraReadings:
    """What the test reads of one camera's frames (`OwnNormal.read`), one row per frame:
    its clean stream in time order, and each fault run's faulty frames."""

    camera: int
    name: str
    clean: np.ndarray  # (frames, READING_COLUMNS) float32
    light: np.ndarray  # (frames,): the day's light on the scene at each clean frame
    runs: list[tuple[FaultRun, np.ndarray]]  # each run's (horizon, READING_COLUMNS) rows


@dataclass
class FleetReadings:
    """Every camera's readings, and what made them."""

    size: FleetSize
    model_version: str
    cameras: list[CameraReadings]
    elapsed_s: float  # making, scoring and reading the frames


# A reading as one row: the watched signals, then each tile's motion.
READING_COLUMNS = len(WATCHED_SIGNALS) + len(TILE_NAMES)


def _row(reading: FrameReading) -> np.ndarray:
    return np.concatenate([reading.values, reading.tile_motion])


def _reading(row: np.ndarray) -> FrameReading:
    return FrameReading(row[: len(WATCHED_SIGNALS)], row[len(WATCHED_SIGNALS) :])


def _read(reader: OwnNormal, frames: Iterable[np.ndarray], progress: bool) -> np.ndarray:
    """Each frame's reading, scoring `SCORING_BATCH` frames at once."""
    assert _scorer is not None, "_start_worker sets the scorer"
    rows = []
    for chunk in _chunks(frames, SCORING_BATCH):
        scored = _scorer.score_frames(chunk)
        for frame, error, tiles in zip(chunk, scored.scores.error, scored.tile_errors, strict=True):
            rows.append(_row(reader.read(frame_signals(frame), float(error), tiles)))
            if progress and len(rows) % PROGRESS_EVERY == 0:
                _progress.put(PROGRESS_EVERY)
    if progress:
        _progress.put(len(rows) % PROGRESS_EVERY)
    return np.array(rows, np.float32).reshape(len(rows), READING_COLUMNS)


def read_camera(job: CameraJob) -> CameraReadings:
    """A camera's clean stream and the fault runs branching off it, read.

    The reader keeps the thumbnails a reading compares with (the previous frame's, the
    first frame's); a fault run reads on from a copy of it at its onset."""
    fleet = _fleet(job.size)
    camera = fleet.cameras[job.camera]
    # Reading keeps only thumbnails; the test's parameters do not enter it.
    reader = OwnNormal(parameters=job.size.own_normal(DEFAULT_FLEET_ERT))
    clean, runs, position = [], [], 0
    onsets = sorted(job.runs, key=lambda run: run.onset)
    for stop, run in [*((run.onset, run) for run in onsets), (job.size.frames, None)]:
        clean.append(_read(reader, fleet.frames(job.camera, position, stop - position), True))
        position = stop
        if run is not None:
            frames = fleet.frames(
                run.camera, run.onset, job.size.horizon, fault=run.variant, onset=run.onset
            )
            runs.append((run, _read(copy.deepcopy(reader), frames, False)))
            _progress.put(job.size.horizon)
    light = np.array([camera.brightness(index) for index in range(job.size.frames)], np.float32)
    return CameraReadings(job.camera, camera.name, np.concatenate(clean), light, runs)


def _read_fleet(jobs: list[CameraJob], model_path: Path, processes: int) -> list[CameraReadings]:
    """The jobs over `processes` worker processes, with one progress bar of frames.

    Spawned rather than forked: the parent has run torch's thread pool (training), which
    a forked child can inherit in a locked state.
    """
    context = multiprocessing.get_context("spawn")
    progress_queue = context.Queue()
    total = sum(job.size.frames + len(job.runs) * job.size.horizon for job in jobs)
    bar = tqdm(total=total, desc="fleet frames", unit="frame", smoothing=0.05)
    with context.Pool(processes, _start_worker, (model_path, progress_queue)) as pool:
        pending = pool.map_async(read_camera, jobs, chunksize=1)
        while not pending.ready() or not progress_queue.empty():
            try:
                bar.update(progress_queue.get(timeout=0.5))
            except queue.Empty:
                continue
        readings = pending.get()
    bar.close()
    return readings


def read_fleet(size: FleetSize, model_path: Path = DEFAULT_FLEET_MODEL) -> FleetReadings:
    """Every camera's readings: the costly part of the evaluation (frames made, scored)."""
    started = time.perf_counter()
    artifact = fleet_model(size, model_path)
    runs = plan_runs(size, size.own_normal(DEFAULT_FLEET_ERT).warmup_frames)
    jobs = [
        CameraJob(camera, size, tuple(run for run in runs if run.camera == camera))
        for camera in range(size.cameras)
    ]
    cameras = _read_fleet(jobs, model_path, size.processes)
    elapsed = round(time.perf_counter() - started, 1)
    return FleetReadings(size, artifact.model_version, cameras, elapsed)


def save_readings(path: Path, readings: FleetReadings) -> None:
    """The readings, to replay the test on later (`load_readings`) without making frames."""
    size = readings.size
    arrays: dict[str, np.ndarray] = {
        "size": np.array(json.dumps(dataclasses.asdict(size))),
        "model_version": np.array(readings.model_version),
        "elapsed_s": np.array(readings.elapsed_s),
        "names": np.array([camera.name for camera in readings.cameras]),
    }
    for camera in readings.cameras:
        arrays[f"clean_{camera.camera}"] = camera.clean
        arrays[f"light_{camera.camera}"] = camera.light
        arrays[f"runs_{camera.camera}"] = np.array(
            [(size.faults.index(run.fault), run.run, run.onset) for run, _ in camera.runs]
        ).reshape(-1, 3)
        arrays[f"run_rows_{camera.camera}"] = np.array(
            [rows for _, rows in camera.runs], np.float32
        ).reshape(-1, size.horizon, READING_COLUMNS)
    np.savez_compressed(path, **arrays)


def load_readings(path: Path) -> FleetReadings:
    with np.load(path) as arrays:
        fields = json.loads(str(arrays["size"]))
        size = FleetSize(**{**fields, "faults": tuple(fields["faults"])})
        if arrays["clean_0"].shape[1] != READING_COLUMNS:
            raise ValueError(f"{path}: readings of another version of the test; read again")
        readings = []
        for camera, name in enumerate(arrays["names"]):
            runs = [
                (
                    FaultRun(
                        size.faults[fault],
                        int(run),
                        camera,
                        int(onset),
                        fault_variant(size.faults[fault], int(run)),
                    ),
                    rows,
                )
                for (fault, run, onset), rows in zip(
                    arrays[f"runs_{camera}"], arrays[f"run_rows_{camera}"], strict=True
                )
            ]
            readings.append(
                CameraReadings(
                    camera, str(name), arrays[f"clean_{camera}"], arrays[f"light_{camera}"], runs
                )
            )
        model_version, elapsed = str(arrays["model_version"]), float(arrays["elapsed_s"])
    return FleetReadings(size, model_version, readings, elapsed)


# --- The test, replayed on the readings ------------------------------------------------------


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


def _fault_run(camera: CameraReadings, run: FaultRun, rows: np.ndarray, normal: OwnNormal) -> dict:
    """One run, on a copy of the camera's normal as it stood at the onset.

    It ends one test window after its first alarm: the signals and tiles that begin to
    alarm in that window are what the fault's alerts name, as tiles often follow a frame
    signal by a few frames.
    """
    branch = copy.deepcopy(normal)
    latched = [
        name for name, alarming in zip(branch.signals, branch.alarming, strict=True) if alarming
    ]
    first_alarm: tuple[int, list[SignalChange]] | None = None
    named: dict[str, None] = {}  # the signals named, in the order they began to alarm
    for index, row in enumerate(rows):
        changes = branch.observe_reading(_reading(row))
        if changes and first_alarm is None:
            first_alarm = (index, changes)
        if first_alarm is not None:
            named.update(dict.fromkeys(change.signal for change in changes))
            if index - first_alarm[0] >= branch.parameters.window:
                break
    region = run.variant.region
    return {
        "fault": run.fault,
        "variant": repr(run.variant),
        "run": run.run,
        "camera": camera.name,
        "onset": run.onset,
        "light_at_onset": round(float(camera.light[run.onset]), 3),
        "alarming_at_onset": latched,
        # Faulty frames before the one that alarmed.
        "delay": None if first_alarm is None else first_alarm[0],
        "first_signals": [] if first_alarm is None else _changes(first_alarm[1]),
        "named_within_a_window": list(named),
        "fault_tiles": None if region is None else sorted(region_tiles(region)),
    }


def replay_camera(camera: CameraReadings, parameters: OwnNormalParameters) -> CameraOutcome:
    """The test on a camera's clean stream, branching off its fault runs at their onsets."""
    normal = OwnNormal(parameters=parameters)
    outcome = CameraOutcome(camera.camera, camera.name, len(camera.clean))
    runs_at = {run.onset: (run, rows) for run, rows in camera.runs}
    for index, row in enumerate(camera.clean):
        if index in runs_at:
            outcome.runs.append(_fault_run(camera, *runs_at[index], normal))
        if changes := normal.observe_reading(_reading(row)):
            light = round(float(camera.light[index]), 3)
            outcome.alarms.append({"frame": index, "light": light, "signals": _changes(changes)})
    return outcome


def _percentile(values: list[int], level: float) -> float | None:
    return float(np.percentile(values, level)) if values else None


def _fault_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    delays = [run["delay"] for run in runs if run["delay"] is not None]
    first_signals = Counter(change["signal"] for run in runs for change in run["first_signals"])
    named = Counter(signal for run in runs for signal in run["named_within_a_window"])
    named_tiles = [
        sorted({tile_of(name) for name in run["named_within_a_window"]} - {None}) for run in runs
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


# The ERTs the evaluation replays the test at, for delay against ERT.
SWEEP_ERTS = (1e4, 1e5, 1e6, 1e7, 1e8, 1e9)


def replay_fleet(readings: FleetReadings, ert: float) -> dict[str, Any]:
    """The test at `ert` on every camera: clean cameras' false alarms, and each fault's
    detection rate, delays and first signals."""
    size = readings.size
    parameters = size.own_normal(ert)
    outcomes = [replay_camera(camera, parameters) for camera in readings.cameras]
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
            "model_version": readings.model_version,
            "model_input": f"{FLEET_MODEL_CONFIG.width}×{FLEET_MODEL_CONFIG.height}×3",
        },
        "clean": _clean_summary(outcomes, parameters.warmup_frames, ert),
        "faults": {
            fault: _fault_summary([run for run in fault_runs if run["fault"] == fault])
            for fault in size.faults
        },
    }


def evaluate_fleet(
    readings: FleetReadings, ert: float = DEFAULT_FLEET_ERT, sweep: Iterable[float] = SWEEP_ERTS
) -> dict[str, Any]:
    """The fleet section of the evaluation (module docstring): the test at `ert` in full,
    and at each of `sweep` in brief (false alarms, detection rates and delays)."""
    started = time.perf_counter()
    results = replay_fleet(readings, ert)
    results["against_ert"] = [
        {
            "ert": swept,
            "beyond": readings.size.own_normal(swept).beyond,
            "false_alarms": replayed["clean"]["all"]["false_alarms"],
            "expected_at_ert": replayed["clean"]["all"]["expected_at_ert"],
            "faults": {
                name: {key: row[key] for key in ("detection_rate", "median_delay", "p90_delay")}
                for name, row in replayed["faults"].items()
            },
        }
        for swept in tqdm(sweep, desc="fleet test against ERT", unit="ERT")
        for replayed in [replay_fleet(readings, swept)]
    ]
    results["elapsed_s"] = round(readings.elapsed_s + time.perf_counter() - started, 1)
    return results


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
            if tile_of(signal) is None
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
    if results.get("against_ert"):
        lines += ["", *_against_ert_table(results)]
    return "\n".join(lines) + "\n"


def _against_ert_table(results: dict[str, Any]) -> list[str]:
    faults = list(results["faults"])
    lines = [
        "The same readings, the test replayed at each ERT: clean false alarms (allowed), "
        "and per fault the detection rate and median delay in frames.",
        "",
        "| ERT | k of window | clean false alarms (allowed) | " + " | ".join(faults) + " |",
        "| --- | --- | --- | " + " | ".join("---" for _ in faults) + " |",
    ]
    window = results["parameters"]["window"]
    for row in results["against_ert"]:
        cells = [
            f"{fault['detection_rate']:.0%}, {_delay(fault['median_delay'])}"
            for fault in row["faults"].values()
        ]
        lines.append(
            f"| {row['ert']:.0e} | {row['beyond']} of {window} | {row['false_alarms']} "
            f"({row['expected_at_ert']:.3g}) | " + " | ".join(cells) + " |"
        )
    return lines


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


def plot_against_ert(results: dict[str, Any], path: Path) -> None:
    """Median delay of each fault against the ERT, with the clean cameras' false alarms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["against_ert"]
    erts = [row["ert"] for row in rows]
    figure, (delays, alarms) = plt.subplots(
        1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [2, 1]}
    )
    markers = "osD^vP*Xh<>"
    longest = 1.0
    for index, fault in enumerate(results["faults"]):
        medians = [row["faults"][fault]["median_delay"] for row in rows]
        shown = [
            (ert, median) for ert, median in zip(erts, medians, strict=True) if median is not None
        ]
        if shown:
            marker = markers[index % len(markers)]
            delays.plot(*zip(*shown, strict=True), marker=marker, alpha=0.8, label=fault)
            longest = max([longest, *(median for _, median in shown)])
    delays.set_xscale("log")
    delays.set_yscale("log")
    delays.set_ylim(1, longest * 3)
    delays.set_xlabel("ERT: frames per camera between false alarms")
    delays.set_ylabel("median delay, frames")
    delays.set_title("Faults: median delay against the ERT", fontsize=10)
    delays.legend(fontsize=7, ncol=2)
    alarms.plot(
        erts, [row["false_alarms"] for row in rows], marker="o", color="tab:red", label="measured"
    )
    alarms.plot(
        erts,
        [row["expected_at_ert"] for row in rows],
        linestyle="--",
        color="0.4",
        label="allowed by the ERT",
    )
    alarms.set_xscale("log")
    alarms.set_yscale("symlog", linthresh=0.01)
    alarms.set_ylim(0, max([row["expected_at_ert"] for row in rows] + [1.0]) * 3)
    alarms.set_xlabel("ERT")
    alarms.set_ylabel("false alarms on the clean cameras")
    alarms.set_title("Clean cameras", fontsize=10)
    alarms.legend(fontsize=8)
    figure.suptitle("Camera fleet: the own-normal test replayed at each ERT")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
