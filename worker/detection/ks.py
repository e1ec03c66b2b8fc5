"""Two-sample Kolmogorov–Smirnov test of a source's recent errors against the baseline."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from framedrift.worker.detection.episode import EpisodeLatch


def ks_distance_of_sorted(
    ordered: np.ndarray, right_ranks: np.ndarray, left_ranks: np.ndarray, reference_size: int
) -> np.ndarray:
    """The exact two-sample KS distance, from where each window value falls in the reference.

    `ordered` holds window values sorted ascending along the last axis (length W), or
    anything that orders and ties like them; `right_ranks[i]` counts the reference
    values ≤ the i-th window value and `left_ranks[i]` those < it. Between consecutive
    window values the window's ECDF is flat and the reference's rises, so the largest
    gap sits just at or just below a window value. Tied window values count once, at
    the ECDF's full step. Vectorised over leading axes: the calibration evaluates
    hundreds of thousands of windows at once with it.
    """
    window = ordered.shape[-1]
    steps = np.arange(1, window + 1) / window
    differs = ordered[..., 1:] != ordered[..., :-1]
    edge = np.ones((*ordered.shape[:-1], 1), dtype=bool)
    last_of_tie = np.concatenate([differs, edge], axis=-1)
    first_of_tie = np.concatenate([edge, differs], axis=-1)
    above = np.where(last_of_tie, np.abs(steps - right_ranks / reference_size), 0.0)
    below = np.where(first_of_tie, np.abs(steps - 1.0 / window - left_ranks / reference_size), 0.0)
    return np.maximum(above.max(axis=-1), below.max(axis=-1))


def ks_distance(sample: np.ndarray, sorted_reference: np.ndarray) -> float:
    """sup |ECDF(sample) - ECDF(reference)|, the same value as scipy's `ks_2samp` statistic."""
    ordered = np.sort(sample)
    right = np.searchsorted(sorted_reference, ordered, side="right")
    left = np.searchsorted(sorted_reference, ordered, side="left")
    return float(ks_distance_of_sorted(ordered, right, left, len(sorted_reference)))


@dataclass
class KSWindowTest:
    """Every `stride` events, KS-tests the last W errors against the baseline sample.

    The KS distance D is the largest gap between the two empirical distribution
    functions, so the test sees any change of shape, not only of the mean (for
    example a camera whose errors became bimodal). It fires when D exceeds the
    calibrated threshold. One alert per episode: after firing it stays quiet until
    a test passes again.

    >>> reference = np.sort(np.random.default_rng(0).normal(0.3, 0.1, 1000))
    >>> test = KSWindowTest(stride=1, threshold=0.3)
    >>> shifted = np.random.default_rng(1).normal(0.45, 0.1, 100)
    >>> test.update(shifted, reference).drift_detected
    True
    """

    stride: int
    threshold: float
    events_since_test: int = 0
    statistic: float = 0.0
    episode: EpisodeLatch = field(default_factory=EpisodeLatch)

    def update(
        self, window_errors: np.ndarray | None, sorted_reference: np.ndarray
    ) -> KSWindowTest:
        """Count one event; test when the stride is due and the window (if given) is full."""
        self.episode.quiet()
        self.events_since_test += 1
        if window_errors is None or self.events_since_test < self.stride:
            return self
        self.events_since_test = 0
        self.statistic = ks_distance(window_errors, sorted_reference)
        self.episode.observe(self.statistic > self.threshold)
        return self

    @property
    def drift_detected(self) -> bool:
        return self.episode.fired
