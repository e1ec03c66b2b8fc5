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
2. Each calibrated detector simulates itself over all streams at once (numpy; its
   `clean_episodes`, beside its `update` in its module), exactly as it computes its
   statistic per event, and counts its false-alarm episodes as a function of the
   threshold. An episode is what pages someone: the first alarm after the detector
   re-armed (see `EpisodeLatch`, `Cusum`).
3. The combination: alarm rates add up at worst, so each of the calibrated detectors
   gets an equal share of the budget 1/ERT left after ADWIN's measured rate. The
   combined run length is then at least the ERT; `framedrift evaluate` measures it.
4. Near the target the episode count is small and noisy, so the threshold is read
   from a log-linear fit of the counts around it rather than from the raw step.
5. A CUSUM caps its sums at twice its threshold, so its episodes depend on the
   threshold itself: it is fitted uncapped first, then its episodes are counted again
   with the cap the fitted threshold gives and the fit repeated until it settles (a
   clean stream seldom reaches twice the threshold: at the usual run times it does
   not move at all, and even at an ERT of 50 events it moves by 0.3%).

6. Past what the simulation can show (a per-source ERT of 10^9 asks for one episode in
   5·10^9 events of each detector, where 10^7 are simulated), the threshold is
   extrapolated along the fitted tail, never read off the last simulated alarm (which
   would make every high ERT the same threshold, and a lower one than a moderate ERT
   gets). How far that may go is bounded (`MAX_EXTRAPOLATION`); beyond it the
   calibration refuses and says which ERT it can set.

The result travels in the model artifact, with the parameters it holds for; a worker
whose settings differ recalibrates at start-up (deterministic, a few seconds).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from framedrift.worker.detection.adwin import Adwin
from framedrift.worker.detection.episode import EpisodeCounts
from framedrift.worker.detection.parameters import DetectorParameters
from framedrift.worker.detection.protocol import CalibratedDetector
from framedrift.worker.detection.reference import ReferenceProfile
from framedrift.worker.detection.registry import CALIBRATED_DETECTORS

SIMULATED_EVENTS = 10_000_000  # clean events simulated per calibration: 3 to 10 s on 2 cores
STREAM_LENGTH = 10_000  # events per simulated stream: ten windows, so burn-in is small
TRUTH_SPREAD = 2.0  # how much farther from the baseline a clean truth may sit than sampling puts it
ADWIN_MEASURED_EVENTS = 1_000_000  # river's ADWIN runs per event: measure it, do not tune it
# Point 6: the tail fit wants this many episodes at least (Poisson noise ~ 1/sqrt(n)) and
# extrapolates at most this factor below them: 10 episodes -> 0.001 expected episodes,
# which 10 million simulated events stretch to a per-source ERT of 5·10^9.
MIN_FITTED_EPISODES = 10.0
MAX_EXTRAPOLATION = 1e4
# Point 5: a threshold whose refit moves it less than this fraction has settled.
REFIT_TOLERANCE = 1e-4
MAX_REFITS = 5


class CalibrationRefused(ValueError):
    """These parameters cannot be calibrated honestly; `parameter` names the one to change
    (a `DetectorParameters` field, which the settings map to their variable)."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


class ExtrapolationTooFar(ValueError):
    """A false-alarm rate beyond what the simulated tail can be trusted to say."""


@dataclass(frozen=True)
class Calibration:
    parameters: DetectorParameters
    thresholds: dict[str, float]  # calibrated detector's name -> threshold on its statistic
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
    simulated_events: int = SIMULATED_EVENTS,
    seed: int = 0,
) -> Calibration:
    """Thresholds for `parameters`, from clean streams resampled out of the baseline scores."""
    started = time.perf_counter()
    rows = clean_stream_rows(len(profile.scores), max(1, simulated_events // STREAM_LENGTH), seed)

    adwin_rows = rows[: max(1, ADWIN_MEASURED_EVENTS // STREAM_LENGTH)]
    adwin_alarms = Adwin.clean_alarms(profile.scores.error[adwin_rows], parameters)
    budget = 1.0 / parameters.ert - adwin_alarms / adwin_rows.size
    if budget <= 0.5 / parameters.ert:
        raise CalibrationRefused(
            "adwin_delta",
            f"ADWIN alone (delta {parameters.adwin_delta}) raised {adwin_alarms} false alarms "
            f"in {adwin_rows.size} clean events, over half the budget of ERT {parameters.ert}; "
            "lower the ADWIN delta",
        )
    detector_rate = budget / len(CALIBRATED_DETECTORS)
    try:
        thresholds = {
            detector.name: fitted_threshold(detector, profile, rows, parameters, detector_rate)
            for detector in CALIBRATED_DETECTORS
        }
    except ExtrapolationTooFar as error:
        raise CalibrationRefused(
            "ert",
            f"ERT {parameters.ert:g}: {error}. {rows.size:,} clean events were simulated, "
            f"which carry an ERT up to about {max_ert(rows.size):.1g}: lower the ERT or "
            "simulate more events",
        ) from None
    return Calibration(
        parameters=parameters,
        thresholds=thresholds,
        detector_ert=1.0 / detector_rate,
        adwin_alarms=adwin_alarms,
        adwin_events=int(adwin_rows.size),
        simulated_events=int(rows.size),
        seconds=time.perf_counter() - started,
    )


SECONDS_PER_DAY = 86_400


QUESTIONS = 2  # out of domain (the calibrated detectors) and changed (`own_normal.py`)


def fleet_ert(sources: int, frames_per_second: float, alarms_per_day: float) -> float:
    """The per-source ERT that gives a whole fleet `alarms_per_day` false alarms a day.

    Each clean source raises a false alarm once per ERT of its own events for each of the
    two questions, independently of the others, so the fleet's false alarms a day are
    its events a day times `QUESTIONS` over the ERT.

    >>> f"{fleet_ert(sources=1000, frames_per_second=5, alarms_per_day=1):.3g}"
    '8.64e+08'
    """
    return QUESTIONS * sources * frames_per_second * SECONDS_PER_DAY / alarms_per_day


def max_ert(simulated_events: int) -> float:
    """The highest ERT a calibration on this many simulated events can set (point 6)."""
    fewest_trusted = MIN_FITTED_EPISODES / MAX_EXTRAPOLATION
    return simulated_events / fewest_trusted / len(CALIBRATED_DETECTORS)


def clean_stream_rows(baseline_size: int, streams: int, seed: int) -> np.ndarray:
    """Baseline rows of simulated clean streams (streams × STREAM_LENGTH).

    Each stream's events come from its own bootstrap resample of the baseline: one
    plausible truth per stream (point 1 of the module docstring).
    """
    rng = np.random.default_rng(seed)
    truth_size = max(1, round(baseline_size / TRUTH_SPREAD))
    truths = rng.integers(0, baseline_size, size=(streams, truth_size), dtype=np.int32)
    draws = rng.integers(0, truth_size, size=(streams, STREAM_LENGTH), dtype=np.int32)
    return np.take_along_axis(truths, draws, axis=1)


def fitted_threshold(
    detector: type[CalibratedDetector],
    profile: ReferenceProfile,
    rows: np.ndarray,
    parameters: DetectorParameters,
    rate: float,
) -> float:
    """The threshold at which `detector` alarms at `rate` per clean event (points 2, 4, 5)."""
    episodes, opportunities = detector.clean_episodes(profile, rows, parameters)
    threshold = threshold_for_rate(episodes, rate * opportunities)
    if not detector.dynamics_depend_on_threshold:
        return threshold
    for _ in range(MAX_REFITS):
        episodes, _ = detector.clean_episodes(profile, rows, parameters, threshold)
        refitted = threshold_for_rate(episodes, rate * opportunities)
        settled = abs(refitted - threshold) <= REFIT_TOLERANCE * threshold
        threshold = refitted
        if settled:
            break
    return threshold


def threshold_for_rate(episodes: EpisodeCounts, target: float) -> float:
    """The threshold at which `target` episodes are expected, smoothing the noisy tail.

    log(episodes) is close to linear in the threshold over the upper tail (for a CUSUM
    the run length grows exponentially with its threshold, by Siegmund's approximation;
    a windowed test's statistic has a tail at most as heavy as exponential). So the
    counts are fitted, weighted by the counts (Poisson), on the thresholds giving
    between 1/3 and 30 times the target, and solved for the target. A target below
    `MIN_FITTED_EPISODES` cannot be seen in the simulation: the fit then takes the
    measured tail, `MIN_FITTED_EPISODES` to 30 times that, and extrapolates, at most
    `MAX_EXTRAPOLATION` below the fewest episodes it fitted (else `ExtrapolationTooFar`).
    Where the true tail falls faster than exponential (a KS statistic's is Gaussian) the
    extrapolated threshold errs high: fewer false alarms than asked, never more.
    """
    candidates = np.unique(np.concatenate([episodes.starts, episodes.ends]))
    candidates = candidates[np.isfinite(candidates)]
    grid = np.linspace(candidates.min(), candidates.max(), 4000)
    counts = episodes(grid)
    # Far below the usual level a statistic rarely goes, so it rarely crosses upward
    # there either: only the upper tail, above the busiest threshold, is wanted.
    upper_tail = grid >= grid[np.argmax(counts)]
    lowest = max(target / 3.0, MIN_FITTED_EPISODES)
    near = upper_tail & (counts >= lowest) & (counts <= max(target, MIN_FITTED_EPISODES) * 30.0)
    if target * MAX_EXTRAPOLATION < MIN_FITTED_EPISODES:
        raise ExtrapolationTooFar(
            f"a false-alarm rate this low needs the tail {MIN_FITTED_EPISODES / target:.0f} times "
            f"below the fewest episodes simulated; at most {MAX_EXTRAPOLATION:.0f} is trusted"
        )
    if near.sum() >= 10:
        slope, intercept = np.polyfit(grid[near], np.log(counts[near]), 1, w=np.sqrt(counts[near]))
        if slope < 0:
            return float((np.log(target) - intercept) / slope)
    raise ExtrapolationTooFar(
        f"the simulation's tail holds too few episodes to fit ({int(counts[upper_tail].max())} "
        "at most)"
    )
