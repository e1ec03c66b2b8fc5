"""An image's scores do not depend on which other images share its batch.

A replay reads a batch again with other records around it (a rewind, a crash, a
rebalance, a partition held back); alerts are reproduced exactly only if every image's
scores come out the same bit for bit. Two things used to break that: the latent
projection's matrix product (BLAS blocks by row count) and the convolution's own path
for a batch of one image.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from framedrift.worker.model.autoencoder import AutoencoderConfig, ConvAutoencoder
from framedrift.worker.model.latent import LatentMap
from framedrift.worker.model.preprocessing import Preprocessing
from framedrift.worker.model.scoring import Scorer, resolve_device, score_inputs


@pytest.fixture(scope="module", params=["seed", "strided"])
def scorer(request: pytest.FixtureRequest) -> Scorer:
    torch.manual_seed(0)
    config = AutoencoderConfig(height=28, width=28, channels=1, architecture=request.param)
    model = ConvAutoencoder(config).eval()
    rng = np.random.default_rng(1)
    inputs = torch.from_numpy(rng.random((64, 1, 28, 28), dtype=np.float32))
    with torch.inference_mode():
        _, codes = model(inputs)
    return Scorer(model, LatentMap.fit(codes.numpy()), Preprocessing.for_model(config))


@pytest.mark.parametrize("size", [1, 2, 7, 64, 199])
def test_an_image_scores_the_same_in_a_batch_of_any_size_and_company(
    scorer: Scorer, size: int
) -> None:
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 256, (28, 28), dtype=np.uint8) for _ in range(200)]
    alone_or_first = scorer.score(images[:size])
    among_others = scorer.score(images[200 - size :] + images[:size])  # at the end this time

    for signal in ("error", "prototype", "latent_distance", "brightness", "sharpness"):
        first = getattr(alone_or_first, signal)
        later = getattr(among_others, signal)[-size:]
        assert np.array_equal(first, later), signal


def test_chunked_scoring_equals_one_pass(scorer: Scorer) -> None:
    rng = np.random.default_rng(3)
    inputs = torch.from_numpy(rng.random((33, 1, 28, 28), dtype=np.float32))
    whole = score_inputs(scorer.model, scorer.latent_map, inputs, chunk=64)
    chunked = score_inputs(scorer.model, scorer.latent_map, inputs, chunk=8)  # last chunk: 1
    assert np.array_equal(whole.error, chunked.error)
    assert np.array_equal(whole.latent_distance, chunked.latent_distance)


def test_the_tiles_errors_average_to_the_image_error(scorer: Scorer) -> None:
    rng = np.random.default_rng(4)
    images = [rng.integers(0, 256, (28, 28), dtype=np.uint8) for _ in range(5)]
    images[0][:7, :7] = 255  # a white top-left tile: its error differs from the rest
    scored = scorer.score_frames(images)
    assert scored.tile_errors.shape == (5, 16)
    np.testing.assert_allclose(scored.tile_errors.mean(axis=1), scored.scores.error, rtol=1e-6)
    assert scored.tile_errors[0, 0] != pytest.approx(scored.tile_errors[0, 1:].mean(), rel=0.01)


def test_the_device_setting_resolves_to_a_device_or_says_why_not() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="sees no GPU"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="'cpu', 'cuda' or 'auto'"):
        resolve_device("tpu")
