"""Which sources are in trouble right now: one `SourceStatus` per source, the most urgent
first.

`framedrift status` reads every source's state from the store and prints this table;
the worker writes a source's status to the status topic when it changes
(`status_changed`). Both come from the state the worker saves at each checkpoint, so
they are as fresh as the last committed batch of each partition.
"""

from __future__ import annotations

from datetime import UTC, datetime

from framedrift.schemas.status import CONDITIONS, SourceStatus
from framedrift.worker.detection.monitor import QUESTIONS, SourceState
from framedrift.worker.stream.alerts import incident_id

__all__ = ["render", "source_status", "status_changed", "urgency"]


def source_status(source_id: str, state: SourceState) -> SourceStatus:
    """One source's status, from its stored state."""
    open_incidents = [
        (question, incident)
        for question in QUESTIONS
        if (incident := state.incidents[question].open) is not None
    ]
    operator = state.operator
    latest = state.cadence.last_event_at
    silenced = latest is not None and operator.silenced_at(latest)
    silenced_until = operator.silenced_until if silenced else None
    if operator.retired:
        condition, summary = "retired", "retired by an operator; a frame brings it back"
    elif open_incidents:
        condition = "incident"
        summary = "; ".join(
            f"{question}: {', '.join(incident.detectors + incident.signals)}"
            f" since {_time(incident.opened_at)}"
            + ("" if incident.announced else " (opened in a silence)")
            for question, incident in open_incidents
        )
        if silenced_until is not None:
            summary += f" [silenced until {_time(silenced_until)}]"
    elif silenced_until is not None:
        condition = "silenced"
        summary = f"until {_time(silenced_until)}: {operator.silence_reason}"
    elif state.own_normal.warming_up:
        condition = "warming_up"
        summary = (
            f"learning its normal: {state.own_normal.reference_count}"
            f"/{state.own_normal.parameters.reference_size} reference frames"
        )
    else:
        condition, summary = "healthy", ""
    last_command = ""
    if operator.history:
        entry = operator.history[-1]
        last_command = (
            f"{entry.command.kind} by {entry.command.issued_by} at {_time(entry.applied_at)}, "
            f"{entry.command.reason!r}: {entry.outcome}"
        )
    return SourceStatus(
        source_id=source_id,
        labels=state.labels,
        condition=condition,
        summary=summary,
        open_incidents=[
            incident_id(source_id, question, incident.opened_partition, incident.opened_offset)
            for question, incident in open_incidents
        ],
        incident_since=_datetime(min((i.opened_at for _, i in open_incidents), default=None)),
        silenced_until=_datetime(silenced_until),
        reference_version=operator.reference_version,
        frames=state.stats.count,
        last_frame_at=_datetime(latest),
        last_command=last_command,
    )


def status_changed(before: SourceStatus | None, after: SourceStatus) -> bool:
    """Whether `after` says something `before` did not: its condition, open incidents,
    silence, normal or last command. Frames, times and a warm-up's progress move with
    every frame and are no news."""
    if before is None:
        return True
    news = (
        "condition",
        "open_incidents",
        "silenced_until",
        "reference_version",
        "last_command",
        "labels",
    )
    return any(getattr(before, name) != getattr(after, name) for name in news)


def urgency(status: SourceStatus) -> tuple[int, datetime, str]:
    """Sort key: condition (`CONDITIONS` order), then the oldest incident first."""
    since = status.incident_since or datetime.min.replace(tzinfo=UTC)
    return CONDITIONS.index(status.condition), since, status.source_id


def render(statuses: list[SourceStatus], as_json: bool = False) -> str:
    """The fleet, most urgent first: a table for people, or JSON lines for tools."""
    ordered = sorted(statuses, key=urgency)
    if as_json:
        return "\n".join(status.model_dump_json() for status in ordered)
    if not ordered:
        return "no sources in the store yet"
    header = ("SOURCE", "CONDITION", "FRAMES", "LAST FRAME", "REF", "DETAIL")
    rows = [
        (
            status.source_id,
            status.condition,
            str(status.frames),
            status.last_frame_at.isoformat(timespec="seconds") if status.last_frame_at else "",
            str(status.reference_version),
            status.summary,
        )
        for status in ordered
    ]
    # Every column padded to its widest cell but the last, the free text.
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row, status in zip([header, *rows], [None, *ordered], strict=True):
        cells = "  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True))
        lines.append(f"{cells}  {row[-1]}".rstrip())
        if status is not None and status.last_command:
            lines.append(" " * (widths[0] + 2) + f"last command: {status.last_command}")
    counts = dict.fromkeys(CONDITIONS, 0)
    for status in ordered:
        counts[status.condition] += 1
    lines.append(", ".join(f"{count} {condition}" for condition, count in counts.items()))
    return "\n".join(lines)


def _time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def _datetime(timestamp: float | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC)
