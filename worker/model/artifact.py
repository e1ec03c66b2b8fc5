"""The trained model as one file: weights, latent map, baseline, calibration and metadata.

Written with `torch.save` and read with `torch.load(weights_only=True)`, which only
rebuilds tensors and plain containers: a tampered artifact cannot run code on load.
The non-tensor parts travel as one JSON string.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from framedrift.worker.detection.calibration import Calibration, calibrate
from framedrift.worker.detection.monitor import MonitorConfig
from framedrift.worker.detection.parameters import DetectorParameters, SourceKind
from framedrift.worker.detection.reference import ReferenceProfile
from framedrift.worker.detection.scores import ImageScores
from framedrift.worker.model.autoencoder import AutoencoderConfig, ConvAutoencoder
from framedrift.worker.model.latent import LatentMap
from framedrift.worker.model.preprocessing import Preprocessing
from framedrift.worker.model.scoring import Scorer

# 2: latent map, baseline scores and calibration; 3: one baseline set; 4: the model's
# architecture, and its inputs resized as bytes (`preprocessing.resized_for_model`)
ARTIFACT_FORMAT = 4
BASELINE_QUANTILES = (0.5, 0.9, 0.95, 0.99, 0.999)


class ArtifactError(ValueError):
    """The model artifact is missing, unreadable or not one this version understands."""


@dataclass(frozen=True)
class Baseline:
    """Scores of the held-out validation images: what 'no drift' looks like.

    Detectors compare live sources against all of them, and calibration simulates
    clean streams from them (see `framedrift.worker.detection.calibration` for how it
    accounts for the reference being a finite sample). The figures below are the
    reference profile's, the same the detectors and alerts read.
    """

    profile: ReferenceProfile

    @property
    def scores(self) -> ImageScores:
        return self.profile.scores

    @property
    def mean(self) -> float:
        return self.profile.signal_means["error"]

    @property
    def std(self) -> float:
        return self.profile.signal_stds["error"]

    def quantile(self, level: float) -> float:
        return self.profile.error_quantile(level)

    def summary(self) -> dict[str, Any]:
        return {
            "size": len(self.scores),
            "mean": self.mean,
            "std": self.std,
            "quantiles": {str(level): self.quantile(level) for level in BASELINE_QUANTILES},
        }


@dataclass
class ModelArtifact:
    config: AutoencoderConfig
    state_dict: dict[str, torch.Tensor]
    latent_map: LatentMap
    baseline: Baseline
    calibration: Calibration
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

    def scorer(self, torch_threads: int = 0, device: torch.device | None = None) -> Scorer:
        return Scorer(
            self.build_model(),
            self.latent_map,
            self.preprocessing,
            torch_threads,
            device,
        )

    def reference_profile(self) -> ReferenceProfile:
        return self.baseline.profile

    def monitor_config(
        self,
        outlier_quantile: float,
        warmup_frames: int = 2048,
        source_kind: SourceKind = "samples",
        incident_hold_down_s: float = 300.0,
        stopped_after_s: float = 60.0,
    ) -> MonitorConfig:
        """What every source's detectors run with: this model's calibration and baseline,
        how long a source's own normal warms up, what kind of source it is, how long an
        incident waits in quiet before it resolves, and the least silence that stops a
        source."""
        return MonitorConfig(
            self.calibration,
            self.reference_profile(),
            self.baseline.quantile(outlier_quantile),
            warmup_frames,
            source_kind,
            incident_hold_down_s,
            stopped_after_s,
        )

    def recalibrated(self, parameters: DetectorParameters) -> ModelArtifact:
        """This artifact with thresholds for `parameters` (a few seconds of simulation)."""
        calibration = calibrate(self.reference_profile(), parameters)
        return replace(self, calibration=calibration)

    def save(self, path: Path) -> None:
        manifest = {
            "format": ARTIFACT_FORMAT,
            "config": self.config.to_dict(),
            "preprocessing": self.preprocessing.__dict__,
            "baseline": self.baseline.summary(),
            "calibration": self.calibration.to_dict(),
            "metadata": self.metadata,
        }
        payload = {
            "manifest": json.dumps(manifest, sort_keys=True),
            "state_dict": self.state_dict,
            "latent_map": {
                name: torch.from_numpy(getattr(self.latent_map, name))
                for name in ("mean", "components", "prototypes")
            },
            "baseline_scores": _scores_to_tensors(self.baseline.scores),
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
                f"this version reads {ARTIFACT_FORMAT}: retrain it with `framedrift train`"
            )
        latent_map = LatentMap(
            **{name: tensor.numpy() for name, tensor in payload["latent_map"].items()}
        )
        baseline_scores = _scores_from_tensors(payload["baseline_scores"])
        return cls(
            config=AutoencoderConfig(**manifest["config"]),
            state_dict=payload["state_dict"],
            latent_map=latent_map,
            baseline=Baseline(ReferenceProfile(baseline_scores, latent_map.size)),
            calibration=Calibration.from_dict(manifest["calibration"]),
            metadata=manifest["metadata"],
        )


def _scores_to_tensors(scores: ImageScores) -> dict[str, torch.Tensor]:
    return {name: torch.from_numpy(values) for name, values in scores.as_arrays().items()}


def _scores_from_tensors(tensors: dict[str, torch.Tensor]) -> ImageScores:
    return ImageScores(**{name: tensor.numpy() for name, tensor in tensors.items()})


def weights_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """A content hash of the weights: the model version, so state keyed by it never mixes models."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        buffer = io.BytesIO()
        np.save(buffer, state_dict[name].detach().cpu().numpy(), allow_pickle=False)
        digest.update(name.encode())
        digest.update(buffer.getvalue())
    return digest.hexdigest()
