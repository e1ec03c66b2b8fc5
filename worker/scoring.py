"""Scores a batch of images with one model call: per-image reconstruction error."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from worker.artifact import ModelArtifact
from worker.model import reconstruction_error
from worker.preprocessing import to_model_input


class Scorer:
    def __init__(self, artifact: ModelArtifact, torch_threads: int = 0) -> None:
        if torch_threads:
            torch.set_num_threads(torch_threads)
        self.artifact = artifact
        self.model = artifact.build_model()

    @torch.inference_mode()
    def score(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Reconstruction errors (float64), one per image, from a single batched forward pass."""
        if not images:
            return np.empty(0, dtype=np.float64)
        inputs = to_model_input(images, self.artifact.preprocessing)
        reconstructions, _ = self.model(inputs)
        return reconstruction_error(reconstructions, inputs).double().numpy()
