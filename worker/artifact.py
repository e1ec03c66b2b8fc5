"""The trained model as one file: weights, preprocessing, baseline and metadata.

Written with `torch.save` and read with `torch.load(weights_only=True)`, which only
rebuilds tensors and plain containers: a tampered artifact cannot run code on load.
The non-tensor parts travel as one JSON string.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worker.model import AutoencoderConfig, ConvAutoencoder

ARTIFACT_FORMAT = 1
BASELINE_QUANTILES = (0.5, 0.9, 0.95, 0.99, 0.999)


class ArtifactError(ValueError):
    """The model artifact is missing, unreadable or not one this version understands."""


@dataclass(frozen=True)
class Baseline:
    """Reconstruction errors of held-out reference images: what 'no drift' looks like."""

    reference_errors: np.ndarray  # float64, one per validation image, sorted

    @property
    def mean(self) -> float:
        return float(self.reference_errors.mean())

    @property
    def std(self) -> float:
        return float(self.reference_errors.std(ddof=1))

    def quantile(self, level: float) -> float:
        return float(np.quantile(self.reference_errors, level))

    def summary(self) -> dict[str, Any]:
        return {
            "size": int(self.reference_errors.size),
            "mean": self.mean,
            "std": self.std,
            "quantiles": {str(level): self.quantile(level) for level in BASELINE_QUANTILES},
        }


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


@dataclass
class ModelArtifact:
    config: AutoencoderConfig
    state_dict: dict[str, torch.Tensor]
    baseline: Baseline
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing.for_model(self.config)

    @property
    def model_version(self) -> str:
        return str(self.metadata["model_version"])

    def build_model(self) -> ConvAutoencoder:
        model = ConvAutoencoder(self.config)
        model.load_state_dict(self.state_dict)
        model.eval()
        return model

    def save(self, path: Path) -> None:
        manifest = {
            "format": ARTIFACT_FORMAT,
            "config": self.config.to_dict(),
            "preprocessing": self.preprocessing.__dict__,
            "baseline": self.baseline.summary(),
            "metadata": self.metadata,
        }
        payload = {
            "manifest": json.dumps(manifest, sort_keys=True),
            "state_dict": self.state_dict,
            "reference_errors": torch.from_numpy(self.baseline.reference_errors),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(path.suffix + ".tmp")
        torch.save(payload, temporary)
        temporary.replace(path)  # readers never see a half-written artifact

    @classmethod
    def load(cls, path: Path) -> ModelArtifact:
        if not path.is_file():
            raise ArtifactError(f"no model artifact at {path}: train one with `framedrift train`")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            manifest = json.loads(payload["manifest"])
        except Exception as error:
            raise ArtifactError(f"{path} is not a framedrift model artifact: {error}") from error
        if manifest.get("format") != ARTIFACT_FORMAT:
            raise ArtifactError(
                f"{path} has artifact format {manifest.get('format')!r}, "
                f"this version reads {ARTIFACT_FORMAT}"
            )
        errors = payload["reference_errors"].numpy().astype(np.float64)
        return cls(
            config=AutoencoderConfig(**manifest["config"]),
            state_dict=payload["state_dict"],
            baseline=Baseline(np.sort(errors)),
            metadata=manifest["metadata"],
        )


def weights_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """A content hash of the weights: the model version, so state keyed by it never mixes models."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        buffer = io.BytesIO()
        np.save(buffer, state_dict[name].detach().cpu().numpy(), allow_pickle=False)
        digest.update(name.encode())
        digest.update(buffer.getvalue())
    return digest.hexdigest()
