"""Images of any size and channel count into the model's input, the same on every path."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from framedrift.worker.model.preprocessing import (
    Preprocessing,
    dataset_to_model_input,
    resized_for_model,
    to_model_input,
)

MODEL = Preprocessing(height=64, width=64, channels=3)


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """Smooth scenes with texture and edges, like a camera's, at 640×480."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:480, 0:640]
    frames = []
    for _ in range(3):
        scene = 120 + 60 * np.sin(x / rng.uniform(8, 30)) * np.cos(y / rng.uniform(8, 30))
        scene[rng.integers(0, 400) :, rng.integers(0, 600) :] += 40  # an edge
        colour = scene[:, :, None] * rng.uniform(0.7, 1.1, 3) + rng.normal(0, 3, (480, 640, 3))
        frames.append(np.clip(colour, 0, 255).astype(np.uint8))
    return frames


def test_a_frame_is_resized_as_pillows_bilinear_filter_resizes_it(frames) -> None:
    for frame in frames:
        ours = resized_for_model(frame, MODEL).astype(int)
        pillows = np.asarray(Image.fromarray(frame).resize((64, 64), Image.BILINEAR)).astype(int)
        assert ours.shape == (64, 64, 3)
        assert np.abs(ours - pillows).max() <= 1


def test_frames_kept_resized_give_the_model_what_the_frames_would(frames) -> None:
    """What training sets rely on: a frame stored at the model's size (12 kB at 64×64×3
    against 900 kB in full) becomes the same model input as the frame itself."""
    kept = np.stack([resized_for_model(frame, MODEL) for frame in frames])
    assert kept.dtype == np.uint8
    assert np.array_equal(
        dataset_to_model_input(kept, MODEL).numpy(), to_model_input(frames, MODEL).numpy()
    )


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [
        ((480, 640), np.uint8),
        ((480, 640, 1), np.uint8),
        ((240, 320, 4), np.uint8),
        ((50, 70, 3), np.float32),
    ],
)
def test_any_channels_and_sizes_become_the_models_input(shape, dtype) -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, shape).astype(dtype)
    if dtype == np.float32:
        image /= 255.0
    inputs = to_model_input([image], MODEL)
    assert inputs.shape == (1, 3, 64, 64)
    assert float(inputs.min()) >= 0.0 and float(inputs.max()) <= 1.0
    assert abs(float(inputs.mean()) - 0.5) < 0.02  # uniform noise averages to mid-grey
