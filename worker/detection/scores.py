"""Per-image signals as the detectors read them: the one home of the signal names.

The model (`framedrift.worker.model.scoring`) produces them; everything downstream,
the detectors, the reference profile, the state's event window, the alerts and the
evaluation, reads them by these names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import NamedTuple

import numpy as np

# Continuous per-image signals: kept in each source's event window and reported in
# alerts as shifts against the baseline. `prototype` is categorical and is not one.
SIGNALS = ("error", "latent_distance", "brightness", "contrast", "sharpness")


# Where in the frame: each image's reconstruction error on a TILE_GRID × TILE_GRID grid,
# so that a change can be told local (a smudge, an occlusion: a few tiles) or global
# (defocus, exposure: all of them). Row by row from the top left.
TILE_GRID = 4
TILE_NAMES: tuple[str, ...] = tuple(
    f"tile_r{row}c{column}" for row in range(TILE_GRID) for column in range(TILE_GRID)
)
# The same tiles' pictures against the source's reference picture (`tile_looks`): a dark
# occluder can leave the model's error where it was, never the picture.
LOOK_NAMES: tuple[str, ...] = tuple(name.replace("tile_", "look_") for name in TILE_NAMES)


def tile_of(signal: str) -> str | None:
    """The tile a per-tile signal is about (`tile_r0c0` for `look_r0c0` too), else None."""
    if signal in TILE_NAMES:
        return signal
    if signal in LOOK_NAMES:
        return TILE_NAMES[LOOK_NAMES.index(signal)]
    return None


@dataclass(frozen=True)
class FrameScores:
    """What the worker's scorer returns for a batch: the model's per-image signals, and
    each image's error per tile (images × `len(TILE_NAMES)`)."""

    scores: ImageScores
    tile_errors: np.ndarray


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


class ScoredImage(NamedTuple):
    """One image's signals as a detector reads them, standard scores included.

    The standard scores (`error_z`, `latent_distance_z`) place the value in the
    reference distribution; they are computed per batch (`monitor.scored_images`).
    """

    error: float
    error_z: float
    prototype: int
    latent_distance: float
    latent_distance_z: float
    brightness: float
    contrast: float
    sharpness: float

    def window_signals(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in SIGNALS}
