"""Turns a Kafka record into an image and its event fields, or says exactly why it can't.

Two value formats (see `schemas/events.py`): a JSON `ImageEvent`, or the encoded image
as the value with the event fields in headers. A record with a `schema_version` header
is binary; any other is JSON. Every rejection is an `InvalidEvent` subclass whose name
and message go into the dead-letter headers.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import warnings
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from PIL import Image
from pydantic import TypeAdapter, ValidationError

from framedrift.schemas.events import (
    EVENT_SCHEMA_VERSION,
    BinaryEventHeaders,
    ImageEvent,
    ImagePayload,
    SourceLabels,
)
from framedrift.worker.detection.frame_quality import MIN_SIDE

_DTYPES = {"uint8": np.uint8, "float32": np.float32}
_SOURCE_LABELS: TypeAdapter[dict[str, str]] = TypeAdapter(SourceLabels)
# JPEG frames at least twice this long are decoded at the smallest DCT scale (1/2, 1/4
# or 1/8: libjpeg's scaled decoding, through Pillow's draft mode) that keeps their
# longest side this long or longer: a 1920×1080 frame as 960×540, a 3840×2160 one as
# 960×540 too. Nothing downstream needs more: the frame signals analyse frames at a
# longest side of 320 and read noise and clipping at this size or above, as the
# camera-fleet evaluation (640×480 frames) measured them, and models take far less.
# Smaller frames, PNG and raw images are decoded whole. A change here changes what a
# source's frames read as: bump `frame_quality.READING_VERSION` with it.
JPEG_DECODED_LONGEST_SIDE = 640


class InvalidEvent(ValueError):
    """A record that cannot be scored; it goes to the dead-letter topic with this reason."""


class RecordTooLarge(InvalidEvent):
    pass


class MalformedEvent(InvalidEvent):
    """Not valid JSON, or fields missing or of the wrong type."""


class UnsupportedSchemaVersion(InvalidEvent):
    pass


class UndecodableImage(InvalidEvent):
    """The image bytes are not a readable PNG/JPEG, or raw data does not fit its shape."""


class ImageTooLarge(InvalidEvent):
    """More pixels than allowed: protects the worker from decompression bombs."""


class ImageTooSmall(InvalidEvent):
    """Fewer than `MIN_SIDE` pixels a side: too small for the frame-quality signals."""


class UnexpectedDecodingError(InvalidEvent):
    """Decoding failed in a way no check foresaw: a bug to report, not a reason to stop."""


class InvalidSourceId(MalformedEvent):
    """The source id is not 1 to 256 visible ASCII characters (`schemas.events.SourceId`)."""


class MissingSourceKey(InvalidEvent):
    """The record has no Kafka key: the producer's partitioner would spread its source over
    partitions, and two workers would each update that source's state."""


class SourceKeyMismatch(InvalidEvent):
    """The Kafka key is not the event's source id, so the source could straddle partitions."""


@dataclass(frozen=True)
class DecodingLimits:
    max_record_bytes: int
    max_image_pixels: int


@dataclass(frozen=True)
class DecodedEvent:
    event_id: str
    source_id: str
    timestamp: datetime
    image: np.ndarray  # (H, W) or (H, W, C); uint8, or float32 in [0, 1]
    source_labels: dict[str, str] = field(default_factory=dict)  # none sent: empty


def _refusal(error: ValidationError, prefix: str = "") -> InvalidEvent:
    """The dead-letter reason for an event its schema refused."""
    problems = error.errors()
    if any(problem["loc"] == ("source_id",) for problem in problems):
        return InvalidSourceId(
            f"{prefix}source_id must be 1 to 256 visible ASCII characters (0x21-0x7E), "
            "without spaces or control characters"
        )
    first = problems[0]
    where = ".".join(str(part) for part in first["loc"]) or "event"
    return MalformedEvent(f"{prefix}{where}: {first['msg']} ({error.error_count()} problem(s))")


def decode_record(
    key: bytes | None,
    value: bytes | None,
    headers: list[tuple[str, bytes]] | None,
    limits: DecodingLimits,
) -> DecodedEvent:
    """A record of the input topic -> its event, or an InvalidEvent saying why not.

    The Kafka key must be the event's source id: a keyless record is refused before its
    value is read, as kafka-python's partitioner would send its source's records to
    any partition.
    """
    if not key:
        raise MissingSourceKey(
            "record has no Kafka key; key each event by its source id so that each source "
            "stays on one partition"
        )
    event = _decode_value(value, headers, limits)
    if key != event.source_id.encode():
        raise SourceKeyMismatch(
            f"Kafka key {key[:64]!r} is not the source id {event.source_id!r}; "
            "key events by source so each source stays on one partition"
        )
    return event


def _decode_value(
    value: bytes | None, headers: list[tuple[str, bytes]] | None, limits: DecodingLimits
) -> DecodedEvent:
    if value is None:
        raise MalformedEvent("record has no value (a tombstone?)")
    if len(value) > limits.max_record_bytes:
        raise RecordTooLarge(f"record is {len(value)} bytes, limit {limits.max_record_bytes}")
    header_map = {name: raw for name, raw in headers or ()}
    if "schema_version" in header_map:
        return _decode_binary(value, header_map, limits)
    return _decode_json(value, limits)


def _decode_json(value: bytes, limits: DecodingLimits) -> DecodedEvent:
    try:
        document = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MalformedEvent(f"value is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise MalformedEvent(f"value is JSON {type(document).__name__}, expected an object")
    version = document.get("schema_version")
    # type() and not ==: a JSON list is unhashable, and True == 1 in Python.
    if type(version) is not int or version != EVENT_SCHEMA_VERSION:
        raise UnsupportedSchemaVersion(
            f"schema_version {document.get('schema_version')!r}; this worker reads 1"
        )
    try:
        event = ImageEvent.model_validate(document)
    except ValidationError as error:
        raise _refusal(error) from None
    try:
        image_bytes = base64.b64decode(event.image.data, validate=True)
    except (binascii.Error, ValueError) as error:
        raise UndecodableImage(f"image.data is not valid base64: {error}") from None
    image = decode_image(image_bytes, event.image, limits)
    return DecodedEvent(
        event.event_id, event.source_id, event.timestamp, image, event.source_labels or {}
    )


def _decode_binary(
    value: bytes, header_map: dict[str, bytes], limits: DecodingLimits
) -> DecodedEvent:
    try:
        fields = {
            name: raw.decode("utf-8")
            for name, raw in header_map.items()
            if name in BinaryEventHeaders.model_fields
        }
    except UnicodeDecodeError:
        raise MalformedEvent("a header value is not UTF-8") from None
    if fields.get("schema_version") != str(EVENT_SCHEMA_VERSION):
        raise UnsupportedSchemaVersion(
            f"schema_version header {fields.get('schema_version')!r}; this worker reads 1"
        )
    try:
        headers = BinaryEventHeaders.model_validate(fields)
        shape = [int(side) for side in headers.shape.split(",")] if headers.shape else None
        # The image bytes are the record value; the payload model checks shape and dtype.
        payload = ImagePayload(encoding=headers.encoding, data="", shape=shape, dtype=headers.dtype)
    except ValidationError as error:
        raise _refusal(error, "headers: ") from None
    labels = {}
    if headers.source_labels is not None:
        try:
            labels = _SOURCE_LABELS.validate_json(headers.source_labels)
        except ValidationError as error:
            raise _refusal(error, "headers: source_labels: ") from None
    image = decode_image(value, payload, limits)
    return DecodedEvent(headers.event_id, headers.source_id, headers.timestamp, image, labels)


def decode_image(data: bytes, payload: ImagePayload, limits: DecodingLimits) -> np.ndarray:
    """Encoded bytes -> pixel array, with the size checked before any pixel is decoded."""
    pixels = _decode_pixels(data, payload, limits)
    if min(pixels.shape[:2]) < MIN_SIDE:
        raise ImageTooSmall(
            f"image is {pixels.shape[1]}×{pixels.shape[0]}, framedrift reads {MIN_SIDE}×{MIN_SIDE} "
            "and larger"
        )
    return pixels


def _decode_pixels(data: bytes, payload: ImagePayload, limits: DecodingLimits) -> np.ndarray:
    if not data:
        raise UndecodableImage("image data is empty")
    if payload.encoding == "raw":
        return _decode_raw(data, payload, limits)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            # `open` reads only the header: check the claimed size before decoding pixels.
            width, height = image.size
            if width * height > limits.max_image_pixels:
                raise ImageTooLarge(
                    f"image claims {width}×{height} pixels, limit {limits.max_image_pixels}"
                )
            expected_format = "JPEG" if payload.encoding == "jpeg" else "PNG"
            if image.format != expected_format:
                raise UndecodableImage(
                    f"encoding says {payload.encoding}, bytes are {image.format}"
                )
            if image.format == "JPEG" and max(width, height) >= 2 * JPEG_DECODED_LONGEST_SIDE:
                # `draft` picks the largest reduction that still gives at least this size.
                # The short side stays at `MIN_SIDE` or more: a 1280×8 strip stays whole.
                shrink = max(width, height) / JPEG_DECODED_LONGEST_SIDE
                wanted = [max(MIN_SIDE, math.ceil(side / shrink)) for side in (width, height)]
                image.draft(image.mode, (wanted[0], wanted[1]))
            image.load()
    except InvalidEvent:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageTooLarge(str(error)) from None
    except Exception as error:  # Pillow raises many types for corrupt data
        raise UndecodableImage(f"cannot decode {payload.encoding}: {error}") from None
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB" if image.mode in ("RGBA", "P", "CMYK", "YCbCr", "LA") else "L")
    return np.asarray(image)


def _decode_raw(data: bytes, payload: ImagePayload, limits: DecodingLimits) -> np.ndarray:
    assert payload.shape is not None and payload.dtype is not None  # the model validator ensures it
    shape = tuple(payload.shape)
    if len(shape) == 3 and shape[2] not in (1, 3, 4):
        raise UndecodableImage(f"raw shape {list(shape)}: channels must be 1, 3 or 4")
    if shape[0] * shape[1] > limits.max_image_pixels:
        raise ImageTooLarge(f"raw shape {list(shape)} exceeds {limits.max_image_pixels} pixels")
    dtype = np.dtype(_DTYPES[payload.dtype])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise UndecodableImage(
            f"raw {payload.dtype} {list(shape)} needs {expected} bytes, got {len(data)}"
        )
    pixels = np.frombuffer(data, dtype=dtype.newbyteorder("<")).reshape(shape)
    if dtype == np.float32:
        if not np.isfinite(pixels).all():
            raise UndecodableImage("raw float32 data contains NaN or infinity")
        if pixels.min() < 0.0 or pixels.max() > 1.0:
            raise UndecodableImage("raw float32 data must lie in [0, 1]")
        return pixels.astype(np.float32)
    return pixels
