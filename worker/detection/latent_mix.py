"""Chi-square test of which latent prototypes a source's recent images land on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Self

import numpy as np

from framedrift.worker.detection.episode import EpisodeCounts, WindowedTest, upcrossing_episodes
from framedrift.worker.detection.parameters import DetectorParameters
from framedrift.worker.detection.plain_state import MalformedState, PlainState, StateFields
from framedrift.worker.detection.reference import ReferenceProfile
from framedrift.worker.detection.scores import ScoredImage
from framedrift.worker.detection.window import EventWindow


def chi_square(counts: np.ndarray, expected_shares: np.ndarray) -> np.ndarray:
    """Pearson's statistic of prototype counts (..., K) against the reference shares (K,)."""
    expected = counts.sum(axis=-1, keepdims=True) * expected_shares
    return ((counts - expected) ** 2 / expected).sum(axis=-1)


@dataclass(kw_only=True)
class LatentMix(WindowedTest):
    """Every `stride` events, compares the last `latent_window` prototype counts with the baseline.

    Detects drift in *what* arrives rather than how it looks: a class that stops
    arriving (label shift) empties its prototypes, new content piles into a few.
    Pearson's chi-square statistic of the counts against the baseline's prototype
    shares; its threshold comes from calibration on simulated clean windows (the
    tests overlap, so the chi-square distribution's quantiles would alarm too often).
    It keeps its own ring of prototypes: its window is longer than the event window,
    as a mix needs more images than a mean. One alert per episode.

    >>> from framedrift.worker.detection.scores import ImageScores
    >>> baseline = ImageScores(np.zeros(100), np.arange(100) % 2, *np.zeros((4, 100)))
    >>> reference, window = ReferenceProfile(baseline, prototypes=2), EventWindow(capacity=1)
    >>> mix = LatentMix(threshold=30.0, stride=100, latent_window=100, prototypes=2)
    >>> [mix.update(ScoredImage(0.0, 0.0, p, *[0.0] * 5), window, reference).fired
    ...  for p in [0, 1] * 50][-1]
    False
    >>> [mix.update(ScoredImage(0.0, 0.0, 0, *[0.0] * 5), window, reference).fired
    ...  for _ in range(100)][-1]
    True
    """

    name: ClassVar[str] = "latent_mix"
    calibrated: ClassVar[bool] = True
    dynamics_depend_on_threshold: ClassVar[bool] = False

    latent_window: int  # how many of the latest images' prototypes are counted
    prototypes: int
    size: int = 0
    next_slot: int = 0
    ring: np.ndarray = field(default=None)  # type: ignore[assignment]
    counts: np.ndarray = field(default=None)  # type: ignore[assignment]  # per prototype

    def __post_init__(self) -> None:
        if self.ring is None:
            self.ring = np.zeros(self.latent_window, dtype=np.int16)
            self.counts = np.zeros(self.prototypes, dtype=np.int64)

    @classmethod
    def build(
        cls,
        parameters: DetectorParameters,
        thresholds: Mapping[str, float],
        reference: ReferenceProfile,
    ) -> Self:
        return cls(
            threshold=thresholds[cls.name],
            stride=parameters.test_stride,
            latent_window=parameters.latent_window,
            prototypes=reference.prototypes,
        )

    @classmethod
    def memory_events(cls, parameters: DetectorParameters) -> int:
        return parameters.latent_window

    def update(self, image: ScoredImage, window: EventWindow, reference: ReferenceProfile) -> Self:
        if self.size == self.latent_window:
            self.counts[self.ring[self.next_slot]] -= 1
        self.ring[self.next_slot] = image.prototype
        self.counts[image.prototype] += 1
        self.next_slot = (self.next_slot + 1) % self.latent_window
        self.size = min(self.size + 1, self.latent_window)
        if self._test_due(self.size == self.latent_window):
            self._judge(float(chi_square(self.counts, reference.prototype_shares)))
        return self

    def to_state(self) -> PlainState:
        return super().to_state() | {
            "latent_window": int(self.latent_window),
            "prototypes": int(self.prototypes),
            "size": int(self.size),
            "next_slot": int(self.next_slot),
            "ring": self.ring,
            "counts": self.counts,
        }

    @classmethod
    def from_state(cls, fields: StateFields) -> Self:
        latent_window = fields.integer("latent_window", low=1)
        prototypes = fields.integer("prototypes", low=1)
        size = fields.integer("size", low=0, high=latent_window)
        ring = fields.array("ring", np.int16, (latent_window,))
        counts = fields.array("counts", np.int64, (prototypes,))
        # `update` indexes `counts` with the ring's prototypes: out of range, it would raise
        # on every batch of the source instead of once here.
        if ring.size and (ring.min() < 0 or ring.max() >= prototypes):
            raise MalformedState(f"latent_mix ring holds prototypes outside 0..{prototypes - 1}")
        if counts.min() < 0 or int(counts.sum()) != size:
            raise MalformedState(f"latent_mix counts {counts.tolist()} do not add up to {size}")
        return cls(
            **cls._windowed_test_fields(fields),
            latent_window=latent_window,
            prototypes=prototypes,
            size=size,
            next_slot=fields.integer("next_slot", low=0, high=latent_window - 1),
            ring=ring,
            counts=counts,
        )

    @classmethod
    def clean_episodes(
        cls,
        reference: ReferenceProfile,
        rows: np.ndarray,
        parameters: DetectorParameters,
        threshold: float | None = None,
    ) -> tuple[EpisodeCounts, int]:
        """Counts prototypes per block of `test_stride` events, then windows as sums of blocks."""
        prototypes = reference.scores.prototype[rows]
        kinds, stride = reference.prototypes, parameters.test_stride
        streams, length = prototypes.shape
        blocks = length // stride
        block_of_event = np.arange(blocks * stride) // stride
        flat = (np.arange(streams)[:, None] * blocks + block_of_event) * kinds + prototypes[
            :, : blocks * stride
        ]
        block_counts = np.bincount(flat.ravel(), minlength=streams * blocks * kinds).reshape(
            streams, blocks, kinds
        )
        cumulative = np.concatenate(
            [np.zeros((streams, 1, kinds), np.int64), np.cumsum(block_counts, axis=1)], axis=1
        )
        per_window = parameters.latent_window // stride
        window_counts = cumulative[:, per_window:] - cumulative[:, :-per_window]
        return upcrossing_episodes(chi_square(window_counts, reference.prototype_shares), stride)
