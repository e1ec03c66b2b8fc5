"""Which sources are in trouble right now: one line per source, the most urgent first.

`framedrift status` reads every source's state from the store and prints this table;
it is the same state the worker writes at each checkpoint, so the table is as fresh as
the last committed batch of each partition.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from framedrift.worker.detection.monitor import QUESTIONS, SourceState

__all__ = ["SourceStatus", "render", "source_status"]

# Most urgent first: an open incident pages someone; a silence hides one; a source still
# learning its normal cannot yet say it changed.
CONDITIONS = ("incident", "silenced", "warming_up", "healthy")


@dataclass(frozen=True)
class SourceStatus:
    source_id: str
    condition: str  # one of CONDITIONS
    summary: str  # for people: what is open, or why it is silenced
    frames: int
    last_frame_at: str  # ISO time of its latest frame in the state, "" if none kept
    reference_version: int
    last_command: str  # "accept by alice@ops at ..., 'new lens': reference 2 ...", or ""
    incident_since: float | None  # event time its oldest open incident opened

    @property
    def urgency(self) -> tuple[int, float, str]:
        return (CONDITIONS.index(self.condition), self.incident_since or 0.0, self.source_id)


def source_status(source_id: str, state: SourceState) -> SourceStatus:
    """One source's line of the table, from its stored state."""
    open_incidents = {
        question: state.incidents[question].open
        for question in QUESTIONS
        if state.incidents[question].open is not None
    }
    operator = state.operator
    latest = state.window.latest_timestamp
    silenced = latest is not None and operator.silenced_at(latest)
    if open_incidents:
        condition = "incident"
        summary = "; ".join(
            f"{question}: {', '.join(incident.detectors + incident.signals)}"
            f" since {_time(incident.opened_at)}"
            + (" (opened in a silence)" if not incident.announced else "")
            for question, incident in open_incidents.items()
            if incident is not None
        )
    elif silenced:
        condition = "silenced"
        summary = f"until {_time(operator.silenced_until or 0.0)}: {operator.silence_reason}"
    elif state.own_normal.warming_up:
        condition = "warming_up"
        summary = (
            f"learning its normal: {state.own_normal.reference_count}"
            f"/{state.own_normal.parameters.reference_size} reference frames"
        )
    else:
        condition, summary = "healthy", ""
    if silenced and condition == "incident":
        summary += f" [silenced until {_time(operator.silenced_until or 0.0)}]"
    last_command = ""
    if operator.history:
        entry = operator.history[-1]
        last_command = (
            f"{entry.command.kind} by {entry.command.issued_by} at {_time(entry.applied_at)}, "
            f"{entry.command.reason!r}: {entry.outcome}"
        )
    return SourceStatus(
        source_id=source_id,
        condition=condition,
        summary=summary,
        frames=state.stats.count,
        last_frame_at=_time(latest) if latest is not None else "",
        reference_version=operator.reference_version,
        last_command=last_command,
        incident_since=min(
            (incident.opened_at for incident in open_incidents.values() if incident is not None),
            default=None,
        ),
    )


def render(statuses: list[SourceStatus], as_json: bool = False) -> str:
    """The fleet, most urgent first: a table for people, or JSON lines for tools."""
    ordered = sorted(statuses, key=lambda status: status.urgency)
    if as_json:
        return "\n".join(json.dumps(asdict(status)) for status in ordered)
    if not ordered:
        return "no sources in the store yet"
    header = ("SOURCE", "CONDITION", "FRAMES", "LAST FRAME", "REF", "DETAIL")
    rows = [
        (
            status.source_id,
            status.condition,
            str(status.frames),
            status.last_frame_at,
            str(status.reference_version),
            status.summary,
        )
        for status in ordered
    ]
    # Every column padded to its widest cell but the last, the free text.
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row, status in zip([header, *rows], [None, *ordered], strict=True):
        lines.append(
            "  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True))
            + "  "
            + row[-1]
        )
        if status is not None and status.last_command:
            lines.append(" " * (widths[0] + 2) + f"last command: {status.last_command}")
    counts = {condition: 0 for condition in CONDITIONS}
    for status in ordered:
        counts[status.condition] += 1
    lines.append(", ".join(f"{count} {condition}" for condition, count in counts.items()))
    return "\n".join(lines)


def _time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")
