"""A source against its own normal: quiet while nothing changes or light drifts slowly,
an alarm within a few frames of an abrupt change, naming the signal that moved."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest

from framedrift.worker.detection.frame_quality import FrameQuality, FrameSignals
from framedrift.worker.detection.own_normal import (
    TILE_PERSISTENCE,
    OwnNormal,
    OwnNormalParameters,
    SignalChange,
    false_alarm_probability,
)
from framedrift.worker.detection.plain_state import StateFields
from framedrift.worker.detection.scores import TILE_NAMES
from tests.detector_fixtures import synthetic_config

PARAMETERS = OwnNormalParameters(ert=1_000_000, refresh_every=4)  # a short warm-up: quick tests
NORMAL = FrameSignals(
    focus=0.8,
    brightness=120.0,
    highlights_clipped=0.0,
    shadows_crushed=0.01,
    contrast=50.0,
    red_cast=0.02,
    blue_cast=-0.03,
    noise=2.0,
)


class Camera:
    """Frames of one still scene with sensor noise: signals jitter by about 1%, the
    thumbnail is the scene plus fresh noise each frame."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.scene = self.rng.uniform(40, 200, size=(48, 64))

    def frame(
        self,
        light: float = 1.0,
        frozen: np.ndarray | None = None,
        tiles_scaled: dict[int, float] | None = None,
        moving_tiles: tuple[int, ...] = (),
        covered: dict[int, float] | None = None,
        **moved: float,
    ) -> tuple[FrameQuality, float, np.ndarray]:
        jitter = {
            name: value * (1 + 0.01 * self.rng.standard_normal())
            for name, value in dataclasses.asdict(NORMAL).items()
        }
        jitter["brightness"] *= light
        signals = FrameSignals(**{**jitter, **moved})
        tiles = 1.0 + 0.02 * self.rng.standard_normal(len(TILE_NAMES))
        for tile, scale in (tiles_scaled or {}).items():
            tiles[tile] *= scale
        error = float(tiles.mean())
        if frozen is not None:
            return FrameQuality(signals, frozen), error, tiles
        noisy = self.scene * light + self.rng.normal(0, 2.0, self.scene.shape)
        for tile in moving_tiles:  # something crossing it: new texture every frame
            rows, columns = divmod(tile, 4)
            noisy[rows * 12 : rows * 12 + 12, columns * 16 : columns * 16 + 16] = self.rng.uniform(
                40, 200, size=(12, 16)
            )
        for tile, grey in (covered or {}).items():  # a flat patch over it, sensor noise on top
            rows, columns = divmod(tile, 4)
            patch = noisy[rows * 12 : rows * 12 + 12, columns * 16 : columns * 16 + 16]
            patch[:] = grey + self.rng.normal(0, 2.0, patch.shape)
        thumbnail = np.clip(noisy, 0, 255).astype(np.uint8)
        return FrameQuality(signals, thumbnail), error, tiles


def run(
    normal: OwnNormal, frames: list[tuple[FrameQuality, float, np.ndarray]]
) -> list[tuple[int, SignalChange]]:
    return [(i, change) for i, frame in enumerate(frames) for change in normal.observe(*frame)]


def test_a_still_camera_and_a_slow_change_of_light_stay_quiet() -> None:
    camera = Camera(seed=1)
    frames = [camera.frame() for _ in range(1_500)]
    # Then the light falls by half over 4,000 frames, as fast as dusk falls in a day of
    # 20,000 frames: daylight, not a fault.
    frames += [camera.frame(light=1.0 - 0.5 * i / 4_000) for i in range(4_000)]
    assert run(OwnNormal(parameters=PARAMETERS), frames) == []


def test_light_rising_faster_than_the_reference_follows_it_stays_quiet() -> None:
    """Light doubling over 50 frames (a cloud moving off): each frame a little brighter
    than the last, so the window lies above the whole reference, but not above the trail
    of frames just before it."""
    camera = Camera(seed=12)
    frames = [camera.frame(light=0.5) for _ in range(PARAMETERS.warmup_frames + 100)]
    frames += [camera.frame(light=0.5 + 0.5 * i / 50) for i in range(50)]
    frames += [camera.frame(light=1.0) for _ in range(100)]

    assert run(OwnNormal(parameters=PARAMETERS), frames) == []


def test_tile_errors_falling_slowly_with_the_light_stay_quiet() -> None:
    """As the morning brightens, a small model's error falls on every tile (less noise):
    a quarter over the warm-up, then more. Two things kept this quiet
    once broken: the tiles' reference must take frames through the warm-up (the first
    frame's frame change of 0 made every noisy tile look moving), and a tile's range
    must follow the trail, since a tile outside its range stops the reference."""
    camera = Camera(seed=21)
    warmup = PARAMETERS.warmup_frames
    scales = [1.0 - 0.25 * i / warmup for i in range(warmup)]
    scales += [0.75 - 0.15 * i / 400 for i in range(400)]
    frames = [camera.frame(tiles_scaled=dict.fromkeys(range(16), scale)) for scale in scales]
    assert run(OwnNormal(parameters=PARAMETERS), frames) == []


def test_a_sudden_loss_of_light_alarms_within_the_required_frames_naming_brightness() -> None:
    camera = Camera(seed=2)
    onset = PARAMETERS.warmup_frames + 300
    frames = [camera.frame() for _ in range(onset)]
    frames += [camera.frame(light=0.5) for _ in range(50)]

    alarms = run(OwnNormal(parameters=PARAMETERS), frames)

    brightness = [(i, change) for i, change in alarms if change.signal == "brightness"]
    assert brightness, alarms
    first, change = brightness[0]
    assert first - onset < PARAMETERS.beyond
    assert change.direction == "down" and change.deviation_sd < -10
    assert all(i >= onset for i, _ in alarms), "alarmed before the fault"


def test_a_frozen_picture_alarms_on_frame_change() -> None:
    camera = Camera(seed=3)
    onset = PARAMETERS.warmup_frames + 100
    frames = [camera.frame() for _ in range(onset)]
    stuck = frames[-1][0].thumbnail
    frames += [camera.frame(frozen=stuck) for _ in range(30)]

    alarms = run(OwnNormal(parameters=PARAMETERS), frames)

    assert [(change.signal, change.direction) for _, change in alarms] == [("frame_change", "down")]


def test_a_local_change_names_its_tiles_only_once_it_has_lasted() -> None:
    """A smudge in the top left corner: two tiles' error rises by half, the rest stay put. A
    tile pages only after `TILE_PERSISTENCE` frames in a row outside its range while it
    held still; then it names those two tiles and no other."""
    camera = Camera(seed=7)
    onset = PARAMETERS.warmup_frames + 100
    frames = [camera.frame() for _ in range(onset)]
    frames += [camera.frame(tiles_scaled={0: 1.5, 1: 1.5}) for _ in range(TILE_PERSISTENCE + 20)]

    alarms = run(OwnNormal(parameters=PARAMETERS), frames)

    (first, _), *_ = alarms
    assert first - onset == TILE_PERSISTENCE - 1
    named = {change.signal for _, change in alarms}
    assert named == {"tile_r0c0", "tile_r0c1"}


def test_an_occluder_the_model_reconstructs_well_is_seen_in_its_tiles_pictures() -> None:
    """A dark patch stuck over two tiles: their errors stay put (the model draws a flat
    patch well), their pictures do not. Paged after `TILE_PERSISTENCE` still frames,
    naming those tiles' pictures and nothing else."""
    camera = Camera(seed=14)
    onset = PARAMETERS.warmup_frames + 100
    frames = [camera.frame() for _ in range(onset)]
    frames += [camera.frame(covered={9: 30.0, 10: 30.0}) for _ in range(TILE_PERSISTENCE + 20)]

    alarms = run(OwnNormal(parameters=PARAMETERS), frames)

    (first, _), *_ = alarms
    assert first - onset == TILE_PERSISTENCE  # its first frame moved: the patch came
    assert {change.signal for _, change in alarms} == {"look_r2c1", "look_r2c2"}


def test_something_dark_passing_slowly_pages_nothing_though_it_barely_moves() -> None:
    """At night a dark object crossing slowly changes a tile by less per frame than the
    sensor's noise does, so the tile counts as still; but what it shows keeps changing
    as it passes (not steady), unlike an occluder's."""
    camera = Camera(seed=15)
    frames = [camera.frame() for _ in range(PARAMETERS.warmup_frames + 100)]
    shade = [120.0 - 1.8 * i for i in range(60)]  # darker and darker as it comes in
    frames += [camera.frame(covered={5: grey}) for grey in shade]
    frames += [camera.frame() for _ in range(50)]

    assert run(OwnNormal(parameters=PARAMETERS), frames) == []


def test_an_object_crossing_a_tile_for_a_while_pages_nothing() -> None:
    """A car passing through a tile for 150 frames, five times the persistence: its error
    is outside the range all along, but the tile moves, as a lens fault's would not."""
    camera = Camera(seed=11)
    frames = [camera.frame() for _ in range(PARAMETERS.warmup_frames + 100)]
    frames += [camera.frame(tiles_scaled={5: 1.8}, moving_tiles=(5,)) for _ in range(150)]
    frames += [camera.frame() for _ in range(100)]

    assert run(OwnNormal(parameters=PARAMETERS), frames) == []


def test_an_object_entering_a_plain_scene_pages_nothing_and_a_cast_behind_it_pages_later() -> None:
    """An object entering raises the frame's contrast as abruptly as a fault would, but
    part of the picture moves meanwhile: frame-wide signals wait for frames in which
    nothing moves locally. A colour cast that begins while an object crosses is paged
    once the object has gone, not lost to the reference meanwhile."""
    camera = Camera(seed=13)
    normal = OwnNormal(parameters=PARAMETERS)
    run(normal, [camera.frame() for _ in range(PARAMETERS.warmup_frames + 100)])
    passing = [camera.frame(contrast=80.0, moving_tiles=(5, 6)) for _ in range(60)]
    assert run(normal, passing) == []
    assert run(normal, [camera.frame() for _ in range(30)]) == []

    cast_while_passing = [camera.frame(red_cast=0.3, moving_tiles=(9,)) for _ in range(80)]
    assert run(normal, cast_while_passing) == []
    alarms = run(normal, [camera.frame(red_cast=0.3) for _ in range(20)])
    assert [change.signal for _, change in alarms] == ["red_cast"]
    # The first frame without the object still moves where it left.
    assert alarms[0][0] == PARAMETERS.beyond


def test_nothing_is_tested_during_warm_up() -> None:
    camera = Camera(seed=4)
    normal = OwnNormal(parameters=PARAMETERS)
    for _ in range(PARAMETERS.warmup_frames - 1):
        assert normal.observe(*camera.frame(light=3.0 if normal.frames % 2 else 0.3)) == []
        assert normal.warming_up or normal.frames >= PARAMETERS.warmup_frames - PARAMETERS.window


def test_a_restored_state_goes_on_exactly_as_the_original() -> None:
    camera = Camera(seed=5)
    onset = PARAMETERS.warmup_frames + 50
    frames = [camera.frame() for _ in range(onset)] + [camera.frame(light=0.4) for _ in range(20)]
    original = OwnNormal(parameters=PARAMETERS)
    run(original, frames[: onset - 10])
    # A deep copy, as the codec's bytes would be: the state shares the detector's arrays.
    stored = copy.deepcopy(original.to_state())
    restored = OwnNormal.from_state(StateFields(stored, "own_normal"))

    assert run(original, frames[onset - 10 :]) == run(restored, frames[onset - 10 :])


@pytest.mark.parametrize(("reference", "window", "beyond"), [(20, 5, 2), (30, 9, 3)])
def test_the_false_alarm_formula_holds_for_any_distribution(
    reference: int, window: int, beyond: int
) -> None:
    """Exchangeable draws from a skewed distribution: the share of tests with `beyond` of
    the window outside the reference's range is what the formula says."""
    rng = np.random.default_rng(6)
    draws = rng.lognormal(0, 1.5, size=(200_000, reference + window))
    old, new = draws[:, :reference], draws[:, reference:]
    above = (new > old.max(axis=1, keepdims=True)).sum(axis=1)
    below = (new < old.min(axis=1, keepdims=True)).sum(axis=1)
    measured = np.mean(np.maximum(above, below) >= beyond)
    expected = false_alarm_probability(reference, window, beyond)
    assert measured == pytest.approx(expected, rel=0.05)


def test_the_warm_up_setting_sets_how_far_the_reference_reaches_back() -> None:
    config = dataclasses.replace(synthetic_config(), warmup_frames=4096)
    assert config.own_normal.refresh_every == 32
    assert config.own_normal.warmup_frames == 4096 + config.own_normal.window
    assert config.fingerprint != synthetic_config().fingerprint


def test_a_change_that_comes_and_goes_frame_by_frame_stays_one_alarm() -> None:
    """Each frame dark by chance, two in three: the count outside the range hovers around
    the required one. The alarm lasts until no frame of the window is outside, so it
    pages once, and no dark frame joins the reference meanwhile (it would make the fault
    the new normal)."""
    camera = Camera(seed=8)
    normal = OwnNormal(parameters=PARAMETERS)
    run(normal, [camera.frame() for _ in range(PARAMETERS.warmup_frames + 100)])
    brightness = OwnNormal.signals.index("brightness")
    dark = np.random.default_rng(9).random(300) < 0.65
    pages, still_alarming = 0, []
    for is_dark in dark:
        changes = normal.observe(*camera.frame(light=0.5 if is_dark else 1.0))
        pages += any(change.signal == "brightness" for change in changes)
        if pages:
            still_alarming.append(bool(normal.alarming[brightness]))

    assert pages == 1 and all(still_alarming)
    assert normal.reference[:, brightness].min() > 100, "a dark frame joined the reference"


def test_a_signal_joining_an_episode_under_way_is_not_paged_again() -> None:
    camera = Camera(seed=10)
    onset = PARAMETERS.warmup_frames + 100
    frames = [camera.frame() for _ in range(onset)]
    frames += [camera.frame(light=0.5) for _ in range(50)]
    frames += [camera.frame(light=0.5, focus=0.3) for _ in range(50)]  # then it defocuses

    alarms = run(OwnNormal(parameters=PARAMETERS), frames)

    assert {index for index, _ in alarms} == {alarms[0][0]}, "paged more than once"
    assert "focus" not in {change.signal for _, change in alarms}
