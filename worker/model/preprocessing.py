"""Turns decoded images into the model's input: size, channels, and scale to [0, 1].

Every path into the model goes through `to_model_input`: training, the worker, the
benchmarks, the camera-fleet evaluation. So the baseline and the live errors are
measured on identical inputs.

Images of bytes (what decoders give) are resized as bytes (`resized_for_model`), by
PyTorch's antialiased bilinear filter: its filter spans the whole footprint of each
output pixel, so nothing finer than the model's pixels aliases into its input, and its
vectorised path for bytes takes 0.5 ms for a 640×480 colour frame into 64×64, against
4 ms for Pillow's filter on floats (`python -m bench.throughput`). The result is
within 1 grey level of Pillow's bilinear resize. Float images (raw events) take the
same filter in floating point.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional

from framedrift.worker.model.autoencoder import AutoencoderConfig


@dataclass(frozen=True)
class Preprocessing:
    """How an incoming image becomes model input: size, channels and scale to [0, 1]."""

    height: int
    width: int
    channels: int

    @classmethod
    def for_model(cls, config: AutoencoderConfig) -> Preprocessing:
        return cls(config.height, config.width, config.channels)


# Decoded images are read-only arrays (Pillow's buffers) that `resized_for_model` only
# reads through a tensor; copying each to quiet PyTorch's warning would cost 0.3 ms a frame.
warnings.filterwarnings("ignore", message="The given NumPy array is not writable", module=__name__)

# ITU-R BT.601 luma weights, the same ones Pillow's "L" conversion uses.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def resized_for_model(image: np.ndarray, preprocessing: Preprocessing) -> np.ndarray:
    """An image (H, W[, C], uint8 or float) at the model's height and width, its dtype and
    channels kept. An image of that size already is returned as it is, so a caller may
    keep images resized by this (a training set) and the model sees the same input."""
    size = (preprocessing.height, preprocessing.width)
    if image.shape[:2] == size:
        return image
    planes = image[:, :, None] if image.ndim == 2 else image
    if planes.dtype != np.uint8:
        planes = planes.astype(np.float32)
    # (1, C, H, W) over the (H, W, C) bytes without a copy: channels-last, the layout the
    # vectorised filter for bytes reads.
    batch = torch.from_numpy(np.ascontiguousarray(planes)).permute(2, 0, 1).unsqueeze(0)
    resized = functional.interpolate(batch, size=size, mode="bilinear", antialias=True)
    pixels = resized[0].permute(1, 2, 0).numpy()
    return pixels[:, :, 0] if image.ndim == 2 else pixels


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


def to_model_input(images: Sequence[np.ndarray], preprocessing: Preprocessing) -> torch.Tensor:
    """A batch of images of any size and channel count -> one (N, C, H, W) float32 tensor."""
    batch = np.empty(
        (len(images), preprocessing.height, preprocessing.width, preprocessing.channels),
        dtype=np.float32,
    )
    for index, image in enumerate(images):
        pixels = as_unit_float(resized_for_model(image, preprocessing))
        batch[index] = np.clip(_fit_channels(pixels, preprocessing.channels), 0.0, 1.0)
    return torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()


def dataset_to_model_input(images: np.ndarray, preprocessing: Preprocessing) -> torch.Tensor:
    """A whole (N, H, W[, C]) uint8 array -> model input, vectorised when no resize is needed."""
    if images.ndim == 3:
        images = images[:, :, :, None]
    same_size = images.shape[1:3] == (preprocessing.height, preprocessing.width)
    if same_size and images.shape[3] == preprocessing.channels and images.dtype == np.uint8:
        # np.require copies only read-only arrays (e.g. straight from an IDX buffer).
        writable = np.require(images, requirements="W")
        # Divided as `as_unit_float` divides, so both paths give the same floats to the bit.
        pixels = torch.from_numpy(writable).permute(0, 3, 1, 2).float().div_(255.0)
        return pixels.contiguous()
    return to_model_input(list(images), preprocessing)
