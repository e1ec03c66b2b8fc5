"""Dead-letter records: input records the worker could not use, kept byte for byte.

The Kafka value and key are the original record's, unchanged (the value is left out only
when the dead-letter topic refuses it for its size: `dlq_value_omitted_bytes`); these
headers say where it came from and why it was rejected, and the original headers follow
them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DEAD_LETTER_SCHEMA_VERSION = 1


class DeadLetterHeaders(BaseModel):
    """Kafka headers the worker adds to a dead-lettered record (UTF-8 values).

    Described as they travel: every value is text, numbers as decimal digits, so that a
    subscriber can validate the headers it received against the JSON Schema as they are.
    The original record's headers follow these, so other names are allowed.
    """

    model_config = ConfigDict(extra="allow", title="DeadLetterHeaders")

    dlq_schema_version: Literal["1"] = "1"
    dlq_id: str = Field(
        description="Stable id of this dead letter (a UUID derived from the source topic, "
        "partition and offset): a copy re-sent after a crash or a refused checkpoint "
        "carries the same id, so a subscriber can drop it."
    )
    dlq_error_class: str = Field(description="Why, as a class name, e.g. 'UndecodableImage'.")
    dlq_error_message: str = Field(max_length=1024, description="Why, for a person.")
    dlq_source_topic: str
    dlq_source_partition: str = Field(
        pattern=r"^\d+$", description="The original record's partition, in decimal."
    )
    dlq_source_offset: str = Field(
        pattern=r"^\d+$", description="The original record's offset, in decimal."
    )
    dlq_failed_at: datetime
    dlq_value_omitted_bytes: str | None = Field(
        None,
        pattern=r"^\d+$",
        description="Present when the record was too large for the dead-letter topic: "
        "the dead letter then carries no value, and this is the original value's size in "
        "bytes. The original stays on the source topic at the partition and offset above.",
    )
