"""Operator commands on the input topic: they travel with the source's data.

A command is a record of the input topic keyed by its source id, like the source's
images, so it sits on the same partition, in order with them: the worker applies it
at one well-defined point of the source's stream, and its effect is saved with the
detector state and the applied offset, exactly once through crashes and rebalances.
The value is a `OperatorCommand` JSON document; the `COMMAND_HEADER` header tells a
command from an image event.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from framedrift.schemas.events import SourceId

COMMAND_SCHEMA_VERSION = 1
# A record carrying this header (its value the command schema version) is a command.
COMMAND_HEADER = "framedrift_command"

CommandKind = Literal["accept", "rollback", "silence", "reset", "retire"]


class OperatorCommand(BaseModel):
    """What an operator told the worker about one source, and who, when and why."""

    model_config = ConfigDict(extra="forbid", title="OperatorCommand")

    schema_version: Literal[1] = COMMAND_SCHEMA_VERSION
    command_id: str = Field(
        min_length=1,
        max_length=64,
        description="Unique per command: a copy sent again (a retry) is applied once.",
    )
    command: CommandKind = Field(
        description="accept: the source's recent frames are its new normal (its own "
        "normal is learnt again from here, the previous one kept for rollback; its open "
        "changed incident resolves as accepted). rollback: back to the previous normal. "
        "silence: publish none of its incidents until `silence_until` (an earlier time "
        "lifts a silence). reset: every detector of the source starts again, its open "
        "incidents resolve as reset. retire: the source is gone; its open incidents "
        "resolve as retired and the status topic gets its tombstone (a frame from it "
        "brings it back)."
    )
    source_id: SourceId
    issued_by: str = Field(min_length=1, max_length=128, description="Who: a person or a tool.")
    issued_at: AwareDatetime  # with its zone: every worker reads the same instant
    reason: str = Field(min_length=1, max_length=1024, description="Why, for the audit trail.")
    silence_until: AwareDatetime | None = Field(
        None,
        description="For silence: until when, compared with the source's own event times.",
    )

    @model_validator(mode="after")
    def _silence_has_an_end(self) -> Self:
        if (self.command == "silence") != (self.silence_until is not None):
            raise ValueError("silence_until is required for silence, and only for silence")
        return self
