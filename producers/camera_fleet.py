"""A fleet of simulated fixed cameras, for the camera-fleet evaluation and the demo.

Each camera looks at its own real photograph (scikit-image ships them inside its wheel,
so nothing is downloaded) through its own lens and encoder, and its frames change the
way a fixed camera's do: sensor noise that grows in the dark, a slight shake, objects
that cross the scene and leave, and light that follows a day. Faults act at full
resolution from an onset frame, at the stage of the camera where they happen.

A frame is made in the order the light travels (`Camera._render`):

1. view: the part of the photograph the camera's pose sees (`Knocked` moves it);
2. objects: moving objects pasted into the scene;
3. lens: `Occlusion`, `Defocus`, `Smudge`, then the lens's vignetting. The still scene
   goes through the lens once; per frame only the pieces around moving objects do;
4. shake: the frame sampled from that image displaced by a fraction of a pixel;
5. light and sensor: the day's brightness and colour, the camera's colour gains and
   those of `ExposureLoss` and `ColourCast`; then noise; then clipping to 8 bits;
6. encoder: `HeavyCompression`;
7. stream: `Frozen`.

Every random draw comes from the seed and the frame's index, so any frame can be made
on its own and the same seed always gives the same frames.

>>> fleet = CameraFleet(cameras=2, seed=0, frame_size=(160, 120))
>>> clean = next(fleet.frames(0, start=100))
>>> clean.shape, clean.dtype.name
((120, 160, 3), 'uint8')
>>> frozen = list(fleet.frames(0, start=100, count=3, fault=Frozen(), onset=101))
>>> bool((frozen[0] == clean).all()), bool((frozen[1] == frozen[2]).all())
(True, True)
>>> Smudge(corner="top-right").region
Region(left=0.5, top=0.0, right=1.0, bottom=0.5)
"""

from __future__ import annotations

import functools
import importlib.resources
import io
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np
from PIL import Image
from tqdm import tqdm

# (width, height) of a frame, in pixels.
FrameSize = tuple[int, int]
FRAME_SIZE: FrameSize = (640, 480)

# The colour photographs in scikit-image's wheel (skimage/data/), everyday scenes first;
# camera i of a fleet looks at PHOTOGRAPHS[i % len(PHOTOGRAPHS)], each through its own crop.
PHOTOGRAPHS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "retina.jpg",
)

PAD = 3  # pixels around the frame, so that the shake never samples outside what was made
MAX_SHAKE_PX = PAD - 1.01  # the bilinear shake reads one pixel beyond the whole-pixel shift
KNOCK_ROOM_PX = 48  # the view leaves this much photograph on every side for a knocked camera
MAX_ROLL_DEG = 4.0  # the view fits the photograph up to this much roll (tilt plus a knock)
NOISE_MARGIN = 32  # the noise bank is larger than a frame by this much on every side
NOISE_BAND = 8  # rows of noise cut together from the bank
OBJECT_SLOT = 240  # frames: moving objects are drawn per slot, each starting and ending in it
MIN_GAIN_LIGHT = 0.05  # below this brightness the camera's gain rises no further
HAZE_LEVEL = 200.0  # DN: the milky light a smudge scatters over the scene


class PhotographsMissing(RuntimeError):
    """The fleet's scenes are scikit-image's photographs, and scikit-image is not installed."""


class Region(NamedTuple):
    """A rectangle of the frame, as fractions of its width and height (0 to 1)."""

    left: float
    top: float
    right: float
    bottom: float


class Pose(NamedTuple):
    """Where the camera points: its view moved right and down, in frame pixels, and its roll."""

    shift_x: float = 0.0
    shift_y: float = 0.0
    roll_deg: float = 0.0


@functools.cache
def load_photograph(name: str) -> np.ndarray:
    """One of PHOTOGRAPHS as uint8 RGB, read as a file from the installed scikit-image.

    The files sit in scikit-image's wheel; its `skimage.data` loaders are not used,
    since for other images they download.
    """
    try:
        path = importlib.resources.files("skimage") / "data" / name
    except ModuleNotFoundError as error:
        raise PhotographsMissing(
            "the camera fleet's scenes are scikit-image's photographs: "
            "pip install 'framedrift[eval]' (or [demo])"
        ) from error
    with path.open("rb") as file, Image.open(file) as image:
        pixels = np.array(image.convert("RGB"))
    pixels.flags.writeable = False  # shared by every camera through the cache
    return pixels


def encode_jpeg(frame: np.ndarray, quality: int) -> bytes:
    """A uint8 RGB frame as JPEG bytes at `quality` (1 to 95), as a camera's encoder sends it."""
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def decode_jpeg(data: bytes) -> np.ndarray:
    """JPEG bytes back to a uint8 RGB frame."""
    with Image.open(io.BytesIO(data)) as image:
        return np.array(image.convert("RGB"))


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """`image` (H, W, C, float32) blurred by a Gaussian of `sigma` pixels, edges extended.

    Separable: one pass down the columns, one along the rows, each a weighted sum of
    shifted copies, so a wide blur of a full frame costs tens of milliseconds, once.
    """
    radius = max(1, math.ceil(3 * sigma))
    offsets = np.arange(-radius, radius + 1)
    taps = np.exp(-0.5 * (offsets / sigma) ** 2)
    taps /= taps.sum()
    height, width = image.shape[:2]
    padded = np.pad(image, ((radius, radius), (0, 0), (0, 0)), mode="edge")
    down = np.zeros_like(image)
    for index, tap in enumerate(taps):
        down += np.float32(tap) * padded[index : index + height]
    padded = np.pad(down, ((0, 0), (radius, radius), (0, 0)), mode="edge")
    blurred = np.zeros_like(image)
    for index, tap in enumerate(taps):
        blurred += np.float32(tap) * padded[:, index : index + width]
    return blurred


def _region_mask(region: Region, y: np.ndarray, x: np.ndarray, feather: float) -> np.ndarray:
    """1 inside `region`, falling to 0 at its edges over `feather` (a fraction of the frame).

    Nothing outside the region is touched. Edges on the frame's border are not
    feathered: a region in a corner stays whole up to the border.
    """

    def ramp(distance: np.ndarray, on_border: bool) -> np.ndarray:
        return np.ones_like(distance) if on_border else np.clip(distance / feather, 0.0, 1.0)

    across = ramp(x - region.left, region.left <= 0) * ramp(region.right - x, region.right >= 1)
    down = ramp(y - region.top, region.top <= 0) * ramp(region.bottom - y, region.bottom >= 1)
    inside = (x >= region.left) & (x < region.right) & (y >= region.top) & (y < region.bottom)
    return (across * down * inside).astype(np.float32)


@dataclass(frozen=True)
class DayCycle:
    """Daylight over a day-like cycle: bright days, dim nights, warm light at dawn and dusk.

    The sun's height is a sine over `period` frames. Brightness moves between
    `night_level` and 1 through a smooth twilight (a tanh of the sun's height), so it
    never reaches total darkness unless `night_level` is 0. With the sun near the
    horizon the light is warmer: red up and blue down by up to `warmth`.

    >>> day = DayCycle(period=1000, night_level=0.3)
    >>> round(day.brightness(250), 3), round(day.brightness(750), 3)  # noon, midnight
    (1.0, 0.3)
    >>> day.colour(0).round(2).tolist()  # sunrise
    [1.12, 1.0, 0.88]
    """

    period: int = 20_000
    night_level: float = 0.3
    twilight: float = 0.15  # how gradual dawn and dusk are, in units of the sun's height
    warmth: float = 0.12

    def __post_init__(self) -> None:
        if self.period < 1:
            raise ValueError(f"DayCycle.period must be at least 1 frame, got {self.period}")
        if not 0.0 <= self.night_level <= 1.0:
            raise ValueError(f"DayCycle.night_level must be in [0, 1], got {self.night_level}")

    def sun_height(self, frame: int, phase: float = 0.0) -> float:
        """-1 at midnight, 0 at sunrise and sunset, 1 at noon; `phase` is a fraction of the day."""
        return math.sin(2 * math.pi * (frame / self.period + phase))

    def brightness(self, frame: int, phase: float = 0.0) -> float:
        """How much light reaches the scene, from `night_level` to 1."""
        daylight = (1 + math.tanh(self.sun_height(frame, phase) / self.twilight)) / 2
        return self.night_level + (1 - self.night_level) * daylight

    def colour(self, frame: int, phase: float = 0.0) -> np.ndarray:
        """The light's RGB gains: neutral by day and night, warm near sunrise and sunset."""
        warm = self.warmth * math.exp(-((self.sun_height(frame, phase) / self.twilight) ** 2))
        return np.array([1 + warm, 1.0, 1 - warm])


@dataclass(frozen=True)
class CameraTraits:
    """What makes one camera unlike another, besides its photograph; `draw` picks them."""

    zoom: float  # 1: the widest view the photograph allows; more: a tighter crop
    centre: tuple[float, float]  # where the view sits in the photograph's free room, 0 to 1
    tilt_deg: float  # the camera's roll as mounted
    vignetting: float  # the fraction of brightness the lens loses in the frame's corners
    colour_gains: tuple[float, float, float]  # the sensor's white balance, R G B
    jpeg_quality: int  # the encoder's quality (`Camera.encode`)
    read_noise: float  # DN: the sensor's noise floor
    shot_noise: float  # DN per √DN: photon noise grows with the square root of the signal
    shake_px: float  # how far the mount sways, in pixels
    day_phase: float  # where in the day frame 0 falls (0 sunrise, 0.25 noon)
    object_rate: float  # mean number of objects crossing the scene per OBJECT_SLOT frames

    @classmethod
    def draw(cls, rng: np.random.Generator) -> CameraTraits:
        """A plausible camera: small differences of mount, optics, sensor and encoder."""
        return cls(
            zoom=float(rng.uniform(1.0, 1.3)),
            centre=(float(rng.uniform()), float(rng.uniform())),
            tilt_deg=float(rng.uniform(-1.5, 1.5)),
            vignetting=float(rng.uniform(0.1, 0.3)),
            colour_gains=(float(rng.uniform(0.92, 1.08)), 1.0, float(rng.uniform(0.92, 1.08))),
            jpeg_quality=int(rng.integers(75, 96)),
            read_noise=float(rng.uniform(0.8, 2.0)),
            shot_noise=float(rng.uniform(0.08, 0.2)),
            shake_px=float(rng.uniform(0.2, 1.0)),
            day_phase=float(rng.uniform()),
            object_rate=float(rng.uniform(0.5, 1.5)),
        )


# --- Faults -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """A camera fault, acting at one stage of the camera through one of these hooks.

    Each hook's default leaves its stage as it is. `severity` scales the fault: 1 is
    clearly visible to a person, larger is worse; each fault says how. `region` is
    where in the frame the fault acts (None: all of it), for checking tile names.
    """

    name: ClassVar[str]
    freezes: ClassVar[bool] = False  # the stream repeats the frame at the onset
    severity: float = 1.0

    def __post_init__(self) -> None:
        if self.severity <= 0:
            raise ValueError(
                f"{type(self).__name__}.severity must be positive, got {self.severity}"
            )

    @property
    def region(self) -> Region | None:
        return None

    @property
    def reach_px(self) -> int:
        """How far `through_lens` spreads a pixel, so pieces redone per frame carry the margin."""
        return 0

    def pose(self, pose: Pose) -> Pose:
        """Where the camera points."""
        return pose

    def through_lens(self, image: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """The light through the lens; `image` (float32) has its pixels' centres at rows `y`
        (shape (h, 1, 1)) and columns `x` (shape (1, w, 1)) in fractions of the frame."""
        return image

    def sensor_gains(self) -> np.ndarray:
        """RGB gains on the light the sensor turns into signal."""
        return np.ones(3, dtype=np.float32)

    def encode(self, frame: np.ndarray) -> np.ndarray:
        """The uint8 frame as the encoder leaves it."""
        return frame


@dataclass(frozen=True)
class Defocus(Fault):
    """The lens lost its focus: the whole frame blurred by a Gaussian of 3 × severity pixels."""

    name: ClassVar[str] = "defocus"

    @property
    def sigma_px(self) -> float:
        return 3.0 * self.severity

    @property
    def reach_px(self) -> int:
        return math.ceil(3 * self.sigma_px)

    def through_lens(self, image: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        return gaussian_blur(image, self.sigma_px)


CORNERS = {
    "top-left": Region(0.0, 0.0, 0.5, 0.5),
    "top-right": Region(0.5, 0.0, 1.0, 0.5),
    "bottom-left": Region(0.0, 0.5, 0.5, 1.0),
    "bottom-right": Region(0.5, 0.5, 1.0, 1.0),
}


@dataclass(frozen=True)
class Smudge(Fault):
    """A greasy smudge on one corner of the lens: that quadrant blurred and hazed.

    Within the quadrant of `corner` the image is blurred by 6 × severity pixels and
    veiled by milky scattered light (HAZE_LEVEL), 40% × severity of it at most. The
    smudge is full at the frame's corner and thins out towards the quadrant's inner
    edges, leaving the rest of the frame untouched.
    """

    name: ClassVar[str] = "smudge"
    corner: str = "top-left"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.corner not in CORNERS:
            raise ValueError(
                f"Smudge.corner must be one of {', '.join(CORNERS)}, got {self.corner!r}"
            )

    @property
    def region(self) -> Region:
        return CORNERS[self.corner]

    @property
    def sigma_px(self) -> float:
        return 6.0 * self.severity

    @property
    def haze(self) -> float:
        return min(0.4 * self.severity, 0.9)

    @property
    def reach_px(self) -> int:
        return math.ceil(3 * self.sigma_px)

    def through_lens(self, image: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        mask = _region_mask(self.region, y, x, feather=0.25)
        if not mask.any():
            return image
        smeared = (1 - self.haze) * gaussian_blur(image, self.sigma_px) + self.haze * HAZE_LEVEL
        return image + mask * (smeared - image)


@dataclass(frozen=True)
class Knocked(Fault):
    """Someone knocked the camera: its view moved by 24 × severity pixels and rolled by
    severity degrees, for good. `direction_deg` is where the camera now points
    (0: right, 90: down), so the scene moves the other way in the frame. Up to
    severity 2 the view stays within the photograph (KNOCK_ROOM_PX); beyond, black
    borders come in."""

    name: ClassVar[str] = "knocked"
    direction_deg: float = 30.0

    @property
    def shift_px(self) -> tuple[float, float]:
        """How far the view moved, right and down, in pixels."""
        distance = 24.0 * self.severity
        angle = math.radians(self.direction_deg)
        return distance * math.cos(angle), distance * math.sin(angle)

    def pose(self, pose: Pose) -> Pose:
        shift_x, shift_y = self.shift_px
        return Pose(pose.shift_x + shift_x, pose.shift_y + shift_y, pose.roll_deg + self.severity)


@dataclass(frozen=True)
class Occlusion(Fault):
    """Something opaque stuck in front of the lens (a leaf, tape, a bird's nest): a dark,
    out-of-focus shape covering a box of 10% × severity of the frame around `centre`."""

    name: ClassVar[str] = "occlusion"
    centre: tuple[float, float] = (0.7, 0.7)  # (x, y) in fractions of the frame
    colour: tuple[float, float, float] = (52.0, 46.0, 40.0)

    @property
    def region(self) -> Region:
        side = min(math.sqrt(0.1 * self.severity), 1.0)  # of the width, and of the height
        left = min(max(self.centre[0] - side / 2, 0.0), 1.0 - side)
        top = min(max(self.centre[1] - side / 2, 0.0), 1.0 - side)
        return Region(left, top, left + side, top + side)

    def through_lens(self, image: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        region = self.region
        mask = _region_mask(region, y, x, feather=0.02)
        if not mask.any():
            return image
        # Lit from above: lighter at its top than at its bottom, like a real object.
        shading = 1.25 - 0.5 * np.clip((y - region.top) / (region.bottom - region.top), 0, 1)
        occluder = np.asarray(self.colour, dtype=np.float32) * shading
        return image + mask * (occluder - image)


@dataclass(frozen=True)
class Frozen(Fault):
    """The stream froze: from the onset on, the frame at the onset is sent again and again,
    byte for byte (its noise made once). Severity does not apply."""

    name: ClassVar[str] = "frozen"
    freezes: ClassVar[bool] = True


CAST_CHANNELS = {"red": 0, "green": 1, "blue": 2}


@dataclass(frozen=True)
class ColourCast(Fault):
    """The white balance went wrong: channel `towards` gains 30% × severity, the other two
    lose 15% × severity."""

    name: ClassVar[str] = "colour_cast"
    towards: str = "red"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.towards not in CAST_CHANNELS:
            raise ValueError(f"ColourCast.towards must be red, green or blue, got {self.towards!r}")

    def sensor_gains(self) -> np.ndarray:
        gains = np.full(3, max(1 - 0.15 * self.severity, 0.05), dtype=np.float32)
        gains[CAST_CHANNELS[self.towards]] = 1 + 0.3 * self.severity
        return gains


@dataclass(frozen=True)
class HeavyCompression(Fault):
    """The encoder was set to a far lower quality: every frame JPEG-compressed at quality
    8 / severity (so 8 at severity 1), with its 8×8 blocks and lost detail."""

    name: ClassVar[str] = "compression"

    @property
    def quality(self) -> int:
        return max(1, round(8 / self.severity))

    def encode(self, frame: np.ndarray) -> np.ndarray:
        return decode_jpeg(encode_jpeg(frame, self.quality))


@dataclass(frozen=True)
class ExposureLoss(Fault):
    """The exposure control failed: 3 × severity stops too little light (`under`, shadows
    crushed to 0) or too much (`over`, highlights clipped at 255)."""

    name: ClassVar[str] = "exposure"
    direction: str = "under"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.direction not in ("under", "over"):
            raise ValueError(
                f"ExposureLoss.direction must be under or over, got {self.direction!r}"
            )

    def sensor_gains(self) -> np.ndarray:
        stops = 3.0 * self.severity * (1 if self.direction == "over" else -1)
        return np.full(3, 2.0**stops, dtype=np.float32)


# Fault name -> its class, for the evaluation and the demo to build them by name.
FAULTS: dict[str, type[Fault]] = {
    fault.name: fault
    for fault in (
        Defocus,
        Smudge,
        Knocked,
        Occlusion,
        Frozen,
        ColourCast,
        HeavyCompression,
        ExposureLoss,
    )
}


# --- Moving objects -------------------------------------------------------------------------


class _Box(NamedTuple):
    """A rectangle of the padded canvas in pixels, from (top, left) up to (bottom, right)."""

    top: int
    left: int
    bottom: int
    right: int

    def grown(self, margin: int) -> _Box:
        return _Box(
            self.top - margin, self.left - margin, self.bottom + margin, self.right + margin
        )

    def intersection(self, other: _Box) -> _Box:
        return _Box(
            max(self.top, other.top),
            max(self.left, other.left),
            min(self.bottom, other.bottom),
            min(self.right, other.right),
        )

    def is_empty(self) -> bool:
        return self.top >= self.bottom or self.left >= self.right

    def within(self, outer: _Box) -> tuple[slice, slice]:
        """This box's place in an array that holds `outer`."""
        return (
            slice(self.top - outer.top, self.bottom - outer.top),
            slice(self.left - outer.left, self.right - outer.left),
        )


@dataclass(frozen=True)
class _MovingObject:
    """Something crossing the scene: a patch of a photograph with a soft oval outline,
    entering on one side and leaving on the other in a straight line."""

    first_frame: int
    last_frame: int  # the first frame it is gone
    start: tuple[float, float]  # its top-left corner (x, y) in frame pixels at first_frame
    end: tuple[float, float]  # and at last_frame
    patch: np.ndarray  # float32 (h, w, 3)
    alpha: np.ndarray  # float32 (h, w, 1): how opaque each pixel is

    def box(self, frame: int) -> _Box:
        """Where it is at `frame`, in pixels of the padded canvas."""
        progress = (frame - self.first_frame) / (self.last_frame - self.first_frame)
        left = PAD + round(self.start[0] + progress * (self.end[0] - self.start[0]))
        top = PAD + round(self.start[1] + progress * (self.end[1] - self.start[1]))
        height, width = self.patch.shape[:2]
        return _Box(top, left, top + height, left + width)


def _paste(piece: np.ndarray, where: _Box, thing: _MovingObject, thing_box: _Box) -> None:
    """`thing`, at `thing_box`, laid over the part of it that falls in `piece` (at `where`)."""
    overlap = thing_box.intersection(where)
    if overlap.is_empty():
        return
    under = piece[overlap.within(where)]
    inside = overlap.within(thing_box)
    under += thing.alpha[inside] * (thing.patch[inside] - under)


def _draw_object(rng: np.random.Generator, slot: int, frame_size: FrameSize) -> _MovingObject:
    """One object crossing the frame within `slot`, cut from a photograph chosen at random."""
    width, height = frame_size
    patch_h = max(4, round(height * rng.uniform(0.1, 0.3)))
    patch_w = max(4, round(patch_h * rng.uniform(0.6, 2.2)))
    source = load_photograph(str(rng.choice(PHOTOGRAPHS)))
    if source.shape[0] < patch_h or source.shape[1] < patch_w:
        source = np.asarray(Image.fromarray(source).resize((patch_w * 2, patch_h * 2)))
    top = int(rng.integers(0, source.shape[0] - patch_h + 1))
    left = int(rng.integers(0, source.shape[1] - patch_w + 1))
    patch = source[top : top + patch_h, left : left + patch_w].astype(np.float32)
    if rng.uniform() < 0.5:
        patch = patch[:, ::-1]
    rows = np.linspace(-1, 1, patch_h)[:, None, None]
    cols = np.linspace(-1, 1, patch_w)[None, :, None]
    alpha = np.clip(4 * (1 - rows**2 - cols**2), 0, 1).astype(np.float32)

    duration = int(rng.integers(30, 150))
    first = slot * OBJECT_SLOT + int(rng.integers(0, OBJECT_SLOT - duration + 1))
    if rng.uniform() < 0.7:  # across
        y0, y1 = rng.uniform(0, height - patch_h, size=2)
        x0, x1 = (-patch_w, width) if rng.uniform() < 0.5 else (width, -patch_w)
    else:  # up or down
        x0, x1 = rng.uniform(0, width - patch_w, size=2)
        y0, y1 = (-patch_h, height) if rng.uniform() < 0.5 else (height, -patch_h)
    return _MovingObject(
        first, first + duration, (float(x0), float(y0)), (float(x1), float(y1)), patch, alpha
    )


# --- Cameras --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Optics:
    """The still scene as the sensor receives it, for one state of the camera (clean or faulty)."""

    fault: Fault | None
    scene: np.ndarray  # float32 (H + 2·PAD, W + 2·PAD, 3): the view of the photograph
    lensed: np.ndarray  # the scene through the lens, same shape
    noise_sigma: np.ndarray  # float32 (H, W, 3): each pixel's noise σ in full light


# Streams of random numbers drawn from a camera's seed, one per use.
_TRAITS, _SHAKE, _NOISE_BANK, _OBJECTS, _PER_FRAME = range(5)


class Camera:
    """One fixed camera: its photograph, its traits, and its frames in time order.

    The scene is made once: the camera's crop of its photograph (`traits.zoom`,
    `traits.centre`, `traits.tilt_deg`) through its lens. Per frame:
    - noise: each pixel's σ is √(read² + shot²·value) (photon noise over a floor);
      in dim light the camera raises its gain, which raises σ by 1/√brightness;
    - shake: the mount sways smoothly (three slow sines, up to `traits.shake_px`)
      and vibrates a little (σ a fifth of that), sampled with bilinear interpolation;
    - moving objects: patches of photographs cross the scene over 30 to 150 frames,
      about `traits.object_rate` per OBJECT_SLOT frames;
    - light: `day` sets the brightness and colour, from `traits.day_phase` at frame 0.
    Consecutive frames are thus nearly identical, never equal.
    """

    def __init__(
        self,
        photograph: str,
        seed: int,
        *,
        name: str | None = None,
        frame_size: FrameSize = FRAME_SIZE,
        day: DayCycle = DayCycle(),
        traits: CameraTraits | None = None,
    ) -> None:
        self.photograph = photograph
        self.seed = seed
        self.name = name or f"{photograph.rsplit('.', 1)[0]}-{seed}"
        self.frame_size = frame_size
        self.day = day
        self.traits = traits or CameraTraits.draw(self._rng(_TRAITS))
        width, height = frame_size
        sway = self._rng(_SHAKE)
        self._sway_periods = sway.uniform(40, 400, size=(2, 3))  # frames, per axis
        self._sway_phases = sway.uniform(0, 2 * math.pi, size=(2, 3))
        self._noise_bank = self._rng(_NOISE_BANK).standard_normal(
            (height + 2 * NOISE_MARGIN, width + 2 * NOISE_MARGIN, 3), dtype=np.float32
        )
        self._objects_in_slot = functools.lru_cache(maxsize=4)(self._draw_objects)
        self._clean_optics = self._make_optics(None)
        # A fault's still scene is made at its first use and kept while it is in use.
        self._fault_optics = functools.lru_cache(maxsize=2)(self._make_optics)

    def __repr__(self) -> str:
        return f"Camera({self.name!r}, photograph={self.photograph!r}, seed={self.seed})"

    def _rng(self, stream: int, *more: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, stream, *more])

    def brightness(self, frame: int) -> float:
        """The day cycle's light on this camera's scene at `frame`."""
        return self.day.brightness(frame, self.traits.day_phase)

    def encode(self, frame: np.ndarray) -> bytes:
        """The frame as this camera's encoder sends it: JPEG at `traits.jpeg_quality`."""
        return encode_jpeg(frame, self.traits.jpeg_quality)

    def frames(
        self, start: int = 0, count: int = 1, fault: Fault | None = None, onset: int = 0
    ) -> Iterator[np.ndarray]:
        """Frames `start` to `start + count - 1` in order, uint8 (H, W, 3); with `fault`
        from frame `onset` on. Frames before the onset are the clean frames."""
        if start < 0 or count < 0 or onset < 0:
            raise ValueError(f"start, count and onset must be >= 0, got {start}, {count}, {onset}")
        return self._frames(start, count, fault, onset)

    def _frames(
        self, start: int, count: int, fault: Fault | None, onset: int
    ) -> Iterator[np.ndarray]:
        width, height = self.frame_size
        signal = np.empty((height, width, 3), dtype=np.float32)
        scratch = np.empty((height + 1, width, 3), dtype=np.float32)
        noise = np.empty_like(signal)
        frozen: np.ndarray | None = None
        for frame in range(start, start + count):
            active = fault if fault is not None and frame >= onset else None
            if active is not None and active.freezes:
                if frozen is None:
                    frozen = self._render(onset, self._clean_optics, signal, scratch, noise)
                yield frozen.copy()
            else:
                optics = self._clean_optics if active is None else self._fault_optics(active)
                yield self._render(frame, optics, signal, scratch, noise)

    def _render(
        self,
        frame: int,
        optics: _Optics,
        signal: np.ndarray,
        scratch: np.ndarray,
        noise: np.ndarray,
    ) -> np.ndarray:
        """Frame `frame` as the camera sends it; `signal`, `scratch`, `noise` are work buffers."""
        rng = self._rng(_PER_FRAME, frame)
        width, height = self.frame_size
        lensed = self._lensed_with_objects(frame, optics)
        _sample_shifted(lensed, *self._shake(frame, rng), out=signal, scratch=scratch)

        brightness = self.brightness(frame)
        gains = brightness * self.day.colour(frame, self.traits.day_phase)
        gains *= np.asarray(self.traits.colour_gains, dtype=np.float32)
        if optics.fault is not None:
            gains *= optics.fault.sensor_gains()
        # A (W·3,) row of gains over (H, W·3) is far faster than (3,) over (H, W, 3).
        rows = signal.reshape(height, width * 3)
        rows *= np.tile(gains.astype(np.float32), width)

        self._noise(optics, rng, out=noise)
        noise *= np.float32(1 / math.sqrt(max(brightness, MIN_GAIN_LIGHT)))
        signal += noise

        np.clip(signal, 0, 255, out=signal)
        encoded = signal.astype(np.uint8)  # truncates, as an ADC does
        return optics.fault.encode(encoded) if optics.fault is not None else encoded

    def _noise(self, optics: _Optics, rng: np.random.Generator, out: np.ndarray) -> np.ndarray:
        """This frame's sensor noise in full light: Gaussian, each pixel's σ from `optics`.

        Drawing 900,000 Gaussian numbers per frame costs more than the rest of the frame,
        so the noise is cut from a bank drawn once: each band of NOISE_BAND rows from its
        own random place. One window for the whole frame would make consecutive frames'
        noise one pattern shifted, which a displacement or a frozen-frame check would see.
        """
        width, height = self.frame_size
        bank_rows = self._noise_bank.shape[0]
        for top in range(0, height, NOISE_BAND):
            rows = slice(top, min(top + NOISE_BAND, height))
            bank_top = int(rng.integers(0, bank_rows - NOISE_BAND + 1))
            bank_left = int(rng.integers(0, 2 * NOISE_MARGIN + 1))
            window = self._noise_bank[
                bank_top : bank_top + rows.stop - rows.start, bank_left : bank_left + width
            ]
            np.multiply(window, optics.noise_sigma[rows], out=out[rows])
        return out

    def _shake(self, frame: int, rng: np.random.Generator) -> tuple[float, float]:
        """How far the view is displaced at `frame`, (x, y) pixels: a smooth sway and a tremor."""
        sway = np.sin(2 * math.pi * frame / self._sway_periods + self._sway_phases).mean(axis=1)
        vibration = rng.normal(0.0, 0.2 * self.traits.shake_px, size=2)
        shift = np.clip(self.traits.shake_px * sway + vibration, -MAX_SHAKE_PX, MAX_SHAKE_PX)
        return float(shift[0]), float(shift[1])

    def _make_optics(self, fault: Fault | None) -> _Optics:
        """The still scene for `fault` (None: the clean camera): view, then lens."""
        mounted = Pose(roll_deg=self.traits.tilt_deg)
        pose = mounted if fault is None else fault.pose(mounted)
        # A fault that leaves the pose as it is shares the clean camera's view.
        scene = self._clean_optics.scene if fault is not None and pose == mounted else None
        if scene is None:
            scene = self._view(pose)
        lensed = self._through_lens(scene, 0, 0, fault)
        width, height = self.frame_size
        in_frame = lensed[PAD : PAD + height, PAD : PAD + width]
        read, shot = self.traits.read_noise, self.traits.shot_noise
        noise_sigma = np.sqrt(read**2 + shot**2 * in_frame).astype(np.float32)
        return _Optics(fault, scene, lensed, noise_sigma)

    def _view(self, pose: Pose) -> np.ndarray:
        """The part of the photograph the camera sees when pointed at `pose`, padded by PAD.

        The view is the frame's rectangle plus KNOCK_ROOM_PX on every side, rolled by
        up to MAX_ROLL_DEG: the smallest scale that fits that in the photograph, times
        `traits.zoom`, with the view placed in the room left at `traits.centre`.
        """
        photograph = Image.fromarray(load_photograph(self.photograph))
        width, height = self.frame_size
        canvas_w, canvas_h = width + 2 * PAD, height + 2 * PAD
        half_w, half_h = canvas_w / 2 + KNOCK_ROOM_PX, canvas_h / 2 + KNOCK_ROOM_PX
        cos_max, sin_max = (
            math.cos(math.radians(MAX_ROLL_DEG)),
            math.sin(math.radians(MAX_ROLL_DEG)),
        )
        fit_w, fit_h = half_w * cos_max + half_h * sin_max, half_w * sin_max + half_h * cos_max
        scale = self.traits.zoom * max(2 * fit_w / photograph.width, 2 * fit_h / photograph.height)
        if scale < 1:  # shrink first, with filtering: the affine transform below would alias
            shrunk = (round(photograph.width * scale), round(photograph.height * scale))
            scale *= photograph.width / shrunk[0]
            photograph = photograph.resize(shrunk, Image.Resampling.LANCZOS)
        room_x = photograph.width / 2 - fit_w / scale
        room_y = photograph.height / 2 - fit_h / scale
        centre_x = photograph.width / 2 + (2 * self.traits.centre[0] - 1) * room_x
        centre_y = photograph.height / 2 + (2 * self.traits.centre[1] - 1) * room_y
        # The affine map takes a canvas pixel (u, v) to the photograph:
        # centre + R(roll) · (u - canvas_w/2 + shift_x, v - canvas_h/2 + shift_y) / scale.
        cos, sin = math.cos(math.radians(pose.roll_deg)), math.sin(math.radians(pose.roll_deg))
        offset_x, offset_y = pose.shift_x - canvas_w / 2, pose.shift_y - canvas_h / 2
        coefficients = (
            cos / scale,
            -sin / scale,
            centre_x + (cos * offset_x - sin * offset_y) / scale,
            sin / scale,
            cos / scale,
            centre_y + (sin * offset_x + cos * offset_y) / scale,
        )
        view = photograph.transform(
            (canvas_w, canvas_h),
            Image.Transform.AFFINE,
            coefficients,
            resample=Image.Resampling.BICUBIC,
        )
        return np.asarray(view, dtype=np.float32)

    def _through_lens(
        self, image: np.ndarray, top: int, left: int, fault: Fault | None
    ) -> np.ndarray:
        """A piece of the padded canvas, whose first pixel is at (`top`, `left`), through the
        lens: the fault's effect, then vignetting (a loss of `traits.vignetting` in the corners)."""
        width, height = self.frame_size
        rows, cols = image.shape[:2]
        y = ((np.arange(top, top + rows) - PAD + 0.5) / height)[:, None, None]
        x = ((np.arange(left, left + cols) - PAD + 0.5) / width)[None, :, None]
        if fault is not None:
            image = fault.through_lens(image, y, x)
        radius_squared = ((2 * x - 1) ** 2 + (2 * y - 1) ** 2) / 2  # 1 in the corners
        return (image * (1 - self.traits.vignetting * radius_squared)).astype(np.float32)

    def _draw_objects(self, slot: int) -> tuple[_MovingObject, ...]:
        rng = self._rng(_OBJECTS, slot)
        count = min(int(rng.poisson(self.traits.object_rate)), 3)
        return tuple(_draw_object(rng, slot, self.frame_size) for _ in range(count))

    def _lensed_with_objects(self, frame: int, optics: _Optics) -> np.ndarray:
        """The lensed scene with the objects of `frame` in it.

        The objects belong in the scene, before the lens; rather than send the whole
        scene through the lens again, only the piece around each object goes: what
        the object changes (its box grown by the lens's reach), made from what the
        lens reads for it (grown once more).
        """
        placed = [
            (thing, thing.box(frame))
            for thing in self._objects_in_slot(frame // OBJECT_SLOT)
            if thing.first_frame <= frame < thing.last_frame
        ]
        if not placed:
            return optics.lensed
        canvas = _Box(0, 0, *optics.scene.shape[:2])
        reach = optics.fault.reach_px if optics.fault is not None else 0
        lensed = optics.lensed.copy()
        for _, box in placed:
            changed = box.grown(reach).intersection(canvas)
            if changed.is_empty():
                continue
            source = changed.grown(reach).intersection(canvas)
            piece = optics.scene[source.within(canvas)].copy()
            for thing, where in placed:
                _paste(piece, source, thing, where)
            through = self._through_lens(piece, source.top, source.left, optics.fault)
            lensed[changed.within(canvas)] = through[changed.within(source)]
        return lensed


def _sample_shifted(
    canvas: np.ndarray, shift_x: float, shift_y: float, out: np.ndarray, scratch: np.ndarray
) -> np.ndarray:
    """The frame seen with the view displaced by (`shift_x`, `shift_y`) pixels, a fraction
    of a pixel included: bilinear interpolation of the padded canvas, first across the
    columns (into `scratch`, one row taller), then down the rows (into `out`)."""
    height, width = out.shape[:2]
    col, row = math.floor(shift_x), math.floor(shift_y)
    across, down = np.float32(shift_x - col), np.float32(shift_y - row)
    top, left = PAD + row, PAD + col
    here = canvas[top : top + height + 1, left : left + width]
    right = canvas[top : top + height + 1, left + 1 : left + width + 1]
    np.subtract(right, here, out=scratch)
    scratch *= across
    scratch += here
    np.subtract(scratch[1:], scratch[:-1], out=out)
    out *= down
    out += scratch[:-1]
    return out


def _camera_seed(fleet_seed: int, index: int) -> int:
    """Camera `index`'s own seed, independent of every other camera's and fleet's."""
    return int(np.random.SeedSequence([fleet_seed, index]).generate_state(1)[0])


class CameraFleet:
    """Fixed cameras under one day cycle, each its own scene, lens, sensor and encoder.

    Camera i looks at PHOTOGRAPHS[i % 8], each through its own crop, so even cameras
    sharing a photograph see different scenes.
    """

    def __init__(
        self,
        cameras: int = 6,
        seed: int = 0,
        *,
        frame_size: FrameSize = FRAME_SIZE,
        day: DayCycle = DayCycle(),
    ) -> None:
        if cameras < 1:
            raise ValueError(f"a fleet needs at least one camera, got {cameras}")
        photographs = [PHOTOGRAPHS[index % len(PHOTOGRAPHS)] for index in range(cameras)]
        self.cameras = tuple(
            Camera(
                photograph,
                _camera_seed(seed, index),
                name=f"cam{index:02d}-{photograph.rsplit('.', 1)[0]}",
                frame_size=frame_size,
                day=day,
            )
            for index, photograph in enumerate(photographs)
        )

    def __len__(self) -> int:
        return len(self.cameras)

    def frames(
        self,
        camera_index: int,
        start: int = 0,
        count: int = 1,
        fault: Fault | None = None,
        onset: int = 0,
    ) -> Iterator[np.ndarray]:
        """Camera `camera_index`'s frames; see `Camera.frames`."""
        return self.cameras[camera_index].frames(start, count, fault, onset)


def frames_over_the_day(
    fleet: CameraFleet,
    cameras: Iterable[int],
    count: int,
    keep: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """`count` clean frames of `cameras`, in turn, spread evenly over the fleet's day
    (training data for a model of the fleet), each as `keep` returns it: resized to the
    model's input, say, so that a training set need not hold its full frames."""
    cameras = list(cameras)
    day_period = fleet.cameras[0].day.period
    starts = np.linspace(0, day_period, count, endpoint=False)
    frames = (
        next(fleet.frames(cameras[index % len(cameras)], int(start)))
        for index, start in enumerate(tqdm(starts, desc="clean frames", unit="frame"))
    )
    return np.stack([keep(frame) if keep is not None else frame for frame in frames])
