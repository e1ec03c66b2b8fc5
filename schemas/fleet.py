"""Fleet incidents: many sources sharing a label in trouble at once, as one incident.

A storm, a power cut at a site, a firmware push: a dozen cameras of one site open
incidents within minutes, and an on-call team wants one page saying so, not twelve.
`framedrift fleet` reads the alerts topic and writes `FleetIncidentEvent`s to the fleet
topic (key: `label=value`): opened when `threshold` sources with the same value of a
grouping label (`FRAMEDRIFT_FLEET_GROUP_BY`) open incidents within the window, updated
as more of them join, resolved when every member's incident has resolved.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from framedrift.schemas.alerts import IncidentQuestion, Transition

FLEET_SCHEMA_VERSION = 1


class FleetMember(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source_id: str
    incident_id: str
    question: IncidentQuestion
    opened_at: datetime


class FleetIncidentEvent(BaseModel):
    """One transition of a fleet incident."""

    model_config = ConfigDict(extra="forbid", title="FleetIncidentEvent")

    schema_version: Literal[1] = FLEET_SCHEMA_VERSION
    event_id: str = Field(
        description="Deterministic, from the fleet incident, the "
        "transition and the member incident event that caused it."
    )
    fleet_incident_id: str = Field(
        description="Deterministic, from the label and the "
        "member incident that tipped the group over the threshold."
    )
    transition: Transition
    label: str = Field(description="The grouping label's name, e.g. site.")
    value: str = Field(description="Its value shared by the members, e.g. north.")
    members: list[FleetMember] = Field(
        description="Every member incident still open (for "
        "resolved: the last to resolve), in the order they "
        "joined."
    )
    member_count: int = Field(ge=0, description="Members that ever joined.")
    opened_at: datetime = Field(description="Event time of the incident that tipped it.")
    at: datetime = Field(description="Event time of the member event of this transition.")
    trigger_event_id: str = Field(description="The member incident event that caused it.")
