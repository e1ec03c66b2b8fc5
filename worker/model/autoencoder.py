"""The convolutional autoencoder whose reconstruction error is framedrift's drift signal.

Default architecture from seed 000 (Keras, there): Conv 32 3×3 → max-pool 2 → Conv 32
→ max-pool 2 as the encoder; the mirror image with up-sampling as the decoder; a
sigmoid output trained with binary cross-entropy against the input.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional


@dataclass(frozen=True)
class AutoencoderConfig:
    """Shape of the model's input and width of its layers."""

    height: int = 28
    width: int = 28
    channels: int = 1
    filters: int = 32

    def __post_init__(self) -> None:
        # Two 2× poolings followed by two 2× up-samplings give the input size back
        # only when both sides divide by 4.
        if self.height % 4 or self.width % 4:
            raise ValueError(
                f"height and width must be multiples of 4, got {self.height}×{self.width}"
            )
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class ConvAutoencoder(nn.Module):
    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        self.config = config
        filters, channels = config.filters, config.channels
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, filters, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(filters, filters, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(filters, filters, 3, padding=1),
            nn.ReLU(),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(filters, filters, 3, padding=1),
            nn.ReLU(),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(filters, channels, 3, padding=1),
            nn.Sigmoid(),
        )

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (N, C, H, W) in [0, 1] -> (reconstructions, latent codes)."""
        latent = self.encoder(images)
        return self.decoder(latent), latent


def per_pixel_loss(reconstructions: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of each pixel (N, C, H, W): the loss the model is trained with."""
    return functional.binary_cross_entropy(reconstructions, images, reduction="none")


def reconstruction_error(reconstructions: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Per-image mean binary cross-entropy, the loss the model is trained with (seed 000)."""
    return image_error(per_pixel_loss(reconstructions, images))


def image_error(per_pixel: torch.Tensor) -> torch.Tensor:
    """Each image's mean of its `per_pixel_loss`."""
    return per_pixel.flatten(start_dim=1).mean(dim=1)
