"""Runs every detector of one source over its stream of scored images."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

from framedrift.worker.detection.adwin import AdwinDetector
from framedrift.worker.detection.calibration import Calibration
from framedrift.worker.detection.cusum import Cusum
from framedrift.worker.detection.ks import KSWindowTest
from framedrift.worker.detection.latent_mix import PrototypeMix
from framedrift.worker.detection.parameters import DetectorParameters
from framedrift.worker.detection.reference import ReferenceProfile
from framedrift.worker.detection.relative_increase import RelativeIncreaseRule
from framedrift.worker.detection.running_stats import RunningStats
from framedrift.worker.detection.scores import SIGNALS, ImageScores
from framedrift.worker.detection.window import EventWindow


@dataclass(frozen=True)
class EventRef:
    """Where an event sits on the input topic."""

    event_id: str
    partition: int
    offset: int
    timestamp: float  # epoch seconds


class ScoredImage(NamedTuple):
    """One image's signals, standard scores included (computed per batch, see pipeline)."""

    error: float
    error_z: float
    prototype: int
    latent_distance: float
    latent_distance_z: float
    brightness: float
    contrast: float
    sharpness: float

    def window_signals(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in SIGNALS}


def scored_images(scores: ImageScores, reference: ReferenceProfile) -> list[ScoredImage]:
    """A batch's scores as the monitor takes them, standard scores computed for all at once

    (scipy's normal quantile function is slow called per value).
    """
    return [
        ScoredImage(*row)
        for row in zip(
            scores.error.tolist(),
            reference.error_z(scores.error).tolist(),
            scores.prototype.tolist(),
            scores.latent_distance.tolist(),
            reference.latent_distance_z(scores.latent_distance).tolist(),
            scores.brightness.tolist(),
            scores.contrast.tolist(),
            scores.sharpness.tolist(),
            strict=True,
        )
    ]


@dataclass(frozen=True)
class MonitorConfig:
    """Calibrated detector parameters and the reference they compare against."""

    calibration: Calibration
    reference: ReferenceProfile
    outlier_threshold: float  # an error above this baseline quantile counts as an outlier

    @property
    def parameters(self) -> DetectorParameters:
        return self.calibration.parameters

    def threshold(self, detector: str) -> float:
        return self.calibration.thresholds[detector]

    @cached_property
    def fingerprint(self) -> str:
        """Identifies the parameters and thresholds a stored state was built with."""
        identity = (
            sorted(self.parameters.to_dict().items()),
            sorted(self.calibration.thresholds.items()),
            self.reference.prototypes,
        )
        return hashlib.sha256(repr(identity).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class DetectorFiring:
    detector: str  # one of schemas.alerts.DetectorName
    statistic: float
    threshold: float
    trigger: EventRef
    # Which way the error moved, where the detector itself knows (the error CUSUM).
    # Otherwise the alert compares the window mean with the baseline, which lags: at a
    # CUSUM alarm a few events into a drift, the window is still mostly clean.
    direction: str | None = None


@dataclass
class SourceState:
    """Everything a source's detectors remember; what the state store persists."""

    config_fingerprint: str
    stats: RunningStats
    window: EventWindow
    adwin: AdwinDetector
    error_cusum: Cusum
    latent_cusum: Cusum
    ks: KSWindowTest
    relative_increase: RelativeIncreaseRule
    latent_mix: PrototypeMix
    outliers: int = 0

    @classmethod
    def fresh(cls, config: MonitorConfig) -> SourceState:
        p = config.parameters
        return cls(
            config_fingerprint=config.fingerprint,
            stats=RunningStats(),
            window=EventWindow(p.window_size),
            adwin=AdwinDetector(p.adwin_delta),
            error_cusum=Cusum(p.cusum_slack, config.threshold("error_cusum"), two_sided=True),
            # Far from every prototype means new content; closer than usual means nothing.
            latent_cusum=Cusum(p.cusum_slack, config.threshold("latent_cusum"), two_sided=False),
            ks=KSWindowTest(stride=p.test_stride, threshold=config.threshold("ks")),
            relative_increase=RelativeIncreaseRule(
                config.threshold("relative_increase"), stride=p.test_stride
            ),
            latent_mix=PrototypeMix(
                window=p.latent_window,
                stride=p.test_stride,
                threshold=config.threshold("latent_mix"),
                prototypes=config.reference.prototypes,
            ),
        )


class SourceMonitor:
    """Feeds one source's images to its detectors and reports which fired."""

    def __init__(self, config: MonitorConfig, state: SourceState) -> None:
        self.config = config
        self.state = state

    def update(self, image: ScoredImage, event: EventRef) -> list[DetectorFiring]:
        state, reference = self.state, self.config.reference
        state.stats.update(image.error)
        state.outliers += image.error > self.config.outlier_threshold
        state.window.append(
            image.window_signals(), event.event_id, event.partition, event.offset, event.timestamp
        )

        firings = []

        def check(
            detector: str,
            fired: bool,
            statistic: float,
            threshold: float,
            direction: str | None = None,
        ) -> None:
            if fired:
                firings.append(DetectorFiring(detector, statistic, threshold, event, direction))

        cusum = state.error_cusum.update(image.error_z)
        check(
            "error_cusum", cusum.drift_detected, cusum.statistic, cusum.threshold, cusum.direction
        )
        novelty = state.latent_cusum.update(image.latent_distance_z)
        check("latent_cusum", novelty.drift_detected, novelty.statistic, novelty.threshold)

        window = state.window
        # The ring is in slot order, not arrival order; neither the KS test nor a mean cares.
        full_window = window.signal_rings["error"] if window.is_full else None
        ks = state.ks.update(full_window, reference.sorted_errors)
        check("ks", ks.drift_detected, ks.statistic, ks.threshold)
        window_mean = float(full_window.mean()) if full_window is not None else None
        rule = state.relative_increase.update(window_mean, reference.signal_means["error"])
        check("relative_increase", rule.drift_detected, rule.statistic, rule.threshold_pct)
        mix = state.latent_mix.update(image.prototype, reference.prototype_shares)
        check("latent_mix", mix.drift_detected, mix.statistic, mix.threshold)

        adwin = state.adwin.update(image.error)
        # ADWIN's bound depends on its window; the level it left is the useful comparison.
        check("adwin", adwin.drift_detected, adwin.estimation, adwin.mean_before)
        return firings
