"""Encodes an image as a Kafka record in either value format of `schemas/events.py`."""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import numpy as np
from PIL import Image

from framedrift.schemas.events import BinaryEventHeaders, ImageEvent, ImagePayload
from framedrift.schemas.headers import as_kafka_headers

ValueFormat = Literal["json", "binary"]
Encoding = Literal["png", "jpeg", "raw"]


@dataclass(frozen=True)
class KafkaRecord:
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def encode_image(image: np.ndarray, encoding: Encoding) -> bytes:
    if encoding == "raw":
        return np.ascontiguousarray(image).tobytes()
    buffer = io.BytesIO()
    if encoding == "png":
        Image.fromarray(image).save(buffer, format="PNG")
    else:
        Image.fromarray(image).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def image_event_record(
    image: np.ndarray,
    source_id: str,
    event_id: str,
    timestamp: datetime,
    value_format: ValueFormat = "json",
    encoding: Encoding = "png",
    label: int | None = None,
    source_labels: dict[str, str] | None = None,
) -> KafkaRecord:
    """One image event, keyed by its source id."""
    raw = encoding == "raw"
    return encoded_event_record(
        encode_image(image, encoding),
        source_id,
        event_id,
        timestamp,
        value_format,
        encoding,
        raw_shape=list(image.shape) if raw else None,
        raw_dtype=str(image.dtype) if raw else None,
        label=label,
        source_labels=source_labels,
    )


def encoded_event_record(
    data: bytes,
    source_id: str,
    event_id: str,
    timestamp: datetime,
    value_format: ValueFormat,
    encoding: Encoding,
    *,
    raw_shape: list[int] | None = None,
    raw_dtype: str | None = None,
    label: int | None = None,
    source_labels: dict[str, str] | None = None,
) -> KafkaRecord:
    """One event of an image already encoded as `data` (a camera's own JPEG, say), with
    its source's labels where given."""
    if value_format == "binary":
        headers = BinaryEventHeaders(
            event_id=event_id,
            source_id=source_id,
            timestamp=timestamp,
            encoding=encoding,
            shape=",".join(map(str, raw_shape)) if raw_shape else None,
            dtype=raw_dtype,
            source_labels=json.dumps(source_labels) if source_labels else None,
        )
        return KafkaRecord(source_id.encode(), data, as_kafka_headers(headers))
    event = ImageEvent(
        event_id=event_id,
        source_id=source_id,
        timestamp=timestamp,
        image=ImagePayload(
            encoding=encoding,
            data=base64.b64encode(data).decode(),
            shape=raw_shape,
            dtype=raw_dtype,
        ),  # type: ignore[arg-type]
        labels={"class": str(label)} if label is not None else None,
        source_labels=source_labels or None,
    )
    return KafkaRecord(source_id.encode(), event.model_dump_json(exclude_none=True).encode(), [])
