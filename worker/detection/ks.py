"""Two-sample Kolmogorov–Smirnov test of a source's recent errors against the baseline.

`KsTest` runs it on a source's event window; `ks_distance_of_sorted` is the exact
distance, vectorised so that calibration can test every simulated window at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from framedrift.worker.detection.episode import EpisodeCounts, WindowedTest, upcrossing_episodes
from framedrift.worker.detection.parameters import DetectorParameters
from framedrift.worker.detection.reference import ReferenceProfile
from framedrift.worker.detection.scores import ScoredImage
from framedrift.worker.detection.window import EventWindow


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


@dataclass(kw_only=True)
class KsTest(WindowedTest):
    """Every `stride` events, KS-tests the source's last W errors against the baseline's.

    The KS distance D is the largest gap between the two empirical distribution
    functions (Kolmogorov 1933, Smirnov 1948), so the test sees any change of the
    error's shape, not only of its mean (for example a camera whose errors became
    bimodal). It fires when D exceeds its threshold, which calibration sets from
    simulated clean windows rather than from a per-test p-value: the tests overlap and
    run all day. One alert per episode: after firing it stays quiet until a test passes.

    >>> from framedrift.worker.detection.scores import ImageScores
    >>> rng = np.random.default_rng(0)
    >>> baseline = ImageScores(rng.normal(0.3, 0.1, 1000), *np.zeros((5, 1000)))
    >>> reference, window = ReferenceProfile(baseline, prototypes=1), EventWindow(capacity=100)
    >>> test = KsTest(threshold=0.3, stride=10)
    >>> for error in rng.normal(0.45, 0.1, 100):  # a source whose errors rose
    ...     image = ScoredImage(error, *[0.0] * 7)
    ...     window.append(image.window_signals(), "", 0, 0, 0.0)
    ...     fired = test.update(image, window, reference).fired
    >>> fired, test.statistic > test.threshold
    (True, True)
    """

    name: ClassVar[str] = "ks"
    calibrated: ClassVar[bool] = True
    dynamics_depend_on_threshold: ClassVar[bool] = False

    def update(self, image: ScoredImage, window: EventWindow, reference: ReferenceProfile) -> Self:
        if self._test_due(window.is_full):
            # The ring is in slot order, not arrival order: the KS distance does not care.
            self._judge(ks_distance(window.signal_rings["error"], reference.sorted_errors))
        return self

    @classmethod
    def clean_episodes(
        cls,
        reference: ReferenceProfile,
        rows: np.ndarray,
        parameters: DetectorParameters,
        threshold: float | None = None,
    ) -> tuple[EpisodeCounts, int]:
        return upcrossing_episodes(
            _clean_ks_distances(reference, rows, parameters), parameters.test_stride
        )


def _clean_ks_distances(
    reference: ReferenceProfile, rows: np.ndarray, parameters: DetectorParameters
) -> np.ndarray:
    """KS distance of every simulated test window (streams × tests)."""
    sorted_reference = reference.sorted_errors
    # Tie-aware ranks: sort by a value id, so equal errors get equal ids.
    distinct, value_id = np.unique(reference.scores.error, return_inverse=True)
    right = np.searchsorted(sorted_reference, distinct, side="right")
    left = np.searchsorted(sorted_reference, distinct, side="left")
    ids = value_id[rows].astype(np.int32)
    window, stride = parameters.window_size, parameters.test_stride
    distances = []
    for chunk in np.array_split(ids, max(1, len(ids) // 40)):
        windows = np.sort(sliding_window_view(chunk, window, axis=1)[:, ::stride], axis=-1)
        distances.append(
            ks_distance_of_sorted(windows, right[windows], left[windows], len(sorted_reference))
        )
    return np.concatenate(distances)
