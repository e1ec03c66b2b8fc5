"""An operator's word on one source, as its state takes it: the command and its audit trail.

The commands themselves (`schemas/commands.py`) arrive on the input topic in order with
the source's frames; `SourceMonitor.apply` carries them out. Here is what the source's
state keeps of them: who said what, when, why, and at which point of the stream it
took effect, so that `framedrift status` can show it and a retried copy of a command
is recognised and applied once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from framedrift.worker.detection.plain_state import MalformedState, PlainState, StateFields

__all__ = ["HISTORY_KEPT", "KINDS", "AuditEntry", "Command", "history_from_state"]

CommandKind = Literal["accept", "rollback", "silence", "reset"]
KINDS: tuple[CommandKind, ...] = ("accept", "rollback", "silence", "reset")
# The newest commands a source's history keeps (and recognises again by id).
HISTORY_KEPT = 32


@dataclass(frozen=True)
class Command:
    """One operator command on one source (`schemas.commands.OperatorCommand`)."""

    kind: CommandKind
    command_id: str
    issued_by: str
    issued_at: float  # epoch seconds, the operator's clock
    reason: str
    silence_until: float | None = None  # for silence: epoch seconds of the source's event time


@dataclass(frozen=True)
class AuditEntry:
    """A command as it was applied: the command, where in the stream, and what it did."""

    command: Command
    applied_at: float  # event time of the source at that point of its stream
    partition: int
    offset: int
    outcome: str  # what it did, for people: "reference 3", "nothing to roll back to"

    def to_state(self) -> PlainState:
        command = self.command
        state: PlainState = {
            "kind": command.kind,
            "command_id": command.command_id,
            "issued_by": command.issued_by,
            "issued_at": float(command.issued_at),
            "reason": command.reason,
            "applied_at": float(self.applied_at),
            "partition": int(self.partition),
            "offset": int(self.offset),
            "outcome": self.outcome,
        }
        if command.silence_until is not None:
            state["silence_until"] = float(command.silence_until)
        return state

    @classmethod
    def from_state(cls, fields: StateFields) -> AuditEntry:
        kind = fields.text("kind")
        if kind not in KINDS:
            raise MalformedState(f"history: unknown command {kind!r}")
        silence_until = (
            fields.number("silence_until") if "silence_until" in fields.names() else None
        )
        command = Command(
            kind=kind,  # type: ignore[arg-type]
            command_id=fields.text("command_id"),
            issued_by=fields.text("issued_by"),
            issued_at=fields.number("issued_at"),
            reason=fields.text("reason"),
            silence_until=silence_until,
        )
        return cls(
            command,
            applied_at=fields.number("applied_at"),
            partition=fields.integer("partition", low=0),
            offset=fields.integer("offset", low=0),
            outcome=fields.text("outcome"),
        )


def history_to_state(history: list[AuditEntry]) -> PlainState:
    """Entries keyed by their order ("0", "1", ...), oldest first."""
    return {str(index): entry.to_state() for index, entry in enumerate(history)}


def history_from_state(fields: StateFields) -> list[AuditEntry]:
    names = fields.names()
    if names != [str(index) for index in range(len(names))] or len(names) > HISTORY_KEPT:
        raise MalformedState(f"history entries {names[:5]}...")
    return [AuditEntry.from_state(fields.part(name)) for name in names]
