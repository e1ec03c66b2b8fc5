"""Scores a batch of images with one model call: the per-image signals the detectors watch."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from framedrift.worker.detection.scores import ImageScores
from framedrift.worker.model.autoencoder import ConvAutoencoder, reconstruction_error
from framedrift.worker.model.image_stats import image_statistics
from framedrift.worker.model.latent import LatentMap
from framedrift.worker.model.preprocessing import Preprocessing, to_model_input


@torch.inference_mode()
def score_inputs(
    model: ConvAutoencoder, latent_map: LatentMap, inputs: torch.Tensor, chunk: int = 512
) -> ImageScores:
    """Scores of prepared model inputs (N, C, H, W), in chunks of `chunk` images."""
    model.eval()
    parts = []
    for part in inputs.split(chunk):
        if len(part) == 1:
            # PyTorch's CPU convolution takes another path for a batch of one, whose
            # results differ in the last bits; scored as a pair, a lone image gets the
            # same scores it gets in any batch, so a replay reproduces its alerts.
            reconstructions, codes = (output[:1] for output in model(torch.cat([part, part])))
        else:
            reconstructions, codes = model(part)
        prototype, distance = latent_map.assign(codes)
        statistics = image_statistics(part)
        parts.append(
            ImageScores(
                error=reconstruction_error(reconstructions, part).double().numpy(),
                prototype=prototype,
                latent_distance=distance,
                **{name: value.double().numpy() for name, value in statistics.items()},
            )
        )
    return ImageScores.concatenate(parts)


class Scorer:
    """The worker's scorer: decoded images of any size -> `ImageScores`, one forward pass."""

    def __init__(
        self,
        model: ConvAutoencoder,
        latent_map: LatentMap,
        preprocessing: Preprocessing,
        torch_threads: int = 0,
    ) -> None:
        if torch_threads:
            torch.set_num_threads(torch_threads)
        self.model = model
        self.latent_map = latent_map
        self.preprocessing = preprocessing

    def score(self, images: Sequence[np.ndarray]) -> ImageScores:
        inputs = to_model_input(images, self.preprocessing)
        return score_inputs(self.model, self.latent_map, inputs, chunk=max(1, len(images)))
