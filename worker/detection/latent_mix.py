"""Chi-square test of which latent prototypes a source's recent images land on."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from framedrift.worker.detection.episode import EpisodeLatch


def chi_square(counts: np.ndarray, expected_shares: np.ndarray) -> np.ndarray:
    """Pearson's statistic of prototype counts (..., K) against the reference shares (K,)."""
    expected = counts.sum(axis=-1, keepdims=True) * expected_shares
    return ((counts - expected) ** 2 / expected).sum(axis=-1)


@dataclass
class PrototypeMix:
    """Every `stride` events, compares the last W prototype counts with the reference mix.

    Catches drift in *what* arrives rather than how it looks: a class that stops
    arriving (label shift) empties its prototypes, new content piles into a few. The
    threshold comes from calibration. One alert per episode.

    >>> mix = PrototypeMix(window=100, stride=100, threshold=30.0, prototypes=2)
    >>> shares = np.array([0.5, 0.5])
    >>> [mix.update(p, shares).drift_detected for p in [0, 1] * 50][-1]
    False
    >>> [mix.update(0, shares).drift_detected for _ in range(100)][-1]
    True
    """

    window: int
    stride: int
    threshold: float
    prototypes: int
    statistic: float = 0.0
    size: int = 0
    next_slot: int = 0
    events_since_test: int = 0
    ring: np.ndarray = field(default=None)  # type: ignore[assignment]
    counts: np.ndarray = field(default=None)  # type: ignore[assignment]
    episode: EpisodeLatch = field(default_factory=EpisodeLatch)

    def __post_init__(self) -> None:
        if self.ring is None:
            self.ring = np.zeros(self.window, dtype=np.int16)
            self.counts = np.zeros(self.prototypes, dtype=np.int64)

    def update(self, prototype: int, expected_shares: np.ndarray) -> PrototypeMix:
        self.episode.quiet()
        if self.size == self.window:
            self.counts[self.ring[self.next_slot]] -= 1
        self.ring[self.next_slot] = prototype
        self.counts[prototype] += 1
        self.next_slot = (self.next_slot + 1) % self.window
        self.size = min(self.size + 1, self.window)
        self.events_since_test += 1
        if self.size < self.window or self.events_since_test < self.stride:
            return self
        self.events_since_test = 0
        self.statistic = float(chi_square(self.counts, expected_shares))
        self.episode.observe(self.statistic > self.threshold)
        return self

    @property
    def drift_detected(self) -> bool:
        return self.episode.fired
