"""Seed 000's rule: alert when the recent mean error exceeds the baseline mean by a set percent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

import numpy as np

from framedrift.worker.detection.episode import EpisodeCounts, WindowedTest, upcrossing_episodes
from framedrift.worker.detection.parameters import DetectorParameters
from framedrift.worker.detection.protocol import Direction
from framedrift.worker.detection.reference import ReferenceProfile
from framedrift.worker.detection.scores import ScoredImage
from framedrift.worker.detection.window import EventWindow


def percent_change(mean: float | np.ndarray, baseline_mean: float) -> float | np.ndarray:
    """How far a mean error sits above the baseline's, in percent (negative: below)."""
    return 100.0 * (mean - baseline_mean) / baseline_mean


@dataclass(kw_only=True)
class RelativeIncrease(WindowedTest):
    """Fires when mean(last W errors) > baseline mean × (1 + threshold / 100).

    Detects slow, gradual rises of the error. The article this product started from
    (seed 000) compares the reconstruction loss of incoming data with the validation
    loss and alerts above a chosen threshold; its notMNIST example rose by 44%. Here
    the threshold (in percent) is not chosen by hand: calibration sets it so that a
    clean source's window mean crosses it once per its share of the expected run
    time. Tested every `stride` events once the window is full; one alert per episode.

    >>> from framedrift.worker.detection.scores import ImageScores
    >>> baseline = ImageScores(np.full(1000, 0.28), *np.zeros((5, 1000)))
    >>> reference, window = ReferenceProfile(baseline, prototypes=1), EventWindow(capacity=3)
    >>> rule = RelativeIncrease(threshold=20.0, stride=1)
    >>> for error in (0.30, 0.30, 0.30, 0.40, 0.40):
    ...     image = ScoredImage(error, *[0.0] * 7)
    ...     window.append(image.window_signals(), "", 0, 0, 0.0)
    ...     print(rule.update(image, window, reference).fired, round(rule.statistic, 1))
    False 0.0
    False 0.0
    False 7.1
    False 19.0
    True 31.0
    """

    name: ClassVar[str] = "relative_increase"
    calibrated: ClassVar[bool] = True
    dynamics_depend_on_threshold: ClassVar[bool] = False

    def update(self, image: ScoredImage, window: EventWindow, reference: ReferenceProfile) -> Self:
        if self._test_due(window.is_full):
            baseline_mean = reference.signal_means["error"]
            self._judge(float(percent_change(window.mean("error"), baseline_mean)))
        return self

    @property
    def direction(self) -> Direction | None:
        return "up" if self.statistic >= 0.0 else "down"

    @classmethod
    def clean_episodes(
        cls,
        reference: ReferenceProfile,
        rows: np.ndarray,
        parameters: DetectorParameters,
        threshold: float | None = None,
    ) -> tuple[EpisodeCounts, int]:
        window = parameters.window_size
        sums = np.cumsum(reference.scores.error[rows], axis=1)
        window_sums = sums[:, window - 1 :] - np.concatenate(
            [np.zeros((len(sums), 1)), sums[:, :-window]], axis=1
        )
        window_means = window_sums[:, :: parameters.test_stride] / window
        statistics = percent_change(window_means, reference.signal_means["error"])
        return upcrossing_episodes(np.asarray(statistics), parameters.test_stride)
