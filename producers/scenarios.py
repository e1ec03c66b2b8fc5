"""Drift scenarios: how a source's images change once drift is switched on.

Each comes from a seed document:
- `noise`: Gaussian noise, σ 0.5 on [0, 1], clipped (seed 000's noisy MNIST).
- `covariate`: down-sample to 7×7 and back, brightness +0.1 (seed 004's B_shift).
- `label-shift`: 90% of one class's images dropped, sneakers by default (seed 004).
- `novel`: images from a second dataset (seed 000's notMNIST; the demo uses MNIST).
- `blur`, `brightness`, `occlusion`: camera faults (seed 002's focus, lighting, dirt).
`none` leaves the stream as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from framedrift.producers.datasets import LabelledImages

SCENARIOS = (
    "none",
    "noise",
    "covariate",
    "label-shift",
    "novel",
    "blur",
    "brightness",
    "occlusion",
)


@dataclass(frozen=True)
class ScenarioParameters:
    noise_sigma: float = 0.5
    covariate_size: int = 7
    covariate_brightness: float = 0.1
    label_shift_class: int = 7  # Fashion-MNIST's sneaker
    label_shift_drop: float = 0.9
    blur_radius: float = 1.5
    brightness_delta: float = 0.3
    occlusion_fraction: float = 0.25  # of the image's area


def _to_unit(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) / 255.0


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(pixels * 255.0), 0, 255).astype(np.uint8)


class ScenarioSampler:
    """Draws a source's next image, clean or drifted."""

    def __init__(
        self,
        scenario: str,
        clean: LabelledImages,
        rng: np.random.Generator,
        novel: LabelledImages | None = None,
        parameters: ScenarioParameters = ScenarioParameters(),
    ) -> None:
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}")
        if scenario == "novel" and novel is None:
            raise ValueError("the novel scenario needs a second dataset (--novel-data)")
        if scenario == "label-shift" and clean.labels is None:
            raise ValueError("the label-shift scenario needs labelled images")
        self.scenario = scenario
        self.clean = clean
        self.novel = novel
        self.rng = rng
        self.parameters = parameters
        height, width = clean.images.shape[1:3]
        side_h = max(1, round(height * parameters.occlusion_fraction**0.5))
        side_w = max(1, round(width * parameters.occlusion_fraction**0.5))
        top, left = rng.integers(0, height - side_h + 1), rng.integers(0, width - side_w + 1)
        # Fixed per source, like dirt on one camera's lens.
        self._occluded = (slice(top, top + side_h), slice(left, left + side_w))

    def _pick(self, dataset: LabelledImages) -> tuple[np.ndarray, int | None]:
        index = int(self.rng.integers(len(dataset)))
        label = int(dataset.labels[index]) if dataset.labels is not None else None
        return dataset.images[index], label

    def draw(self, drifted: bool) -> tuple[np.ndarray, int | None]:
        """The next image (uint8) and its label, if known."""
        if not drifted or self.scenario == "none":
            return self._pick(self.clean)
        if self.scenario == "novel":
            assert self.novel is not None
            return self._pick(self.novel)
        if self.scenario == "label-shift":
            while True:
                image, label = self._pick(self.clean)
                is_shifted = label == self.parameters.label_shift_class
                if not is_shifted or self.rng.random() >= self.parameters.label_shift_drop:
                    return image, label
        image, label = self._pick(self.clean)
        return self.transform(image), label

    def transform(self, image: np.ndarray) -> np.ndarray:
        parameters = self.parameters
        if self.scenario == "noise":
            noisy = _to_unit(image) + self.rng.normal(0.0, parameters.noise_sigma, image.shape)
            return _to_uint8(np.clip(noisy, 0.0, 1.0))
        if self.scenario == "covariate":
            height, width = image.shape[:2]
            small = Image.fromarray(image).resize((parameters.covariate_size,) * 2, Image.BILINEAR)
            restored = np.asarray(small.resize((width, height), Image.BILINEAR))
            return _to_uint8(_to_unit(restored) + parameters.covariate_brightness)
        if self.scenario == "blur":
            return np.asarray(
                Image.fromarray(image).filter(ImageFilter.GaussianBlur(parameters.blur_radius))
            )
        if self.scenario == "brightness":
            return _to_uint8(_to_unit(image) + parameters.brightness_delta)
        if self.scenario == "occlusion":
            occluded = image.copy()
            occluded[self._occluded] = 128
            return occluded
        raise AssertionError(f"no transform for {self.scenario}")
