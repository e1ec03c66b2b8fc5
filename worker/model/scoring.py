"""Scores a batch of images with one model call: the per-image signals the detectors watch.

The model runs on the CPU or a GPU (`resolve_device`); a batch's inputs are moved there
once and its scores come back once. Resizing to the model's input stays on the CPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.nn import functional

from framedrift.worker.detection.scores import TILE_GRID, FrameScores, ImageScores
from framedrift.worker.model.autoencoder import ConvAutoencoder, image_error, per_pixel_loss
from framedrift.worker.model.image_stats import image_statistics
from framedrift.worker.model.latent import LatentMap
from framedrift.worker.model.preprocessing import Preprocessing, to_model_input


def score_inputs(
    model: ConvAutoencoder, latent_map: LatentMap, inputs: torch.Tensor, chunk: int = 512
) -> ImageScores:
    """Scores of prepared model inputs (N, C, H, W), in chunks of `chunk` images."""
    return score_frames(model, latent_map, inputs, chunk).scores


@torch.inference_mode()
def score_frames(
    model: ConvAutoencoder, latent_map: LatentMap, inputs: torch.Tensor, chunk: int = 512
) -> FrameScores:
    """Scores and per-tile errors of prepared model inputs (N, C, H, W), in chunks."""
    model.eval()
    device = next(model.parameters()).device
    parts, tiles = [], []
    for part in inputs.split(chunk):
        part = part.to(device, non_blocking=True)
        if len(part) == 1:
            # PyTorch's CPU convolution takes another path for a batch of one, whose
            # results differ in the last bits; scored as a pair, a lone image gets the
            # same scores it gets in any batch, so a replay reproduces its alerts.
            reconstructions, codes = (output[:1] for output in model(torch.cat([part, part])))
        else:
            reconstructions, codes = model(part)
        prototype, distance = latent_map.assign(codes.cpu())
        statistics = image_statistics(part)
        per_pixel = per_pixel_loss(reconstructions, part)  # once, for the image and its tiles
        parts.append(
            ImageScores(
                error=image_error(per_pixel).double().cpu().numpy(),
                prototype=prototype,
                latent_distance=distance,
                **{name: value.double().cpu().numpy() for name, value in statistics.items()},
            )
        )
        tiles.append(tile_errors(per_pixel))
    return FrameScores(ImageScores.concatenate(parts), np.concatenate(tiles))


def tile_errors(per_pixel: torch.Tensor) -> np.ndarray:
    """Each image's reconstruction error per tile of a `TILE_GRID` grid (images × tiles):
    its `per_pixel_loss` averaged over each tile."""
    pooled = functional.adaptive_avg_pool2d(per_pixel.mean(dim=1, keepdim=True), TILE_GRID)
    return pooled.flatten(start_dim=1).double().cpu().numpy()


def resolve_device(setting: str) -> torch.device:
    """'cpu', 'cuda' or 'auto' -> the device the model runs on; ValueError for 'cuda' on a
    machine without a GPU that PyTorch can use (better at start-up than at the first batch)."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "'cuda' but PyTorch sees no GPU here (CPU build, no driver, or no device "
            "visible): use 'cpu' or 'auto'"
        )
    if setting not in ("cpu", "cuda"):
        raise ValueError(f"must be 'cpu', 'cuda' or 'auto', got {setting!r}")
    return torch.device(setting)


class Scorer:
    """The worker's scorer: decoded images of any size -> `ImageScores`, one forward pass."""

    def __init__(
        self,
        model: ConvAutoencoder,
        latent_map: LatentMap,
        preprocessing: Preprocessing,
        torch_threads: int = 0,
        device: torch.device | None = None,
    ) -> None:
        if torch_threads:
            torch.set_num_threads(torch_threads)
        self.model = model.to(device or "cpu")
        self.latent_map = latent_map
        self.preprocessing = preprocessing

    def score(self, images: Sequence[np.ndarray]) -> ImageScores:
        return self.score_frames(images).scores

    def score_frames(self, images: Sequence[np.ndarray]) -> FrameScores:
        """Decoded images -> their scores and per-tile errors, one forward pass."""
        inputs = to_model_input(images, self.preprocessing)
        return score_frames(self.model, self.latent_map, inputs, chunk=max(1, len(images)))
