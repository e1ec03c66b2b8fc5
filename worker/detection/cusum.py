"""Page's CUSUM on standardised per-image scores: the detectors that react within events.

`Cusum` is the sum itself; `ErrorCusum` runs it on the reconstruction error and
`LatentCusum` on the latent distance. `cusum_episodes` computes the same sums over
many simulated clean streams at once, for calibration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Self

import numpy as np

from framedrift.worker.detection.episode import EpisodeCounts
from framedrift.worker.detection.parameters import DetectorParameters
from framedrift.worker.detection.plain_state import PlainState, StateFields
from framedrift.worker.detection.protocol import Direction
from framedrift.worker.detection.reference import ReferenceProfile
from framedrift.worker.detection.scores import ScoredImage
from framedrift.worker.detection.window import EventWindow

# The sums stop at this many thresholds, so that the detector re-arms soon after a long
# drift ends instead of draining a sum that grew for hours.
CAP_IN_THRESHOLDS = 2.0


@dataclass(kw_only=True)
class Cusum:
    """Page's cumulative sum (Page, 1954) of standardised scores z, N(0, 1) without drift.

    upper = max(0, upper + z - slack) grows while scores run high, lower the same for
    low scores (two-sided only). Each event far out in the tail adds several units, so
    a strong drift crosses the threshold within a handful of events, while a clean
    stream's sums keep falling back to zero. `slack` is half the shift (in standard
    deviations) it is tuned for; the threshold is its false-alarm control, set by
    calibration.

    One alarm per excursion: after firing it stays quiet until both sums are back at
    zero, so a camera that stays broken is not paged again and again. The sums are
    capped at `CAP_IN_THRESHOLDS` thresholds so that the detector re-arms soon after
    drift ends.

    >>> cusum = Cusum(slack=0.5, threshold=5.0)
    >>> [cusum.observe(z).fired for z in (0.1, 3.0, 3.0, 3.0, 3.0)]
    [False, False, False, True, False]
    """

    slack: float
    threshold: float
    two_sided: bool = True
    upper: float = 0.0
    lower: float = 0.0
    in_drift: bool = False
    fired: bool = False

    def observe(self, z: float) -> Self:
        cap = CAP_IN_THRESHOLDS * self.threshold
        self.upper = min(max(0.0, self.upper + z - self.slack), cap)
        if self.two_sided:
            self.lower = min(max(0.0, self.lower - z - self.slack), cap)
        self.fired = self.statistic > self.threshold and not self.in_drift
        if self.fired:
            self.in_drift = True
        elif self.statistic == 0.0:
            self.in_drift = False
        return self

    @property
    def statistic(self) -> float:
        return max(self.upper, self.lower)

    @property
    def direction(self) -> Direction | None:
        """Which sum is larger: 'up' (scores run high) or 'down'."""
        return "down" if self.lower > self.upper else "up"

    @classmethod
    def memory_events(cls, parameters: DetectorParameters) -> int:
        return 0

    @property
    def in_episode(self) -> bool:
        """Until both sums are back at zero (it re-arms)."""
        return self.in_drift

    # As a detector (ErrorCusum, LatentCusum): each says which standard score it sums.
    name: ClassVar[str]
    calibrated: ClassVar[bool] = True
    dynamics_depend_on_threshold: ClassVar[bool] = True  # the cap is a multiple of it

    @staticmethod
    def standard_score(image: ScoredImage) -> float:
        raise NotImplementedError

    @staticmethod
    def reference_scores(reference: ReferenceProfile) -> np.ndarray:
        """The baseline's standard scores of the signal this CUSUM sums."""
        raise NotImplementedError

    @classmethod
    def build(
        cls,
        parameters: DetectorParameters,
        thresholds: Mapping[str, float],
        reference: ReferenceProfile,
    ) -> Self:
        return cls(slack=parameters.cusum_slack, threshold=thresholds[cls.name])

    def update(self, image: ScoredImage, window: EventWindow, reference: ReferenceProfile) -> Self:
        return self.observe(self.standard_score(image))

    @classmethod
    def clean_episodes(
        cls,
        reference: ReferenceProfile,
        rows: np.ndarray,
        parameters: DetectorParameters,
        threshold: float | None = None,
    ) -> tuple[EpisodeCounts, int]:
        z = cls.reference_scores(reference)[rows]
        return cusum_episodes(z, parameters.cusum_slack, cls.two_sided, threshold)

    def to_state(self) -> PlainState:
        return {
            "slack": float(self.slack),
            "threshold": float(self.threshold),
            "two_sided": bool(self.two_sided),
            "upper": float(self.upper),
            "lower": float(self.lower),
            "in_drift": bool(self.in_drift),
            "fired": bool(self.fired),
        }

    @classmethod
    def from_state(cls, fields: StateFields) -> Self:
        return cls(
            slack=fields.number("slack"),
            threshold=fields.number("threshold"),
            two_sided=fields.boolean("two_sided"),
            upper=fields.number("upper"),
            lower=fields.number("lower"),
            in_drift=fields.boolean("in_drift"),
            fired=fields.boolean("fired"),
        )


@dataclass(kw_only=True)
class ErrorCusum(Cusum):
    """Two-sided CUSUM of the reconstruction error's standard score.

    Detects a sudden change of the error either way: noise, blur, a brightness jump,
    occlusion, or new content (whose error may *fall*: MNIST digits are easier to
    reconstruct than clothes). Its direction is the error's.
    """

    name: ClassVar[str] = "error_cusum"
    two_sided: bool = True

    @staticmethod
    def standard_score(image: ScoredImage) -> float:
        return image.error_z

    @staticmethod
    def reference_scores(reference: ReferenceProfile) -> np.ndarray:
        return reference.error_z(reference.scores.error)


@dataclass(kw_only=True)
class LatentCusum(Cusum):
    """One-sided CUSUM of the latent distance's standard score: content unlike the baseline.

    An image far from every latent prototype is something the model has not seen
    (notMNIST letters to a Fashion-MNIST model); closer than usual means nothing, so
    only the upper sum runs.
    """

    name: ClassVar[str] = "latent_cusum"
    two_sided: bool = False

    @staticmethod
    def standard_score(image: ScoredImage) -> float:
        return image.latent_distance_z

    @staticmethod
    def reference_scores(reference: ReferenceProfile) -> np.ndarray:
        return reference.latent_distance_z(reference.scores.latent_distance)

    @property
    def direction(self) -> Direction | None:
        """Its sum watches the latent distance, not the error: the alert reads the window."""
        return None


def cusum_episodes(
    z: np.ndarray, slack: float, two_sided: bool, threshold: float | None = None
) -> tuple[EpisodeCounts, int]:
    """`Cusum`'s alarms on streams of scores (streams × events), all streams at once.

    An excursion of the sums away from zero alarms once, iff its peak is above h. The
    sums are capped as `Cusum` caps them at `threshold` (None: not at all), so the
    counts are exact at h = threshold; elsewhere they are what an uncapped sum gives.

    >>> z = np.array([[3.0] * 50 + [-1.0] * 20 + [3.0] * 10])
    >>> capped, _ = cusum_episodes(z, slack=0.5, two_sided=False, threshold=10.0)
    >>> uncapped, _ = cusum_episodes(z, slack=0.5, two_sided=False)
    >>> int(capped(np.array([10.0]))[0]), int(uncapped(np.array([10.0]))[0])
    (2, 1)
    """
    cap = None if threshold is None else CAP_IN_THRESHOLDS * threshold
    streams, length = z.shape
    upper = np.zeros(streams)
    lower = np.zeros(streams)
    peak = np.zeros(streams)
    peaks = []
    for step in range(length):
        np.maximum(upper + z[:, step] - slack, 0.0, out=upper)
        if cap is not None:
            np.minimum(upper, cap, out=upper)
        statistic = upper
        if two_sided:
            np.maximum(lower - z[:, step] - slack, 0.0, out=lower)
            if cap is not None:
                np.minimum(lower, cap, out=lower)
            statistic = np.maximum(upper, lower)
        ended = (statistic == 0.0) & (peak > 0.0)
        if ended.any():
            peaks.append(peak[ended])
        peak = np.where(statistic > 0.0, np.maximum(peak, statistic), 0.0)
    peaks.append(peak[peak > 0.0])
    all_peaks = np.concatenate(peaks)
    return EpisodeCounts(np.full(len(all_peaks), -np.inf), all_peaks), z.size
