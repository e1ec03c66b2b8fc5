"""A source's status: the latest record per source on the status topic, and what
`framedrift status` prints.

The status topic (`FRAMEDRIFT_STATUS_TOPIC`, created compacted) is keyed by source id;
the worker writes a source's record whenever what it says changes (an incident opens or
closes, a silence starts or ends, the source finishes learning its normal, an operator's
command is applied), so a reader of the compacted topic holds the whole fleet's current
status without asking Redis.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from framedrift.schemas.events import SourceId, SourceLabels

STATUS_SCHEMA_VERSION = 1

# Most urgent first: an open incident pages someone; a silence hides one; a source still
# learning its normal cannot yet say it changed; a retired one is gone (on the status
# topic: a tombstone).
Condition = Literal["incident", "silenced", "warming_up", "healthy", "retired"]
CONDITIONS: tuple[Condition, ...] = ("incident", "silenced", "warming_up", "healthy", "retired")


class SourceStatus(BaseModel):
    """One source's condition as its stored state has it."""

    model_config = ConfigDict(extra="forbid", title="SourceStatus")

    schema_version: Literal[1] = STATUS_SCHEMA_VERSION
    source_id: SourceId
    labels: SourceLabels = Field(default_factory=dict, description="The source's labels.")
    condition: Condition
    summary: str = Field(
        description="For people: what is open, why it is silenced, or how "
        "much of its normal it has learnt."
    )
    open_incidents: list[str] = Field(
        description="Ids of its open incidents (`incident_id` "
        "on the alerts topic), announced or not."
    )
    incident_since: datetime | None = Field(description="When its oldest open incident opened.")
    silenced_until: datetime | None = Field(description="Set while silenced, by its event time.")
    reference_version: int = Field(
        ge=1,
        description="The version of its own normal; an "
        "accept adds one, a rollback brings the previous back.",
    )
    frames: int = Field(ge=0, description="Frames counted, when the record was written.")
    last_frame_at: datetime | None = Field(description="Its latest frame's event time.")
    last_command: str = Field(
        description="The last operator command applied: who, when, "
        "why and what it did; empty if none."
    )
