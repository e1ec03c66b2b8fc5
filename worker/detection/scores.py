"""Per-image signals as the detectors read them: the one home of the signal names.

The model (`framedrift.worker.model.scoring`) produces them; everything downstream,
the detectors, the reference profile, the state's event window, the alerts and the
evaluation, reads them by these names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

# Continuous per-image signals: kept in each source's event window and reported in
# alerts as shifts against the baseline. `prototype` is categorical and is not one.
SIGNALS = ("error", "latent_distance", "brightness", "contrast", "sharpness")


@dataclass(frozen=True)
class ImageScores:
    """Per-image signals of a set of images, one array entry per image."""

    error: np.ndarray  # reconstruction error (mean BCE), float64
    prototype: np.ndarray  # nearest latent prototype, int64
    latent_distance: np.ndarray  # distance to that prototype, float64
    brightness: np.ndarray
    contrast: np.ndarray
    sharpness: np.ndarray

    def __len__(self) -> int:
        return len(self.error)

    def take(self, indices: np.ndarray | slice) -> ImageScores:
        return ImageScores(**{f.name: getattr(self, f.name)[indices] for f in fields(self)})

    def as_arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def concatenate(cls, parts: Sequence[ImageScores]) -> ImageScores:
        return cls(
            **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)}
        )
