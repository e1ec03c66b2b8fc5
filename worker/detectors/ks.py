"""Two-sample Kolmogorov–Smirnov test of a source's recent errors against the baseline."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from worker.detectors.episode import EpisodeLatch


def ks_critical_value(window_size: int, reference_size: int, alpha: float) -> float:
    """The KS distance above which two samples of these sizes differ at level `alpha`.

    Kolmogorov's limiting distribution with the two-sample effective size
    n·m / (n + m), the asymptotic form of the test.
    """
    effective_size = window_size * reference_size / (window_size + reference_size)
    return float(stats.kstwobign.isf(alpha)) / math.sqrt(effective_size)


@dataclass
class KSWindowTest:
    """Every `stride` events, KS-tests the last W errors against the baseline sample.

    The KS distance D is the largest gap between the two empirical distribution
    functions, so the test sees any change of shape, not only of the mean (for
    example a camera whose errors became bimodal). It fires when D exceeds the
    level-`alpha` critical value; `alpha` is the false-alarm control per test. It
    alerts once per episode: after firing it stays quiet until a test passes again.

    >>> reference = np.random.default_rng(0).normal(0.3, 0.1, 1000)
    >>> test = KSWindowTest(stride=1, alpha=1e-3)
    >>> shifted = np.random.default_rng(1).normal(0.45, 0.1, 100)
    >>> test.update(shifted, reference).drift_detected
    True
    """

    stride: int
    alpha: float
    events_since_test: int = 0
    statistic: float = 0.0
    threshold: float = 0.0
    episode: EpisodeLatch = field(default_factory=EpisodeLatch)

    def update(
        self, window_errors: np.ndarray | None, reference_errors: np.ndarray
    ) -> KSWindowTest:
        """Count one event; test when the stride is due and the window (if given) is full."""
        self.episode.quiet()
        self.events_since_test += 1
        if window_errors is None or self.events_since_test < self.stride:
            return self
        self.events_since_test = 0
        self.statistic = float(
            stats.ks_2samp(window_errors, reference_errors, method="asymp").statistic
        )
        self.threshold = ks_critical_value(len(window_errors), len(reference_errors), self.alpha)
        self.episode.observe(self.statistic > self.threshold)
        return self

    @property
    def drift_detected(self) -> bool:
        return self.episode.fired
