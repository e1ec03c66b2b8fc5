"""Where an image lands in the autoencoder's latent space: its nearest prototype.

Some drift barely moves the reconstruction error: dropping 90% of one class (label
shift) moves it by a few percent, because the model reconstructs every class about
equally well. It does move *which kind* of image arrives. The encoder's codes tell
kinds apart, so the worker maps each code to the nearest of K prototypes (k-means in
a PCA projection of the codes, fitted at training time) and the `latent_mix`
detector watches how often each prototype turns up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class LatentMap:
    """PCA projection of flattened latent codes, then k-means prototypes in that space."""

    mean: np.ndarray  # (D,) mean of the flattened codes
    components: np.ndarray  # (d, D) principal directions, rows
    prototypes: np.ndarray  # (K, d) k-means centres in the projected space

    @property
    def size(self) -> int:
        return len(self.prototypes)

    def project(self, codes: torch.Tensor | np.ndarray) -> np.ndarray:
        """Codes (N, ...) -> (N, d). Row by row (einsum, not a matrix product): BLAS
        blocks a product by the number of rows, so an image's projection would change in
        its last bits with the size of the batch it came in."""
        flat = np.asarray(codes, dtype=np.float32).reshape(len(codes), -1)
        return np.einsum("nd,kd->nk", flat - self.mean, self.components)

    def assign(self, codes: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Latent codes (N, ...) -> (nearest prototype index, distance to it), one per image.

        Each image's result depends on its own code only, bit for bit, whatever else
        shares its batch (differences, not the expanded |a|² - 2ab + |b|² product).
        """
        projected = self.project(codes)
        squared = ((projected[:, None, :] - self.prototypes[None]) ** 2).sum(axis=2)
        nearest = squared.argmin(axis=1)
        distance = np.sqrt(squared[np.arange(len(nearest)), nearest])
        return nearest.astype(np.int64), distance.astype(np.float64)

    @classmethod
    def fit(
        cls, codes: np.ndarray, dimensions: int = 16, prototypes: int = 16, seed: int = 0
    ) -> LatentMap:
        """PCA to `dimensions`, then k-means++ with `prototypes` centres (Lloyd, 30 rounds)."""
        flat = np.asarray(codes, dtype=np.float32).reshape(len(codes), -1)
        mean = flat.mean(axis=0)
        _, _, right = np.linalg.svd(flat - mean, full_matrices=False)
        components = right[: min(dimensions, len(right))].astype(np.float32)
        projected = (flat - mean) @ components.T
        centres = _kmeans(projected, min(prototypes, len(projected)), np.random.default_rng(seed))
        return cls(mean, components, centres)


def _kmeans(points: np.ndarray, k: int, rng: np.random.Generator, rounds: int = 30) -> np.ndarray:
    centres = [points[rng.integers(len(points))]]
    for _ in range(1, k):  # k-means++: spread the starting centres
        nearest = ((points[:, None, :] - np.array(centres)[None]) ** 2).sum(-1).min(axis=1)
        centres.append(points[rng.choice(len(points), p=nearest / nearest.sum())])
    centre_array = np.array(centres)
    for _ in range(rounds):
        labels = ((points[:, None, :] - centre_array[None]) ** 2).sum(-1).argmin(axis=1)
        for index in range(k):
            members = points[labels == index]
            if len(members):
                centre_array[index] = members.mean(axis=0)
    return centre_array.astype(np.float32)
