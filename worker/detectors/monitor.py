"""Runs every detector of one source over its stream of reconstruction errors."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from worker.detectors.adwin import AdwinDetector
from worker.detectors.ks import KSWindowTest
from worker.detectors.relative_increase import RelativeIncreaseRule
from worker.detectors.running_stats import RunningStats
from worker.detectors.window import ErrorWindow


@dataclass(frozen=True)
class EventRef:
    """Where an event sits on the input topic."""

    event_id: str
    partition: int
    offset: int
    timestamp: float  # epoch seconds


@dataclass(frozen=True)
class MonitorConfig:
    """Detector parameters (from settings) and the baseline (from the model artifact)."""

    window_size: int
    ks_stride: int
    ks_alpha: float
    threshold_pct: float
    adwin_delta: float
    reference_errors: np.ndarray
    outlier_threshold: float

    @cached_property  # read for every event
    def baseline_mean(self) -> float:
        return float(self.reference_errors.mean())

    @cached_property
    def fingerprint(self) -> str:
        """Identifies the parameters a stored state was built with."""
        parameters = (
            self.window_size,
            self.ks_stride,
            self.ks_alpha,
            self.threshold_pct,
            self.adwin_delta,
        )
        return hashlib.sha256(repr(parameters).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class DetectorFiring:
    detector: str  # one of schemas.alerts.DetectorName
    statistic: float
    threshold: float
    trigger: EventRef


@dataclass
class SourceState:
    """Everything a source's detectors remember; what the state store persists."""

    config_fingerprint: str
    stats: RunningStats
    window: ErrorWindow
    adwin: AdwinDetector
    ks: KSWindowTest
    relative_increase: RelativeIncreaseRule
    outliers: int = 0

    @classmethod
    def fresh(cls, config: MonitorConfig) -> SourceState:
        return cls(
            config_fingerprint=config.fingerprint,
            stats=RunningStats(),
            window=ErrorWindow(config.window_size),
            adwin=AdwinDetector(config.adwin_delta),
            ks=KSWindowTest(stride=config.ks_stride, alpha=config.ks_alpha),
            relative_increase=RelativeIncreaseRule(config.threshold_pct),
        )


class SourceMonitor:
    """Feeds one source's errors to its detectors and reports which fired."""

    def __init__(self, config: MonitorConfig, state: SourceState) -> None:
        self.config = config
        self.state = state

    def update(self, error: float, event: EventRef) -> list[DetectorFiring]:
        state, config = self.state, self.config
        state.stats.update(error)
        state.outliers += error > config.outlier_threshold
        state.window.append(error, event.event_id, event.partition, event.offset, event.timestamp)

        firings = []
        if state.adwin.update(error).drift_detected:
            firings.append(
                DetectorFiring("adwin", state.adwin.estimation, state.adwin.mean_before, event)
            )
        full_window = state.window.error_ring if state.window.is_full else None
        # The ring is in slot order, not arrival order; neither the KS test nor a mean cares.
        if state.ks.update(full_window, config.reference_errors).drift_detected:
            firings.append(DetectorFiring("ks", state.ks.statistic, state.ks.threshold, event))
        window_mean = float(full_window.mean()) if full_window is not None else None
        if state.relative_increase.update(window_mean, config.baseline_mean).drift_detected:
            firings.append(
                DetectorFiring(
                    "relative_increase",
                    state.relative_increase.statistic,
                    config.threshold_pct,
                    event,
                )
            )
        return firings
