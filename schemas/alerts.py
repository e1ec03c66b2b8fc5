"""Incidents on the alerts topic.

Each record is one transition of an incident (opened, updated, resolved): the Kafka
value is an `IncidentEvent` JSON document, the key the source id, and the CloudEvents
1.0 attributes travel in Kafka headers (binary content mode, `ce_type` naming the
transition), so a CloudEvents-aware subscriber can route them without parsing the
value. The detectors' own alarms (`DriftAlert`) are an incident's evidence.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from framedrift.schemas.events import SourceLabels

# 2: CUSUM and latent detectors, per-signal shifts.
# 3: `relative_increase` (a fraction) became `error_change_pct` (percent, the unit of the
#    relative_increase detector's statistic); adwin's statistic is the change of its mean
#    estimate and its threshold null; `outliers_in_window` and `outliers_seen` added.
# 4: two questions: `question` (out_of_domain: against the model's baseline; changed:
#    against the source's own recent normal), the `own_normal` detector and its `changes`.
# 5: the `coverage` detector (out of domain on any kind of source, fixed cameras included).
# 6: incidents: the topic carries `IncidentEvent`s (opened, updated, resolved), each with
#    its first and latest `DriftAlert` as evidence; an alert's `detected_at` is gone (an
#    incident's evidence is kept in the source's state, which a replay must rebuild to
#    the byte: the time of the triggering event is `window_last_event.timestamp`).
ALERT_SCHEMA_VERSION = 6

Transition = Literal["opened", "updated", "resolved"]
# The kind of event, not the document's layout: that is `schema_version`.
CLOUDEVENTS_TYPES: dict[str, str] = {
    transition: f"io.framedrift.incident.{transition}.v1"
    for transition in ("opened", "updated", "resolved")
}

# The worker's detector registry lists the same names, then `own_normal` (a test compares).
DetectorName = Literal[
    "error_cusum",
    "latent_cusum",
    "ks",
    "relative_increase",
    "latent_mix",
    "adwin",
    "coverage",
    "own_normal",
]
Question = Literal["out_of_domain", "changed"]
# An incident's question: a detector's, or whether the source stopped sending (its
# "detector" then `silence`, and no alert as evidence).
IncidentQuestion = Literal["out_of_domain", "changed", "stopped"]


class AlertEventRef(BaseModel):
    """Where one input event sits on the input topic."""

    model_config = ConfigDict(extra="forbid")

    event_id: str
    timestamp: datetime
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)


class WindowStatistics(BaseModel):
    """Reconstruction-error statistics of a sample of events."""

    model_config = ConfigDict(extra="forbid")

    size: int = Field(ge=0, description="Number of events the statistics cover.")
    mean_error: float
    std_error: float


class SignalShift(BaseModel):
    """How one per-image signal's recent mean moved against the baseline."""

    model_config = ConfigDict(extra="forbid")

    reference_mean: float
    current_mean: float = Field(description="Mean over the source's recent window.")
    shift_in_std: float = Field(
        description="(current_mean - reference_mean) / the reference's per-image std: "
        "-2 means the window sits two typical image-to-image spreads below the baseline."
    )


class SignalChange(BaseModel):
    """One signal of a `changed` alert: how far it moved from the source's own normal."""

    model_config = ConfigDict(extra="forbid")

    signal: str = Field(
        description="focus, brightness, highlights_clipped, shadows_crushed, contrast, "
        "red_cast, blue_cast, noise (of the frame, at an analysis resolution that keeps "
        "focus), frame_change (against the previous frame: 0 when frozen), displacement (of "
        "the view against the source's first frame, a fraction of the frame), error (the "
        "model's reconstruction error)."
    )
    direction: Literal["up", "down"]
    recent: float = Field(description="The signal's median over the test window.")
    normal: float = Field(description="Its median over the source's reference frames.")
    deviation_sd: float = Field(
        description="(recent - normal) in the reference's robust standard deviations: how "
        "far outside its own normal this camera is."
    )
    frames_outside: int = Field(
        ge=0,
        description="Frames outside the reference's range: of the 9-frame test window, or, "
        "for a tile, in a row (a tile pages only after a run longer than objects take to "
        "cross a scene).",
    )


class DriftAlert(BaseModel):
    """A detector on one source decided that its data moved away from the baseline: the
    evidence of an incident."""

    model_config = ConfigDict(extra="forbid", title="DriftAlert")

    schema_version: Literal[6] = ALERT_SCHEMA_VERSION
    alert_id: str = Field(
        description="Deterministic: the same triggering event and detector give the same id, "
        "so a subscriber can drop an alert re-sent after a worker crash."
    )
    source_id: str
    question: Question = Field(
        description="out_of_domain: this source's data is unlike what the model was trained "
        "on (the model's baseline): the model does not cover it. changed: this source moved "
        "away from its own recent normal (own_normal), whatever its scene."
    )
    detector: DetectorName
    statistic: float = Field(
        description="What the detector measured when it fired. error_cusum, latent_cusum: "
        "the CUSUM sum of standard scores (of the error; of the latent distance); ks: the KS "
        "distance of the error window; relative_increase: the error window mean's increase "
        "over the baseline mean, in percent; latent_mix: the chi-square statistic of the "
        "latent-prototype counts; adwin: how much ADWIN's mean error estimate changed when "
        "it dropped the older part of its window (the new level minus the old, signed); "
        "coverage: how far the median of the source's recent errors or latent distances "
        "(whichever is further) lies beyond the baseline's 99th percentile, in units of "
        "the baseline's spread from its median to that percentile; own_normal: the most "
        "frames of its test window that one signal had outside the range of the source's "
        "reference frames."
    )
    threshold: float | None = Field(
        description="What the statistic is compared with: the threshold calibrated to the "
        "configured expected run time; null for adwin, whose bound depends on its "
        "sub-window sizes; for coverage, 1.0, a fixed level; for own_normal, the frames "
        "that must be outside (set for the expected run time by an exact formula)."
    )
    reference: WindowStatistics = Field(description="The baseline (validation) errors.")
    current: WindowStatistics = Field(description="The source's recent errors.")
    error_change_pct: float = Field(
        description="100 × (current mean error - reference mean error) / reference mean "
        "error: how far the window's mean error moved from the baseline's, in percent "
        "(negative when it fell); the unit of the relative_increase detector's statistic."
    )
    direction: Literal["up", "down"] = Field(
        description="Whether the source's reconstruction error moved up or down."
    )
    signals: dict[str, SignalShift] = Field(
        description="error, latent_distance, brightness, contrast, sharpness: each one's "
        "window mean against the baseline. A darkened camera moves brightness, a blurred "
        "one sharpness, new content the latent distance or error with light and focus steady."
    )
    changes: list[SignalChange] = Field(
        default_factory=list,
        description="For a changed alert: the signals that moved, each against the "
        "source's own normal; empty for out_of_domain alerts.",
    )
    tiles: list[str] = Field(
        default_factory=list,
        description="For a changed alert: the tiles of a 4×4 grid over the frame whose "
        "reconstruction error (signal tile_rYcX) or picture (signal look_rYcX) moved, "
        "tile_r0c0 top left to tile_r3c3 bottom right.",
    )
    extent: Literal["local", "global"] | None = Field(
        None,
        description="For a changed alert where tiles moved: local when at most half of "
        "them did (a smudge, an occlusion), global otherwise (defocus, exposure).",
    )
    outliers_in_window: int = Field(
        ge=0,
        description="Events of the current window whose error is above the baseline quantile "
        "FRAMEDRIFT_OUTLIER_QUANTILE: single images the model could not reconstruct.",
    )
    outliers_seen: int = Field(
        ge=0, description="Such outlier events of this source since it was first seen."
    )
    window_first_event: AlertEventRef
    window_last_event: AlertEventRef = Field(description="The event that triggered the alert.")
    events_seen: int = Field(ge=1, description="Events of this source seen so far.")
    model_version: str


class IncidentEvent(BaseModel):
    """One transition of an incident: one source's problem on one question, from the
    first detector that fired until every detector has been quiet for the hold-down."""

    model_config = ConfigDict(extra="forbid", title="IncidentEvent")

    schema_version: Literal[6] = ALERT_SCHEMA_VERSION
    event_id: str = Field(
        description="Deterministic, from the incident and the input event the transition "
        "happened at: a transition re-sent after a worker crash has the same id (also the "
        "CloudEvents id)."
    )
    incident_id: str = Field(
        description="Deterministic, from the source, the question and the event that "
        "opened it: the same in all of an incident's transitions."
    )
    transition: Transition = Field(
        description="opened: the first detector fired; updated: another detector or a "
        "frame-wide signal joined, or the severity doubled; resolved: see `resolution`."
    )
    resolution: Literal["recovered", "accepted", "rolled_back", "reset", "retired"] | None = Field(
        None,
        description="For resolved: recovered (no detector of the question fired or stayed "
        "in an episode for FRAMEDRIFT_INCIDENT_HOLD_DOWN_S seconds of the source's event "
        "time; for stopped: it sent a frame again), or an operator's command: accepted "
        "(the source's new normal), rolled_back (its previous normal brought back), "
        "reset (its detectors restarted), retired (the source retired), the trigger then "
        "being the command record (its "
        "event_id the command id); null otherwise.",
    )
    source_id: str
    labels: SourceLabels = Field(
        default_factory=dict,
        description="The source's labels when the transition happened (the latest its "
        "events carried).",
    )
    question: IncidentQuestion
    detectors: list[DetectorName | Literal["silence"]] = Field(
        description="Every detector that fired, in order (`silence` for stopped)."
    )
    signals: list[str] = Field(
        description="For a changed incident: every frame-wide signal that alarmed while it "
        "was open (names as `SignalChange.signal`), in order."
    )
    tiles: list[str] = Field(
        description="For a changed incident: every tile (tile_r0c0 top left to tile_r3c3 "
        "bottom right) whose error or picture alarmed while it was open."
    )
    severity: float = Field(
        description="The highest severity of its firings: for changed, the largest "
        "deviation in robust standard deviations; for out_of_domain, the statistic over "
        "its threshold (1 where the bound is not one number); for stopped, its silence "
        "over the silence that stops it."
    )
    opened_at: datetime = Field(description="Event time of the event that opened it.")
    last_alarm_at: datetime = Field(
        description="Event time of the latest event at which a detector fired or was still "
        "in its episode."
    )
    at: datetime = Field(description="Event time of the event this transition happened at.")
    duration_s: float = Field(ge=0, description="`at` - `opened_at`, in seconds.")
    trigger: AlertEventRef = Field(description="The input event this transition happened at.")
    first_evidence: DriftAlert | None = Field(
        description="The alert that opened the incident; null for a stopped incident "
        "(no detector fired: the source fell silent) and where the worker's stored copy "
        "could not be read back (after an upgrade)."
    )
    latest_evidence: DriftAlert | None = Field(
        description="The latest alert of the incident (the first, until another fires)."
    )
    model_version: str
    emitted_at: datetime = Field(description="When the worker made this event (its clock).")


def cloudevents_headers(event: IncidentEvent, source_uri: str) -> list[tuple[str, bytes]]:
    """CloudEvents 1.0 attributes of an incident event as Kafka headers (binary content mode)."""
    attributes = {
        "ce_specversion": "1.0",
        "ce_id": event.event_id,
        "ce_type": CLOUDEVENTS_TYPES[event.transition],
        "ce_source": source_uri,
        "ce_subject": event.source_id,
        "ce_time": event.emitted_at.isoformat(),
        "content-type": "application/json",
    }
    return [(name, value.encode()) for name, value in attributes.items()]
