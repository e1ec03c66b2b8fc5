"""One incident per problem: the lifecycle of one source's alarms on one question.

Detectors fire per episode of their own statistic; an on-call team wants one page per
problem, a word when it grows, and a word when it is over. An `IncidentTracker` (one
per source and question, part of the source's stored state) turns the detectors'
firings and their ongoing episodes into transitions:

- *opened* at the first firing while no incident is open;
- *updated* when a detector or a frame-wide signal joins the incident, or its severity
  reaches `SEVERITY_STEP` times the severity last announced (so a fault that keeps
  growing is announced a few times, not on every frame);
- *resolved* once no detector of the question has fired or been in an episode for
  `hold_down_s` seconds of the source's own event time, nor for as many events as the
  longest window among them (`Observation.memory_events`: a slow detector still
  weighing the problem's events would fire again after the others re-armed, and open a
  second incident for the same problem); or on an operator's word (`resolve`).

While the source is silenced (an operator's `silence`) the tracker follows its problems
as ever but announces nothing new: an incident opened in silence is announced, as
*opened*, at the first frame after the silence if it is still open then, and is never
announced at all if it ended within it. An incident announced before the silence still
announces its resolution: a page that was sent is closed.

Time is the events' own timestamps, never the worker's clock, so that a replay after a
crash makes the same transitions at the same events. What the transitions carry as
evidence (the firings' alert documents) is opaque text here: this core knows nothing of
the alert schema.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Literal

from framedrift.worker.detection.plain_state import MalformedState, PlainState, StateFields

__all__ = [
    "SEVERITY_STEP",
    "Incident",
    "IncidentTracker",
    "Observation",
    "Transition",
]

TransitionKind = Literal["opened", "updated", "resolved"]
# recovered: quiet for the hold-down; accepted: an operator accepted the source's new
# normal; rolled_back: an operator brought back its previous normal; reset: an operator
# restarted its detectors; retired: an operator retired the source.
Resolution = Literal["recovered", "accepted", "rolled_back", "reset", "retired"]

# An open incident is announced again when its severity reaches this multiple of the
# severity last announced: a doubling is news, a wobble is not.
SEVERITY_STEP = 2.0
# A stored incident names at most this many detectors or signals (all of them, today).
_MOST_NAMES = 256


@dataclass(frozen=True)
class Observation:
    """What one frame said on one question: the firings it raised and what still alarms."""

    event_id: str
    timestamp: float  # the event's own time, epoch seconds
    partition: int
    offset: int
    # (detector, severity, evidence) of each firing at this event: severity in the
    # firing's own unit (how far past its threshold), evidence opaque text.
    firings: tuple[tuple[str, float, str], ...] = ()
    alarming: bool = False  # whether a detector of the question is in an episode now
    memory_events: int = 0  # the longest window of the question's detectors
    signals: tuple[str, ...] = ()  # frame-wide signals alarming now
    tiles: tuple[str, ...] = ()  # tiles of the frame whose signals alarm now


@dataclass
class Incident:
    """One open incident: what opened it, what joined since, what was last announced."""

    opened_partition: int  # the opening event's position: the incident's identity
    opened_offset: int
    opened_at: float  # event time of the opening firing
    last_alarm_at: float  # event time of the latest frame with a firing or an episode on
    events_since_alarm: int  # events of the source since that frame
    detectors: list[str]  # in the order they joined
    signals: list[str]  # frame-wide signals, in the order they joined
    tiles: list[str]  # tiles that alarmed while it was open: where in the frame
    severity: float  # the highest seen
    announced_severity: float  # the severity of the latest transition
    first_evidence: str
    latest_evidence: str
    announced: bool = True  # False while it was opened in a silence and not yet told

    def to_state(self) -> PlainState:
        return {
            "opened_partition": int(self.opened_partition),
            "opened_offset": int(self.opened_offset),
            "opened_at": float(self.opened_at),
            "last_alarm_at": float(self.last_alarm_at),
            "events_since_alarm": int(self.events_since_alarm),
            "detector_count": len(self.detectors),
            "detectors": list(self.detectors),
            "signal_count": len(self.signals),
            "signals": list(self.signals),
            "tile_count": len(self.tiles),
            "tiles": list(self.tiles),
            "severity": float(self.severity),
            "announced_severity": float(self.announced_severity),
            "first_evidence": self.first_evidence,
            "latest_evidence": self.latest_evidence,
            "announced": bool(self.announced),
        }

    @classmethod
    def from_state(cls, fields: StateFields) -> Incident:
        detector_count = fields.integer("detector_count", low=1, high=_MOST_NAMES)
        signal_count = fields.integer("signal_count", low=0, high=_MOST_NAMES)
        tile_count = fields.integer("tile_count", low=0, high=_MOST_NAMES)
        return cls(
            opened_partition=fields.integer("opened_partition", low=0),
            opened_offset=fields.integer("opened_offset", low=0),
            opened_at=fields.number("opened_at"),
            last_alarm_at=fields.number("last_alarm_at"),
            events_since_alarm=fields.integer("events_since_alarm", low=0),
            detectors=fields.texts("detectors", detector_count),
            signals=fields.texts("signals", signal_count),
            tiles=fields.texts("tiles", tile_count),
            severity=fields.number("severity"),
            announced_severity=fields.number("announced_severity"),
            first_evidence=fields.text("first_evidence"),
            latest_evidence=fields.text("latest_evidence"),
            announced=fields.boolean("announced"),
        )


@dataclass(frozen=True)
class Transition:
    """An incident's step, with the incident as it stands after it."""

    kind: TransitionKind
    incident: Incident  # a copy: later frames do not change it
    # The event at which the transition happened (for `opened`, the opening event).
    event_id: str
    timestamp: float
    partition: int
    offset: int
    resolution: Resolution | None = None  # for `resolved`: why


@dataclass
class IncidentTracker:
    """The incident of one source on one question, if one is open (module docstring).

    >>> tracker = IncidentTracker()
    >>> def frame(t, fired=False, alarming=False):
    ...     firings = (("coverage", 1.5, "{}"),) if fired else ()
    ...     seen = Observation(f"frame-{t}", t, 0, t, firings, alarming)
    ...     return tracker.observe(seen, hold_down_s=10)
    >>> steps = [frame(t, fired=t == 1, alarming=1 <= t <= 4) for t in range(16)]
    >>> [(t, step.kind) for t, step in enumerate(steps) if step is not None]
    [(1, 'opened'), (14, 'resolved')]
    """

    open: Incident | None = None

    def observe(
        self, seen: Observation, hold_down_s: float, silenced: bool = False
    ) -> Transition | None:
        """Take one frame's word on the question; the transition to announce, if any
        (none while `silenced`, but for the resolution of an incident announced before)."""
        incident = self.open
        if incident is None:
            if not seen.firings:
                return None
            detector, severity, evidence = max(seen.firings, key=lambda firing: firing[1])
            self.open = Incident(
                opened_partition=seen.partition,
                opened_offset=seen.offset,
                opened_at=seen.timestamp,
                last_alarm_at=seen.timestamp,
                events_since_alarm=0,
                detectors=_joined([], (name for name, _, _ in seen.firings)),
                signals=_joined([], seen.signals),
                tiles=_joined([], seen.tiles),
                severity=severity,
                announced_severity=severity,
                first_evidence=evidence,
                latest_evidence=evidence,
                announced=not silenced,
            )
            return None if silenced else self._transition("opened", seen)

        if seen.firings or seen.alarming:
            incident.last_alarm_at = max(incident.last_alarm_at, seen.timestamp)
            incident.events_since_alarm = 0
        else:
            incident.events_since_alarm += 1
            quiet_for = seen.timestamp - incident.last_alarm_at
            if quiet_for >= hold_down_s and incident.events_since_alarm >= seen.memory_events:
                return self.resolve(seen, "recovered")

        news = False
        for detector, severity, evidence in seen.firings:
            incident.latest_evidence = evidence
            incident.severity = max(incident.severity, severity)
            if detector not in incident.detectors:
                incident.detectors.append(detector)
                news = True
        for signal in seen.signals:
            if signal not in incident.signals:
                incident.signals.append(signal)
                news = True
        # Tiles join quietly: a spreading smudge would otherwise be announced tile by tile.
        _joined(incident.tiles, seen.tiles)
        if silenced:
            return None
        if not incident.announced:  # opened in a silence that is over, and still open
            incident.announced = True
            incident.announced_severity = incident.severity
            return self._transition("opened", seen)
        if incident.severity >= SEVERITY_STEP * incident.announced_severity:
            news = True
        if not news:
            return None
        incident.announced_severity = incident.severity
        return self._transition("updated", seen)

    def resolve(self, seen: Observation, resolution: Resolution) -> Transition | None:
        """Close the open incident at this event: its resolution, where it was announced."""
        if self.open is None:
            return None
        transition = self._transition("resolved", seen, resolution)
        self.open = None
        return transition if transition.incident.announced else None

    def _transition(
        self, kind: TransitionKind, seen: Observation, resolution: Resolution | None = None
    ) -> Transition:
        assert self.open is not None
        incident = self.open
        snapshot = replace(
            incident,
            detectors=list(incident.detectors),
            signals=list(incident.signals),
            tiles=list(incident.tiles),
        )
        return Transition(
            kind, snapshot, seen.event_id, seen.timestamp, seen.partition, seen.offset, resolution
        )

    def to_state(self) -> PlainState:
        return {"open": self.open.to_state()} if self.open is not None else {}

    @classmethod
    def from_state(cls, fields: StateFields) -> IncidentTracker:
        names = fields.names()
        if names not in ([], ["open"]):
            raise MalformedState(f"incident fields {names}")
        return cls(Incident.from_state(fields.part("open")) if names else None)


def _joined(names: list[str], more: Iterable[str]) -> list[str]:
    """`names` followed by those of `more` not in it yet, in order."""
    for name in more:
        if name not in names:
            names.append(name)
    return names
