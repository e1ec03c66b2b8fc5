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


# A source's labels (site, model, firmware...): named as Prometheus names labels, so they
# pass to Alertmanager as they are; few and short, as they ride on every event and state.
LABEL_NAME_PATTERN = r"^[a-zA-Z_][a-zA-Z0-9_]{0,62}$"
MAX_LABELS = 16
SourceLabels = Annotated[
    dict[
        Annotated[str, Field(pattern=LABEL_NAME_PATTERN)],
        Annotated[str, Field(min_length=1, max_length=128)],
    ],
    Field(
        max_length=MAX_LABELS,
        description="The source's labels, e.g. {'site': 'north', 'model': 'cam-x2'}: at "
        "most 16, names as Prometheus label names, values 1 to 128 characters. The latest "
        "an event carries are the source's; an event without them changes nothing.",
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
    source_labels: SourceLabels | None = None
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
    source_labels: str | None = Field(
        default=None,
        max_length=4096,
        description="The source's labels as a JSON object (see ImageEvent.source_labels).",
    )
