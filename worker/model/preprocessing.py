"""Turns decoded images into the model's input: channels, size, and scale to [0, 1].

Every path into the model goes through `to_model_input`: training, the worker, the
benchmarks. So the baseline and the live errors are measured on identical inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from framedrift.worker.model.autoencoder import AutoencoderConfig


@dataclass(frozen=True)
class Preprocessing:
    """How an incoming image becomes model input: size, channels and scale to [0, 1]."""

    height: int
    width: int
    channels: int
    scale: float = 1.0 / 255.0

    @classmethod
    def for_model(cls, config: AutoencoderConfig) -> Preprocessing:
        return cls(config.height, config.width, config.channels)


# ITU-R BT.601 luma weights, the same ones Pillow's "L" conversion uses.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def as_unit_float(image: np.ndarray) -> np.ndarray:
    """uint8 0..255 or float in [0, 1] -> float32 (H, W, C) in [0, 1]."""
    pixels = (
        image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)
    )
    return pixels[:, :, None] if pixels.ndim == 2 else pixels


def _fit_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    have = pixels.shape[2]
    if have == 4:  # drop alpha: drift is judged on what the camera saw
        pixels, have = pixels[:, :, :3], 3
    if have == channels:
        return pixels
    if channels == 1:
        return (pixels @ _LUMA)[:, :, None] if have == 3 else pixels[:, :, :1]
    return np.repeat(pixels[:, :, :1], 3, axis=2)


def _fit_size(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    if pixels.shape[:2] == (height, width):
        return pixels
    planes = [
        np.asarray(
            Image.fromarray(pixels[:, :, c], mode="F").resize((width, height), Image.BILINEAR)
        )
        for c in range(pixels.shape[2])
    ]
    return np.clip(np.stack(planes, axis=2), 0.0, 1.0)


def to_model_input(images: Sequence[np.ndarray], preprocessing: Preprocessing) -> torch.Tensor:
    """A batch of images of any size and channel count -> one (N, C, H, W) float32 tensor."""
    batch = np.empty(
        (len(images), preprocessing.height, preprocessing.width, preprocessing.channels),
        dtype=np.float32,
    )
    for index, image in enumerate(images):
        pixels = _fit_channels(as_unit_float(image), preprocessing.channels)
        batch[index] = _fit_size(pixels, preprocessing.height, preprocessing.width)
    return torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()


def dataset_to_model_input(images: np.ndarray, preprocessing: Preprocessing) -> torch.Tensor:
    """A whole (N, H, W[, C]) uint8 array -> model input, vectorised when no resize is needed."""
    if images.ndim == 3:
        images = images[:, :, :, None]
    same_size = images.shape[1:3] == (preprocessing.height, preprocessing.width)
    if same_size and images.shape[3] == preprocessing.channels and images.dtype == np.uint8:
        # np.require copies only read-only arrays (e.g. straight from an IDX buffer).
        writable = np.require(images, requirements="W")
        pixels = torch.from_numpy(writable).permute(0, 3, 1, 2).float().mul_(preprocessing.scale)
        return pixels.contiguous()
    return to_model_input(list(images), preprocessing)
