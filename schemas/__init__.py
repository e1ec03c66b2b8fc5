"""The contract between framedrift and the outside: input events, operator commands,
incidents, fleet incidents, source statuses, dead letters.

This package imports nothing of the project. The JSON Schema files in `schemas/json/`
are generated from these models by `framedrift schema` and committed.
"""

from framedrift.schemas.alerts import (
    CLOUDEVENTS_TYPES,
    AlertEventRef,
    DriftAlert,
    IncidentEvent,
    WindowStatistics,
    cloudevents_headers,
)
from framedrift.schemas.commands import COMMAND_HEADER, OperatorCommand
from framedrift.schemas.dead_letters import DeadLetterHeaders
from framedrift.schemas.events import (
    EVENT_SCHEMA_VERSION,
    BinaryEventHeaders,
    ImageEvent,
    ImagePayload,
)
from framedrift.schemas.fleet import FleetIncidentEvent
from framedrift.schemas.status import SourceStatus

__all__ = [
    "CLOUDEVENTS_TYPES",
    "COMMAND_HEADER",
    "EVENT_SCHEMA_VERSION",
    "AlertEventRef",
    "BinaryEventHeaders",
    "DeadLetterHeaders",
    "DriftAlert",
    "FleetIncidentEvent",
    "ImageEvent",
    "ImagePayload",
    "IncidentEvent",
    "OperatorCommand",
    "SourceStatus",
    "WindowStatistics",
    "cloudevents_headers",
]
