"""Detectors fire on the drift they are built for and stay quiet on clean streams."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import stats

from framedrift.worker.detection.adwin import Adwin
from framedrift.worker.detection.coverage import Coverage
from framedrift.worker.detection.cusum import Cusum
from framedrift.worker.detection.ks import KsTest, ks_distance
from framedrift.worker.detection.latent_mix import LatentMix
from framedrift.worker.detection.monitor import (
    MonitorConfig,
    SourceMonitor,
    SourceState,
    scored_images,
)
from framedrift.worker.detection.reference import ReferenceProfile
from framedrift.worker.detection.relative_increase import RelativeIncrease
from framedrift.worker.detection.running_stats import RunningStats
from framedrift.worker.detection.scores import ImageScores, ScoredImage
from framedrift.worker.detection.window import EventWindow
from tests.detector_fixtures import PROTOTYPES, feed, synthetic_config, synthetic_scores

CONFIG = synthetic_config()


def clean(rng: np.random.Generator, size: int) -> ImageScores:
    return synthetic_scores(rng, size)


def image_with_error(error: float) -> ScoredImage:
    """An image whose only signal that matters is its error."""
    return ScoredImage(error, 0.0, 0, 0.0, 0.0, 0.0, 0.0, 0.0)


def windowed(values: np.ndarray, capacity: int) -> EventWindow:
    """A window holding the last `capacity` of `values` as errors."""
    window = EventWindow(capacity)
    for value in values[-capacity:]:
        window.append({"error": float(value)}, "", 0, 0, 0.0)
    return window


def first_firings(fired: list[tuple[int, str]]) -> dict[str, int]:
    first: dict[str, int] = {}
    for offset, detector in fired:
        first.setdefault(detector, offset)
    return first


def test_running_stats_match_numpy(rng: np.random.Generator) -> None:
    values = rng.normal(0.3, 0.1, 5000)
    running = RunningStats()
    for value in values:
        running.update(float(value))
    assert running.count == 5000
    assert running.mean == pytest.approx(values.mean())
    assert running.variance == pytest.approx(values.var(ddof=1))


def test_window_keeps_the_last_w_events_with_their_offsets() -> None:
    window = EventWindow(capacity=4)
    for offset in range(10):
        window.append({"error": offset / 10, "brightness": 1.0}, f"e{offset}", 3, offset, 0.0)
    assert window.values("error").tolist() == [0.6, 0.7, 0.8, 0.9]
    assert window.mean("brightness") == 1.0
    oldest = window.oldest_index()
    assert (window.event_ids[oldest], int(window.offset_ring[oldest])) == ("e6", 6)


def test_ks_distance_equals_scipys_statistic_with_and_without_ties(
    rng: np.random.Generator,
) -> None:
    for _ in range(200):
        window, reference = rng.normal(0, 1, 50), np.sort(rng.normal(0.2, 1, 300))
        assert ks_distance(window, reference) == pytest.approx(
            stats.ks_2samp(window, reference).statistic, abs=1e-12
        )
        window, reference = np.round(window, 1), np.round(reference, 1)
        assert ks_distance(window, reference) == pytest.approx(
            stats.ks_2samp(window, reference).statistic, abs=1e-12
        )


def test_clean_stream_raises_no_alarm_at_a_long_run_time(rng: np.random.Generator) -> None:
    config = synthetic_config(ert=2_000_000)
    monitor = SourceMonitor(config, SourceState.fresh(config))
    assert feed(monitor, config, clean(rng, 20_000)) == []
    assert monitor.state.stats.count == 20_000


def test_false_alarms_on_clean_streams_match_the_calibrated_run_time(
    rng: np.random.Generator,
) -> None:
    """At ERT 4,000, 120,000 clean events should give about 30 alarms, all detectors together.

    The budget is split by a union bound, so the combination may alarm less often
    than the ERT says, never clearly more.
    """
    config = synthetic_config(ert=4_000)
    alarms = 0
    for _ in range(12):  # separate sources, as a fleet of clean cameras
        monitor = SourceMonitor(config, SourceState.fresh(config))
        alarms += len(feed(monitor, config, clean(rng, 10_000)))
    assert 8 <= alarms <= 45, f"{alarms} false alarms where about 30 are expected"


def test_a_forty_percent_rise_in_error_is_caught_by_every_error_detector(
    rng: np.random.Generator,
) -> None:
    monitor = SourceMonitor(CONFIG, SourceState.fresh(CONFIG))
    assert feed(monitor, CONFIG, clean(rng, 2000)) == []
    drifted = clean(rng, 1000)
    drifted = dataclasses.replace(drifted, error=drifted.error * 1.4)
    first = first_firings(feed(monitor, CONFIG, drifted, start=2000))
    assert {"error_cusum", "ks", "relative_increase", "adwin"} <= set(first), first
    assert first["error_cusum"] - 2000 <= 40, first  # a 1.2σ shift: tens of events
    assert all(offset - 2000 <= 200 for offset in first.values()), first


def test_new_content_far_from_every_prototype_is_caught_by_the_latent_cusum(
    rng: np.random.Generator,
) -> None:
    monitor = SourceMonitor(CONFIG, SourceState.fresh(CONFIG))
    feed(monitor, CONFIG, clean(rng, 1000))
    novel = clean(rng, 200)
    novel = dataclasses.replace(novel, latent_distance=novel.latent_distance + 4.0)
    first = first_firings(feed(monitor, CONFIG, novel, start=1000))
    assert first.get("latent_cusum", 10**9) - 1000 <= 10, first


def test_a_class_that_stops_arriving_is_caught_by_the_latent_mix(
    rng: np.random.Generator,
) -> None:
    monitor = SourceMonitor(CONFIG, SourceState.fresh(CONFIG))
    feed(monitor, CONFIG, clean(rng, 1000))
    stream = clean(rng, 5000)
    without_top = stream.take(stream.prototype != stream.prototype.max())  # label shift
    first = first_firings(feed(monitor, CONFIG, without_top, start=1000))
    assert "latent_mix" in first, first
    assert "error_cusum" not in first  # the errors did not move


def fixed_camera_scores(
    rng: np.random.Generator, config: MonitorConfig, size: int, level: float = 0.8
) -> ImageScores:
    """A fixed camera's stream as the model sees it: every image from one part of the
    baseline (errors and latent distances near the `level` quantile) wandering slowly
    with the light, one frame much like the next (an AR(1) process, sd 0.03)."""
    reference = config.reference
    light = 0.08 * np.sin(2 * np.pi * np.arange(size) / 3000)
    wander = np.zeros(size)
    for index, step in enumerate(rng.normal(0.0, 0.006, size)):
        wander[index] = 0.98 * wander[index - 1] + step
    quantiles = np.clip(level + light + wander, 0.01, 0.9995)
    scores = clean(rng, size)
    return dataclasses.replace(
        scores,
        error=np.quantile(reference.sorted_errors, quantiles),
        latent_distance=np.quantile(reference.sorted_latent_distances, quantiles),
    )


def test_on_fixed_cameras_only_coverage_asks_the_out_of_domain_question(
    rng: np.random.Generator,
) -> None:
    """The sequential tests assume independent draws of the baseline and page on a clean
    camera's stream; with `source_kind="cameras"` they do not run."""
    stream = fixed_camera_scores(rng, CONFIG, 6000)
    as_samples = SourceMonitor(CONFIG, SourceState.fresh(CONFIG))
    assert {"error_cusum", "latent_cusum"} <= {name for _, name in feed(as_samples, CONFIG, stream)}
    cameras = dataclasses.replace(CONFIG, source_kind="cameras")
    assert cameras.fingerprint != CONFIG.fingerprint  # stored states are not mixed up
    as_camera = SourceMonitor(cameras, SourceState.fresh(cameras))
    assert feed(as_camera, cameras, stream) == []


def test_coverage_fires_once_when_a_source_leaves_the_models_range_and_again_after_return(
    rng: np.random.Generator,
) -> None:
    cameras = dataclasses.replace(CONFIG, source_kind="cameras")
    monitor = SourceMonitor(cameras, SourceState.fresh(cameras))
    assert feed(monitor, cameras, fixed_camera_scores(rng, cameras, 1000)) == []
    camera = fixed_camera_scores(rng, cameras, 2000)
    beyond = dataclasses.replace(camera, error=camera.error * 3.5)  # a scene it was not trained on
    fired = feed(monitor, cameras, beyond, start=1000)
    assert [name for _, name in fired] == ["coverage"]
    window = cameras.parameters.window_size
    assert fired[0][0] - 1000 <= window  # once the window's median is beyond
    assert monitor.state.detectors["coverage"].episode.in_drift  # outside all along
    feed(monitor, cameras, fixed_camera_scores(rng, cameras, 1000), start=3000)
    again = feed(monitor, cameras, beyond, start=4000)
    assert [name for _, name in again] == ["coverage"]


def test_coverage_is_quiet_on_independent_draws_of_the_baseline(rng: np.random.Generator) -> None:
    test = Coverage.build(CONFIG.parameters, {}, CONFIG.reference)
    window = EventWindow(CONFIG.parameters.window_size)
    for image in scored_images(clean(rng, 20_000), CONFIG.reference):
        window.append(image.window_signals(), "", 0, 0, 0.0)
        assert not test.update(image, window, CONFIG.reference).fired
    assert -1.3 < test.statistic < -0.7  # the median sits mid-baseline


def test_cusum_fires_once_per_excursion_in_both_directions() -> None:
    cusum = Cusum(slack=0.5, threshold=8.0)
    fired = [cusum.observe(-3.0).fired for _ in range(50)]
    assert fired.count(True) == 1 and cusum.direction == "down"
    for _ in range(200):  # clean again: the sum drains to zero and the detector re-arms
        cusum.observe(0.0)
    assert not cusum.in_drift
    assert [cusum.observe(3.0).fired for _ in range(10)].count(True) == 1
    assert cusum.direction == "up"


def test_one_sided_cusum_ignores_scores_that_run_low() -> None:
    cusum = Cusum(slack=0.5, threshold=5.0, two_sided=False)
    assert not any(cusum.observe(-3.0).fired for _ in range(100))


def test_windowed_tests_alert_once_per_episode_and_re_arm(rng: np.random.Generator) -> None:
    reference = ReferenceProfile(synthetic_scores(rng, 1000), PROTOTYPES)
    test = KsTest(stride=10, threshold=0.3)
    image = image_with_error(0.0)  # the test reads the window, not the image
    shifted = windowed(rng.choice(reference.scores.error, 100) * 1.5, 100)
    assert sum(test.update(image, shifted, reference).fired for _ in range(200)) == 1
    passing = windowed(rng.choice(reference.scores.error, 100), 100)
    for _ in range(10):
        test.update(image, passing, reference)
    assert not test.episode.in_drift
    assert sum(test.update(image, shifted, reference).fired for _ in range(10)) == 1


def test_prototype_mix_counts_only_the_window() -> None:
    mix = LatentMix(latent_window=20, stride=5, threshold=1e9, prototypes=3)
    reference = ReferenceProfile(ImageScores(np.zeros(3), np.arange(3), *np.zeros((4, 3))), 3)
    for prototype in [0] * 30 + [2] * 20:
        mix.update(
            ScoredImage(0.0, 0.0, prototype, 0.0, 0.0, 0.0, 0.0, 0.0), EventWindow(1), reference
        )
    assert mix.counts.tolist() == [0, 0, 20]


def test_relative_increase_rule_needs_the_full_window_and_the_threshold(
    rng: np.random.Generator,
) -> None:
    reference = ReferenceProfile(synthetic_scores(rng, 1000), PROTOTYPES)
    baseline_mean = reference.signal_means["error"]
    rule = RelativeIncrease(threshold=20.0, stride=1)
    image = image_with_error(0.0)  # the rule reads the window, not the image
    half_full = windowed(np.full(5, baseline_mean * 2.0), 10)
    assert not rule.update(image, half_full, reference).fired
    assert not rule.update(image, windowed(np.full(10, baseline_mean * 1.15), 10), reference).fired
    assert rule.update(image, windowed(np.full(10, baseline_mean * 1.25), 10), reference).fired
    assert rule.statistic == pytest.approx(25.0)
    assert rule.direction == "up"


def test_adwin_detects_a_fall_as_well_as_a_rise(rng: np.random.Generator) -> None:
    detector = Adwin(delta=2e-4)
    for error in rng.gamma(9.0, 0.03, 2000):
        detector.observe(float(error))
    fallen = rng.gamma(9.0, 0.03, 500) * 0.6
    fired = (i for i, x in enumerate(fallen) if detector.observe(float(x)).fired)
    delay = next(fired, None)
    assert delay is not None and delay < 200, f"ADWIN's delay on a 40% fall: {delay}"
    assert detector.estimation < detector.mean_before  # the level after the cut is lower
    assert detector.statistic == pytest.approx(detector.estimation - detector.mean_before)
    assert detector.direction == "down" and detector.threshold is None


def test_outliers_above_the_baseline_quantile_are_counted(rng: np.random.Generator) -> None:
    monitor = SourceMonitor(CONFIG, SourceState.fresh(CONFIG))
    images = clean(rng, 4)
    images = dataclasses.replace(images, error=np.array([0.1, 10.0, 0.2, 12.0]))
    feed(monitor, CONFIG, images)
    assert monitor.state.outliers == 2
