"""Whether the model covers a source at all: its typical image against the model's baseline.

The registry's other detectors ask whether a source's stream still looks like a random
draw of the validation images. That is the right question for a source whose clean
events *are* such draws (an upload pipeline, a shuffled dataset), and the wrong one for
a fixed camera: its frames are one scene in time order, so its errors sit in one part
of the baseline's distribution and wander with the light, and those tests page on
every clean camera (measured: 8 to 11 alarms in 4,000 frames on each of the camera
fleet's clean cameras). `Coverage` asks the question that holds for both kinds: is
this source's *typical* image one the model reconstructs worse, or places further from
everything it learnt, than nearly all of its validation images?
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Self

import numpy as np

from framedrift.worker.detection.episode import WindowedTest
from framedrift.worker.detection.parameters import DetectorParameters
from framedrift.worker.detection.reference import ReferenceProfile
from framedrift.worker.detection.scores import ScoredImage
from framedrift.worker.detection.window import EventWindow

# The source is out of the model's domain when the median of its last W images lies
# beyond the baseline's 99th percentile by more than `OUTSIDE_BY` times the baseline's
# spread there (from its median to that percentile), in reconstruction error or in
# latent distance. Not at the percentile itself: a fleet's hardest camera at night *is*
# the top of the model's validation images, and sits there. Measured on the camera-fleet
# evaluation's model, time-ordered, 20,000 frames a camera: the clean cameras it was
# trained on reached at most 0.48 (one camera's latent distance at night; in error at
# most 0.005), a camera whose scene it never saw 1.37 by day (-0.17 at night, as dark as
# every other camera's); `bench/coverage_on_cameras.py`. The threshold is twice the clean
# cameras' highest.
UPPER_QUANTILE = 0.99
OUTSIDE_BY = 1.0
# Once raised, the episode lasts until the median is back within the 99th percentile,
# so that a source hovering at the edge pages once, not every time it crosses.
BACK_INSIDE_BY = 0.0


def beyond_upper_tail(value: float, sorted_reference: np.ndarray) -> float:
    """How far `value` lies beyond the reference's 99th percentile, in units of the
    reference's spread from its median to that percentile (negative: within it).

    >>> round(beyond_upper_tail(3.0, np.arange(101.0) / 50), 3)  # 99th pct 1.98, median 1
    1.041
    """
    median, upper = np.quantile(sorted_reference, [0.5, UPPER_QUANTILE])
    return float((value - upper) / max(upper - median, 1e-12))


@dataclass(kw_only=True)
class Coverage(WindowedTest):
    """Fires when the source's median error or latent distance leaves the baseline's range.

    Its statistic is the larger of the two medians' `beyond_upper_tail`; it fires above
    `OUTSIDE_BY` and re-arms at `BACK_INSIDE_BY`. A median of W images is a level, not a
    sequential statistic: it does not accumulate evidence over an autocorrelated stream,
    so it needs no calibration to the ERT, and it is slower than the sequential tests on
    a stream of independent images (which they serve).

    >>> from framedrift.worker.detection.scores import ImageScores
    >>> baseline = ImageScores(np.linspace(0.2, 0.4, 1001), *np.zeros((5, 1001)))
    >>> reference, window = ReferenceProfile(baseline, prototypes=1), EventWindow(capacity=5)
    >>> test = Coverage(threshold=OUTSIDE_BY, stride=1)
    >>> def feed(error):
    ...     image = ScoredImage(error, *[0.0] * 7)
    ...     window.append(image.window_signals(), "", 0, 0, 0.0)
    ...     return int(test.update(image, window, reference).fired)
    >>> [feed(error) for error in (0.30, 0.30, 0.30, 0.55, 0.55, 0.55, 0.55)]  # rises: fires
    [0, 0, 0, 0, 0, 1, 0]
    >>> [feed(error) for error in (0.40, 0.30, 0.30)]  # 0.40 is still beyond the percentile
    [0, 0, 0]
    >>> [feed(error) for error in (0.30, 0.55, 0.55, 0.55)]  # back inside, then out again
    [0, 0, 0, 1]
    """

    name: ClassVar[str] = "coverage"
    calibrated: ClassVar[bool] = False

    @classmethod
    def build(
        cls,
        parameters: DetectorParameters,
        thresholds: Mapping[str, float],
        reference: ReferenceProfile,
    ) -> Self:
        return cls(threshold=OUTSIDE_BY, stride=parameters.test_stride)

    def update(self, image: ScoredImage, window: EventWindow, reference: ReferenceProfile) -> Self:
        if self._test_due(window.is_full):
            self._judge(
                max(
                    beyond_upper_tail(
                        float(np.median(window.signal_rings["error"])), reference.sorted_errors
                    ),
                    beyond_upper_tail(
                        float(np.median(window.signal_rings["latent_distance"])),
                        reference.sorted_latent_distances,
                    ),
                )
            )
        return self

    def _judge(self, statistic: float) -> None:
        self.statistic = statistic
        still_outside = self.episode.in_drift and statistic > BACK_INSIDE_BY
        self.episode.observe(statistic > self.threshold or still_outside)
