"""The convolutional autoencoder whose reconstruction error is framedrift's drift signal.

Two architectures, both a sigmoid output trained with binary cross-entropy against the
input, both with a latent code of `filters` channels at a quarter of the input's sides:

- `seed` (the default), from seed 000 (Keras, there): Conv 32 3×3 → max-pool 2 → Conv
  32 → max-pool 2 as the encoder; the mirror image with up-sampling as the decoder.
  Its first and last convolutions run 32 filters at full resolution, which is what it
  costs: about 470 colour 64×64 images/s on 2 cores.
- `strided`, for camera frames: the encoder halves the resolution in each convolution
  (stride 2) and runs half the filters at the finer scale; the decoder up-samples and
  convolves back down to the input's channels. About 5 times the seed's speed at 64×64
  (`python -m bench.throughput`).

Both run in channels-last memory layout, which PyTorch's CPU convolutions take a faster
path for: 3.2 times the seed's speed at 64×64×3 for the same results to rounding.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal, get_args

import torch
from torch import nn
from torch.nn import functional

Architecture = Literal["seed", "strided"]
ARCHITECTURES: tuple[str, ...] = get_args(Architecture)


@dataclass(frozen=True)
class AutoencoderConfig:
    """Shape of the model's input, width of its layers, and which layers (`Architecture`)."""

    height: int = 28
    width: int = 28
    channels: int = 1
    filters: int = 32
    architecture: Architecture = "seed"

    def __post_init__(self) -> None:
        # Two 2× poolings followed by two 2× up-samplings give the input size back
        # only when both sides divide by 4.
        if self.height % 4 or self.width % 4:
            raise ValueError(
                f"height and width must be multiples of 4, got {self.height}×{self.width}"
            )
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"architecture must be one of {', '.join(ARCHITECTURES)}, got {self.architecture!r}"
            )
        if self.architecture == "strided" and self.filters < 2:
            raise ValueError("the strided architecture needs at least 2 filters")

    def to_dict(self) -> dict[str, int | str]:
        return asdict(self)


class ConvAutoencoder(nn.Module):
    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        self.config = config
        build = _seed_layers if config.architecture == "seed" else _strided_layers
        self.encoder, self.decoder = build(config.filters, config.channels)
        self.to(memory_format=torch.channels_last)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (N, C, H, W) in [0, 1] -> (reconstructions, latent codes)."""
        latent = self.encoder(images.contiguous(memory_format=torch.channels_last))
        return self.decoder(latent), latent


def _seed_layers(filters: int, channels: int) -> tuple[nn.Sequential, nn.Sequential]:
    encoder = nn.Sequential(
        nn.Conv2d(channels, filters, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(filters, filters, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )
    decoder = nn.Sequential(
        nn.Conv2d(filters, filters, 3, padding=1),
        nn.ReLU(),
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(filters, filters, 3, padding=1),
        nn.ReLU(),
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(filters, channels, 3, padding=1),
        nn.Sigmoid(),
    )
    return encoder, decoder


def _strided_layers(filters: int, channels: int) -> tuple[nn.Sequential, nn.Sequential]:
    half = filters // 2
    encoder = nn.Sequential(
        nn.Conv2d(channels, half, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(half, filters, 3, stride=2, padding=1),
        nn.ReLU(),
    )
    decoder = nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(filters, half, 3, padding=1),
        nn.ReLU(),
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(half, channels, 3, padding=1),
        nn.Sigmoid(),
    )
    return encoder, decoder


def per_pixel_loss(reconstructions: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of each pixel (N, C, H, W): the loss the model is trained with."""
    return functional.binary_cross_entropy(reconstructions, images, reduction="none")


def reconstruction_error(reconstructions: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Per-image mean binary cross-entropy, the loss the model is trained with (seed 000)."""
    return image_error(per_pixel_loss(reconstructions, images))


def image_error(per_pixel: torch.Tensor) -> torch.Tensor:
    """Each image's mean of its `per_pixel_loss`."""
    return per_pixel.flatten(start_dim=1).mean(dim=1)
