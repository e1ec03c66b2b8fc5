"""Seed 000's rule: alert when the recent mean error exceeds the baseline mean by a set percent."""

from __future__ import annotations

from dataclasses import dataclass, field

from framedrift.worker.detection.episode import EpisodeLatch


@dataclass
class RelativeIncreaseRule:
    """Fires when mean(last W errors) > baseline mean × (1 + threshold_pct / 100).

    The article this product started from (seed 000) compares the reconstruction loss
    of incoming data with the validation loss and alerts above a chosen threshold; its
    notMNIST example rose by 44%. Here the threshold is not chosen by hand: calibration
    (`worker/calibration.py`) sets it so that a clean source's window mean crosses it
    once per its share of the expected run time. One alert per episode, like the KS test.

    >>> rule = RelativeIncreaseRule(threshold_pct=20.0)
    >>> rule.update(window_mean=0.30, baseline_mean=0.28).drift_detected
    False
    >>> rule.update(window_mean=0.36, baseline_mean=0.28).drift_detected
    True
    """

    threshold_pct: float
    stride: int = 1  # evaluate every this many events, like the KS test
    events_since_test: int = 0
    statistic: float = 0.0  # the window's increase over the baseline, in percent
    episode: EpisodeLatch = field(default_factory=EpisodeLatch)

    def update(self, window_mean: float | None, baseline_mean: float) -> RelativeIncreaseRule:
        """Count one event; evaluate on a full window's mean (None: not yet full) when due."""
        self.episode.quiet()
        self.events_since_test += 1
        if window_mean is None or self.events_since_test < self.stride:
            return self
        self.events_since_test = 0
        self.statistic = 100.0 * (window_mean - baseline_mean) / baseline_mean
        self.episode.observe(self.statistic > self.threshold_pct)
        return self

    @property
    def drift_detected(self) -> bool:
        return self.episode.fired
