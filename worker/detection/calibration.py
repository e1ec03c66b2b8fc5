"""Sets every detector's threshold so that a clean source alarms once per `ert` events.

Why simulate: a per-test p-value says nothing about how often a detector that tests
every few events, on overlapping windows, raises a false alarm on a long clean stream.
The expected run time (ERT: mean events between false alarms) does, and it is the one
knob users set (`FRAMEDRIFT_ERT`).

How:
1. Clean streams are resampled from the baseline scores, which are also the
   reference the detectors compare against. The reference is a finite sample, so a
   live clean source differs from it a little (its true prototype shares, its true
   mean error): with 1,200 baseline images and a 1,000-event window, the latent-mix
   chi-square of clean images averaged 35 where streams resampled from the reference
   gave 15, and calibrated on the latter, half the clean test cameras alarmed within
   2,500 events. So each simulated stream first draws its own plausible truth, a
   resample of the baseline, and its events from that truth. A bootstrap resample of
   the baseline's size would sit as far from the reference as sampling alone puts a
   live source; the truth is drawn half that size (`TRUTH_SPREAD`), twice the
   variance, as a margin for the small differences every real source has. On the
   Fashion-MNIST model (8,400 baseline images) the plain bootstrap let streams from
   the test set raise latent-mix false alarms at 2.8 times its share of the ERT; with
   the margin, `framedrift evaluate` measures every detector near or below its share.
2. Each calibrated detector's statistic is computed over all streams at once (numpy),
   exactly as `worker/detectors/` computes it per event, and its false-alarm episodes
   are counted as a function of the threshold. An episode is what pages someone: the
   first alarm after the detector re-armed (see `EpisodeLatch`, `Cusum`).
3. The combination: alarm rates add up at worst, so each of the calibrated detectors
   gets an equal share of the budget 1/ERT left after ADWIN's measured rate. The
   combined run length is then at least the ERT; `framedrift evaluate` measures it.
4. Near the target the episode count is small and noisy, so the threshold is read
   from a log-linear fit of the counts around it rather than from the raw step.

The result travels in the model artifact, with the parameters it holds for; a worker
whose settings differ recalibrates at start-up (deterministic, a few seconds).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from river.drift import ADWIN

from framedrift.worker.detection.ks import ks_distance_of_sorted
from framedrift.worker.detection.latent_mix import chi_square
from framedrift.worker.detection.parameters import DetectorParameters
from framedrift.worker.detection.reference import ReferenceProfile
from framedrift.worker.detection.scores import ImageScores

CALIBRATED_DETECTORS = ("error_cusum", "latent_cusum", "ks", "relative_increase", "latent_mix")
STREAM_LENGTH = 10_000  # events per simulated stream: ten windows, so burn-in is small
TRUTH_SPREAD = 2.0  # how much farther from the baseline a clean truth may sit than sampling puts it
ADWIN_MEASURED_EVENTS = 1_000_000  # river's ADWIN runs per event in Python: measure, not tune


@dataclass(frozen=True)
class Calibration:
    parameters: DetectorParameters
    thresholds: dict[str, float]  # detector -> threshold on its statistic
    detector_ert: float  # the run length each calibrated detector was set to
    adwin_alarms: int  # ADWIN's false alarms on `adwin_events` simulated clean events
    adwin_events: int
    simulated_events: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "parameters": self.parameters.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        return cls(**{**data, "parameters": DetectorParameters(**data["parameters"])})


def calibrate(
    profile: ReferenceProfile,
    parameters: DetectorParameters,
    simulated_events: int = 10_000_000,
    seed: int = 0,
) -> Calibration:
    """Thresholds for `parameters`, from clean streams resampled out of the baseline scores."""
    started = time.perf_counter()
    clean = profile.scores
    rows = _clean_stream_rows(len(clean), max(1, simulated_events // STREAM_LENGTH), seed)

    adwin_events = min(ADWIN_MEASURED_EVENTS, rows.size)
    adwin_alarms = _adwin_alarms(clean.error[rows.ravel()[:adwin_events]], parameters)
    budget = 1.0 / parameters.ert - adwin_alarms / adwin_events
    if budget <= 0.5 / parameters.ert:
        raise ValueError(
            f"ADWIN alone (delta {parameters.adwin_delta}) raised {adwin_alarms} false alarms "
            f"in {adwin_events} clean events, over half the budget of ERT {parameters.ert}; "
            "lower adwin_delta"
        )
    detector_rate = budget / len(CALIBRATED_DETECTORS)

    episode_counters = {
        "error_cusum": lambda: _cusum_excursions(
            profile.error_z(clean.error)[rows], parameters.cusum_slack, two_sided=True
        ),
        "latent_cusum": lambda: _cusum_excursions(
            profile.latent_distance_z(clean.latent_distance)[rows],
            parameters.cusum_slack,
            two_sided=False,
        ),
        "ks": lambda: _upcrossings(
            _ks_statistics(profile, clean, rows, parameters), parameters.test_stride
        ),
        "relative_increase": lambda: _upcrossings(
            _relative_increase_statistics(profile, clean.error[rows], parameters),
            parameters.test_stride,
        ),
        "latent_mix": lambda: _upcrossings(
            _latent_mix_statistics(profile, clean.prototype[rows], parameters),
            parameters.test_stride,
        ),
    }
    thresholds = {}
    for detector, count_episodes in episode_counters.items():
        episodes, opportunities = count_episodes()
        thresholds[detector] = _threshold_for_rate(episodes, detector_rate * opportunities)
    return Calibration(
        parameters=parameters,
        thresholds=thresholds,
        detector_ert=1.0 / detector_rate,
        adwin_alarms=adwin_alarms,
        adwin_events=adwin_events,
        simulated_events=int(rows.size),
        seconds=time.perf_counter() - started,
    )


def _clean_stream_rows(baseline_size: int, streams: int, seed: int) -> np.ndarray:
    """Baseline rows of simulated clean streams (streams × STREAM_LENGTH).

    Each stream's events come from its own bootstrap resample of the baseline: one
    plausible truth per stream (point 1 of the module docstring).
    """
    rng = np.random.default_rng(seed)
    truth_size = max(1, round(baseline_size / TRUTH_SPREAD))
    truths = rng.integers(0, baseline_size, size=(streams, truth_size), dtype=np.int32)
    draws = rng.integers(0, truth_size, size=(streams, STREAM_LENGTH), dtype=np.int32)
    return np.take_along_axis(truths, draws, axis=1)


class EpisodeCounts:
    """How many false-alarm episodes a threshold h would give: a step function of h."""

    def __init__(self, starts: np.ndarray, ends: np.ndarray) -> None:
        # Each episode candidate fires for every h in [start, end).
        self.starts = np.sort(starts)
        self.ends = np.sort(ends)

    def __call__(self, thresholds: np.ndarray) -> np.ndarray:
        started = np.searchsorted(self.starts, thresholds, side="right")
        ended = np.searchsorted(self.ends, thresholds, side="right")
        return started - ended


def _upcrossings(statistics: np.ndarray, events_per_test: int = 1) -> tuple[EpisodeCounts, int]:
    """Episodes of windowed tests (streams × tests): test j fires after a passing test j-1.

    Returns the counts and how many events the tests covered.
    """
    previous = np.concatenate([np.full((len(statistics), 1), -np.inf), statistics[:, :-1]], axis=1)
    rising = statistics > previous
    return EpisodeCounts(previous[rising], statistics[rising]), statistics.size * events_per_test


def _cusum_excursions(z: np.ndarray, slack: float, two_sided: bool) -> tuple[EpisodeCounts, int]:
    """Episodes of `Cusum`: an excursion of its sums away from zero alarms iff its peak > h."""
    streams, length = z.shape
    upper = np.zeros(streams)
    lower = np.zeros(streams)
    peak = np.zeros(streams)
    peaks = []
    for step in range(length):
        np.maximum(upper + z[:, step] - slack, 0.0, out=upper)
        statistic = upper
        if two_sided:
            np.maximum(lower - z[:, step] - slack, 0.0, out=lower)
            statistic = np.maximum(upper, lower)
        ended = (statistic == 0.0) & (peak > 0.0)
        if ended.any():
            peaks.append(peak[ended])
        peak = np.where(statistic > 0.0, np.maximum(peak, statistic), 0.0)
    peaks.append(peak[peak > 0.0])
    all_peaks = np.concatenate(peaks)
    return EpisodeCounts(np.full(len(all_peaks), -np.inf), all_peaks), z.size


def _ks_statistics(
    profile: ReferenceProfile, clean: ImageScores, rows: np.ndarray, p: DetectorParameters
) -> np.ndarray:
    """KS distance of every simulated test window (streams × tests)."""
    reference = profile.sorted_errors
    # Tie-aware ranks: sort by a value id, so equal errors get equal ids.
    distinct, value_id = np.unique(clean.error, return_inverse=True)
    right = np.searchsorted(reference, distinct, side="right")
    left = np.searchsorted(reference, distinct, side="left")
    ids = value_id[rows].astype(np.int32)
    statistics = []
    for chunk in np.array_split(ids, max(1, len(ids) // 40)):
        windows = np.sort(
            sliding_window_view(chunk, p.window_size, axis=1)[:, :: p.test_stride], axis=-1
        )
        statistics.append(
            ks_distance_of_sorted(windows, right[windows], left[windows], len(reference))
        )
    return np.concatenate(statistics)


def _relative_increase_statistics(
    profile: ReferenceProfile, errors: np.ndarray, p: DetectorParameters
) -> np.ndarray:
    """The rule's statistic at every simulated test (streams × tests), in percent."""
    window = p.window_size
    sums = np.cumsum(errors, axis=1)
    window_sums = sums[:, window - 1 :] - np.concatenate(
        [np.zeros((len(sums), 1)), sums[:, :-window]], axis=1
    )
    baseline = profile.signal_means["error"]
    return 100.0 * (window_sums[:, :: p.test_stride] / window - baseline) / baseline


def _latent_mix_statistics(
    profile: ReferenceProfile, prototypes: np.ndarray, p: DetectorParameters
) -> np.ndarray:
    """Chi-square of every simulated test window's prototype counts (streams × tests)."""
    streams, length = prototypes.shape
    blocks = length // p.test_stride
    block_of_event = np.arange(blocks * p.test_stride) // p.test_stride
    flat = (
        np.arange(streams)[:, None] * blocks + block_of_event
    ) * profile.prototypes + prototypes[:, : blocks * p.test_stride]
    block_counts = np.bincount(
        flat.ravel(), minlength=streams * blocks * profile.prototypes
    ).reshape(streams, blocks, profile.prototypes)
    cumulative = np.concatenate(
        [np.zeros((streams, 1, profile.prototypes), np.int64), np.cumsum(block_counts, axis=1)],
        axis=1,
    )
    per_window = p.latent_window // p.test_stride
    window_counts = cumulative[:, per_window:] - cumulative[:, :-per_window]
    return chi_square(window_counts, profile.prototype_shares)


def _adwin_alarms(errors: np.ndarray, parameters: DetectorParameters) -> int:
    alarms = 0
    for stream in np.array_split(errors, max(1, len(errors) // STREAM_LENGTH)):
        adwin = ADWIN(delta=parameters.adwin_delta)
        for error in stream.tolist():
            adwin.update(error)
            alarms += adwin.drift_detected
    return alarms


def _threshold_for_rate(episodes: EpisodeCounts, target: float) -> float:
    """The threshold at which `target` episodes are expected, smoothing the noisy tail.

    log(episodes) is close to linear in the threshold over a short range, so it is
    fitted on the thresholds giving between 1/3 and 30 times the target, weighted by
    the counts (Poisson), and solved for the target.
    """
    candidates = np.unique(np.concatenate([episodes.starts, episodes.ends]))
    candidates = candidates[np.isfinite(candidates)]
    grid = np.linspace(candidates.min(), candidates.max(), 4000)
    counts = episodes(grid)
    # Far below the usual level a statistic rarely goes, so it rarely crosses upward
    # there either: only the upper tail, above the busiest threshold, is wanted.
    upper_tail = grid >= grid[np.argmax(counts)]
    near = upper_tail & (counts >= target / 3.0) & (counts <= target * 30.0)
    if near.sum() >= 10:
        slope, intercept = np.polyfit(grid[near], np.log(counts[near]), 1, w=np.sqrt(counts[near]))
        if slope < 0:
            return float((np.log(target) - intercept) / slope)
    # Too few episodes to fit: the smallest threshold whose count is at or below target.
    return float(grid[np.argmax(upper_tail & (counts <= target))])
