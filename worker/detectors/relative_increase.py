"""Seed 000's rule: alert when the recent mean error exceeds the baseline mean by a set percent."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RelativeIncreaseRule:
    """Fires when mean(last W errors) > baseline mean × (1 + threshold_pct / 100).

    The article this product started from (seed 000) compares the reconstruction loss
    of incoming data with the validation loss and alerts above a chosen threshold; its
    notMNIST example rose by 44%. The window size W is the false-alarm control: the
    window mean's spread shrinks as 1/√W. One alert per episode, like the KS test.

    >>> rule = RelativeIncreaseRule(threshold_pct=20.0)
    >>> rule.update(window_mean=0.30, baseline_mean=0.28).drift_detected
    False
    >>> rule.update(window_mean=0.36, baseline_mean=0.28).drift_detected
    True
    """

    threshold_pct: float
    in_drift: bool = False
    statistic: float = 0.0  # the window's increase over the baseline, in percent
    _fired: bool = False

    def update(self, window_mean: float | None, baseline_mean: float) -> RelativeIncreaseRule:
        """Evaluate the rule on a full window's mean; None (window not yet full) is a no-op."""
        self._fired = False
        if window_mean is None:
            return self
        self.statistic = 100.0 * (window_mean - baseline_mean) / baseline_mean
        drifting = self.statistic > self.threshold_pct
        self._fired = drifting and not self.in_drift
        self.in_drift = drifting
        return self

    @property
    def drift_detected(self) -> bool:
        return self._fired
