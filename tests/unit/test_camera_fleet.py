"""The simulated camera fleet behaves like fixed cameras, and each fault does what it says.

Faulty frames are compared with the clean frame of the same camera at the same index:
both share the noise, the shake and the moving objects, so what differs is the fault.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
from PIL import Image

from framedrift.producers.camera_fleet import (
    FAULTS,
    PHOTOGRAPHS,
    Camera,
    CameraFleet,
    ColourCast,
    DayCycle,
    Defocus,
    ExposureLoss,
    Fault,
    Frozen,
    HeavyCompression,
    Knocked,
    Occlusion,
    Region,
    Smudge,
    decode_jpeg,
    encode_jpeg,
    frames_over_the_day,
    load_photograph,
)
from framedrift.producers.camera_stream import CameraStreamPlan, camera_records

SEED = 11
MOTORCYCLE = 4  # the fleet's camera used for most fault checks: a detailed, well-lit scene


@pytest.fixture(scope="module")
def fleet() -> CameraFleet:
    return CameraFleet(cameras=6, seed=SEED)


def noon(camera: Camera) -> int:
    """A frame index at midday for `camera`, where noise does not drown the detail."""
    return round((0.25 - camera.traits.day_phase) % 1.0 * camera.day.period)


def frame_at(fleet: CameraFleet, index: int, frame: int, fault: Fault | None = None) -> np.ndarray:
    return next(fleet.frames(index, start=frame, fault=fault))


def grey(frame: np.ndarray) -> np.ndarray:
    return frame.astype(np.float64).mean(axis=2)


def laplacian(frame: np.ndarray) -> np.ndarray:
    image = grey(frame)
    return (
        image[1:-1, :-2]
        + image[1:-1, 2:]
        + image[:-2, 1:-1]
        + image[2:, 1:-1]
        - 4 * image[1:-1, 1:-1]
    )


def correlation(first: np.ndarray, second: np.ndarray) -> float:
    return float(np.corrcoef(grey(first).ravel(), grey(second).ravel())[0, 1])


def region_slices(region: Region, frame: np.ndarray) -> tuple[slice, slice]:
    height, width = frame.shape[:2]
    return (
        slice(round(region.top * height), round(region.bottom * height)),
        slice(round(region.left * width), round(region.right * width)),
    )


def change_inside_and_outside(
    clean: np.ndarray, faulty: np.ndarray, region: Region
) -> tuple[float, float]:
    """Mean absolute change of the pixels inside `region`, and of those outside."""
    difference = np.abs(faulty.astype(np.float64) - clean).mean(axis=2)
    inside = np.zeros(difference.shape, dtype=bool)
    inside[region_slices(region, clean)] = True
    return float(difference[inside].mean()), float(difference[~inside].mean())


def displacement(reference: np.ndarray, moved: np.ndarray) -> tuple[int, int]:
    """How far the content of `moved` lies from `reference`, (x, y) pixels, by phase correlation."""
    first, second = grey(reference), grey(moved)
    window = np.outer(np.hanning(first.shape[0]), np.hanning(first.shape[1]))
    spectrum = np.fft.fft2((second - second.mean()) * window) * np.conj(
        np.fft.fft2((first - first.mean()) * window)
    )
    surface = np.fft.ifft2(spectrum / (np.abs(spectrum) + 1e-9)).real
    row, col = np.unravel_index(np.argmax(surface), surface.shape)
    height, width = surface.shape
    return (col - width if col > width // 2 else col), (row - height if row > height // 2 else row)


# --- The photographs and the fleet ---------------------------------------------------------


def test_the_shipped_photographs_are_distinct_colour_photographs() -> None:
    photographs = [load_photograph(name) for name in PHOTOGRAPHS]
    assert len(photographs) >= 6
    for name, photograph in zip(PHOTOGRAPHS, photographs, strict=True):
        assert photograph.dtype == np.uint8 and photograph.shape[2] == 3, name
        channels = photograph.astype(np.int16)
        assert np.abs(channels[..., 0] - channels[..., 2]).mean() > 5, f"{name} looks grey"
    for first, second in itertools.combinations(photographs, 2):
        assert first.shape != second.shape or not np.array_equal(first, second)


def test_frames_are_uint8_rgb_of_the_frame_size(fleet: CameraFleet) -> None:
    frame = frame_at(fleet, 0, 0)
    assert frame.shape == (480, 640, 3) and frame.dtype == np.uint8
    small = CameraFleet(cameras=1, seed=SEED, frame_size=(160, 96))
    assert frame_at(small, 0, 0).shape == (96, 160, 3)


def test_the_same_seed_gives_the_same_frames_and_another_seed_others(fleet: CameraFleet) -> None:
    again = CameraFleet(cameras=2, seed=SEED)
    other = CameraFleet(cameras=2, seed=SEED + 1)
    for first, second in zip(fleet.frames(1, 0, 5), again.frames(1, 0, 5), strict=True):
        assert np.array_equal(first, second)
    assert not np.array_equal(frame_at(fleet, 1, 0), frame_at(other, 1, 0))


def test_a_frame_made_alone_equals_the_same_frame_made_in_sequence(fleet: CameraFleet) -> None:
    *_, in_sequence = fleet.frames(2, start=230, count=20)  # across the slot at frame 240
    assert np.array_equal(frame_at(fleet, 2, 249), in_sequence)


def test_consecutive_clean_frames_are_nearly_identical_but_never_equal(fleet: CameraFleet) -> None:
    for index, camera in enumerate(fleet.cameras):
        frames = list(fleet.frames(index, start=noon(camera), count=6))
        for before, after in itertools.pairwise(frames):
            assert not np.array_equal(before, after), camera.name
            assert correlation(before, after) > 0.9, camera.name
            assert np.abs(before.astype(np.int16) - after).mean() < 6, camera.name


def test_distinct_cameras_see_distinct_scenes() -> None:
    fleet = CameraFleet(cameras=9, seed=SEED)  # camera 8 looks at camera 0's photograph again
    frames = [frame_at(fleet, index, 0) for index in range(len(fleet))]
    for (first_index, first), (second_index, second) in itertools.combinations(
        enumerate(frames), 2
    ):
        assert correlation(first, second) < 0.6, (first_index, second_index)


def test_moving_objects_come_and_go(fleet: CameraFleet) -> None:
    camera = fleet.cameras[MOTORCYCLE]
    still = dataclasses.replace(camera.traits, shake_px=0.0)
    steady = Camera(
        camera.photograph,
        camera.seed,
        frame_size=(160, 120),
        traits=still,
        day=DayCycle(night_level=1.0),  # constant light: only objects and noise change
    )
    frames = np.stack([grey(frame) for frame in steady.frames(start=0, count=3 * 240)])
    change = np.abs(frames - np.median(frames, axis=0)).mean(axis=(1, 2))
    busy = change > 3 * np.median(change)
    assert 0.05 < busy.mean() < 0.95  # objects present in some frames, absent in others


# --- Light and noise ----------------------------------------------------------------------------


def test_the_day_cycle_moves_brightness_over_a_cycle_and_returns() -> None:
    day = DayCycle(period=400, night_level=0.3)
    fleet = CameraFleet(cameras=1, seed=SEED, day=day)
    means = [frame_at(fleet, 0, frame).mean() for frame in range(0, 401, 25)]
    assert max(means) > 2.0 * min(means)  # day and night
    assert min(means) > 0.2 * max(means)  # never total darkness by default
    assert means[-1] == pytest.approx(means[0], rel=0.03)  # a cycle later, the same light


def test_night_can_be_made_completely_dark_only_when_asked() -> None:
    assert DayCycle(night_level=0.0).brightness(15_000) < 1e-3
    assert DayCycle().brightness(15_000) == pytest.approx(0.3, abs=1e-3)


def test_noise_grows_when_the_light_falls(fleet: CameraFleet) -> None:
    camera = fleet.cameras[MOTORCYCLE]
    still = dataclasses.replace(camera.traits, shake_px=0.0, object_rate=0.0)
    steady = Camera(camera.photograph, camera.seed, traits=still)

    def noise_sigma(frame: int) -> float:
        first, second = (grey(image) for image in steady.frames(frame, count=2))
        return float(np.std(second - first) / np.sqrt(2))

    midnight = noon(steady) + steady.day.period // 2
    assert noise_sigma(midnight) > 1.3 * noise_sigma(noon(steady)) > 0


# --- Faults ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_frames_before_the_onset_are_the_clean_frames(fleet: CameraFleet, name: str) -> None:
    fault = FAULTS[name]()
    faulty = list(fleet.frames(MOTORCYCLE, start=100, count=4, fault=fault, onset=102))
    clean = list(fleet.frames(MOTORCYCLE, start=100, count=4))
    assert np.array_equal(faulty[0], clean[0]) and np.array_equal(faulty[1], clean[1])
    if not fault.freezes:  # a frozen stream's first frozen frame is the clean one
        assert not np.array_equal(faulty[2], clean[2])


def test_local_faults_name_their_region_and_global_ones_none() -> None:
    assert Smudge(corner="bottom-left").region == Region(0.0, 0.5, 0.5, 1.0)
    region = Occlusion(centre=(0.25, 0.3)).region
    assert 0 <= region.left < 0.25 < region.right <= 1 and 0 <= region.top < 0.3 < region.bottom
    assert (region.right - region.left) * (region.bottom - region.top) == pytest.approx(0.1)
    for fault in (Defocus(), Knocked(), Frozen(), ColourCast(), HeavyCompression(), ExposureLoss()):
        assert fault.region is None


def test_defocus_lowers_the_sharpness_of_every_camera_by_day(fleet: CameraFleet) -> None:
    for index, camera in enumerate(fleet.cameras):
        clean = frame_at(fleet, index, noon(camera))
        blurred = frame_at(fleet, index, noon(camera), Defocus())
        assert laplacian(blurred).var() < 0.5 * laplacian(clean).var(), camera.name


def test_a_smudge_blurs_and_hazes_its_corner_only(fleet: CameraFleet) -> None:
    frame = noon(fleet.cameras[MOTORCYCLE])
    clean = frame_at(fleet, MOTORCYCLE, frame)
    for corner in ("top-left", "bottom-right"):
        smudge = Smudge(corner=corner)
        smudged = frame_at(fleet, MOTORCYCLE, frame, smudge)
        inside, outside = change_inside_and_outside(clean, smudged, smudge.region)
        assert inside > 5 and inside > 20 * outside, corner
        rows, cols = region_slices(smudge.region, clean)
        corner_sharpness = laplacian(clean[rows, cols]).var()
        assert laplacian(smudged[rows, cols]).var() < 0.7 * corner_sharpness, corner


def test_an_occlusion_covers_its_region_only(fleet: CameraFleet) -> None:
    frame = noon(fleet.cameras[MOTORCYCLE])
    clean = frame_at(fleet, MOTORCYCLE, frame)
    occlusion = Occlusion(centre=(0.3, 0.6))
    occluded = frame_at(fleet, MOTORCYCLE, frame, occlusion)
    inside, outside = change_inside_and_outside(clean, occluded, occlusion.region)
    assert inside > 20 and inside > 20 * outside
    rows, cols = region_slices(occlusion.region, clean)
    covered = grey(occluded[rows, cols])[10:-10, 10:-10]  # its core, past the soft edge
    assert covered.std() < 0.5 * grey(clean[rows, cols]).std()
    later = next(fleet.frames(MOTORCYCLE, start=frame + 500, fault=occlusion, onset=frame))
    assert grey(later[rows, cols])[10:-10, 10:-10].std() == pytest.approx(covered.std(), rel=0.5)


def without_objects(camera: Camera) -> Camera:
    """The same camera with nothing crossing its scene, for displacement checks."""
    traits = dataclasses.replace(camera.traits, object_rate=0.0)
    return Camera(camera.photograph, camera.seed, traits=traits)


def test_consecutive_frames_show_no_displacement(fleet: CameraFleet) -> None:
    """Noise cut from one bank must not make consecutive frames look shifted."""
    for camera in fleet.cameras:
        still = without_objects(camera)
        for before, after in itertools.pairwise(still.frames(noon(still), count=4)):
            assert displacement(before, after) == (0, 0), camera.name


def test_a_knocked_camera_sees_its_scene_shifted_for_good(fleet: CameraFleet) -> None:
    camera = without_objects(fleet.cameras[MOTORCYCLE])
    onset = noon(camera)
    # Against an earlier frame: the same frame index would share the noise and match at (0, 0).
    reference = next(camera.frames(onset - 1))
    knocks = (Knocked(), Knocked(severity=1.5, direction_deg=120.0), Knocked(0.5, 250.0))
    for knock in knocks:
        shift_x, shift_y = knock.shift_px
        for later in (0, 500):  # it persists
            knocked = next(camera.frames(onset + later, fault=knock, onset=onset))
            moved_x, moved_y = displacement(reference, knocked)
            # The camera turned one way, so its scene moved the other way in the frame;
            # the roll of `severity` degrees blurs the estimate by a pixel or two.
            assert abs(moved_x + shift_x) <= 3 and abs(moved_y + shift_y) <= 3, (knock, later)


def test_a_frozen_stream_repeats_the_onset_frame_byte_for_byte(fleet: CameraFleet) -> None:
    frames = list(fleet.frames(0, start=50, count=30, fault=Frozen(), onset=55))
    clean = list(fleet.frames(0, start=50, count=30))
    assert all(np.array_equal(frozen, clean[5]) for frozen in frames[5:])
    assert all(
        np.array_equal(before, after) for before, after in zip(frames[:5], clean[:5], strict=True)
    )
    assert not any(np.array_equal(clean[5], other) for other in clean[6:])
    assert len({encode_jpeg(frame, 90) for frame in frames[5:]}) == 1
    frames[6][0, 0] = 0  # a consumer changing its copy changes no other frame
    assert np.array_equal(frames[7], clean[5])


def test_a_colour_cast_moves_the_channel_means(fleet: CameraFleet) -> None:
    frame = noon(fleet.cameras[MOTORCYCLE])
    clean = frame_at(fleet, MOTORCYCLE, frame).reshape(-1, 3).mean(axis=0)
    for towards, channel in (("red", 0), ("blue", 2)):
        cast = frame_at(fleet, MOTORCYCLE, frame, ColourCast(towards=towards))
        ratio = cast.reshape(-1, 3).mean(axis=0) / clean
        others = [ratio[other] for other in range(3) if other != channel]
        assert ratio[channel] > 1.15 and max(others) < 0.92, (towards, ratio)


def test_heavy_compression_adds_8x8_blocks_and_loses_detail(fleet: CameraFleet) -> None:
    frame = noon(fleet.cameras[MOTORCYCLE])
    clean = frame_at(fleet, MOTORCYCLE, frame)
    compressed = frame_at(fleet, MOTORCYCLE, frame, HeavyCompression())

    def blockiness(image: np.ndarray) -> float:
        """Steps across the 8-pixel block borders against steps elsewhere."""
        steps = np.abs(np.diff(grey(image), axis=1))
        on_border = np.arange(steps.shape[1]) % 8 == 7
        return steps[:, on_border].mean() / steps[:, ~on_border].mean()

    def detail_within_blocks(image: np.ndarray) -> float:
        edges = laplacian(image)  # its pixel (r, c) is the image's (r + 1, c + 1)
        rows = np.isin((np.arange(edges.shape[0]) + 1) % 8, [2, 3, 4, 5])
        cols = np.isin((np.arange(edges.shape[1]) + 1) % 8, [2, 3, 4, 5])
        return edges[np.ix_(rows, cols)].var()

    assert blockiness(clean) == pytest.approx(1.0, abs=0.1)
    assert blockiness(compressed) > 1.8
    assert detail_within_blocks(compressed) < 0.7 * detail_within_blocks(clean)


def test_exposure_loss_clips_the_shadows_or_the_highlights(fleet: CameraFleet) -> None:
    frame = noon(fleet.cameras[MOTORCYCLE])
    clean = frame_at(fleet, MOTORCYCLE, frame)
    under = frame_at(fleet, MOTORCYCLE, frame, ExposureLoss(direction="under"))
    over = frame_at(fleet, MOTORCYCLE, frame, ExposureLoss(direction="over"))
    assert np.percentile(clean, 99) > 128 and np.percentile(under, 99) < 64  # crushed
    assert (under == 0).mean() > 5 * max((clean == 0).mean(), 1e-3)
    assert (over == 255).mean() > 0.3 > 100 * (clean == 255).mean()


def test_encode_jpeg_gives_jpeg_bytes_smaller_at_lower_quality(fleet: CameraFleet) -> None:
    frame = frame_at(fleet, 0, 0)
    fine, coarse = encode_jpeg(frame, 90), encode_jpeg(frame, 10)
    assert fine[:2] == b"\xff\xd8" and len(coarse) < len(fine) / 2
    assert decode_jpeg(fine).shape == frame.shape
    assert fleet.cameras[0].encode(frame) == encode_jpeg(
        frame, fleet.cameras[0].traits.jpeg_quality
    )


def test_invalid_settings_are_refused(fleet: CameraFleet) -> None:
    with pytest.raises(ValueError, match="severity"):
        Defocus(severity=0)
    with pytest.raises(ValueError, match="corner"):
        Smudge(corner="middle")
    with pytest.raises(ValueError, match="night_level"):
        DayCycle(night_level=1.5)
    with pytest.raises(ValueError, match="camera"):
        CameraFleet(cameras=0)
    with pytest.raises(ValueError, match="start"):
        fleet.frames(0, start=-1)  # at the call, not at the first frame


def test_a_camera_stream_sends_each_cameras_frames_in_turn_with_its_fault_from_the_onset() -> None:
    plan = CameraStreamPlan(
        cameras=2,
        frames_per_camera=3,
        faults={"camera-001": Frozen()},
        onset=1,
        frame_size=(64, 48),
        start_frame=100,
    )
    records = list(camera_records(plan))
    headers = [dict(record.headers) for record in records]
    assert [h["event_id"].decode() for h in headers] == [
        "camera-000-0000000",
        "camera-001-0000000",
        "camera-000-0000001",
        "camera-001-0000001",
        "camera-000-0000002",
        "camera-001-0000002",
    ]
    assert [record.key for record in records[:2]] == [b"camera-000", b"camera-001"]
    assert {h["encoding"] for h in headers} == {b"jpeg"}
    frames = [decode_jpeg(record.value) for record in records]
    assert frames[0].shape == (48, 64, 3)
    clean, frozen = frames[0::2], frames[1::2]
    assert not np.array_equal(clean[1], clean[2])  # a live camera
    assert np.array_equal(frozen[1], frozen[2])  # frozen from its onset on
    assert not np.array_equal(frozen[0], frozen[1])  # and live before it


def test_a_camera_stream_refuses_a_fault_on_a_camera_it_does_not_have() -> None:
    with pytest.raises(ValueError, match="camera-009"):
        CameraStreamPlan(cameras=2, faults={"camera-009": Frozen()})


def test_training_frames_spread_over_the_day_as_kept() -> None:
    fleet = CameraFleet(2, seed=SEED, frame_size=(160, 120), day=DayCycle(period=100))

    def keep(frame: np.ndarray) -> np.ndarray:
        return np.asarray(Image.fromarray(frame).reduce(5))

    frames = frames_over_the_day(fleet, [0, 1], 4, keep)
    assert frames.shape == (4, 24, 32, 3)
    assert np.array_equal(frames[1], keep(next(fleet.frames(1, 25))))  # camera 1, a quarter in
