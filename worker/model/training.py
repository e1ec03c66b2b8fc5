"""`framedrift train`: fits the autoencoder on reference images and records its baseline.

After training: the latent prototypes are fitted on the training codes; the held-out
validation split is scored, and these scores become the baseline every detector
compares a live source against; then the detectors are calibrated on it
(`framedrift.worker.detection.calibration`).
"""

from __future__ import annotations

import hashlib
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as package_metadata

import numpy as np
import torch
from tqdm import tqdm

from framedrift.worker.detection.calibration import calibrate
from framedrift.worker.detection.parameters import DetectorParameters
from framedrift.worker.detection.reference import ReferenceProfile
from framedrift.worker.model.artifact import Baseline, ModelArtifact, weights_digest
from framedrift.worker.model.autoencoder import (
    AutoencoderConfig,
    ConvAutoencoder,
    reconstruction_error,
)
from framedrift.worker.model.latent import LatentMap
from framedrift.worker.model.preprocessing import Preprocessing, dataset_to_model_input
from framedrift.worker.model.scoring import score_inputs


@dataclass(frozen=True)
class TrainingPlan:
    epochs: int = 5
    batch_size: int = 128
    learning_rate: float = 1e-3
    validation_fraction: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError("validation_fraction must be between 0 and 1")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be at least 1")


def data_checksum(images: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()


@torch.inference_mode()
def fit_latent_map(
    model: ConvAutoencoder, inputs: torch.Tensor, seed: int, sample: int = 10_000
) -> LatentMap:
    """Prototypes of the training images' latent codes (a sample: k-means needs no more)."""
    model.eval()
    chosen = torch.from_numpy(np.random.default_rng(seed).permutation(len(inputs))[:sample])
    codes = torch.cat([model(chunk)[1] for chunk in inputs[chosen].split(512)])
    return LatentMap.fit(codes.numpy(), seed=seed)


@torch.inference_mode()
def score_dataset(
    model: ConvAutoencoder, inputs: torch.Tensor, batch_size: int = 512
) -> np.ndarray:
    """Per-image reconstruction errors of a prepared (N, C, H, W) tensor."""
    model.eval()
    errors = [reconstruction_error(model(chunk)[0], chunk) for chunk in inputs.split(batch_size)]
    return torch.cat(errors).double().numpy()


def train_autoencoder(
    images: np.ndarray,
    config: AutoencoderConfig,
    plan: TrainingPlan,
    detector_parameters: DetectorParameters,
    source_description: str = "",
    show_progress: bool = True,
) -> ModelArtifact:
    """Train on `images` (N, H, W[, C], uint8); return the artifact, baseline and calibration."""
    if len(images) < 10:
        raise ValueError(f"need at least 10 reference images, got {len(images)}")
    torch.manual_seed(plan.seed)
    generator = np.random.default_rng(plan.seed)
    order = generator.permutation(len(images))
    validation_size = max(1, round(len(images) * plan.validation_fraction))
    validation_index, training_index = order[:validation_size], order[validation_size:]

    preprocessing = Preprocessing.for_model(config)
    training_inputs = dataset_to_model_input(images[training_index], preprocessing)
    validation_inputs = dataset_to_model_input(images[validation_index], preprocessing)

    model = ConvAutoencoder(config)
    optimiser = torch.optim.Adam(model.parameters(), lr=plan.learning_rate)
    batches_per_epoch = -(-len(training_inputs) // plan.batch_size)
    progress = tqdm(
        total=plan.epochs * batches_per_epoch,
        desc="training",
        unit="batch",
        disable=not show_progress,
    )
    validation_loss = float("nan")
    for epoch in range(plan.epochs):
        model.train()
        shuffled = torch.randperm(len(training_inputs))
        for start in range(0, len(training_inputs), plan.batch_size):
            batch = training_inputs[shuffled[start : start + plan.batch_size]]
            loss = reconstruction_error(model(batch)[0], batch).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            progress.update()
            progress.set_postfix(
                epoch=epoch + 1, loss=f"{loss.item():.4f}", val=f"{validation_loss:.4f}"
            )
        validation_loss = float(score_dataset(model, validation_inputs).mean())
        progress.set_postfix(epoch=epoch + 1, val=f"{validation_loss:.4f}")
    progress.close()

    latent_map = fit_latent_map(model, training_inputs, plan.seed)
    validation_scores = score_inputs(model, latent_map, validation_inputs)
    baseline = Baseline(ReferenceProfile(validation_scores, latent_map.size))
    calibration = calibrate(baseline.profile, detector_parameters)
    state_dict = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    digest = weights_digest(state_dict)
    metadata = {
        "model_version": f"ae-{digest[:12]}",
        "weights_sha256": digest,
        "data_sha256": data_checksum(images),
        "data_source": source_description,
        "training_images": len(training_index),
        "validation_images": len(validation_index),
        "training": plan.__dict__,
        "validation_loss": validation_loss,
        "created": datetime.now(UTC).isoformat(),
        "library_versions": {
            "python": platform.python_version(),
            **{name: package_metadata.version(name) for name in ("torch", "numpy")},
        },
    }
    return ModelArtifact(config, state_dict, latent_map, baseline, calibration, metadata)
