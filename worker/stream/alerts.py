"""Builds drift alerts from detector firings, and incident events from an incident's
transitions, with ids that survive a replay."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import structlog
from kafka.consumer.fetcher import ConsumerRecord
from pydantic import ValidationError

from framedrift.schemas.alerts import (
    AlertEventRef,
    DriftAlert,
    IncidentEvent,
    SignalChange,
    SignalShift,
    WindowStatistics,
)
from framedrift.worker.detection.incident import Transition
from framedrift.worker.detection.monitor import DetectorFiring, EventRef, MonitorConfig, SourceState
from framedrift.worker.detection.relative_increase import percent_change
from framedrift.worker.detection.scores import SIGNALS, TILE_NAMES, tile_of

log = structlog.get_logger(__name__)

# A fixed namespace makes alert and incident ids stable across workers and restarts.
_ALERT_ID_NAMESPACE = uuid.UUID("5b8f2d4e-7c1a-4e9b-9f3d-2a6c8e0b1d47")


def alert_id(source_id: str, detector: str, partition: int, offset: int) -> str:
    """The same triggering event and detector always give the same id."""
    return str(uuid.uuid5(_ALERT_ID_NAMESPACE, f"{source_id}\0{detector}\0{partition}\0{offset}"))


def incident_id(source_id: str, question: str, partition: int, offset: int) -> str:
    """The same source, question and opening event always give the same id."""
    return alert_id(source_id, f"incident:{question}", partition, offset)


def incident_event_id(incident: str, transition: str, partition: int, offset: int) -> str:
    """The same incident, transition and input event always give the same id."""
    return str(uuid.uuid5(_ALERT_ID_NAMESPACE, f"{incident}\0{transition}\0{partition}\0{offset}"))


def _event_ref(event: EventRef) -> AlertEventRef:
    return AlertEventRef(
        event_id=event.event_id,
        timestamp=datetime.fromtimestamp(event.timestamp, UTC),
        partition=event.partition,
        offset=event.offset,
    )


def build_alert(
    source_id: str,
    firing: DetectorFiring,
    state: SourceState,
    config: MonitorConfig,
    model_version: str,
) -> DriftAlert:
    window = state.window
    errors = window.values("error")
    oldest = window.oldest_index()
    first = EventRef(
        window.event_ids[oldest],
        int(window.partition_ring[oldest]),
        int(window.offset_ring[oldest]),
        float(window.timestamp_ring[oldest]),
    )
    reference = config.reference
    reference_mean = reference.signal_means["error"]
    current_mean = float(errors.mean())
    signals = {
        name: SignalShift(
            reference_mean=reference.signal_means[name],
            current_mean=window.mean(name),
            shift_in_std=reference.shift_in_std(name, window.mean(name)),
        )
        for name in SIGNALS
    }
    moved = (tile_of(change.signal) for change in firing.changes)
    tiles = sorted({tile for tile in moved if tile is not None}, key=TILE_NAMES.index)
    extent = None if not tiles else "local" if len(tiles) <= len(TILE_NAMES) // 2 else "global"
    return DriftAlert(
        alert_id=alert_id(
            source_id, firing.detector, firing.trigger.partition, firing.trigger.offset
        ),
        source_id=source_id,
        question=firing.question,  # type: ignore[arg-type]
        detector=firing.detector,  # type: ignore[arg-type]
        statistic=firing.statistic,
        threshold=firing.threshold,
        reference=WindowStatistics(
            size=len(reference.sorted_errors),
            mean_error=reference_mean,
            std_error=reference.signal_stds["error"],
        ),
        current=WindowStatistics(
            size=len(errors),
            mean_error=current_mean,
            std_error=float(errors.std(ddof=1)) if len(errors) > 1 else 0.0,
        ),
        error_change_pct=float(percent_change(current_mean, reference_mean)),
        direction=firing.direction or ("up" if current_mean >= reference_mean else "down"),
        signals=signals,
        changes=[
            SignalChange(
                signal=change.signal,
                direction=change.direction,  # type: ignore[arg-type]
                recent=change.recent,
                normal=change.normal,
                deviation_sd=change.deviation_sd,
                frames_outside=change.frames_outside,
            )
            for change in firing.changes
        ],
        tiles=tiles,
        extent=extent,
        outliers_in_window=int((errors > config.outlier_threshold).sum()),
        outliers_seen=state.outliers,
        window_first_event=_event_ref(first),
        window_last_event=_event_ref(firing.trigger),
        events_seen=state.stats.count,
        model_version=model_version,
    )


def build_incident_event(
    source_id: str,
    question: str,
    transition: Transition,
    model_version: str,
    labels: dict[str, str] | None = None,
) -> IncidentEvent:
    """The document of one incident transition (`detection/incident.py`), with the
    source's labels as they stand."""
    incident = transition.incident
    identity = incident_id(source_id, question, incident.opened_partition, incident.opened_offset)
    return IncidentEvent(
        event_id=incident_event_id(
            identity, transition.kind, transition.partition, transition.offset
        ),
        incident_id=identity,
        transition=transition.kind,
        resolution=transition.resolution,
        source_id=source_id,
        labels=dict(labels or {}),
        question=question,  # type: ignore[arg-type]
        detectors=incident.detectors,  # type: ignore[arg-type]
        signals=incident.signals,
        tiles=sorted(incident.tiles, key=TILE_NAMES.index),
        severity=incident.severity,
        opened_at=_event_time(incident.opened_at),
        last_alarm_at=_event_time(incident.last_alarm_at),
        at=_event_time(transition.timestamp),
        duration_s=max(0.0, transition.timestamp - incident.opened_at),
        trigger=AlertEventRef(
            event_id=transition.event_id,
            timestamp=_event_time(transition.timestamp),
            partition=transition.partition,
            offset=transition.offset,
        ),
        first_evidence=_stored_alert(incident.first_evidence, source_id),
        latest_evidence=_stored_alert(incident.latest_evidence, source_id),
        model_version=model_version,
        emitted_at=datetime.now(UTC),
    )


def _event_time(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def _stored_alert(document: str, source_id: str) -> DriftAlert | None:
    """An alert kept in a source's state, read back; None (logged) where this code cannot
    read it: one written by an older version of the alert schema. Empty: the incident
    has no alert as evidence (a stopped source)."""
    if not document:
        return None
    try:
        return DriftAlert.model_validate_json(document)
    except ValidationError as error:
        log.warning("incident_evidence_unreadable", source_id=source_id, errors=error.error_count())
        return None


def read_incident_event(record: ConsumerRecord) -> IncidentEvent | None:
    """A record of the alerts topic, read by its followers (`alertmanager.py`,
    `fleet_grouping.py`); None (logged) for one that is not an incident event: skipped,
    not retried, as the same bytes would fail again and hold back the rest."""
    try:
        return IncidentEvent.model_validate_json(record.value or b"")
    except ValidationError as error:
        log.error(
            "incident_record_unreadable",
            partition=record.partition,
            offset=record.offset,
            error=str(error).splitlines()[0],
        )
        return None
