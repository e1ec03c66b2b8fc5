"""A synthetic baseline and a real (small) calibration for detector tests without a model."""

from __future__ import annotations

import numpy as np

from framedrift.worker.detection.calibration import calibrate
from framedrift.worker.detection.monitor import (
    EventRef,
    MonitorConfig,
    SourceMonitor,
    scored_images,
)
from framedrift.worker.detection.parameters import DetectorParameters
from framedrift.worker.detection.reference import ReferenceProfile
from framedrift.worker.detection.scores import ImageScores

PROTOTYPES = 8


def synthetic_scores(rng: np.random.Generator, size: int) -> ImageScores:
    """Scores shaped like a model's: skewed errors, uneven prototype shares."""
    shares = np.linspace(1.0, 3.0, PROTOTYPES)
    return ImageScores(
        error=rng.gamma(9.0, 0.03, size),
        prototype=rng.choice(PROTOTYPES, size, p=shares / shares.sum()),
        latent_distance=rng.gamma(4.0, 0.5, size),
        brightness=rng.normal(0.3, 0.05, size),
        contrast=rng.normal(0.35, 0.04, size),
        sharpness=rng.gamma(5.0, 0.04, size),
    )


def synthetic_config(ert: int = 100_000, **parameters: float) -> MonitorConfig:
    """A config calibrated on a baseline of 2,000 synthetic images.

    Clean test streams should be fresh `synthetic_scores` draws, not resampled
    baseline rows: live data is not the reference sample either.
    """
    reference = synthetic_scores(np.random.default_rng(123), 2000)
    defaults = {
        "window_size": 100,
        "test_stride": 10,
        "latent_window": 200,
        "cusum_slack": 0.5,
        "adwin_delta": 2e-4,
    }
    detector_parameters = DetectorParameters(ert=ert, **{**defaults, **parameters})
    profile = ReferenceProfile(reference, PROTOTYPES)
    calibration = calibrate(profile, detector_parameters, simulated_events=2_000_000)
    outlier_threshold = float(np.quantile(reference.error, 0.999))
    return MonitorConfig(calibration, profile, outlier_threshold)


def feed(
    monitor: SourceMonitor, config: MonitorConfig, scores: ImageScores, start: int = 0
) -> list[tuple[int, str]]:
    """Runs the images through the monitor; returns (offset, detector) of every firing."""
    fired = []
    for offset, image in enumerate(scored_images(scores, config.reference), start=start):
        for firing in monitor.update(image, EventRef(f"e{offset}", 0, offset, 0.0)):
            fired.append((offset, firing.detector))
    return fired
