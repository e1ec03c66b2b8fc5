"""Camera-quality signals of one decoded frame, at a resolution that still shows them.

The model sees frames shrunk to its input (28×28, 64×64), where a defocused lens looks
sharp again. These signals are computed on the frame itself, reduced only to an
analysis resolution that keeps a defocus of a few pixels visible, so that an alert can
say *how* a camera changed: focus, exposure, colour balance, noise, contrast, and, from
a small thumbnail the caller keeps per source, a frozen picture or a shifted view.

Numpy only, on one core: about 3.5 ms for a 640×480 RGB frame, 2.6 ms for 320×240.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from typing import NamedTuple

import numpy as np

from framedrift.worker.detection.scores import TILE_GRID

# Frames are box-averaged by the largest integer factor that keeps their longest side at
# least this long (a 640×480 frame by 2, a 1920×1080 one by 6; smaller frames as they
# are). Measured on three textured 640×480 scenes with sensor noise: a defocus of sigma
# 2.5 px lowers `focus` 4.4 to 7.9 times at this size, and 4.4 to 8.7 times when a
# 1920×1080 frame is blurred by the same fraction of its width (sigma 7.5 px). Averaging
# by 4 (160 px) leaves 2.6 to 3.4 times; not averaging (640 px) gives 3.4 to 18 times,
# by scene, for 4 times the cost.
ANALYSIS_LONGEST_SIDE = 320
# Which way frames are read as signals, decoding included (2: large JPEGs decoded at
# reduced size, `stream.decoding.JPEG_DECODED_LONGEST_SIDE`). Part of a source state's
# fingerprint, so that a source whose readings change learns its own normal again
# instead of being judged against references read the old way.
READING_VERSION = 2
# Thumbnails, kept per source for the pair signals, have at most this longest side:
# 64×48 uint8 (3,072 bytes) for a 4:3 frame, 64×36 (2,304 bytes) for 16:9. Phase
# correlation on them still finds a shift to within 1 pixel of a 640×480 frame.
THUMBNAIL_LONGEST_SIDE = 64
# Noise, clipping and colour are read at full resolution, where averaging has not yet
# hidden noise or turned a speckle of saturated pixels grey, from a regular grid of at
# least this many pixels: cheap, and the noise estimate of a live still camera then
# varies by 1.5 to 2.5% from frame to frame (measured at 640×480).
FULL_RESOLUTION_SAMPLES = 20_000
# Luma at or above this is a clipped highlight, at or below `CRUSHED_LUMA` a crushed shadow.
CLIPPED_LUMA = 250.0
CRUSHED_LUMA = 5.0
# `focus` needs a 3×3 neighbourhood in the analysis image halved once more.
MIN_SIDE = 8

# ITU-R BT.601 luma weights, the ones JPEG's YCbCr uses.
_LUMA_WEIGHTS = (np.float32(0.299), np.float32(0.587), np.float32(0.114))
# Immerkær's noise kernel: the difference of two Laplacians, which cancels flat areas and
# intensity ramps; its response to white noise of sigma s has standard deviation 6·s.
_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)
_NOISE_KERNEL_NORM = 6.0
# Mean of the smaller half of |x| for x drawn from N(0, 1): 2·(φ(0) − φ(0.6745)) / 0.5.
_LOWER_HALF_MEAN_ABS = 0.3247
# Mean square of the 4-neighbour Laplacian of unit white noise: 1 + 1 + 1 + 1 + 4².
_LAPLACIAN_NOISE_GAIN = 20.0


@dataclass(frozen=True)
class FrameSignals:
    """One frame's quality signals, each a float; `SIGNAL_NAMES` lists them in order."""

    # Fine detail against the detail one octave coarser, less what the noise adds: 0.5
    # to 1 for the sharp scenes measured, falling towards 0 as the lens defocuses. A
    # ratio, so light, exposure gain and much of the scene's content cancel out.
    focus: float
    # Mean luma, 0-255.
    brightness: float
    # Fractions of full-resolution pixels whose luma is clipped (>= 250) or crushed (<= 5).
    highlights_clipped: float
    shadows_crushed: float
    # Standard deviation of luma at the analysis resolution, grey levels.
    contrast: float
    # Mean red minus mean green, and mean blue minus mean green, over mean luma: 0 for a
    # grey frame, unmoved when the light only dims or brightens.
    red_cast: float
    blue_cast: float
    # Standard deviation of the luma noise at full resolution, grey levels. Texture at
    # the scale of single pixels reads as noise too: compare a camera with its own past.
    noise: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


SIGNAL_NAMES: tuple[str, ...] = tuple(field.name for field in fields(FrameSignals))


class FrameQuality(NamedTuple):
    """What `frame_signals` returns: the signals, and the thumbnail to keep per source."""

    signals: FrameSignals
    thumbnail: np.ndarray


class Displacement(NamedTuple):
    """How far a view moved against a reference, as fractions of the frame's width and
    height (positive: the picture moved right and down), and how clear that is.

    `peak` is the height of the phase correlation's peak, at most 1. Measured on 64×48
    thumbnails of 640×480 scenes: 0.99 for the same view with fresh noise, 0.6 to 0.7
    where the light and some content changed too, 0.16 to 0.55 where it also moved by
    0.5 to 30% of the frame (less of it overlaps); at most 0.12 over 156 pairs of
    unrelated scenes.
    """

    dx: float
    dy: float
    peak: float


def frame_signals(frame: np.ndarray) -> FrameQuality:
    """A decoded frame (uint8, H×W grey or H×W×3 RGB; 8×8 or larger) -> its quality
    signals and its thumbnail. Raises ValueError for any other array.

    >>> frame = np.zeros((28, 28), np.uint8)
    >>> frame[:, 14:] = 200  # half black, half light grey
    >>> signals = frame_signals(frame).signals
    >>> signals.brightness, signals.contrast, signals.shadows_crushed, signals.red_cast
    (100.0, 100.0, 0.5, 0.0)
    """
    frame = _checked(frame)
    factor = analysis_factor(*frame.shape[:2])
    luma = downscaled_luma(frame, factor)
    grid = _SampleGrid.over(frame)
    centres = grid.pixels(1, 1)
    centre_luma = _luma(centres)
    clipped, crushed = centre_luma >= CLIPPED_LUMA, centre_luma <= CRUSHED_LUMA
    noise = _noise(grid)
    red_cast, blue_cast = _colour_casts(centres, centre_luma)
    signals = FrameSignals(
        focus=_focus(luma, analysis_noise=noise / factor),
        brightness=float(luma.mean()),
        highlights_clipped=float(clipped.mean()),
        shadows_crushed=float(crushed.mean()),
        contrast=float(luma.std()),
        red_cast=red_cast,
        blue_cast=blue_cast,
        noise=noise,
    )
    return FrameQuality(signals, _thumbnail_of(luma))


def thumbnail(frame: np.ndarray) -> np.ndarray:
    """The small grey picture of a frame that the pair signals compare (the one
    `frame_signals` returns too): uint8, at most `THUMBNAIL_LONGEST_SIDE` long.

    uint8 keeps it a quarter of float32's size. Rounding does not bias `frame_change`,
    because the scene's own fractions of a grey level dither it.
    """
    frame = _checked(frame)
    return _thumbnail_of(downscaled_luma(frame, analysis_factor(*frame.shape[:2])))


def frame_change(thumb: np.ndarray, previous_thumb: np.ndarray) -> float:
    """Mean absolute difference of two thumbnails, grey levels: exactly 0 for a repeated
    frame, above 0 for a live one even when nothing moves, as the sensor's noise differs.

    Measured on a still scene with sensor noise of sigma 2 per channel: 0.15 at 640×480
    and 0.05 at 1920×1080, where a thumbnail pixel averages 100 and 900 pixels; over 29
    pairs never below 0.14 and 0.04.
    """
    _check_alike(thumb, previous_thumb)
    difference = thumb.astype(np.float32) - previous_thumb.astype(np.float32)
    return float(np.abs(difference).mean())


def tile_changes(thumb: np.ndarray, previous_thumb: np.ndarray) -> np.ndarray:
    """`frame_change` per tile of the `TILE_GRID` grid, row by row (the tiles of the
    model's `tile_errors`, binned alike): where in the picture something moved.

    >>> still = np.full((48, 64), 100, np.uint8)
    >>> moved = still.copy(); moved[:12, :16] = 110  # the top-left tile only
    >>> tile_changes(moved, still)[:2].tolist()
    [10.0, 0.0]
    """
    _check_alike(thumb, previous_thumb)
    difference = np.abs(thumb.astype(np.float32) - previous_thumb.astype(np.float32))
    return _tile_means(difference).astype(np.float32)


def tile_looks(thumb: np.ndarray, reference_thumb: np.ndarray) -> np.ndarray:
    """How far each tile's picture lies from the reference picture's, in percent of its
    level, per tile of the `TILE_GRID` grid: the mean absolute difference of the two
    thumbnails once the light is matched. The light is matched by the median over the
    tiles of their brightness ratios, so that a change of the whole frame's light moves
    no tile, and a change in a few tiles (an occluder darkening a corner) moves only those.

    >>> scene = np.tile(np.arange(40, 104, dtype=np.uint8), (48, 1))
    >>> dimmer = (scene * 0.5).astype(np.uint8)
    >>> float(tile_looks(dimmer, scene).max()) < 2.0  # half the light: the same picture
    True
    >>> covered = scene.copy(); covered[:12, :16] = 10  # the top-left tile only
    >>> looks = tile_looks(covered, scene); bool(looks[0] > 50 and looks[1:].max() == 0)
    True
    """
    _check_alike(thumb, reference_thumb)
    current, reference = thumb.astype(np.float32), reference_thumb.astype(np.float32)
    # +1 grey level: a black tile has a ratio, and a dark one's noise is not amplified.
    reference_levels = _tile_means(reference) + 1.0
    ratios = np.sort((_tile_means(current) + 1.0) / reference_levels)
    light = float(ratios[len(ratios) // 2 - 1 : len(ratios) // 2 + 1].mean())  # the median
    difference = _tile_means(np.abs(current - light * reference))
    return (100.0 * difference / (light * reference_levels)).astype(np.float32)


def _tile_means(image: np.ndarray) -> np.ndarray:
    """The mean of each tile of the `TILE_GRID` grid, row by row, from the image's summed
    area table (bins may overlap by a pixel, as adaptive average pooling cuts them)."""
    height, width = image.shape
    if height % TILE_GRID == 0 and width % TILE_GRID == 0:  # the usual case, and faster
        blocks = image.reshape(TILE_GRID, height // TILE_GRID, TILE_GRID, width // TILE_GRID)
        return blocks.sum(axis=(1, 3)).ravel() / (blocks.shape[1] * blocks.shape[3])
    summed = np.zeros((image.shape[0] + 1, image.shape[1] + 1), np.float64)
    summed[1:, 1:] = image.cumsum(axis=0, dtype=np.float64).cumsum(axis=1)
    (row_start, row_stop), (column_start, column_stop) = (
        _tile_bins(image.shape[0]),
        _tile_bins(image.shape[1]),
    )
    sums = (
        summed[np.ix_(row_stop, column_stop)]
        - summed[np.ix_(row_start, column_stop)]
        - summed[np.ix_(row_stop, column_start)]
        + summed[np.ix_(row_start, column_start)]
    )
    counts = np.outer(row_stop - row_start, column_stop - column_start)
    return (sums / counts).ravel()


@functools.cache
def _tile_bins(length: int) -> tuple[np.ndarray, np.ndarray]:
    """Where the `TILE_GRID` bins of `length` pixels start and stop, as adaptive average
    pooling cuts them."""
    index = np.arange(TILE_GRID)
    return index * length // TILE_GRID, -(-(index + 1) * length // TILE_GRID)


def phase_spectrum(thumb: np.ndarray) -> np.ndarray:
    """A thumbnail's Hann-windowed spectrum, as `displacement` compares them: a caller
    that compares many frames with one reference computes the reference's once."""
    height, width = thumb.shape
    return np.fft.rfft2((thumb - thumb.mean()) * _hann(height, width))


@functools.cache
def _hann(height: int, width: int) -> np.ndarray:
    return np.outer(np.hanning(height), np.hanning(width))


def displacement(
    thumb: np.ndarray, reference_thumb: np.ndarray, reference_spectrum: np.ndarray | None = None
) -> Displacement:
    """Where the reference's picture went in `thumb`, by phase correlation.

    Both are Hann-windowed (so the frame's borders do not correlate as an edge), their
    cross-power spectrum is normalised to unit magnitude (so only the phase, the position
    of structure, counts, not light or contrast), and its inverse peaks at the shift.
    The peak is refined to a fraction of a thumbnail pixel with the closed form of
    Foroosh, Zerubia & Berthod (2002) for the sinc-shaped peak of a fractional shift,
    which measured 2 to 3 times more exact here than a parabola through the peak.

    >>> reference = np.random.default_rng(0).integers(0, 256, (48, 64), dtype=np.uint8)
    >>> moved = np.roll(reference, (2, 5), axis=(0, 1))  # 2 rows down, 5 columns right
    >>> found = displacement(moved, reference)
    >>> round(found.dx * 64, 1), round(found.dy * 48, 1), found.peak > 0.5
    (5.0, 2.0, True)
    """
    _check_alike(thumb, reference_thumb)
    height, width = thumb.shape
    if reference_spectrum is None:
        reference_spectrum = phase_spectrum(reference_thumb)
    cross_power = phase_spectrum(thumb) * np.conj(reference_spectrum)
    magnitude = np.abs(cross_power)
    # A featureless thumbnail has no phase to compare: its cross-power stays 0, peak 0.
    cross_power /= np.where(magnitude > 0, magnitude, 1.0)
    surface = np.fft.irfft2(cross_power, s=thumb.shape)
    row, column = np.unravel_index(int(np.argmax(surface)), surface.shape)
    down = surface[:, column].take([row - 1, row, row + 1], mode="wrap")
    across = surface[row].take([column - 1, column, column + 1], mode="wrap")
    # The surface wraps around: a peak past the middle is a negative shift.
    dy = (row + height // 2) % height - height // 2 + _subpixel_offset(down)
    dx = (column + width // 2) % width - width // 2 + _subpixel_offset(across)
    return Displacement(float(dx) / width, float(dy) / height, float(surface[row, column]))


def analysis_factor(height: int, width: int) -> int:
    """The box-averaging factor that brings a frame to its analysis resolution."""
    return max(1, max(height, width) // ANALYSIS_LONGEST_SIDE)


def downscaled_luma(image: np.ndarray, factor: int) -> np.ndarray:
    """Luma (float32) of an H×W or H×W×3 image, averaged over factor×factor blocks; a
    last partial block is dropped.

    Rows are summed first, through a reshape (long contiguous runs); luma, being a
    weighted sum, is taken of those sums, then columns are added as strided slices of a
    single channel. That order is several times faster than a reshape-mean, or than
    summing columns with their three channels interleaved.
    """
    rows, columns = image.shape[0] // factor, image.shape[1] // factor
    image = image[: rows * factor, : columns * factor]
    # uint8 sums of up to 257 rows fit 16 bits, and halve the memory the sum runs through.
    accumulator = np.uint16 if image.dtype == np.uint8 and factor <= 257 else np.float32
    row_sums = image.reshape(rows, factor, -1).sum(axis=1, dtype=accumulator)
    luma_sums = _luma(row_sums.reshape(rows, columns * factor, *image.shape[2:]))
    block_sums = luma_sums[:, 0::factor]
    for offset in range(1, factor):
        block_sums += luma_sums[:, offset::factor]
    return block_sums / np.float32(factor * factor)


class _SampleGrid(NamedTuple):
    """A regular grid of full-resolution pixels, one every `stride` rows and columns,
    each with its 3×3 neighbourhood inside the frame."""

    frame: np.ndarray
    stride: int
    rows: int
    columns: int

    @classmethod
    def over(cls, frame: np.ndarray) -> _SampleGrid:
        height, width = frame.shape[:2]
        stride = math.ceil(math.sqrt((height - 2) * (width - 2) / FULL_RESOLUTION_SAMPLES))
        return cls(frame, stride, (height - 3) // stride + 1, (width - 3) // stride + 1)

    def pixels(self, row_offset: int, column_offset: int) -> np.ndarray:
        """The grid's pixels at (row_offset, column_offset), 0 to 2, within each 3×3."""
        return self.on(self.frame, row_offset, column_offset)

    def on(self, image: np.ndarray, row_offset: int, column_offset: int) -> np.ndarray:
        """`pixels` of `image`, an array of the frame's rows and columns (its luma, say)."""
        row_end = row_offset + (self.rows - 1) * self.stride + 1
        column_end = column_offset + (self.columns - 1) * self.stride + 1
        return image[row_offset : row_end : self.stride, column_offset : column_end : self.stride]

    def neighbourhood_luma(self) -> Iterator[tuple[tuple[int, int], np.ndarray]]:
        """((row offset, column offset), the luma of the grid's pixels there) for each of
        the 3×3 offsets. The same values either way; the cheaper way by the grid's density:
        a dense grid (stride 2 or less) covers most pixels several times, so the frame's
        luma is taken once and sliced; a sparse one takes luma of each offset's pixels."""
        if self.stride <= 2:
            luma = _luma(self.frame)
            for offset in np.ndindex(3, 3):
                yield offset, self.on(luma, *offset)
        else:
            for offset in np.ndindex(3, 3):
                yield offset, _luma(self.pixels(*offset))


def _noise(grid: _SampleGrid) -> float:
    """Luma noise sigma from Immerkær's (1996) residual at the grid's pixels, robustly.

    The mean of the smaller half of the absolute residuals, not the paper's mean of all:
    edges and texture, which the kernel does not fully cancel, sit in the larger half.
    Nor their median: on a grey frame the residuals are integers, and so is the median
    (measured on still grey frames: the same value frame after frame, then a jump of 5
    to 20%), where the mean of a half moves smoothly with the noise. Neighbourhoods with
    a clipped or crushed pixel are left out, as saturation erases noise (an over-exposed
    frame would read as noiseless). At full resolution, as box-averaging would divide
    the noise by its factor and keep the texture.
    """
    residual = np.zeros((grid.rows, grid.columns), dtype=np.float32)
    measurable = np.ones((grid.rows, grid.columns), dtype=bool)
    for offset, luma in grid.neighbourhood_luma():
        residual += _NOISE_KERNEL[offset] * luma
        measurable &= (luma > CRUSHED_LUMA) & (luma < CLIPPED_LUMA)
    magnitudes = np.abs(residual[measurable])
    half = magnitudes.size // 2
    if half == 0:
        return 0.0
    smaller_half = np.partition(magnitudes, half)[:half]
    return float(smaller_half.mean()) / _LOWER_HALF_MEAN_ABS / _NOISE_KERNEL_NORM


def _colour_casts(pixels: np.ndarray, luma: np.ndarray) -> tuple[float, float]:
    """(red - green, blue - green) / luma, from the grid's pixels: an even sample of the
    frame, so their channel means are the frame's, for 20,000 pixels' work."""
    if pixels.ndim == 2:
        return 0.0, 0.0
    red, green, blue = (float(pixels[..., channel].mean()) for channel in range(3))
    # A black frame has no colour to speak of; 1 grey level keeps the ratio finite.
    brightness = max(float(luma.mean()), 1.0)
    return (red - green) / brightness, (blue - green) / brightness


def _focus(luma: np.ndarray, analysis_noise: float) -> float:
    """Laplacian energy of the analysis image over that of the image halved once more.

    A blur removes the fine octave long before the coarse one, so the ratio falls; light
    and contrast scale both alike, and natural scenes, being roughly alike across scales,
    give similar ratios. White noise of sigma s (at this resolution) adds 20·s² to the
    fine energy, which is taken off, so that a noisier sensor does not read as a sharper
    lens. The coarse energy keeps its (4 times smaller) share of noise: it lowers the
    ratio a little, and a frame with no detail at all gets 0 rather than 0/0.
    """
    fine = _laplacian_energy(luma) - _LAPLACIAN_NOISE_GAIN * analysis_noise**2
    coarse = _laplacian_energy(downscaled_luma(luma, 2))
    return max(fine, 0.0) / coarse if coarse > 0 else 0.0


def _laplacian_energy(image: np.ndarray) -> float:
    """Mean square of the 4-neighbour Laplacian over the interior pixels."""
    centre = image[1:-1, 1:-1]
    laplacian = image[:-2, 1:-1] + image[2:, 1:-1] + image[1:-1, :-2] + image[1:-1, 2:] - 4 * centre
    return float(np.mean(np.square(laplacian, dtype=np.float64)))


def _subpixel_offset(around_peak: np.ndarray) -> float:
    """Foroosh et al.'s fraction of a pixel from the peak towards its larger neighbour."""
    left, centre, right = (float(value) for value in around_peak)
    neighbour, side = (right, 1.0) if right >= left else (left, -1.0)
    return side * neighbour / (neighbour + centre) if neighbour > 0 else 0.0


def _thumbnail_of(luma: np.ndarray) -> np.ndarray:
    factor = math.ceil(max(luma.shape) / THUMBNAIL_LONGEST_SIDE)
    return np.rint(downscaled_luma(luma, factor)).astype(np.uint8)


def _luma(image: np.ndarray) -> np.ndarray:
    """Luma as float32, channel by channel (faster than a matrix product)."""
    if image.ndim == 2:
        return image.astype(np.float32)
    red, green, blue = _LUMA_WEIGHTS
    return image[..., 0] * red + image[..., 1] * green + image[..., 2] * blue


def _checked(frame: np.ndarray) -> np.ndarray:
    """The frame as H×W or H×W×3 uint8: a single channel squeezed, alpha dropped."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        kind = frame.dtype if isinstance(frame, np.ndarray) else type(frame).__name__
        raise ValueError(f"frame must be a uint8 array, got {kind}")
    if frame.ndim == 3 and frame.shape[2] in (1, 4):
        frame = frame[:, :, 0] if frame.shape[2] == 1 else frame[:, :, :3]
    if frame.ndim != 2 and not (frame.ndim == 3 and frame.shape[2] == 3):
        raise ValueError(f"frame must be H×W grey or H×W×3 RGB, got shape {frame.shape}")
    if min(frame.shape[:2]) < MIN_SIDE:
        raise ValueError(f"frame {frame.shape[:2]} is smaller than {MIN_SIDE}×{MIN_SIDE}")
    return frame


def _check_alike(thumb: np.ndarray, other: np.ndarray) -> None:
    if thumb.ndim != 2 or thumb.shape != other.shape:
        raise ValueError(
            f"thumbnails must be 2-D and of one shape, got {thumb.shape} and {other.shape}: "
            "a source whose resolution changed needs a new reference"
        )
