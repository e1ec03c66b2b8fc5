"""The model artifact round-trips exactly and loads without running arbitrary code."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from framedrift.worker.model.artifact import ArtifactError, ModelArtifact
from framedrift.worker.model.preprocessing import dataset_to_model_input


def test_saved_artifact_scores_exactly_like_the_trained_model(
    trained_artifact: ModelArtifact, tmp_path: Path, stream_images
) -> None:
    path = tmp_path / "model.pt"
    trained_artifact.save(path)
    loaded = ModelArtifact.load(path)
    assert loaded.model_version == trained_artifact.model_version
    assert loaded.config == trained_artifact.config
    assert loaded.calibration == trained_artifact.calibration
    for name, values in trained_artifact.baseline.scores.as_arrays().items():
        np.testing.assert_array_equal(getattr(loaded.baseline.scores, name), values)
    sample = list(stream_images.images[:64])
    original, reloaded = trained_artifact.scorer().score(sample), loaded.scorer().score(sample)
    for name, values in original.as_arrays().items():
        np.testing.assert_array_equal(getattr(reloaded, name), values)


def test_artifact_records_baseline_and_provenance(trained_artifact: ModelArtifact) -> None:
    metadata = trained_artifact.metadata
    assert metadata["model_version"].startswith("ae-")
    assert len(metadata["data_sha256"]) == 64
    assert {"torch", "numpy", "python"} <= metadata["library_versions"].keys()
    summary = trained_artifact.baseline.summary()
    assert metadata["validation_images"] == 1200
    assert summary["size"] == 1200
    assert summary["quantiles"]["0.5"] < summary["quantiles"]["0.999"]


def test_training_lowers_the_error_below_an_untrained_model(
    trained_artifact: ModelArtifact, stream_images
) -> None:
    from framedrift.worker.model.autoencoder import ConvAutoencoder
    from framedrift.worker.model.training import score_dataset

    inputs = dataset_to_model_input(stream_images.images[:256], trained_artifact.preprocessing)
    torch.manual_seed(0)
    untrained = score_dataset(ConvAutoencoder(trained_artifact.config), inputs).mean()
    trained = score_dataset(trained_artifact.build_model(), inputs).mean()
    assert trained < 0.7 * untrained


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_a_pickled_object_in_place_of_an_artifact_is_refused(tmp_path: Path) -> None:
    class Payload:
        def __reduce__(self):  # would run on a plain pickle load
            return (print, ("code ran",))

    path = tmp_path / "evil.pt"
    torch.save({"manifest": "{}", "payload": Payload()}, path)
    with pytest.raises(ArtifactError, match="not a framedrift model artifact"):
        ModelArtifact.load(path)
    path.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(ArtifactError):
        ModelArtifact.load(path)


def test_missing_artifact_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="framedrift train"):
        ModelArtifact.load(tmp_path / "nope.pt")


def test_input_size_and_channels_are_configurable() -> None:
    from framedrift.worker.model.autoencoder import AutoencoderConfig, ConvAutoencoder

    model = ConvAutoencoder(AutoencoderConfig(height=32, width=48, channels=3, filters=8))
    reconstruction, latent = model(torch.rand(2, 3, 32, 48))
    assert reconstruction.shape == (2, 3, 32, 48)
    assert latent.shape == (2, 8, 8, 12)
    with pytest.raises(ValueError, match="multiples of 4"):
        AutoencoderConfig(height=30)
