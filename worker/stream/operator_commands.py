"""Operator commands as records of the input topic: written by `framedrift accept` and
its siblings, read by the worker in order with the source's frames (`schemas/commands.py`).
"""

from __future__ import annotations

import getpass
import re
import socket
import uuid
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError

from framedrift.schemas.commands import (
    COMMAND_HEADER,
    COMMAND_SCHEMA_VERSION,
    CommandKind,
    OperatorCommand,
)
from framedrift.worker.detection.operator import Command
from framedrift.worker.stream.decoding import InvalidEvent

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class InvalidCommand(InvalidEvent):
    """A command record that does not hold a valid `OperatorCommand`: dead-lettered."""


def parse_duration(text: str) -> timedelta:
    """'90s', '15m', '2h', '1.5d' -> a timedelta; ValueError saying what is accepted.

    >>> parse_duration("2h")
    datetime.timedelta(seconds=7200)
    """
    found = _DURATION.match(text.strip())
    if found is None:
        raise ValueError(f"{text!r} is not a duration like 90s, 15m, 2h or 1d")
    return timedelta(seconds=float(found[1]) * _SECONDS[found[2]])


def default_operator() -> str:
    """Who issues a command when `--by` does not say: user@host."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


def new_command(
    kind: CommandKind,
    source_id: str,
    reason: str,
    issued_by: str,
    silence_for: timedelta | None = None,
) -> OperatorCommand:
    now = datetime.now(UTC)
    return OperatorCommand(
        command_id=str(uuid.uuid4()),
        command=kind,
        source_id=source_id,
        issued_by=issued_by,
        issued_at=now,
        reason=reason,
        silence_until=None if silence_for is None else now + silence_for,
    )


def command_record(command: OperatorCommand) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """The command as a record of the input topic: key (its source id), value, headers."""
    headers = [(COMMAND_HEADER, str(COMMAND_SCHEMA_VERSION).encode())]
    return command.source_id.encode(), command.model_dump_json().encode(), headers


def is_command(headers: list[tuple[str, bytes]] | None) -> bool:
    return any(name == COMMAND_HEADER for name, _ in headers or ())


def read_command(key: bytes | None, value: bytes | None) -> Command:
    """A command record's value -> the command as the source's state takes it."""
    if value is None:
        raise InvalidCommand("command record has no value")
    try:
        command = OperatorCommand.model_validate_json(value)
    except ValidationError as error:
        raise InvalidCommand(f"not an operator command: {error.errors()[0]['msg']}") from None
    if key != command.source_id.encode():
        raise InvalidCommand(
            f"Kafka key {key!r:.64} is not the command's source id {command.source_id!r}"
        )
    return Command(
        kind=command.command,
        command_id=command.command_id,
        issued_by=command.issued_by,
        issued_at=command.issued_at.timestamp(),
        reason=command.reason,
        silence_until=None if command.silence_until is None else command.silence_until.timestamp(),
    )
