"""An operator's word on one source, as its state takes it: the command and its audit trail.

The commands themselves (`schemas/commands.py`) arrive on the input topic in order with
the source's frames; `SourceMonitor.apply` carries them out. Here is what the source's
state keeps of them (`OperatorState`): which version of its normal it is tested
against and the one before (for `rollback`), whether it is silenced, and its history:
who said what, when, why, and at which point of the stream it took effect, so that
`framedrift status` can show it and a retried copy of a command is applied once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from framedrift.worker.detection.own_normal import OwnReference
from framedrift.worker.detection.plain_state import MalformedState, PlainState, StateFields

__all__ = ["HISTORY_KEPT", "KINDS", "AuditEntry", "Command", "OperatorState"]

CommandKind = Literal["accept", "rollback", "silence", "reset", "retire"]
KINDS: tuple[CommandKind, ...] = ("accept", "rollback", "silence", "reset", "retire")
# The newest commands a source's history keeps, and so recognises again by id: a retry
# of an older one would be applied again (producers retry within seconds, not after 32
# further commands on the same source).
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


@dataclass
class OperatorState:
    """What a source's state keeps of its operators' commands (module docstring)."""

    reference_version: int = 1  # the version of the source's own normal tested against
    # The normal an `accept` set aside, with its version: what `rollback` brings back.
    previous_reference: OwnReference | None = None
    previous_version: int = 0
    silenced_until: float | None = None  # event time, epoch seconds
    silence_reason: str = ""
    retired: bool = False  # an operator retired it; its next frame brings it back
    history: list[AuditEntry] = field(default_factory=list)  # oldest first

    def silenced_at(self, timestamp: float) -> bool:
        return self.silenced_until is not None and timestamp < self.silenced_until

    def knows(self, command_id: str) -> bool:
        return any(entry.command.command_id == command_id for entry in self.history)

    def record(self, entry: AuditEntry) -> None:
        self.history = [*self.history, entry][-HISTORY_KEPT:]

    def to_state(self) -> PlainState:
        state: PlainState = {
            "reference_version": int(self.reference_version),
            "previous_version": int(self.previous_version),
            "silence_reason": self.silence_reason,
            "retired": bool(self.retired),
            "history": {str(index): entry.to_state() for index, entry in enumerate(self.history)},
        }
        if self.previous_reference is not None:
            state["previous_reference"] = self.previous_reference.to_state()
        if self.silenced_until is not None:
            state["silenced_until"] = float(self.silenced_until)
        return state

    @classmethod
    def from_state(cls, fields: StateFields, reference_size: int) -> OperatorState:
        names = fields.names()
        history = fields.part("history")
        entries = history.names()
        if entries != [str(index) for index in range(len(entries))] or len(entries) > HISTORY_KEPT:
            raise MalformedState(f"operator history entries {entries[:5]}")
        return cls(
            reference_version=fields.integer("reference_version", low=1),
            previous_reference=OwnReference.from_state(
                fields.part("previous_reference"), reference_size
            )
            if "previous_reference" in names
            else None,
            previous_version=fields.integer("previous_version", low=0),
            silenced_until=fields.number("silenced_until") if "silenced_until" in names else None,
            silence_reason=fields.text("silence_reason"),
            retired=fields.boolean("retired"),
            history=[AuditEntry.from_state(history.part(name)) for name in entries],
        )
