"""Frame-quality signals move with the camera fault they name, and little with the rest.

Scenes are synthetic but built like photographs: a 1/f amplitude spectrum (the
statistics of natural images), solid objects with sharp edges, a focused lens's slight
softness, then per-channel sensor noise and rounding to bytes, as a camera does.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from scipy import ndimage

from framedrift.worker.detection import frame_quality
from framedrift.worker.detection.frame_quality import (
    SIGNAL_NAMES,
    THUMBNAIL_LONGEST_SIDE,
    FrameSignals,
    displacement,
    downscaled_luma,
    frame_change,
    frame_signals,
    thumbnail,
)

BT601_LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])
# The luma of noise of sigma s, drawn independently in R, G and B, has sigma
# s·|weights|: luma averages the channels' noise.
LUMA_NOISE_PER_CHANNEL_NOISE = float(np.linalg.norm(BT601_LUMA_WEIGHTS))


@functools.cache
def natural_scene(seed: int, height: int, width: int) -> np.ndarray:
    """A float RGB scene, grey levels around 110, with texture at every scale and edges;
    made once per arguments, read-only."""
    rng = np.random.default_rng(seed)
    frequency = np.hypot(np.fft.fftfreq(height)[:, None], np.fft.rfftfreq(width)[None, :])
    frequency[0, 0] = 1.0
    spectrum = (
        rng.normal(size=frequency.shape) + 1j * rng.normal(size=frequency.shape)
    ) / frequency
    spectrum[0, 0] = 0.0
    texture = np.fft.irfft2(spectrum, s=(height, width))
    luma = 110.0 + 35.0 * texture / texture.std()
    rows, columns = np.ogrid[:height, :width]
    for _ in range(40):
        top, left = rng.integers(0, height), rng.integers(0, width)
        size = rng.integers(10, 150)
        if rng.random() < 0.5:
            inside = (
                (rows >= top) & (rows < top + size) & (columns >= left) & (columns < left + size)
            )
        else:
            inside = (rows - top) ** 2 + (columns - left) ** 2 < size**2
        luma = np.where(inside, 0.5 * luma + 0.5 * rng.uniform(0, 255), luma)
    # Even a focused lens, and the sensor's demosaicing, soften single pixels a little.
    luma = ndimage.gaussian_filter(luma, 0.8)
    tint = np.stack([np.full_like(luma, 1.05), np.ones_like(luma), np.full_like(luma, 0.95)], -1)
    scene = luma[..., None] * tint
    scene.flags.writeable = False
    return scene


def shoot(
    scene: np.ndarray,
    rng: np.random.Generator,
    blur: float = 0.0,
    noise: float = 2.0,
    gain: float = 1.0,
    channel_gains: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> np.ndarray:
    """One camera frame of `scene`: optical blur, exposure and colour gains, then sensor
    noise of sigma `noise` per channel, rounded and clipped to bytes."""
    light = scene * gain * np.asarray(channel_gains)
    if blur:
        light = ndimage.gaussian_filter(light, (blur, blur, 0))
    light = light + rng.normal(0.0, noise, light.shape)
    return np.clip(np.rint(light), 0, 255).astype(np.uint8)


@pytest.fixture
def scene_640() -> np.ndarray:
    return natural_scene(1, 480, 640)


@pytest.mark.parametrize(("height", "width", "blur"), [(480, 640, 2.5), (1080, 1920, 7.5)])
def test_a_defocus_lowers_focus_several_times(height: int, width: int, blur: float) -> None:
    """Sigma 2.5 px at 640×480, and the same fraction of the width at 1920×1080, where
    the frame is averaged 6 times before focus is measured (measured: 4 to 5 times)."""
    scene = natural_scene(1, height, width)
    rng = np.random.default_rng(0)
    sharp = frame_signals(shoot(scene, rng)).signals.focus
    blurred = frame_signals(shoot(scene, rng, blur=blur)).signals.focus
    assert sharp / blurred > 3.0, (sharp, blurred)


@pytest.mark.parametrize(("blur", "focus_tolerance"), [(0.0, 0.1), (2.5, 0.3)])
def test_noise_raises_the_noise_estimate_in_proportion_and_leaves_focus(
    scene_640: np.ndarray, blur: float, focus_tolerance: float
) -> None:
    """A noisier sensor must not read as a sharper lens. Measured from sigma 2 to 8:
    focus -3% sharp, -20% defocused; without taking the noise off, +24% and ×4.7."""
    rng = np.random.default_rng(1)
    signals = {
        sigma: frame_signals(shoot(scene_640, rng, blur=blur, noise=sigma)).signals
        for sigma in (2, 4, 8)
    }
    for sigma, measured in signals.items():
        expected = LUMA_NOISE_PER_CHANNEL_NOISE * sigma
        assert measured.noise == pytest.approx(expected, rel=0.25), sigma
    assert signals[8].focus == pytest.approx(signals[2].focus, rel=focus_tolerance)


def test_the_noise_of_grey_frames_reads_finer_than_a_grey_level(scene_640: np.ndarray) -> None:
    """Grey frames have integer residuals, whose median moves in steps of 12 to 25% of
    these sigmas: a robust estimate that still tells 1.0 from 1.1."""
    rng = np.random.default_rng(13)
    sigmas = (1.0, 1.1, 1.2, 1.3)
    estimates = [
        frame_signals(shoot(scene_640, rng, noise=s)[:, :, 1]).signals.noise for s in sigmas
    ]
    assert np.all(np.diff(estimates) > 0), estimates


def test_an_over_exposed_frame_keeps_its_noise(scene_640: np.ndarray) -> None:
    """Clipped pixels carry no noise; left in, they would make the estimate 0."""
    rng = np.random.default_rng(12)
    over = frame_signals(shoot(scene_640, rng, gain=2.5, noise=3)).signals
    assert over.highlights_clipped > 0.5
    assert over.noise == pytest.approx(LUMA_NOISE_PER_CHANNEL_NOISE * 3, rel=0.5)


def test_focus_holds_when_the_light_halves(scene_640: np.ndarray) -> None:
    """A ratio of two detail energies: exposure scales both, so dusk is not a defocus."""
    rng = np.random.default_rng(2)
    bright = frame_signals(shoot(scene_640, rng)).signals.focus
    dim = frame_signals(shoot(scene_640, rng, gain=0.5)).signals.focus
    assert dim == pytest.approx(bright, rel=0.1)


def test_exposure_moves_brightness_and_the_clipped_fractions(scene_640: np.ndarray) -> None:
    rng = np.random.default_rng(3)
    normal = frame_signals(shoot(scene_640, rng)).signals
    under = frame_signals(shoot(scene_640, rng, gain=0.5)).signals
    over = frame_signals(shoot(scene_640, rng, gain=2.5)).signals
    dark = frame_signals(shoot(scene_640, rng, gain=0.03)).signals
    assert under.brightness / normal.brightness == pytest.approx(0.5, abs=0.03)
    assert under.contrast / normal.contrast == pytest.approx(0.5, abs=0.05)
    assert normal.highlights_clipped < 0.01 and normal.shadows_crushed < 0.01
    assert over.highlights_clipped > 0.3
    assert dark.shadows_crushed > 0.3


def test_channel_gains_move_the_colour_casts_and_grey_has_none(scene_640: np.ndarray) -> None:
    rng = np.random.default_rng(4)
    normal = frame_signals(shoot(scene_640, rng)).signals
    warm = frame_signals(shoot(scene_640, rng, channel_gains=(1.2, 1.0, 0.8))).signals
    assert warm.red_cast - normal.red_cast == pytest.approx(0.2, abs=0.05)
    assert warm.blue_cast - normal.blue_cast == pytest.approx(-0.2, abs=0.05)
    # The same light dimmed is not a colour change.
    dimmed = frame_signals(shoot(scene_640, rng, gain=0.5)).signals
    assert dimmed.red_cast == pytest.approx(normal.red_cast, abs=0.01)
    grey = shoot(scene_640, rng)[:, :, 1]
    for frame in (grey, np.repeat(grey[:, :, None], 3, axis=2)):
        signals = frame_signals(frame).signals
        assert (signals.red_cast, signals.blue_cast) == (0.0, 0.0)


def test_displacement_recovers_a_known_shift_and_tells_an_unrelated_scene() -> None:
    """12 px right and 7 down at 640×480, within one analysis pixel (2 px)."""
    scene = natural_scene(5, 480 + 100, 640 + 100)
    rng = np.random.default_rng(5)
    reference = thumbnail(shoot(scene[50:530, 50:690], rng))
    moved = thumbnail(shoot(scene[50 - 7 : 530 - 7, 50 - 12 : 690 - 12], rng))
    found = displacement(moved, reference)
    assert found.dx * 640 == pytest.approx(12, abs=2.0)
    assert found.dy * 480 == pytest.approx(7, abs=2.0)
    still = displacement(thumbnail(shoot(scene[50:530, 50:690], rng)), reference)
    assert abs(still.dx * 640) < 1.0 and abs(still.dy * 480) < 1.0
    unrelated = displacement(thumbnail(shoot(natural_scene(6, 480, 640), rng)), reference)
    # Measured over 156 unrelated pairs: at most 0.12; the same view shifted by up to
    # 20% of the frame: at least 0.23.
    assert unrelated.peak < 0.15
    assert found.peak > 0.3 and still.peak > 0.9


@pytest.mark.parametrize(("height", "width"), [(480, 640), (1080, 1920)])
def test_a_repeated_frame_does_not_change_and_a_live_still_one_does(
    height: int, width: int
) -> None:
    """Sensor noise of sigma 2 tells a live still camera from a frozen one, even after
    the thumbnail has averaged it over 100 (640×480) or 900 (1920×1080) pixels."""
    scene = natural_scene(1, height, width)
    rng = np.random.default_rng(7)
    first, second = shoot(scene, rng), shoot(scene, rng)
    assert frame_change(thumbnail(first), thumbnail(first.copy())) == 0.0
    assert frame_change(thumbnail(second), thumbnail(first)) > 0.02


def test_thumbnails_are_small_grey_bytes(scene_640: np.ndarray) -> None:
    frame = shoot(scene_640, np.random.default_rng(8))
    small = thumbnail(frame)
    assert small.dtype == np.uint8 and small.shape == (48, 64) and small.nbytes == 3072
    assert max(thumbnail(frame[:, :600]).shape) <= THUMBNAIL_LONGEST_SIDE
    np.testing.assert_array_equal(frame_signals(frame).thumbnail, small)


@pytest.mark.parametrize(
    "image",
    [
        np.random.default_rng(9).integers(0, 256, (28, 28), dtype=np.uint8),
        np.zeros((28, 28), dtype=np.uint8),
        np.full((28, 28, 3), 255, dtype=np.uint8),
    ],
    ids=["noise", "black", "white"],
)
def test_dataset_sized_images_give_finite_signals(image: np.ndarray) -> None:
    quality = frame_signals(image)
    assert all(math.isfinite(value) for value in quality.signals.as_dict().values())
    assert quality.thumbnail.shape == (28, 28)
    assert frame_change(quality.thumbnail, quality.thumbnail) == 0.0
    assert all(math.isfinite(value) for value in displacement(quality.thumbnail, quality.thumbnail))


def test_single_channel_and_alpha_frames_read_as_grey_and_rgb(scene_640: np.ndarray) -> None:
    rgb = shoot(scene_640, np.random.default_rng(10))
    rgba = np.concatenate([rgb, np.full((*rgb.shape[:2], 1), 255, np.uint8)], axis=2)
    assert frame_signals(rgba).signals == frame_signals(rgb).signals
    grey = rgb[:, :, 1]
    assert frame_signals(grey[:, :, None]).signals == frame_signals(grey).signals


@pytest.mark.parametrize(
    "frame",
    [
        np.zeros((32, 32), dtype=np.float32),
        np.zeros((7, 32), dtype=np.uint8),
        np.zeros((32, 32, 2), dtype=np.uint8),
    ],
    ids=["float", "too-small", "two-channels"],
)
def test_frames_it_cannot_read_are_refused(frame: np.ndarray) -> None:
    with pytest.raises(ValueError):
        frame_signals(frame)


def test_thumbnails_of_different_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="new reference"):
        frame_change(np.zeros((48, 64), np.uint8), np.zeros((36, 64), np.uint8))


@pytest.mark.parametrize(
    ("shape", "factor"), [((481, 643, 3), 2), ((1080, 1923, 3), 6), ((50, 53), 3)]
)
def test_downscaled_luma_is_the_block_mean_of_luma(shape: tuple[int, ...], factor: int) -> None:
    image = np.random.default_rng(11).integers(0, 256, shape, dtype=np.uint8)
    rows, columns = shape[0] // factor, shape[1] // factor
    blocks = image[: rows * factor, : columns * factor].reshape(
        rows, factor, columns, factor, *shape[2:]
    )
    block_means = blocks.mean(axis=(1, 3))
    expected = block_means @ BT601_LUMA_WEIGHTS if block_means.ndim == 3 else block_means
    np.testing.assert_allclose(downscaled_luma(image, factor), expected, atol=1e-3)


def test_signal_names_follow_the_signals() -> None:
    signals = FrameSignals(*range(len(SIGNAL_NAMES)))
    assert tuple(signals.as_dict()) == SIGNAL_NAMES


def test_a_dense_grid_reads_the_same_luma_as_each_neighbourhood_pixel_alone() -> None:
    """A 320×240 frame's grid has stride 2 and takes the frame's luma once; the values
    must be those of the pixels' luma taken one offset at a time, to the bit."""
    frame = np.random.default_rng(5).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    grid = frame_quality._SampleGrid.over(frame)
    assert grid.stride == 2
    for offset, luma in grid.neighbourhood_luma():
        assert np.array_equal(luma, frame_quality._luma(grid.pixels(*offset))), offset
