"""Generates the JSON Schema files in `schemas/json/` from the models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from framedrift.schemas.alerts import IncidentEvent
from framedrift.schemas.commands import OperatorCommand
from framedrift.schemas.dead_letters import DeadLetterHeaders
from framedrift.schemas.events import BinaryEventHeaders, ImageEvent
from framedrift.schemas.fleet import FleetIncidentEvent
from framedrift.schemas.status import SourceStatus

SCHEMA_DIR = Path(__file__).parent / "json"

# File name -> model; the names are part of the contract, referenced by the README.
SCHEMA_FILES = {
    "image-event.schema.json": ImageEvent,
    "image-event-binary-headers.schema.json": BinaryEventHeaders,
    "incident-event.schema.json": IncidentEvent,
    "dead-letter-headers.schema.json": DeadLetterHeaders,
    "operator-command.schema.json": OperatorCommand,
    "source-status.schema.json": SourceStatus,
    "fleet-incident-event.schema.json": FleetIncidentEvent,
}


def generated_schemas() -> dict[str, str]:
    """File name -> the JSON text the current models generate."""
    rendered: dict[str, str] = {}
    for file_name, model in SCHEMA_FILES.items():
        schema: dict[str, Any] = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://framedrift.dev/schemas/{file_name}",
            **model.model_json_schema(),
        }
        rendered[file_name] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return rendered


def write_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for file_name, text in generated_schemas().items():
        path = directory / file_name
        path.write_text(text)
        written.append(path)
    return written
