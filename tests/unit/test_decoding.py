"""Every input format decodes; every kind of bad input is rejected with a named reason."""

from __future__ import annotations

import base64
import io
import json
from datetime import UTC, datetime

import numpy as np
import pytest
from PIL import Image

from framedrift.producers.events import encode_image, image_event_record
from framedrift.worker.stream.decoding import (
    JPEG_DECODED_LONGEST_SIDE,
    DecodingLimits,
    ImageTooLarge,
    ImageTooSmall,
    InvalidEvent,
    InvalidSourceId,
    MalformedEvent,
    MissingSourceKey,
    RecordTooLarge,
    SourceKeyMismatch,
    UndecodableImage,
    UnsupportedSchemaVersion,
    decode_record,
)
from tests.hostile_payloads import png_claiming

LIMITS = DecodingLimits(max_record_bytes=1 << 20, max_image_pixels=4096)
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
IMAGE = (np.arange(28 * 28) % 256).astype(np.uint8).reshape(28, 28)


def json_event(**image_fields: object) -> bytes:
    return json.dumps(
        {
            "schema_version": 1,
            "event_id": "e1",
            "source_id": "cam-1",
            "timestamp": NOW.isoformat(),
            "image": image_fields,
        }
    ).encode()


@pytest.mark.parametrize("value_format", ["json", "binary"])
@pytest.mark.parametrize("encoding", ["png", "raw"])
def test_lossless_formats_round_trip_the_exact_pixels(value_format: str, encoding: str) -> None:
    record = image_event_record(IMAGE, "cam-1", "e1", NOW, value_format, encoding)  # type: ignore[arg-type]
    decoded = decode_record(record.key, record.value, record.headers, LIMITS)
    assert (decoded.source_id, decoded.event_id, decoded.timestamp) == ("cam-1", "e1", NOW)
    np.testing.assert_array_equal(decoded.image, IMAGE)


@pytest.mark.parametrize("value_format", ["json", "binary"])
def test_jpeg_decodes_close_to_the_original(value_format: str) -> None:
    smooth = np.tile(np.linspace(0, 255, 28, dtype=np.uint8), (28, 1))
    record = image_event_record(smooth, "cam-1", "e1", NOW, value_format, "jpeg")  # type: ignore[arg-type]
    decoded = decode_record(record.key, record.value, record.headers, LIMITS)
    assert np.abs(decoded.image.astype(int) - smooth).mean() < 3


@pytest.fixture(scope="module")
def camera_frame_720p() -> np.ndarray:
    """A 1280×720 frame of a simulated camera: a photograph with texture and noise."""
    from framedrift.producers.camera_fleet import CameraFleet

    return next(CameraFleet(1, seed=3, frame_size=(1280, 720)).frames(0, start=5000))


def decoded_binary(frame: np.ndarray, encoding: str) -> np.ndarray:
    record = image_event_record(frame, "cam-1", "e1", NOW, "binary", encoding)  # type: ignore[arg-type]
    large = DecodingLimits(max_record_bytes=1 << 24, max_image_pixels=1 << 22)
    return decode_record(record.key, record.value, record.headers, large).image


def test_a_large_jpeg_decodes_at_reduced_size_like_a_full_decode_averaged(
    camera_frame_720p: np.ndarray,
) -> None:
    """At twice `JPEG_DECODED_LONGEST_SIDE` or more, libjpeg's scaled decoding: within a
    third of a grey level of decoding in full and averaging 2×2 blocks, on average, and
    within 4 levels for 99% of the pixels (sharp edges differ most)."""
    reduced = decoded_binary(camera_frame_720p, "jpeg")
    assert reduced.shape == (360, 640, 3) and JPEG_DECODED_LONGEST_SIDE == 640
    jpeg = encode_image(camera_frame_720p, "jpeg")
    with Image.open(io.BytesIO(jpeg)) as image:
        averaged = np.asarray(image.convert("RGB").reduce(2)).astype(int)
    difference = np.abs(reduced.astype(int) - averaged)
    assert difference.mean() < 0.5 and np.percentile(difference, 99) <= 4


def test_smaller_jpegs_and_large_pngs_decode_whole(camera_frame_720p: np.ndarray) -> None:
    assert decoded_binary(camera_frame_720p[:480, :640], "jpeg").shape == (480, 640, 3)
    assert decoded_binary(camera_frame_720p, "png").shape == (720, 1280, 3)
    strip = np.ascontiguousarray(camera_frame_720p[:8])  # 1280×8: halved, it would be refused
    assert decoded_binary(strip, "jpeg").shape == (8, 1280, 3)


def test_rgb_png_and_float32_raw_decode_with_their_channels() -> None:
    rgb = np.zeros((8, 8, 3), dtype=np.uint8)
    rgb[..., 0] = 255
    record = image_event_record(rgb, "cam-1", "e1", NOW, "json", "png")
    assert decode_record(b"cam-1", record.value, [], LIMITS).image.shape == (8, 8, 3)
    pixels = np.full((8, 8), 0.25, dtype=np.float32)
    value = json_event(
        encoding="raw",
        data=base64.b64encode(pixels.tobytes()).decode(),
        shape=[8, 8],
        dtype="float32",
    )
    np.testing.assert_array_equal(decode_record(b"cam-1", value, [], LIMITS).image, pixels)


def test_an_image_smaller_than_8_by_8_is_refused_with_its_size() -> None:
    record = image_event_record(np.zeros((4, 12), np.uint8), "cam-1", "e1", NOW, "json", "png")
    with pytest.raises(ImageTooSmall, match="12×4"):
        decode_record(b"cam-1", record.value, [], LIMITS)


BAD_INPUTS = {
    "not JSON": (b"{not json", [], MalformedEvent),
    "JSON but not an object": (b"[1, 2]", [], MalformedEvent),
    # Found by hypothesis: a list is unhashable, and True == 1 in Python.
    "schema version that is a list": (
        json.dumps({"schema_version": []}).encode(),
        [],
        UnsupportedSchemaVersion,
    ),
    "schema version true": (
        json.dumps({"schema_version": True}).encode(),
        [],
        UnsupportedSchemaVersion,
    ),
    "unknown schema version": (
        json.dumps({"schema_version": 9}).encode(),
        [],
        UnsupportedSchemaVersion,
    ),
    "missing event_id": (
        json.dumps(
            {
                "schema_version": 1,
                "source_id": "cam-1",
                "timestamp": NOW.isoformat(),
                "image": {"encoding": "png", "data": ""},
            }
        ).encode(),
        [],
        MalformedEvent,
    ),
    "invalid base64": (json_event(encoding="png", data="%%%not-base64%%%"), [], UndecodableImage),
    "empty image": (json_event(encoding="png", data=""), [], UndecodableImage),
    "truncated PNG": (
        json_event(encoding="png", data=base64.b64encode(encode_image(IMAGE, "png")[:60]).decode()),
        [],
        UndecodableImage,
    ),
    "decompression bomb": (
        json_event(encoding="png", data=base64.b64encode(png_claiming(50_000, 50_000)).decode()),
        [],
        ImageTooLarge,
    ),
    "PNG bytes labelled jpeg": (
        json_event(encoding="jpeg", data=base64.b64encode(encode_image(IMAGE, "png")).decode()),
        [],
        UndecodableImage,
    ),
    "raw with the wrong byte count": (
        json_event(
            encoding="raw", data=base64.b64encode(b"\0" * 10).decode(), shape=[4, 4], dtype="uint8"
        ),
        [],
        UndecodableImage,
    ),
    "raw with an unknown dtype": (
        json_event(
            encoding="raw", data=base64.b64encode(b"\0" * 16).decode(), shape=[4, 4], dtype="int64"
        ),
        [],
        MalformedEvent,
    ),
    "raw with too many pixels": (
        json_event(encoding="raw", data="AA==", shape=[1000, 1000], dtype="uint8"),
        [],
        ImageTooLarge,
    ),
    "raw float32 with NaN": (
        json_event(
            encoding="raw",
            data=base64.b64encode(np.full(16, np.nan, np.float32).tobytes()).decode(),
            shape=[4, 4],
            dtype="float32",
        ),
        [],
        UndecodableImage,
    ),
    "raw float32 with infinity": (
        json_event(
            encoding="raw",
            data=base64.b64encode(np.full(16, np.inf, np.float32).tobytes()).decode(),
            shape=[4, 4],
            dtype="float32",
        ),
        [],
        UndecodableImage,
    ),
    "raw float32 outside [0, 1]": (
        json_event(
            encoding="raw",
            data=base64.b64encode(np.full(16, 3.0, np.float32).tobytes()).decode(),
            shape=[4, 4],
            dtype="float32",
        ),
        [],
        UndecodableImage,
    ),
    "oversized record": (b"x" * (LIMITS.max_record_bytes + 1), [], RecordTooLarge),
    "tombstone": (None, [], MalformedEvent),
    "binary with a missing header": (
        encode_image(IMAGE, "png"),
        [("schema_version", b"1"), ("source_id", b"cam-1")],
        MalformedEvent,
    ),
    "binary with an unknown version": (
        encode_image(IMAGE, "png"),
        [("schema_version", b"2")],
        UnsupportedSchemaVersion,
    ),
    "binary with a non-UTF-8 header": (
        encode_image(IMAGE, "png"),
        [("schema_version", b"1"), ("event_id", b"\xff\xfe")],
        MalformedEvent,
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_rejected_with_its_reason(case: str) -> None:
    value, headers, expected = BAD_INPUTS[case]
    with pytest.raises(expected) as raised:
        decode_record(b"cam-1", value, headers, LIMITS)
    assert str(raised.value), "the dead-letter record needs a message"
    assert isinstance(raised.value, InvalidEvent)


def test_png_over_the_pixel_limit_is_refused_from_its_header() -> None:
    big = Image.new("L", (100, 100))
    buffer = io.BytesIO()
    big.save(buffer, format="PNG")
    value = json_event(encoding="png", data=base64.b64encode(buffer.getvalue()).decode())
    with pytest.raises(ImageTooLarge, match="100×100"):
        decode_record(b"cam-1", value, [], LIMITS)


def test_record_keyed_by_another_source_is_refused() -> None:
    record = image_event_record(IMAGE, "cam-1", "e1", NOW, "json", "png")
    with pytest.raises(SourceKeyMismatch, match="cam-1"):
        decode_record(b"cam-2", record.value, record.headers, LIMITS)


@pytest.mark.parametrize("key", [None, b""], ids=["no key", "empty key"])
def test_a_record_without_a_kafka_key_is_refused_before_its_value_is_read(
    key: bytes | None,
) -> None:
    record = image_event_record(IMAGE, "cam-1", "e1", NOW, "json", "png")
    with pytest.raises(MissingSourceKey, match="no Kafka key"):
        decode_record(key, record.value, record.headers, LIMITS)
    with pytest.raises(MissingSourceKey):
        decode_record(key, b"{not json", [], LIMITS)


NOT_VISIBLE_ASCII = {
    "NUL": "camera-001\0",
    "NUL and a pickle after it": "camera-001\0cbuiltins\nlen\n(S'x'\ntR.",
    "control character": "camera\x01001",
    "escape sequence": "camera-\x1b[31m001",
    "DEL": "camera-001\x7f",
    "space": "camera 001",
    "tab": "camera\t001",
    "trailing newline": "camera-001\n",
    "non-ASCII letter": "caméra-001",
    "zero-width space": "camera\u200b001",
    "too long": "c" * 257,
}


def binary_record(source_id: str) -> tuple[bytes, list[tuple[str, bytes]]]:
    """A binary-format event by hand: the producer's models would refuse the id."""
    headers = {
        "schema_version": "1",
        "event_id": "e1",
        "source_id": source_id,
        "timestamp": NOW.isoformat(),
        "encoding": "png",
    }
    return encode_image(IMAGE, "png"), [(name, value.encode()) for name, value in headers.items()]


@pytest.mark.parametrize("value_format", ["json", "binary"])
@pytest.mark.parametrize("case", sorted(NOT_VISIBLE_ASCII))
def test_a_source_id_that_is_not_visible_ascii_is_refused_with_its_reason(
    case: str, value_format: str
) -> None:
    source_id = NOT_VISIBLE_ASCII[case]
    if value_format == "json":
        value = json.loads(
            json_event(encoding="png", data=base64.b64encode(encode_image(IMAGE, "png")).decode())
        )
        value["source_id"] = source_id
        record: tuple[bytes, list[tuple[str, bytes]]] = (json.dumps(value).encode(), [])
    else:
        record = binary_record(source_id)
    with pytest.raises(InvalidSourceId, match="visible ASCII") as refused:
        decode_record(source_id.encode(), *record, LIMITS)
    assert isinstance(refused.value, MalformedEvent), "a subclass: handled as any malformed event"


def test_every_visible_ascii_character_is_allowed_in_a_source_id() -> None:
    source_id = "".join(chr(code) for code in range(0x21, 0x7F))
    value, headers = binary_record(source_id)
    assert decode_record(source_id.encode(), value, headers, LIMITS).source_id == source_id


@pytest.mark.parametrize("value_format", ["json", "binary"])
def test_a_source_s_labels_travel_in_either_format(value_format: str) -> None:
    labels = {"site": "north", "model": "cam-x2"}
    record = image_event_record(
        np.full((16, 16), 7, np.uint8),
        "cam-1",
        "e1",
        datetime.now(UTC),
        value_format,  # type: ignore[arg-type]
        source_labels=labels,
    )
    assert decode_record(record.key, record.value, record.headers, LIMITS).source_labels == labels
    plain = image_event_record(np.full((16, 16), 7, np.uint8), "cam-1", "e1", datetime.now(UTC))
    assert decode_record(plain.key, plain.value, plain.headers, LIMITS).source_labels == {}


@pytest.mark.parametrize(
    "labels",
    [
        '{"1site": "north"}',
        '{"site": ""}',
        "not json",
        json.dumps({f"l{i}": "x" for i in range(17)}),
    ],
)
def test_bad_source_labels_are_refused_with_their_reason(labels: str) -> None:
    record = image_event_record(
        np.full((16, 16), 7, np.uint8), "cam-1", "e1", datetime.now(UTC), "binary"
    )
    headers = [*record.headers, ("source_labels", labels.encode())]
    with pytest.raises(MalformedEvent, match="source_labels"):
        decode_record(record.key, record.value, headers, LIMITS)
