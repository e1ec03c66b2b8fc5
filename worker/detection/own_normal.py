"""Has this camera changed? Each source against its own recent normal, not the model's.

A fleet's cameras each look at their own scene through their own lens and encoder, so
the model's baseline says whether a camera is *like the training data* (out of domain),
not whether it *changed*. This module answers the second question.

The test, per signal (focus, exposure, colour, noise, a frozen picture, a shifted view,
the reconstruction error, whole and per tile of a 4×4 grid): **at least `beyond` of the
last `window` frames lie outside the range of the source's reference sample**, by more
than a materiality floor.

Why this test:
- **Distribution-free.** Under no change, the window's frames and the reference's are
  exchangeable, and the chance that the `beyond` largest of all of them are new is
  `prod_{t<beyond} (window - t) / (reference + window - t)` whatever the signal's
  distribution (the same below the minimum). So one formula sets `beyond` for the ERT
  for every source and every signal, at once: no per-source calibration, and 10,000
  sources start in no time (`required_beyond`).
- **Fast.** An abrupt fault is outside the range from its first frame: it is seen after
  `beyond` frames (5 to 8 at the usual ERTs).
- **Material.** The floor keeps a real but immaterial wobble (a 1% change of a nearly
  constant signal) quiet, and each signal is tested only on the side where a departure
  is a fault (a frozen picture's frame-to-frame change falls; motion raises it).
- **Abrupt, not gradual.** A signal's range also takes in the `trail`, the
  frames just before the window that lay within the reference's range: a change that
  creeps in (dawn, an object sliding into view) is then followed frame by frame, and
  only a step stands out. Widening the range only lowers the false-alarm chance.

A tile (its reconstruction error, and its picture against the source's first:
`tile_looks`) is tested otherwise: it alarms after `TILE_PERSISTENCE` frames in a row
outside its range *in which it held still* (its frame-to-frame change at the sensor's
noise), and only while its value is steady, since something crossing the scene moves
the tiles it covers, or at least keeps changing what they show, for as long as it is
there, and a smudge or an occluder on the lens does neither. A tile's reference takes
only frames in which it held still. Frame-wide signals, in turn, start to alarm only on
frames in which nothing moved in part of the picture (`_test`).

The reference is the source's own: during a warm-up it takes every `refresh_every`-th
frame until it holds `reference_size` of them (128 frames spanning 2,048 with the
defaults, long enough to have seen objects pass the scene, which take 30 to 150
frames on the evaluation's cameras). After that it
keeps taking them while nothing is alarming, oldest out, so it follows what changes
slowly (daylight) and the test sees only what changes fast against it. A frame joins
the reference only once it has left the test window, so a fault's first frames are
tested before they could ever be taken for normal; while any signal alarms or a tile
is in a run outside, nothing joins. An alarm lasts until no frame of the window is
outside, and a source pages once per episode: signals joining an episode under way are
not paged again. Changes slower than the reference's span (a lens fogging over an hour)
are the model detectors' to see, not this test's.

Autocorrelated frames are not exchangeable (a cloud darkens a hundred frames in a row):
there the formula is optimistic, and the floors and the measurement on time-ordered
camera streams (`framedrift evaluate`) are what keep the false-alarm rate honest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple, Self

import numpy as np

from framedrift.worker.detection.frame_quality import (
    SIGNAL_NAMES as FRAME_SIGNAL_NAMES,
)
from framedrift.worker.detection.frame_quality import (
    THUMBNAIL_LONGEST_SIDE,
    FrameQuality,
    displacement,
    frame_change,
    phase_spectrum,
    tile_changes,
    tile_looks,
)
from framedrift.worker.detection.plain_state import MalformedState, PlainState, StateFields
from framedrift.worker.detection.scores import LOOK_NAMES, TILE_NAMES

# The signals a source is watched on, in the order its arrays keep them: the frame's
# quality signals, then two that compare it with other frames of the source, then the
# model's reconstruction error, whole and per tile.
WATCHED_SIGNALS: tuple[str, ...] = (
    *FRAME_SIGNAL_NAMES,
    "frame_change",
    "displacement",
    "error",
    *TILE_NAMES,
    *LOOK_NAMES,
)


@dataclass(frozen=True)
class Floor:
    """How far outside the reference's range a value must lie to count: `relative` times
    the reference's median magnitude, plus `of_lowest` times its lowest value, plus
    `absolute`, in the signal's own units; and on which side (`up`, `down`) a departure
    is a fault at all."""

    relative: float = 0.0
    absolute: float = 0.0
    of_lowest: float = 0.0
    up: bool = True
    down: bool = True

    def of(self, reference_median: np.ndarray, reference_lowest: np.ndarray) -> np.ndarray:
        return (
            self.relative * np.abs(reference_median)
            + self.of_lowest * np.abs(reference_lowest)
            + self.absolute
        )


# What counts as material, per signal. Relative where a signal has a scale of its own
# (light, detail, noise, the error); absolute for fractions and ratios near zero. One
# side only where the other is what a live scene does anyway; measured on the fleet
# evaluation's clean cameras, where moving objects raised frame-to-frame change, the
# noise estimate (texture reads as noise) and crushed shadows, and moved tile errors
# by tens of percent.
FLOORS: dict[str, Floor] = {
    "focus": Floor(relative=0.15),
    "brightness": Floor(relative=0.08, absolute=2.0),
    "highlights_clipped": Floor(absolute=0.02, down=False),
    "shadows_crushed": Floor(absolute=0.02, down=False),
    "contrast": Floor(relative=0.10, absolute=1.0),
    "red_cast": Floor(absolute=0.06),
    "blue_cast": Floor(absolute=0.06),
    # Heavy compression and frozen or smoothed pictures lower it; a darker scene raises it.
    "noise": Floor(relative=0.30, absolute=0.2, up=False),
    # A frozen camera repeats its picture exactly: its change falls to 0, far below the
    # sensor noise a live one shows frame to frame (below half the reference's lowest,
    # not its median: half the median would lie below zero). Motion raises it: life.
    "frame_change": Floor(of_lowest=0.5, up=False),
    # Fractions of the frame: a view moved by more than 1% of its size, beyond its jitter.
    "displacement": Floor(absolute=0.01, down=False),
    "error": Floor(relative=0.10),
    **{tile: Floor(relative=0.15) for tile in TILE_NAMES},
    # Percent of the tile's level: a picture departs from the reference's, not towards it.
    **{look: Floor(relative=0.25, absolute=2.0, down=False) for look in LOOK_NAMES},
}
# A tile alarms only after this many frames in a row outside its range in which it held
# still, with a steady value: a local fault stays, while the evaluation's clean cameras
# had large dark objects at night cover a tile for 30 frames moving less than the noise
# (the target for an occlusion is a median delay of 50). Frame-wide signals keep the
# fast k-of-9 rule.
TILE_PERSISTENCE = 40
# A tile holds still while its frame-to-frame change (`tile_changes`, grey levels) stays
# within this many times the quietest frame change of the reference (the sensor's noise
# when nothing moves), plus a margin for a thumbnail's rounding.
STILL_MOTION_FACTOR = 2.0
STILL_MOTION_MIN = 0.3
# A tile alarms only while its value over the kept frames (window and trail) spans at
# most this fraction of its level, plus its floor.
STEADY_FRACTION = 0.25
_FRAME_CHANGE = WATCHED_SIGNALS.index("frame_change")
# Frame-wide signals an object crossing the scene cannot move the way a fault does: the
# view's shift is the static scene's (phase correlation), and frame_change is tested
# downwards only. The others wait for frames without local motion to alarm (`_test`).
_UNMOVED_BY_OBJECTS = np.array(
    [name in ("displacement", "frame_change") for name in WATCHED_SIGNALS]
)
_IS_TILE = np.array([name in TILE_NAMES or name in LOOK_NAMES for name in WATCHED_SIGNALS])


def _per_tile(flags: np.ndarray, elsewhere: bool) -> np.ndarray:
    """A flag per tile spread over the watched signals: each tile's error and picture
    take its flag, the frame-wide signals `elsewhere`."""
    spread = np.full(len(WATCHED_SIGNALS), elsewhere)
    spread[_IS_TILE] = np.tile(flags, 2)  # WATCHED_SIGNALS: errors, then looks
    return spread


# Which side of the range each watched signal is tested on, in `WATCHED_SIGNALS` order.
_TESTED_UP = np.array([FLOORS[name].up for name in WATCHED_SIGNALS])
_TESTED_DOWN = np.array([FLOORS[name].down for name in WATCHED_SIGNALS])


def false_alarm_probability(reference_size: int, window: int, beyond: int) -> float:
    """Chance, with no change, that at least `beyond` of `window` new values lie above
    every one of `reference_size` old ones, or below every one (two-sided), per test.

    The `beyond` largest of all values are new ones with this probability, whatever the
    distribution, since every order of exchangeable values is equally likely.

    >>> f"{false_alarm_probability(128, 9, 6):.2e}"
    '2.04e-08'
    """
    one_sided = math.prod((window - t) / (reference_size + window - t) for t in range(beyond))
    return 2.0 * one_sided


def required_beyond(reference_size: int, window: int, rate: float) -> int:
    """The fewest frames of the window that must lie outside the reference's range so
    that a test raises a false alarm at most `rate` times per frame (one test a frame).

    >>> required_beyond(128, 9, 1 / 1_000_000), required_beyond(128, 9, 1 / 10**10)
    (5, 8)
    """
    for beyond in range(1, window + 1):
        if false_alarm_probability(reference_size, window, beyond) <= rate:
            return beyond
    raise ValueError(
        f"no count of {window} frames against {reference_size} reference frames reaches a "
        f"false-alarm rate of {rate:.2g} per frame: a longer window or reference is needed"
    )


@dataclass(frozen=True)
class OwnNormalParameters:
    """The shape of the test (module docstring); `ert` is the source's events between
    false alarms of this question, shared equally by the watched signals."""

    ert: float
    reference_size: int = 128
    refresh_every: int = 16
    window: int = 9
    trail: int = 16

    @property
    def kept_frames(self) -> int:
        """The newest frames a source keeps: the test window and the trail before it."""
        return self.window + self.trail

    @property
    def warmup_frames(self) -> int:
        """Frames until the first test: the reference filled, then one window."""
        return self.reference_size * self.refresh_every + self.window

    @property
    def beyond(self) -> int:
        rate = 1.0 / (self.ert * len(WATCHED_SIGNALS))
        return required_beyond(self.reference_size, self.window, rate)


class FrameReading(NamedTuple):
    """One frame as the test reads it: its watched signals, in `WATCHED_SIGNALS` order,
    and how much each tile changed since the previous frame (`tile_changes`)."""

    values: np.ndarray
    tile_motion: np.ndarray


@dataclass(frozen=True)
class SignalChange:
    """One signal that moved away from the source's normal."""

    signal: str
    direction: str  # "up" or "down"
    recent: float  # the median of the test window
    normal: float  # the reference's median
    deviation_sd: float  # (recent - normal) in the reference's robust standard deviations
    frames_outside: int  # frames outside the reference's range: of the window, or in a row
    required: int  # how many it takes to alarm: k of the window, or TILE_PERSISTENCE in a row


@dataclass(frozen=True)
class OwnReference:
    """What a source's normal is, apart from the frames being tested: the reference
    sample and the picture the view is compared with. An operator's `accept` sets one
    aside for `rollback` to bring back."""

    rows: np.ndarray  # (reference_size, signals)
    count: int
    next_row: int
    thumbnail: np.ndarray | None

    def to_state(self) -> PlainState:
        state: PlainState = {
            "rows": self.rows,
            "count": int(self.count),
            "next_row": int(self.next_row),
        }
        if self.thumbnail is not None:
            state["thumbnail_shape"] = [str(side) for side in self.thumbnail.shape]
            state["thumbnail"] = self.thumbnail
        return state

    @classmethod
    def from_state(cls, fields: StateFields, size: int) -> OwnReference:
        thumbnail = None
        if "thumbnail_shape" in fields.names():
            thumbnail = fields.array("thumbnail", np.uint8, _thumbnail_shape(fields))
        return cls(
            rows=fields.array("rows", np.float32, (size, len(OwnNormal.signals))),
            count=fields.integer("count", low=0, high=size),
            next_row=fields.integer("next_row", low=0, high=size - 1),
            thumbnail=thumbnail,
        )


@dataclass(kw_only=True)
class OwnNormal:
    """A source's own normal and the test against it (module docstring).

    `observe` takes each frame's quality signals, thumbnail and reconstruction errors and
    returns the signals that began to alarm at this frame when the source's episode
    starts there (one page per episode: signals joining later are not returned).
    """

    signals: ClassVar[tuple[str, ...]] = WATCHED_SIGNALS

    parameters: OwnNormalParameters
    frames: int = 0  # frames observed
    # (reference_size, signals): the reference sample, a ring once full
    reference: np.ndarray = field(default=None)  # type: ignore[assignment]
    reference_count: int = 0  # how many reference rows are filled, up to reference_size
    reference_next: int = 0  # the row the next reference frame goes to
    # (window + trail, signals): the last frames, a ring; frame f is in row f % its length
    recent: np.ndarray = field(default=None)  # type: ignore[assignment]
    alarming: np.ndarray = field(default=None)  # type: ignore[assignment]  # (signals,) bool
    # (signals,): how many frames in a row, up to the newest, lay outside the range
    outside_run: np.ndarray = field(default=None)  # type: ignore[assignment]
    # (window + trail, tiles) bool, rows as `recent`: which tiles moved in that frame
    tile_moving: np.ndarray = field(default=None)  # type: ignore[assignment]
    previous_thumbnail: np.ndarray | None = None  # for frame_change
    reference_thumbnail: np.ndarray | None = None  # for displacement: the first frame's
    # Derived from the fields above, kept between frames, never stored: the reference's
    # median, range and floors change only when a frame joins it, and the reference
    # thumbnail's spectrum not at all.
    _summary: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = field(
        default=None, repr=False, compare=False
    )
    _reference_spectrum: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        size, count = self.parameters.reference_size, len(self.signals)
        if self.reference is None:
            self.reference = np.zeros((size, count), np.float32)
        if self.recent is None:
            self.recent = np.zeros((self.parameters.kept_frames, count), np.float32)
        if self.alarming is None:
            self.alarming = np.zeros(count, np.bool_)
        if self.outside_run is None:
            self.outside_run = np.zeros(count, np.int32)
        if self.tile_moving is None:
            self.tile_moving = np.zeros((self.parameters.kept_frames, len(TILE_NAMES)), np.bool_)

    @property
    def warming_up(self) -> bool:
        return self.reference_count < self.parameters.reference_size

    @property
    def alarming_signals(self) -> list[str]:
        """The signals whose alarm lasts at the latest frame (tiles' signals included)."""
        return [self.signals[i] for i in np.flatnonzero(self.alarming)]

    def observe(
        self, quality: FrameQuality, error: float, tile_errors: np.ndarray
    ) -> list[SignalChange]:
        """Take one frame; the signals whose alarm starts here (empty while warming up)."""
        return self.observe_reading(self.read(quality, error, tile_errors))

    def read(self, quality: FrameQuality, error: float, tile_errors: np.ndarray) -> FrameReading:
        """What the test reads of a frame, against the thumbnails this source keeps: the
        first half of `observe`, apart so that an evaluation can replay the second."""
        thumb = quality.thumbnail
        if self.reference_thumbnail is None or self.reference_thumbnail.shape != thumb.shape:
            self._restart(thumb)
        assert self.previous_thumbnail is not None and self.reference_thumbnail is not None
        if self._reference_spectrum is None:
            self._reference_spectrum = phase_spectrum(self.reference_thumbnail)
        moved = displacement(thumb, self.reference_thumbnail, self._reference_spectrum)
        pair = [frame_change(thumb, self.previous_thumbnail), math.hypot(moved.dx, moved.dy)]
        motion = tile_changes(thumb, self.previous_thumbnail)
        looks = tile_looks(thumb, self.reference_thumbnail)
        self.previous_thumbnail = thumb
        frame = [*(getattr(quality.signals, name) for name in FRAME_SIGNAL_NAMES), *pair, error]
        values = np.concatenate(
            [np.array(frame, np.float32), tile_errors.astype(np.float32), looks]
        )
        return FrameReading(values, motion)

    def observe_reading(self, reading: FrameReading) -> list[SignalChange]:
        """The second half of `observe`: the test, on a frame's reading."""
        values = reading.values
        window, kept = self.parameters.window, self.parameters.kept_frames
        # The frame `window` frames back leaves the test window for this one: tested
        # `window` times, it may now join the reference (it stays on in the trail).
        leaving_index = self.frames - window
        leaving = self.recent[leaving_index % kept].copy() if leaving_index >= 0 else None
        leaving_moved = self.tile_moving[leaving_index % kept].copy()
        self.recent[self.frames % kept] = values
        self.tile_moving[self.frames % kept] = (
            reading.tile_motion > self._still_limit() if self.reference_count else False
        )
        self.frames += 1
        testing = not self.warming_up and self.frames >= kept
        changes, held = self._test() if testing else ([], False)
        # Nothing joins while a signal alarms, a tile's run outside is under way, or a
        # frame-wide signal waits out motion to alarm: each may be a fault, which must
        # not become the normal it is judged against.
        settled = not self.alarming.any() and not self.outside_run[_IS_TILE].any() and not held
        joins = leaving_index % self.parameters.refresh_every == 0 and settled
        if leaving is not None and joins:
            self._remember(leaving, leaving_moved)
        return changes

    def _still_limit(self) -> float:
        """A tile's frame-to-frame change up to which it held still (`STILL_MOTION_FACTOR`)."""
        # Of live frames only: a frame change of exactly 0 is a repeated frame, which
        # shows no sensor noise at all. The source's first frame reads so too (it has no
        # frame before it) and stays in the reference until its row is replaced; counted,
        # it made every tile look moving through the warm-up.
        changes = self.reference[: self.reference_count, _FRAME_CHANGE]
        quietest = changes[changes > 0].min(initial=np.inf)
        return float(STILL_MOTION_FACTOR * quietest + STILL_MOTION_MIN)

    def _restart(self, thumb: np.ndarray) -> None:
        """A first frame, or one of another size (the camera's resolution changed): the
        old normal says nothing about the new picture; learn it again."""
        self.frames = self.reference_count = self.reference_next = 0
        self.reference[:] = 0.0
        self.recent[:] = 0.0
        self.alarming[:] = False
        self.outside_run[:] = 0
        self.tile_moving[:] = False
        self.previous_thumbnail = thumb
        self.reference_thumbnail = thumb
        self._summary = self._reference_spectrum = None

    @property
    def current_reference(self) -> OwnReference:
        return OwnReference(
            self.reference.copy(),
            self.reference_count,
            self.reference_next,
            self.reference_thumbnail,
        )

    def relearn(self) -> None:
        """An operator's word that what the source shows now is its normal: the reference
        empties and fills again from the frames that follow, as in the warm-up, against
        the latest picture. Not from the frames kept for the test window: a few seconds
        of a scene say nothing of how much it varies, and the test's false-alarm bound
        (`beyond`) holds for a full reference of `reference_size` frames."""
        self.reference[:] = 0.0
        self.reference_count = self.reference_next = 0
        self.alarming[:] = False
        self.outside_run[:] = 0
        self.reference_thumbnail = self.previous_thumbnail
        self._summary = self._reference_spectrum = None

    def restore(self, normal: OwnReference) -> None:
        """Test against `normal` again (a rollback), from the next frame on."""
        self.reference = normal.rows.copy()
        self.reference_count, self.reference_next = normal.count, normal.next_row
        if normal.thumbnail is not None and (
            self.previous_thumbnail is None
            or normal.thumbnail.shape == self.previous_thumbnail.shape
        ):
            self.reference_thumbnail = normal.thumbnail
        self.alarming[:] = False
        self.outside_run[:] = 0
        self._summary = self._reference_spectrum = None

    def _remember(self, values: np.ndarray, tile_moved: np.ndarray) -> None:
        """`values` join the reference, except a tile's where it moved: a tile is tested
        on frames it held still, against what it looked like holding still. There the
        row keeps the still value it had (during the warm-up: the row before's)."""
        row = self.reference_next
        moved = _per_tile(tile_moved, elsewhere=False)
        if moved.any() and self.reference_count:
            full = self.reference_count == self.parameters.reference_size
            kept_from = self.reference[row if full else row - 1]
            values = np.where(moved, kept_from, values)
        self.reference[row] = values
        self.reference_next = (self.reference_next + 1) % self.parameters.reference_size
        self.reference_count = min(self.reference_count + 1, self.parameters.reference_size)
        self._summary = None

    def _reference_summary(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per signal: the reference's median, lowest and highest value, and the floor."""
        if self._summary is None:
            normal = np.median(self.reference, axis=0)
            lowest, highest = self.reference.min(axis=0), self.reference.max(axis=0)
            floors = np.array(
                [FLOORS[name].of(normal[i], lowest[i]) for i, name in enumerate(self.signals)]
            )
            self._summary = (normal, lowest, highest, floors)
        return self._summary

    def _test(self) -> tuple[list[SignalChange], bool]:
        """The signals whose alarm starts at the newest frame, and whether a frame-wide
        signal has enough of the window outside to alarm but for motion (held back)."""
        normal, lowest, highest, floors = self._reference_summary()
        window, kept = self.parameters.window, self.parameters.kept_frames
        newest_first = [(self.frames - 1 - age) % kept for age in range(kept)]
        tested, trail = self.recent[newest_first[:window]], self.recent[newest_first[window:]]
        # A signal's range follows the trail, the frames just before the
        # window, frame by frame, oldest first, each one that lies within a floor of the
        # range so far widening it: what the day's light does in the frames since the
        # reference last took one is then normal too (dawn brightens a scene by a floor's
        # worth in about 25 frames on the evaluation's cameras, faster than the
        # reference follows), while a step beyond the floor, a fault, never joins the
        # range it is tested against (a flickering fault stays outside). A widened range
        # only lowers the false-alarm chance of `false_alarm_probability`. Tiles too:
        # a tile's error follows the light (less noise as the day brightens), and a
        # tile outside its range stops the reference from taking frames, so without
        # the trail a slow trend would hold it outside until its run alarms. A tile
        # follows only trail frames in which it held still, as its reference takes only
        # those (something crossing it must not widen its range). Not for a
        # signal already alarming, whose alarm lasts while the window stays outside the
        # reference itself.
        # (Only where the window leaves the reference's own range: most frames it does
        # not, and the frame-by-frame walk is the costly part of the test.)
        leaves = ((tested > highest + floors) | (tested < lowest - floors)).any(axis=0)
        followed = np.flatnonzero(leaves & ~self.alarming)
        if followed.size:
            lowest, highest = lowest.copy(), highest.copy()
            low, high, floor = lowest[followed], highest[followed], floors[followed]
            trail_moved = self.tile_moving[newest_first[window:]]
            for frame, moved in zip(trail[::-1, followed], trail_moved[::-1], strict=True):
                still = ~_per_tile(moved, elsewhere=False)[followed]
                joins = (frame >= low - floor) & (frame <= high + floor) & still
                high = np.where(joins, np.maximum(high, frame), high)
                low = np.where(joins, np.minimum(low, frame), low)
            lowest[followed], highest[followed] = low, high
        is_above = (tested > highest + floors) & _TESTED_UP
        is_below = (tested < lowest - floors) & _TESTED_DOWN
        above, below = is_above.sum(axis=0), is_below.sum(axis=0)
        outside = np.maximum(above, below)
        # A frame-wide signal starts to alarm only on frames in which nothing moved in
        # part of the picture: an object entering a dark, plain scene raises its contrast
        # as fast as a fault would. (Its alarm, once started, lasts on every frame.)
        moving = self.tile_moving[newest_first[:window]].sum(axis=1)
        moving_locally = (moving > 0) & (moving <= len(TILE_NAMES) // 2)
        quiet = ~moving_locally[:, None] | _IS_TILE | _UNMOVED_BY_OBJECTS
        counted_outside = np.maximum((is_above & quiet).sum(axis=0), (is_below & quiet).sum(axis=0))
        newest_outside = is_above[0] | is_below[0]
        # A tile's run counts frames outside in which the tile held still: something
        # crossing the scene moves the tiles it covers, a fault on the lens does not.
        still = _per_tile(~self.tile_moving[newest_first[0]], elsewhere=True)
        counted = newest_outside & still
        self.outside_run = np.where(counted, self.outside_run + 1, 0).astype(np.int32)
        # A tile's run must also be steady: a dark object crossing at night moves its
        # tiles by less than the sensor's noise does, but what the tile shows keeps
        # changing as it passes, while an occluder or a smudge stays put.
        tile_due = self.outside_run >= TILE_PERSISTENCE
        if tile_due.any():
            level = np.abs(np.median(self.recent, axis=0))
            tile_due &= np.ptp(self.recent, axis=0) <= STEADY_FRACTION * level + floors
        # An alarm starts at `beyond` frames of the window outside (a tile: a long run of
        # them) and lasts until none of the window is: a change that hovers around the
        # count pages once, not at every crossing.
        due = np.where(_IS_TILE, tile_due, counted_outside >= self.parameters.beyond)
        starting = due & ~self.alarming
        # One page per episode of the source, not per signal: signals that join an
        # episode under way are kept alarming (and out of the reference) but not paged.
        joining = self.alarming.any()
        self.alarming = (self.alarming | starting) & (outside > 0)
        held = bool(((outside >= self.parameters.beyond) & ~_IS_TILE & ~due).any())
        if joining or not starting.any():
            return [], held
        recent = np.median(tested, axis=0)
        spread = 1.4826 * np.median(np.abs(self.reference - normal), axis=0)
        # A signal that never moved in the reference (no clipping, say) has no spread of
        # its own: its floor stands in for it, so the deviation stays finite.
        spread = np.maximum(spread, floors / 3.0 + 1e-9)
        changes = [
            SignalChange(
                signal=self.signals[i],
                direction="up" if above[i] >= below[i] else "down",
                recent=float(recent[i]),
                normal=float(normal[i]),
                deviation_sd=float((recent[i] - normal[i]) / spread[i]),
                frames_outside=int(self.outside_run[i] if _IS_TILE[i] else outside[i]),
                required=TILE_PERSISTENCE if _IS_TILE[i] else self.parameters.beyond,
            )
            for i in np.flatnonzero(starting)
        ]
        return changes, held

    def to_state(self) -> PlainState:
        parameters = self.parameters
        state: PlainState = {
            "ert": float(parameters.ert),
            "reference_size": int(parameters.reference_size),
            "refresh_every": int(parameters.refresh_every),
            "window": int(parameters.window),
            "trail": int(parameters.trail),
            "frames": int(self.frames),
            "reference": self.reference,
            "reference_count": int(self.reference_count),
            "reference_next": int(self.reference_next),
            "recent": self.recent,
            "alarming": self.alarming,
            "outside_run": self.outside_run,
            "tile_moving": self.tile_moving,
        }
        if self.reference_thumbnail is not None and self.previous_thumbnail is not None:
            state["thumbnail_shape"] = [str(side) for side in self.reference_thumbnail.shape]
            state["reference_thumbnail"] = self.reference_thumbnail
            state["previous_thumbnail"] = self.previous_thumbnail
        return state

    @classmethod
    def from_state(cls, fields: StateFields) -> Self:
        parameters = OwnNormalParameters(
            ert=fields.number("ert"),
            reference_size=fields.integer("reference_size", low=1, high=4096),
            refresh_every=fields.integer("refresh_every", low=1),
            window=fields.integer("window", low=1, high=1024),
            trail=fields.integer("trail", low=1, high=1024),
        )
        size, kept, count = parameters.reference_size, parameters.kept_frames, len(cls.signals)
        normal = cls(
            parameters=parameters,
            frames=fields.integer("frames", low=0),
            reference=fields.array("reference", np.float32, (size, count)),
            reference_count=fields.integer("reference_count", low=0, high=size),
            reference_next=fields.integer("reference_next", low=0, high=size - 1),
            recent=fields.array("recent", np.float32, (kept, count)),
            alarming=fields.array("alarming", np.bool_, (count,)),
            outside_run=fields.array("outside_run", np.int32, (count,)),
            tile_moving=fields.array("tile_moving", np.bool_, (kept, len(TILE_NAMES))),
        )
        if "thumbnail_shape" in fields.names():
            shape = _thumbnail_shape(fields)
            normal.reference_thumbnail = fields.array("reference_thumbnail", np.uint8, shape)
            normal.previous_thumbnail = fields.array("previous_thumbnail", np.uint8, shape)
        return normal


def _thumbnail_shape(fields: StateFields) -> tuple[int, int]:
    sides = fields.texts("thumbnail_shape", 2)
    if not all(side.isdigit() and 0 < int(side) <= THUMBNAIL_LONGEST_SIDE for side in sides):
        raise MalformedState(f"own_normal.thumbnail_shape: {sides}")
    return int(sides[0]), int(sides[1])
