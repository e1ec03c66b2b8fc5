"""Calibration simulates each detector exactly as it runs, so its thresholds mean what they say."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from framedrift.worker.detection.calibration import (
    CalibrationRefused,
    calibrate,
    clean_stream_rows,
    fitted_threshold,
    max_ert,
    threshold_for_rate,
)
from framedrift.worker.detection.cusum import Cusum, ErrorCusum, cusum_episodes
from framedrift.worker.detection.monitor import scored_images
from framedrift.worker.detection.parameters import DetectorParameters
from framedrift.worker.detection.protocol import CalibratedDetector
from framedrift.worker.detection.reference import ReferenceProfile
from framedrift.worker.detection.registry import CALIBRATED_DETECTORS
from framedrift.worker.detection.window import EventWindow
from tests.detector_fixtures import PROTOTYPES, synthetic_scores

PARAMETERS = DetectorParameters(
    ert=100_000,
    window_size=100,
    test_stride=10,
    latent_window=200,
    cusum_slack=0.5,
    adwin_delta=2e-4,
)


@pytest.fixture(scope="module")
def reference() -> ReferenceProfile:
    return ReferenceProfile(synthetic_scores(np.random.default_rng(7), 2000), PROTOTYPES)


def runtime_alarms(
    detector: type[CalibratedDetector],
    threshold: float,
    reference: ReferenceProfile,
    rows: np.ndarray,
) -> int:
    """Alarms of the detector as the monitor runs it, one fresh source per stream of `rows`."""
    alarms = 0
    for stream in rows:
        running = detector.build(PARAMETERS, {detector.name: threshold}, reference)
        window = EventWindow(PARAMETERS.window_size)
        for image in scored_images(reference.scores.take(stream), reference):
            window.append(image.window_signals(), "", 0, 0, 0.0)
            alarms += running.update(image, window, reference).fired
    return alarms


def thresholds_between_statistics(ends: np.ndarray) -> list[float]:
    """Thresholds that a few, some tens, and many statistics pass, never equal to one."""
    distinct = np.unique(ends[np.isfinite(ends)])[::-1]
    ranks = (3, 30, len(distinct) // 2)
    return [float((distinct[rank] + distinct[rank + 1]) / 2) for rank in ranks]


@pytest.mark.parametrize("detector", CALIBRATED_DETECTORS, ids=lambda d: d.name)
def test_every_calibrated_detector_raises_at_run_time_the_episodes_its_simulation_counts(
    detector: type[CalibratedDetector], reference: ReferenceProfile
) -> None:
    """From a few alarms to hundreds: at low thresholds the CUSUM's cap at 2h shapes them."""
    rows = clean_stream_rows(len(reference.scores), streams=2, seed=3)
    uncapped, _ = detector.clean_episodes(reference, rows, PARAMETERS)
    levels = thresholds_between_statistics(uncapped.ends)
    for threshold in levels:
        simulated, _ = detector.clean_episodes(reference, rows, PARAMETERS, threshold)
        expected = int(simulated(np.array([threshold]))[0])
        assert runtime_alarms(detector, threshold, reference, rows) == expected, threshold
    assert expected >= 30  # the lowest level alarms often: the comparison has something to compare


def test_the_simulated_cusum_caps_its_sums_where_the_running_one_does() -> None:
    """A long drift, a short calm, new bursts: with the cap at 2h the detector re-arms in between.

    Uncapped, the sum would still be draining the long drift when the burst comes, and
    the calibration would count one episode where the running detector pages twice.
    """
    z = np.array([3.0] * 200 + [0.0] * 45 + [3.0] * 10 + [0.0] * 45 + [-3.0] * 10)
    threshold = 10.0
    for two_sided in (True, False):
        cusum = Cusum(slack=0.5, threshold=threshold, two_sided=two_sided)
        alarms = sum(cusum.observe(value).fired for value in z)
        simulated, events = cusum_episodes(z[None, :], 0.5, two_sided, threshold)
        assert events == len(z)
        assert alarms == int(simulated(np.array([threshold]))[0]) == (3 if two_sided else 2)


def test_a_cusum_threshold_is_fitted_with_the_cap_it_will_run_with(
    reference: ReferenceProfile,
) -> None:
    """At a short run time the clean sums often reach twice the threshold, so the cap matters.

    The threshold calibration returns must be the one its own capped episodes give.
    """
    rows = clean_stream_rows(len(reference.scores), streams=20, seed=1)
    rate = 1 / 50  # alarms per clean event: a low threshold, often reached twice over
    fitted = fitted_threshold(ErrorCusum, reference, rows, PARAMETERS, rate)
    capped, events = ErrorCusum.clean_episodes(reference, rows, PARAMETERS, fitted)
    uncapped, _ = ErrorCusum.clean_episodes(reference, rows, PARAMETERS)
    assert threshold_for_rate(capped, rate * events) == pytest.approx(fitted, rel=1e-4)
    assert threshold_for_rate(uncapped, rate * events) != pytest.approx(fitted, rel=1e-3)


def test_thresholds_rise_with_the_ert_up_to_what_the_simulation_carries(
    reference: ReferenceProfile,
) -> None:
    """A higher ERT asks for fewer false alarms: every threshold must rise with it, also
    past the rates the simulation can show, where the tail is extrapolated (the first
    version read those off the last simulated alarm: 10^8 and 10^9 got one threshold,
    lower than 10^7's)."""
    simulated = 200_000
    erts = [10**3, 10**4, 10**5, 10**6, 10**7]
    assert max_ert(simulated) >= erts[-1]
    thresholds = [
        calibrate(reference, dataclasses.replace(PARAMETERS, ert=ert), simulated).thresholds
        for ert in erts
    ]
    for name in thresholds[0]:
        series = [each[name] for each in thresholds]
        assert all(low < high for low, high in itertools.pairwise(series)), (
            name,
            series,
        )


def test_an_ert_beyond_what_the_simulation_carries_is_refused_naming_the_ert(
    reference: ReferenceProfile,
) -> None:
    simulated = 200_000
    with pytest.raises(CalibrationRefused, match="lower the ERT") as refused:
        calibrate(
            reference, dataclasses.replace(PARAMETERS, ert=100 * max_ert(simulated)), simulated
        )
    assert refused.value.parameter == "ert"


def test_the_extrapolated_tail_agrees_with_a_simulation_that_reaches_it(
    reference: ReferenceProfile,
) -> None:
    """Where it can be checked: a CUSUM threshold extrapolated from a tenth of the events
    is within a few percent of the one fitted where the full simulation sees the rate."""
    rows = clean_stream_rows(len(reference.scores), streams=200, seed=3)
    rate = 1 / 2_000_000  # 1 expected episode in all rows: extrapolated from the tenth
    full = fitted_threshold(ErrorCusum, reference, rows, PARAMETERS, rate * 20)
    tenth = fitted_threshold(ErrorCusum, reference, rows[:20], PARAMETERS, rate * 20)
    assert tenth == pytest.approx(full, rel=0.05)
