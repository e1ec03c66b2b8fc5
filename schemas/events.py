"""Image events on the input topic, in the two value formats the worker accepts.

JSON format: the Kafka value is an `ImageEvent` document with the image base64-encoded.
Binary format: the Kafka value is the encoded image itself and the other fields travel
in Kafka headers, described by `BinaryEventHeaders`. In both, the Kafka key is the
source id, so that all events of one source land on one partition, in order.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

EVENT_SCHEMA_VERSION = 1

ImageEncoding = Literal["png", "jpeg", "raw"]
RawDtype = Literal["uint8", "float32"]
# Visible ASCII only (0x21 to 0x7E): no whitespace, no control characters, no DEL, nothing
# that looks like another id in another script. A source id becomes the Kafka key, a
# Redis key, a log field and a metric label; none of them has to escape or compare it.
SOURCE_ID_PATTERN = r"^[\x21-\x7E]+$"
SourceId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=256,
        pattern=SOURCE_ID_PATTERN,
        description="1 to 256 visible ASCII characters (0x21-0x7E): no spaces or control "
        "characters. Also the Kafka key of the event's record.",
    ),
]


class ImagePayload(BaseModel):
    """One image. `raw` is a C-ordered array: uint8 in 0..255 or float32 in [0, 1]."""

    model_config = ConfigDict(extra="forbid")

    encoding: ImageEncoding
    data: str = Field(description="The image bytes, standard base64 with padding.")
    shape: list[Annotated[int, Field(ge=1)]] | None = Field(
        default=None,
        min_length=2,
        max_length=3,
        description="Required for raw: [height, width] or [height, width, channels].",
    )
    dtype: RawDtype | None = Field(default=None, description="Required for raw.")

    @model_validator(mode="after")
    def _raw_needs_shape_and_dtype(self) -> ImagePayload:
        if self.encoding == "raw" and (self.shape is None or self.dtype is None):
            raise ValueError("a raw image needs both 'shape' and 'dtype'")
        return self


class ImageEvent(BaseModel):
    """An image event in the JSON value format."""

    model_config = ConfigDict(extra="forbid", title="ImageEvent")

    schema_version: Literal[1] = EVENT_SCHEMA_VERSION
    event_id: str = Field(min_length=1, max_length=256)
    source_id: SourceId
    timestamp: datetime = Field(description="When the image was captured (RFC 3339).")
    image: ImagePayload
    labels: dict[str, str] | None = Field(
        default=None, description="Optional ground truth, e.g. {'class': '7'}."
    )
    metadata: dict[str, Any] | None = None


class BinaryEventHeaders(BaseModel):
    """Kafka headers of an event in the binary value format (UTF-8 header values).

    The Kafka value is the encoded image. `shape` is comma-separated ("28,28,1").
    """

    model_config = ConfigDict(extra="forbid", title="BinaryEventHeaders")

    schema_version: Literal["1"] = "1"
    event_id: str = Field(min_length=1, max_length=256)
    source_id: SourceId
    timestamp: datetime
    encoding: ImageEncoding
    shape: str | None = Field(default=None, pattern=r"^\d+,\d+(,\d+)?$")
    dtype: RawDtype | None = None
