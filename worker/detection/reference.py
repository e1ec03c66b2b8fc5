"""What 'no drift' looks like to the detectors: the baseline scores, summarised for them."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import stats

from framedrift.worker.detection.scores import SIGNALS, ImageScores


def standard_scores(values: np.ndarray, sorted_reference: np.ndarray) -> np.ndarray:
    """Each value's place in the reference distribution, as a standard normal score.

    The probability integral transform (the value's empirical quantile, kept strictly
    inside (0, 1)) followed by the normal quantile function: without drift the scores
    are N(0, 1) whatever the shape of the raw values, so one CUSUM tuning fits all.
    They are bounded (about ±3.8 for 6,000 reference values), which keeps a single
    wild image from tripping a detector on its own.
    """
    below_or_equal = np.searchsorted(sorted_reference, values, side="right")
    quantile = (below_or_equal + 0.5) / (len(sorted_reference) + 1.0)
    return stats.norm.ppf(quantile)


@dataclass(frozen=True)
class ReferenceProfile:
    """Sorted reference signals, prototype shares and signal summaries, read per event."""

    scores: ImageScores
    prototypes: int  # how many latent prototypes the model's latent map has

    @cached_property
    def sorted_errors(self) -> np.ndarray:
        return np.sort(self.scores.error)

    @cached_property
    def sorted_latent_distances(self) -> np.ndarray:
        return np.sort(self.scores.latent_distance)

    @cached_property
    def prototype_shares(self) -> np.ndarray:
        """Each prototype's share of reference images; half a count added so none is zero."""
        counts = np.bincount(self.scores.prototype, minlength=self.prototypes) + 0.5
        return counts / counts.sum()

    @cached_property
    def signal_means(self) -> dict[str, float]:
        return {name: float(getattr(self.scores, name).mean()) for name in SIGNALS}

    @cached_property
    def signal_stds(self) -> dict[str, float]:
        return {name: float(getattr(self.scores, name).std(ddof=1)) for name in SIGNALS}

    def error_quantile(self, level: float) -> float:
        """The baseline error below which a share `level` of the reference images lie."""
        return float(np.quantile(self.sorted_errors, level))

    def shift_in_std(self, signal: str, mean: float) -> float:
        """How far a mean of `signal` sits from the reference's, in reference image stds."""
        return (mean - self.signal_means[signal]) / max(self.signal_stds[signal], 1e-12)

    def error_z(self, errors: np.ndarray) -> np.ndarray:
        return standard_scores(errors, self.sorted_errors)

    def latent_distance_z(self, distances: np.ndarray) -> np.ndarray:
        return standard_scores(distances, self.sorted_latent_distances)
