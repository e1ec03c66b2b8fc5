"""Fixtures shared by unit and integration tests: sample images and one small trained model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import structlog

from framedrift.producers.datasets import SAMPLE_DATA_DIR, LabelledImages, load_images
from framedrift.worker.model.artifact import ModelArtifact
from framedrift.worker.model.autoencoder import AutoencoderConfig
from framedrift.worker.model.training import TrainingPlan, train_autoencoder
from framedrift.worker.ops.settings import Settings


@pytest.fixture(autouse=True)
def logging_configuration_of_its_own():
    """Each test leaves structlog as it found it: a test that runs a CLI command in
    process configures logging onto pytest's captured stderr, closed after that test,
    and a later test's log line would then fail on the closed file."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture(scope="session")
def reference_images() -> LabelledImages:
    return load_images(SAMPLE_DATA_DIR / "fashion-mnist-reference-images-idx3-ubyte.gz")


@pytest.fixture(scope="session")
def stream_images() -> LabelledImages:
    return load_images(SAMPLE_DATA_DIR / "fashion-mnist-stream-images-idx3-ubyte.gz")


@pytest.fixture(scope="session")
def novel_images() -> LabelledImages:
    return load_images(SAMPLE_DATA_DIR / "mnist-novel-images-idx3-ubyte.gz")


# The detector settings the test model is calibrated for, and that the integration tests'
# workers run with. A latent-mix window shorter than the default 1,000 events: an
# incident resolves only once its detectors' windows hold none of the problem's events,
# and the tests' streams can then be short.
TEST_DETECTOR_SETTINGS = {"latent_window": 300}


@pytest.fixture(scope="session")
def trained_artifact(reference_images: LabelledImages) -> ModelArtifact:
    """A small but real model: 3 epochs on the 6,000 sample images (~20 s on 2 cores).

    All of them, so that the baseline's halves (600 images each) are large enough for a
    calibration that clean cameras respect.
    """
    return train_autoencoder(
        reference_images.images,
        AutoencoderConfig(filters=16),
        TrainingPlan(epochs=3, seed=1),
        # Those the tests' workers run with, so that they find their calibration stored.
        Settings(**TEST_DETECTOR_SETTINGS).detector_parameters(),
        source_description="test fixture",
        show_progress=False,
    )


@pytest.fixture(scope="session")
def model_path(trained_artifact: ModelArtifact, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "model.pt"
    trained_artifact.save(path)
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
