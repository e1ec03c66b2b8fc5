"""Dataset readers read every supported format; drift scenarios change images as described."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from framedrift.producers.datasets import (
    DatasetError,
    LabelledImages,
    load_images,
    read_idx,
    write_idx,
)
from framedrift.producers.scenarios import SCENARIOS, ScenarioSampler
from framedrift.producers.stream import StreamPlan
from framedrift.worker.model.preprocessing import Preprocessing, to_model_input

IMAGES = (np.random.default_rng(0).integers(0, 256, (20, 28, 28))).astype(np.uint8)
LABELS = (np.arange(20) % 10).astype(np.uint8)


def test_idx_gzip_and_raw_read_back_with_labels(tmp_path: Path) -> None:
    write_idx(tmp_path / "x-images-idx3-ubyte.gz", IMAGES)
    write_idx(tmp_path / "x-labels-idx1-ubyte.gz", LABELS)
    dataset = load_images(tmp_path / "x-images-idx3-ubyte.gz")
    np.testing.assert_array_equal(dataset.images, IMAGES)
    np.testing.assert_array_equal(dataset.labels, LABELS)
    import gzip

    raw = tmp_path / "raw-images-idx3-ubyte"
    raw.write_bytes(gzip.decompress((tmp_path / "x-images-idx3-ubyte.gz").read_bytes()))
    np.testing.assert_array_equal(read_idx(raw), IMAGES)


def test_npz_with_float_images_is_scaled_to_uint8(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", images=IMAGES / 255.0, labels=LABELS)
    dataset = load_images(tmp_path / "d.npz")
    np.testing.assert_array_equal(dataset.images, IMAGES)


def test_folder_with_class_subfolders_gives_labels(tmp_path: Path) -> None:
    for index in range(4):
        folder = tmp_path / f"class{index % 2}"
        folder.mkdir(exist_ok=True)
        Image.fromarray(IMAGES[index]).save(folder / f"{index}.png")
    dataset = load_images(tmp_path)
    assert dataset.images.shape == (4, 28, 28)
    assert sorted(dataset.labels.tolist()) == [0, 0, 1, 1]


def test_corrupt_idx_is_refused(tmp_path: Path) -> None:
    (tmp_path / "bad.idx").write_bytes(b"\0\0\x08\x03" + b"\0" * 20)
    with pytest.raises(DatasetError):
        load_images(tmp_path / "bad.idx")


def sampler(scenario: str, novel: LabelledImages | None = None) -> ScenarioSampler:
    return ScenarioSampler(
        scenario, LabelledImages(IMAGES // 2, LABELS), np.random.default_rng(3), novel
    )


@pytest.mark.parametrize(
    "scenario", [s for s in SCENARIOS if s not in ("none", "label-shift", "novel")]
)
def test_transform_scenarios_change_drifted_images_only(scenario: str) -> None:
    draw = sampler(scenario)
    clean, _ = draw.draw(drifted=False)
    assert any(np.array_equal(clean, image) for image in IMAGES // 2)
    drifted, _ = draw.draw(drifted=True)
    assert drifted.dtype == np.uint8 and drifted.shape == (28, 28)
    assert not any(np.array_equal(drifted, image) for image in IMAGES // 2)


def test_label_shift_drops_ninety_percent_of_the_class() -> None:
    labels = (np.arange(1000) % 10).astype(np.uint8)
    images = np.zeros((1000, 4, 4), dtype=np.uint8)
    draw = ScenarioSampler("label-shift", LabelledImages(images, labels), np.random.default_rng(0))
    drawn = [draw.draw(drifted=True)[1] for _ in range(20_000)]
    share = drawn.count(7) / len(drawn)
    assert 0.008 < share < 0.014  # 10% of 1/10, renormalised: 0.01 / 0.91 ≈ 0.011


def test_novel_scenario_draws_from_the_second_dataset() -> None:
    novel = LabelledImages(np.full((5, 28, 28), 255, np.uint8), None)
    assert (sampler("novel", novel).draw(drifted=True)[0] == 255).all()


def test_plan_refuses_drift_on_a_source_that_does_not_exist() -> None:
    with pytest.raises(ValueError, match="unknown sources"):
        StreamPlan(sources=2, drift={"camera-009": "noise"})


def test_preprocessing_converts_colour_and_size_to_the_models_input() -> None:
    red = np.zeros((56, 56, 3), dtype=np.uint8)
    red[..., 0] = 255
    batch = to_model_input([red, IMAGES[0]], Preprocessing(28, 28, 1))
    assert batch.shape == (2, 1, 28, 28)
    assert batch[0].mean().item() == pytest.approx(0.299, abs=1e-3)
    assert batch[1].max().item() <= 1.0
