"""Runs the detectors of one source over its stream of scored images.

Three questions per source, answered apart: is its data *out of domain* (the registry's
detectors, against the model's baseline), has it *changed* (`own_normal.py`, against
its own recent frames), and has it *stopped* sending (`cadence.py`, against its own
pace)?"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from framedrift.worker.detection.cadence import Cadence, Liveness
from framedrift.worker.detection.calibration import Calibration
from framedrift.worker.detection.coverage import BACK_INSIDE_BY as COVERAGE_BACK_INSIDE_BY
from framedrift.worker.detection.coverage import OUTSIDE_BY as COVERAGE_OUTSIDE_BY
from framedrift.worker.detection.frame_quality import READING_VERSION, FrameQuality
from framedrift.worker.detection.incident import (
    IncidentTracker,
    Observation,
    Resolution,
    Transition,
)
from framedrift.worker.detection.operator import AuditEntry, Command, OperatorState
from framedrift.worker.detection.own_normal import OwnNormal, OwnNormalParameters, SignalChange
from framedrift.worker.detection.parameters import DetectorParameters, SourceKind
from framedrift.worker.detection.plain_state import MalformedState, PlainState, StateFields
from framedrift.worker.detection.protocol import Detector, Direction
from framedrift.worker.detection.reference import ReferenceProfile
from framedrift.worker.detection.registry import (
    DETECTOR_NAMES,
    DETECTORS,
    OUT_OF_DOMAIN_DETECTORS,
)
from framedrift.worker.detection.running_stats import RunningStats
from framedrift.worker.detection.scores import ImageScores, ScoredImage, tile_of
from framedrift.worker.detection.window import EventWindow

__all__ = [
    "DetectorFiring",
    "EventRef",
    "MonitorConfig",
    "ScoredImage",
    "SourceMonitor",
    "SourceState",
    "scored_images",
]


@dataclass(frozen=True)
class EventRef:
    """Where an event sits on the input topic."""

    event_id: str
    partition: int
    offset: int
    timestamp: float  # epoch seconds


def scored_images(scores: ImageScores, reference: ReferenceProfile) -> list[ScoredImage]:
    """A batch's scores as the monitor takes them, one `ScoredImage` per image.

    The standard scores are computed for the whole batch at once: scipy's normal
    quantile function is slow called per value.
    """
    return [
        ScoredImage(*row)
        for row in zip(
            scores.error.tolist(),
            reference.error_z(scores.error).tolist(),
            scores.prototype.tolist(),
            scores.latent_distance.tolist(),
            reference.latent_distance_z(scores.latent_distance).tolist(),
            scores.brightness.tolist(),
            scores.contrast.tolist(),
            scores.sharpness.tolist(),
            strict=True,
        )
    ]


@dataclass(frozen=True)
class MonitorConfig:
    """Calibrated detector parameters and the reference they compare against."""

    calibration: Calibration
    reference: ReferenceProfile
    outlier_threshold: float  # an error above this baseline quantile counts as an outlier
    warmup_frames: int = 2048  # frames a source's own normal takes before its first test
    source_kind: SourceKind = "samples"  # which detectors ask the out-of-domain question
    # Seconds of a source's event time without an alarm after which its incident resolves.
    incident_hold_down_s: float = 300.0
    # The least silence, in seconds of its partition's event time, that stops a source
    # (`cadence.py`: more for a source that usually pauses longer).
    stopped_after_s: float = 60.0

    @cached_property
    def out_of_domain_detectors(self) -> frozenset[str]:
        return frozenset(OUT_OF_DOMAIN_DETECTORS[self.source_kind])

    @cached_property
    def out_of_domain_memory(self) -> int:
        """The longest window of the out-of-domain detectors (`Detector.memory_events`)."""
        return max(
            detector.memory_events(self.parameters)
            for detector in DETECTORS
            if detector.name in self.out_of_domain_detectors
        )

    @property
    def parameters(self) -> DetectorParameters:
        return self.calibration.parameters

    def threshold(self, detector: str) -> float:
        return self.calibration.thresholds[detector]

    @property
    def own_normal(self) -> OwnNormalParameters:
        """The changed question's test, held to the same ERT as the out-of-domain one; its
        reference spans the warm-up."""
        return OwnNormalParameters(
            ert=float(self.parameters.ert),
            refresh_every=max(1, self.warmup_frames // OwnNormalParameters.reference_size),
        )

    @cached_property
    def fingerprint(self) -> str:
        """Identifies the detectors, parameters and thresholds a stored state was built with."""
        identity = (
            tuple(detector.name for detector in DETECTORS),
            self.source_kind,
            (COVERAGE_OUTSIDE_BY, COVERAGE_BACK_INSIDE_BY),  # not calibrated, yet stored
            READING_VERSION,
            OwnNormal.signals,
            self.own_normal,
            sorted(self.parameters.to_dict().items()),
            sorted(self.calibration.thresholds.items()),
            self.reference.prototypes,
        )
        return hashlib.sha256(repr(identity).encode()).hexdigest()[:16]


# The question each firing answers; alerts carry it. Each has its own incidents.
OUT_OF_DOMAIN = "out_of_domain"
CHANGED = "changed"
STOPPED = "stopped"
QUESTIONS = (OUT_OF_DOMAIN, CHANGED, STOPPED)
# The detector name of the changed question's firings (`own_normal.py`), and of the
# stopped question's, which are the source's silence, not a detector's (`cadence.py`).
OWN_NORMAL = "own_normal"
SILENCE = "silence"


@dataclass(frozen=True)
class DetectorFiring:
    detector: str  # one of registry.DETECTOR_NAMES, or OWN_NORMAL
    statistic: float
    threshold: float | None  # None where the detector's bound is not one number (ADWIN)
    trigger: EventRef
    # Which way the error moved, where the detector itself knows (the error CUSUM,
    # ADWIN). Otherwise the alert compares the window mean with the baseline, which
    # lags: at a CUSUM alarm a few events into a drift, the window is still mostly clean.
    direction: Direction | None = None
    # For OWN_NORMAL: the signals that moved away from the source's own normal.
    changes: tuple[SignalChange, ...] = ()

    @property
    def question(self) -> str:
        return CHANGED if self.detector == OWN_NORMAL else OUT_OF_DOMAIN

    @property
    def severity(self) -> float:
        """How far past its bound it fired, for an incident to tell growth: a changed
        firing's largest deviation in robust standard deviations; another's statistic
        over its threshold (1 where the bound is not one number)."""
        if self.changes:
            return max(abs(change.deviation_sd) for change in self.changes)
        if self.threshold is None or self.threshold <= 0.0:
            return 1.0
        return abs(self.statistic) / self.threshold


@dataclass
class SourceState:
    """Everything a source's detectors remember; what the state store persists."""

    config_fingerprint: str
    stats: RunningStats
    window: EventWindow
    own_normal: OwnNormal
    detectors: dict[str, Detector] = field(default_factory=dict)  # name -> detector, in run order
    outliers: int = 0  # images whose error was above the outlier threshold, since first seen
    # question -> its incident (`incident.py`)
    incidents: dict[str, IncidentTracker] = field(
        default_factory=lambda: {question: IncidentTracker() for question in QUESTIONS}
    )
    operator: OperatorState = field(default_factory=OperatorState)  # `operator.py`
    cadence: Cadence = field(default_factory=Cadence)  # `cadence.py`
    labels: dict[str, str] = field(default_factory=dict)  # the latest its events carried

    @property
    def liveness(self) -> Liveness | None:
        """What the store indexes of it for judging its silence (`cadence.py`); None for a
        retired source, which is never judged."""
        if self.operator.retired:
            return None
        stopped = self.incidents[STOPPED].open
        return Liveness(
            dataclasses.replace(self.cadence),
            "none" if stopped is None else "announced" if stopped.announced else "unannounced",
            self.operator.silenced_until,
        )

    def restarted(self, config: MonitorConfig) -> None:
        """Its detectors, window and own normal start again; what it counted, its
        incidents, its operators' word, its pace and labels stay."""
        fresh = SourceState.fresh(config)
        self.config_fingerprint = fresh.config_fingerprint
        self.window, self.own_normal, self.detectors = (
            fresh.window,
            fresh.own_normal,
            fresh.detectors,
        )

    @classmethod
    def fresh(cls, config: MonitorConfig) -> SourceState:
        parameters, thresholds = config.parameters, config.calibration.thresholds
        return cls(
            config_fingerprint=config.fingerprint,
            stats=RunningStats(),
            window=EventWindow(parameters.window_size),
            own_normal=OwnNormal(parameters=config.own_normal),
            detectors={
                detector.name: detector.build(parameters, thresholds, config.reference)
                for detector in DETECTORS
            },
        )

    def to_state(self) -> PlainState:
        """The whole state as plain values (`plain_state.py`), for the state codec."""
        return {
            "config_fingerprint": self.config_fingerprint,
            "stats": self.stats.to_state(),
            "window": self.window.to_state(),
            "own_normal": self.own_normal.to_state(),
            "detectors": {name: detector.to_state() for name, detector in self.detectors.items()},
            "outliers": int(self.outliers),
            "incidents": {question: self.incidents[question].to_state() for question in QUESTIONS},
            "operator": self.operator.to_state(),
            "cadence": self.cadence.to_state(),
            "labels": dict(self.labels),
        }

    @classmethod
    def from_state(cls, fields: StateFields) -> SourceState:
        """The state `to_state` described; a `MalformedState` where anything is off."""
        detector_states = fields.part("detectors")
        incident_states = fields.part("incidents")
        if tuple(incident_states.names()) != QUESTIONS:
            raise MalformedState(f"incidents {incident_states.names()}, expected {list(QUESTIONS)}")
        if tuple(detector_states.names()) != DETECTOR_NAMES:
            raise MalformedState(
                f"detectors {detector_states.names()}, this code runs {list(DETECTOR_NAMES)}"
            )
        own_normal = OwnNormal.from_state(fields.part("own_normal"))
        return cls(
            config_fingerprint=fields.text("config_fingerprint"),
            stats=RunningStats.from_state(fields.part("stats")),
            window=EventWindow.from_state(fields.part("window")),
            own_normal=own_normal,
            detectors={
                detector.name: detector.from_state(detector_states.part(detector.name))
                for detector in DETECTORS
            },
            outliers=fields.integer("outliers", low=0),
            incidents={
                question: IncidentTracker.from_state(incident_states.part(question))
                for question in QUESTIONS
            },
            operator=OperatorState.from_state(
                fields.part("operator"), own_normal.parameters.reference_size
            ),
            cadence=Cadence.from_state(fields.part("cadence")),
            labels=_labels_from_state(fields.part("labels")),
        )


# The most labels a source keeps (`schemas.events.MAX_LABELS`, which its events are held to).
_MOST_LABELS = 16


def _labels_from_state(fields: StateFields) -> dict[str, str]:
    names = fields.names()
    if len(names) > _MOST_LABELS:
        raise MalformedState(f"{len(names)} labels, at most {_MOST_LABELS}")
    return {name: fields.text(name) for name in names}


class SourceMonitor:
    """Feeds one source's images to its detectors and reports which fired."""

    def __init__(self, config: MonitorConfig, state: SourceState) -> None:
        self.config = config
        self.state = state

    def update(
        self,
        image: ScoredImage,
        event: EventRef,
        frame: tuple[FrameQuality, np.ndarray] | None = None,
    ) -> list[DetectorFiring]:
        """One image: every detector's firings. With the `frame`'s quality signals and
        per-tile errors, the changed question runs too."""
        state, reference = self.state, self.config.reference
        state.operator.retired = False  # it sends: it is back
        state.cadence.observe(event.timestamp)
        state.stats.update(image.error)
        state.outliers += image.error > self.config.outlier_threshold
        state.window.append(
            image.window_signals(), event.event_id, event.partition, event.offset, event.timestamp
        )
        firings = []
        for name, detector in state.detectors.items():
            if name not in self.config.out_of_domain_detectors:
                continue
            if detector.update(image, state.window, reference).fired:
                firings.append(
                    DetectorFiring(
                        name, detector.statistic, detector.threshold, event, detector.direction
                    )
                )
        if frame is not None:
            changes = state.own_normal.observe(frame[0], image.error, frame[1])
            if changes:
                firings.append(self._changed(changes, event))
        return firings

    def follow_incidents(
        self, event: EventRef, firings: list[DetectorFiring], evidence: list[str]
    ) -> list[tuple[str, Transition]]:
        """After `update`: the incident transitions of this event, per question, given its
        `firings` and the alert document of each (`evidence`, opaque here)."""
        state = self.state
        silenced = state.operator.silenced_at(event.timestamp)
        alarming_signals = state.own_normal.alarming_signals
        alarming = {
            OUT_OF_DOMAIN: any(
                state.detectors[name].in_episode for name in self.config.out_of_domain_detectors
            ),
            CHANGED: bool(alarming_signals),
        }
        transitions = []
        stopped = state.incidents[STOPPED].resolve(
            Observation(event.event_id, event.timestamp, event.partition, event.offset),
            "recovered",
        )  # it sends again
        if stopped is not None:
            transitions.append((STOPPED, stopped))
        for question in (OUT_OF_DOMAIN, CHANGED):
            seen = Observation(
                event.event_id,
                event.timestamp,
                event.partition,
                event.offset,
                tuple(
                    (firing.detector, firing.severity, text)
                    for firing, text in zip(firings, evidence, strict=True)
                    if firing.question == question
                ),
                alarming[question],
                memory_events=self.config.out_of_domain_memory if question == OUT_OF_DOMAIN else 0,
                signals=tuple(s for s in alarming_signals if tile_of(s) is None)
                if question == CHANGED
                else (),
                tiles=tuple(dict.fromkeys(t for s in alarming_signals if (t := tile_of(s))))
                if question == CHANGED
                else (),
            )
            transition = state.incidents[question].observe(
                seen, self.config.incident_hold_down_s, silenced
            )
            if transition is not None:
                transitions.append((question, transition))
        return transitions

    def apply(
        self, command: Command, at: EventRef
    ) -> tuple[AuditEntry | None, list[tuple[str, Transition]]]:
        """Carry out an operator's command at its point of the source's stream (`at`: the
        command record, its time the source's latest event time): the audit entry and the
        incident transitions it made; no entry for a copy of a command already applied."""
        operator = self.state.operator
        if operator.knows(command.command_id):
            return None, []
        resolutions: dict[str, Resolution] = {}
        if command.kind == "accept":
            operator.previous_reference = self.state.own_normal.current_reference
            operator.previous_version = operator.reference_version
            operator.reference_version = self._next_reference_version()
            self.state.own_normal.relearn()
            # The model's domain is not the operator's to move: an out-of-domain
            # incident stays open (retrain, or `reset`).
            resolutions[CHANGED] = "accepted"
            outcome = (
                f"reference {operator.reference_version} learning from here "
                f"(reference {operator.previous_version} kept for rollback)"
            )
        elif command.kind == "rollback":
            if operator.previous_reference is None:
                outcome = "nothing to roll back to"
            else:
                current = self.state.own_normal.current_reference
                self.state.own_normal.restore(operator.previous_reference)
                operator.previous_reference = current
                operator.reference_version, operator.previous_version = (
                    operator.previous_version,
                    operator.reference_version,
                )
                resolutions[CHANGED] = "rolled_back"
                outcome = (
                    f"reference {operator.reference_version} restored "
                    f"(reference {operator.previous_version} kept: rollback again to return)"
                )
        elif command.kind == "silence":
            assert command.silence_until is not None
            if command.silence_until > at.timestamp:
                operator.silenced_until, operator.silence_reason = (
                    command.silence_until,
                    command.reason,
                )
                outcome = f"silenced for {command.silence_until - at.timestamp:.0f} s"
            else:
                operator.silenced_until, operator.silence_reason = None, ""
                outcome = "silence lifted"
        elif command.kind == "retire":
            self.state.restarted(self.config)
            self.state.cadence = Cadence()  # learnt again if it ever sends again
            operator.retired = True
            operator.silenced_until, operator.silence_reason = None, ""
            resolutions = dict.fromkeys(QUESTIONS, "retired")
            outcome = "retired: its incidents closed, its status removed"
        else:  # reset
            self.state.restarted(self.config)
            # Its pace too: judged stopped again only once it has shown it anew, as a
            # fresh source (a reset of a dark camera must not page it again at once).
            self.state.cadence = Cadence()
            operator.previous_reference, operator.previous_version = None, 0
            operator.reference_version = self._next_reference_version()
            resolutions = dict.fromkeys(QUESTIONS, "reset")
            outcome = f"detectors restarted, reference {operator.reference_version} learning"
        seen = Observation(command.command_id, at.timestamp, at.partition, at.offset)
        transitions = []
        for question, resolution in resolutions.items():
            transition = self.state.incidents[question].resolve(seen, resolution)
            if transition is not None:
                transitions.append((question, transition))
        entry = AuditEntry(command, at.timestamp, at.partition, at.offset, outcome)
        operator.record(entry)
        return entry, transitions

    def next_silence_check(self) -> float | None:
        """The partition time after which `judge_silence` has news for this source (None:
        none until it sends): `Liveness.next_check` of its state."""
        liveness = self.state.liveness
        return None if liveness is None else liveness.next_check(self.config.stopped_after_s)

    def judge_silence(self, at: EventRef) -> list[tuple[str, Transition]]:
        """Another source's frame at `at` carried its partition's time past this source's
        next check (`cadence.py`): its stopped incident opens, or, opened in a silence
        now over, is announced."""
        check = self.next_silence_check()
        cadence = self.state.cadence
        if check is None or at.timestamp <= check or cadence.last_event_at is None:
            return []
        stopped_after = cadence.stopped_after(self.config.stopped_after_s) or 1.0
        seen = Observation(
            at.event_id,
            at.timestamp,
            at.partition,
            at.offset,
            firings=((SILENCE, (at.timestamp - cadence.last_event_at) / stopped_after, ""),),
        )
        silenced = self.state.operator.silenced_at(at.timestamp)
        transition = self.state.incidents[STOPPED].observe(
            seen, self.config.incident_hold_down_s, silenced
        )
        return [] if transition is None else [(STOPPED, transition)]

    def _next_reference_version(self) -> int:
        operator = self.state.operator
        return max(operator.reference_version, operator.previous_version) + 1

    def _changed(self, changes: list[SignalChange], event: EventRef) -> DetectorFiring:
        """The changed question's firing: its statistic is how many frames the first
        changed signal had outside the reference's range, its threshold how many it takes
        (k of the test window; for a tile, a run of `TILE_PERSISTENCE`)."""
        first = changes[0]
        return DetectorFiring(
            OWN_NORMAL,
            float(first.frames_outside),
            float(first.required),
            event,
            None,
            tuple(changes),
        )
