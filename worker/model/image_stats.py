"""Cheap per-image statistics that say *how* an image changed: light, contrast, focus.

Computed on the model's input (grey or colour, resized, in [0, 1]), so they describe
exactly what the autoencoder saw. A darkened camera moves brightness, a fogged one
contrast, a defocused one sharpness; new content can leave all three where they were.
"""

from __future__ import annotations

import torch
from torch.nn import functional

# The 4-neighbour Laplacian: large where intensity bends, i.e. at edges and texture.
_LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def image_statistics(inputs: torch.Tensor) -> dict[str, torch.Tensor]:
    """(N, C, H, W) in [0, 1] -> mean brightness, contrast (pixel std) and sharpness.

    Sharpness is the variance of the Laplacian of the grey image, the usual focus
    measure: blur removes the high frequencies it responds to.
    """
    grey = inputs.mean(dim=1, keepdim=True)
    laplacian = functional.conv2d(grey, _LAPLACIAN.view(1, 1, 3, 3).to(grey))
    return {
        "brightness": grey.flatten(1).mean(dim=1),
        "contrast": grey.flatten(1).std(dim=1),
        "sharpness": laplacian.flatten(1).var(dim=1),
    }
