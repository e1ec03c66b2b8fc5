"""Detectors fire on the drift they are built for and stay quiet on clean streams."""

from __future__ import annotations

import numpy as np
import pytest

from worker.detectors import (
    AdwinDetector,
    ErrorWindow,
    EventRef,
    KSWindowTest,
    MonitorConfig,
    RelativeIncreaseRule,
    RunningStats,
    SourceMonitor,
)
from worker.detectors.ks import ks_critical_value
from worker.detectors.monitor import SourceState

REFERENCE = np.sort(np.random.default_rng(0).gamma(9.0, 0.03, 1200))  # errors look like this


def config(**overrides: float) -> MonitorConfig:
    parameters = {
        "window_size": 100,
        "ks_stride": 10,
        "ks_alpha": 1e-4,
        "threshold_pct": 20.0,
        "adwin_delta": 2e-4,
        "reference_errors": REFERENCE,
        "outlier_threshold": float(np.quantile(REFERENCE, 0.999)),
    }
    parameters.update(overrides)
    return MonitorConfig(**parameters)  # type: ignore[arg-type]


def feed(monitor: SourceMonitor, errors: np.ndarray, start: int = 0) -> list[tuple[int, str]]:
    fired = []
    for offset, error in enumerate(errors, start=start):
        for firing in monitor.update(float(error), EventRef(f"e{offset}", 0, offset, 0.0)):
            fired.append((offset, firing.detector))
    return fired


def test_running_stats_match_numpy(rng: np.random.Generator) -> None:
    values = rng.normal(0.3, 0.1, 5000)
    stats = RunningStats()
    for value in values:
        stats.update(float(value))
    assert stats.count == 5000
    assert stats.mean == pytest.approx(values.mean())
    assert stats.variance == pytest.approx(values.var(ddof=1))


def test_window_keeps_the_last_w_errors_with_their_offsets() -> None:
    window = ErrorWindow(capacity=4)
    for offset in range(10):
        window.append(offset / 10, f"e{offset}", 3, offset, float(offset))
    assert window.errors().tolist() == [0.6, 0.7, 0.8, 0.9]
    oldest = window.oldest_index()
    assert (window.event_ids[oldest], int(window.offset_ring[oldest])) == ("e6", 6)


def test_clean_stream_of_baseline_errors_raises_no_alarm(rng: np.random.Generator) -> None:
    monitor = SourceMonitor(config(), SourceState.fresh(config()))
    clean = rng.choice(REFERENCE, 20_000)
    assert feed(monitor, clean) == []
    assert monitor.state.stats.count == 20_000


def test_every_detector_catches_a_forty_percent_rise(rng: np.random.Generator) -> None:
    monitor = SourceMonitor(config(), SourceState.fresh(config()))
    assert feed(monitor, rng.choice(REFERENCE, 2000)) == []
    fired = feed(monitor, rng.choice(REFERENCE, 1000) * 1.4, start=2000)
    first_by_detector = {}
    for offset, detector in fired:
        first_by_detector.setdefault(detector, offset)
    assert set(first_by_detector) == {"adwin", "ks", "relative_increase"}
    assert all(offset - 2000 <= 200 for offset in first_by_detector.values()), first_by_detector


def test_windowed_detectors_alert_once_per_episode_and_re_arm(rng: np.random.Generator) -> None:
    test = KSWindowTest(stride=10, alpha=1e-4)
    shifted = rng.choice(REFERENCE, 100) * 1.5
    firings = sum(test.update(shifted, REFERENCE).drift_detected for _ in range(200))
    assert firings == 1
    clean = rng.choice(REFERENCE, 100)
    for _ in range(10):
        test.update(clean, REFERENCE)
    assert not test.episode.in_drift
    assert sum(test.update(shifted, REFERENCE).drift_detected for _ in range(10)) == 1


def test_ks_critical_value_matches_scipy_p_value_at_the_boundary(rng: np.random.Generator) -> None:
    from scipy import stats

    critical = ks_critical_value(200, 1200, 1e-3)
    effective = np.sqrt(200 * 1200 / 1400)
    assert stats.kstwobign.sf(critical * effective) == pytest.approx(1e-3)


def test_relative_increase_rule_needs_the_full_window_and_the_threshold() -> None:
    rule = RelativeIncreaseRule(threshold_pct=20.0)
    assert not rule.update(None, 0.3).drift_detected
    assert not rule.update(0.35, 0.3).drift_detected  # +16.7%
    assert rule.update(0.37, 0.3).drift_detected  # +23.3%
    assert rule.statistic == pytest.approx(100 * 0.07 / 0.3)


def test_adwin_detects_a_fall_as_well_as_a_rise(rng: np.random.Generator) -> None:
    detector = AdwinDetector(delta=2e-4)
    for error in rng.choice(REFERENCE, 2000):
        detector.update(float(error))
    fallen = rng.choice(REFERENCE, 500) * 0.6
    fired = (i for i, x in enumerate(fallen) if detector.update(float(x)).drift_detected)
    delay = next(fired, None)
    assert delay is not None and delay < 200, f"ADWIN's delay on a 40% fall: {delay}"
    assert detector.estimation < detector.mean_before  # the level after the cut is lower


def test_outliers_above_the_baseline_quantile_are_counted() -> None:
    monitor = SourceMonitor(config(), SourceState.fresh(config()))
    feed(monitor, np.array([0.1, 10.0, 0.2, 12.0]))
    assert monitor.state.outliers == 2
