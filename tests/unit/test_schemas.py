"""The contract: committed JSON Schemas match the models, and a client using only them works."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
from typing import get_args

import jsonschema
import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from framedrift.schemas import DriftAlert, ImageEvent, IncidentEvent, cloudevents_headers
from framedrift.schemas.alerts import DetectorName
from framedrift.schemas.export import SCHEMA_DIR, SCHEMA_FILES, generated_schemas
from framedrift.worker.detection.incident import Incident, Transition
from framedrift.worker.detection.monitor import (
    OWN_NORMAL,
    DetectorFiring,
    EventRef,
    SourceMonitor,
    SourceState,
    scored_images,
)
from framedrift.worker.detection.own_normal import SignalChange as OwnNormalChange
from framedrift.worker.detection.plain_state import StateFields
from framedrift.worker.detection.registry import DETECTOR_NAMES
from framedrift.worker.detection.scores import ImageScores
from framedrift.worker.stream.alerts import (
    alert_id,
    build_alert,
    build_incident_event,
    incident_id,
)
from framedrift.worker.stream.decoding import DecodingLimits, decode_record
from tests.detector_fixtures import feed, synthetic_config, synthetic_scores

LIMITS = DecodingLimits(max_record_bytes=1 << 20, max_image_pixels=1 << 20)


def load_schema(name: str) -> dict:
    return json.loads((SCHEMA_DIR / name).read_text())


def alert_schema() -> dict:
    """The committed schema of a `DriftAlert`: an incident's evidence, a definition of the
    incident event's schema."""
    incident = load_schema("incident-event.schema.json")
    return {"$ref": "#/$defs/DriftAlert", "$defs": incident["$defs"]}


@pytest.mark.parametrize("file_name", sorted(SCHEMA_FILES))
def test_committed_schema_files_equal_what_the_models_generate(file_name: str) -> None:
    committed = (SCHEMA_DIR / file_name).read_text()
    assert committed == generated_schemas()[file_name], "run `framedrift schema` and commit"


def test_event_built_from_the_json_schema_alone_is_accepted_by_the_worker() -> None:
    """A client that never saw our Python code: a dict, the schema file, base64 PNG."""
    buffer = io.BytesIO()
    Image.fromarray(np.full((28, 28), 200, dtype=np.uint8)).save(buffer, format="PNG")
    document = {
        "schema_version": 1,
        "event_id": "evt-1",
        "source_id": "dock-camera-7",
        "timestamp": "2026-11-22T10:00:00Z",
        "image": {"encoding": "png", "data": base64.b64encode(buffer.getvalue()).decode()},
    }
    jsonschema.validate(document, load_schema("image-event.schema.json"))
    decoded = decode_record(b"dock-camera-7", json.dumps(document).encode(), [], LIMITS)
    assert decoded.source_id == "dock-camera-7"
    assert decoded.image.shape == (28, 28)


@pytest.mark.parametrize(
    "source_id",
    ["camera 001", "camera-001\0", "camera\x01001", "camera-001\x7f", "caméra-001", "c" * 257],
    ids=["space", "NUL", "control", "DEL", "non-ASCII", "too long"],
)
@pytest.mark.parametrize(
    "schema_file", ["image-event.schema.json", "image-event-binary-headers.schema.json"]
)
def test_the_committed_event_schemas_refuse_a_source_id_the_worker_refuses(
    source_id: str, schema_file: str
) -> None:
    """Source ids are visible ASCII: a client validating against the schema learns it there."""
    event = {
        "schema_version": 1 if schema_file == "image-event.schema.json" else "1",
        "event_id": "evt-1",
        "source_id": "dock-camera-7",
        "timestamp": "2026-11-22T10:00:00Z",
    }
    if schema_file == "image-event.schema.json":
        event["image"] = {"encoding": "png", "data": ""}
    else:
        event["encoding"] = "png"
    jsonschema.validate(event, load_schema(schema_file))
    with pytest.raises(jsonschema.ValidationError, match=r"does not match|too long"):
        jsonschema.validate({**event, "source_id": source_id}, load_schema(schema_file))


def test_a_changed_alert_names_each_tile_once_whether_its_error_or_its_picture_moved() -> None:
    config = synthetic_config(window_size=10)
    state = SourceState.fresh(config)
    for offset in range(12):
        state.stats.update(0.5)
        state.window.append({"error": 0.5}, f"e{offset}", 2, offset, 1.7e9 + offset)
    changes = tuple(
        OwnNormalChange(signal, "up", 2.0, 1.0, 5.0, 30, 30)
        for signal in ("look_r0c1", "tile_r0c0", "look_r0c0", "brightness")
    )
    firing = DetectorFiring(OWN_NORMAL, 30.0, 30.0, EventRef("e11", 2, 11, 1.7e9), None, changes)

    alert = build_alert("cam-1", firing, state, config, "ae-x")

    assert alert.question == "changed"
    assert alert.tiles == ["tile_r0c0", "tile_r0c1"] and alert.extent == "local"
    assert [change.signal for change in alert.changes] == [c.signal for c in changes]


def test_alert_from_the_worker_validates_against_the_committed_alert_schema() -> None:
    config = synthetic_config(window_size=10)
    state = SourceState.fresh(config)
    signals = {"error": 0.5, "latent_distance": 1.0, "brightness": 0.6}
    for offset in range(12):
        state.stats.update(0.5)
        state.window.append(signals, f"e{offset}", 2, offset, 1.7e9 + offset)
    trigger = EventRef("e11", 2, 11, 1.7e9 + 11)
    alert = build_alert("cam-1", DetectorFiring("ks", 0.9, 0.5, trigger), state, config, "ae-x")
    jsonschema.validate(json.loads(alert.model_dump_json()), alert_schema())
    assert alert.window_first_event.offset == 2
    assert alert.window_last_event.offset == 11
    reference_mean = config.reference.signal_means["error"]
    assert alert.error_change_pct == pytest.approx(100 * (0.5 - reference_mean) / reference_mean)
    assert alert.direction == "up"
    brightness = alert.signals["brightness"]
    assert brightness.current_mean == pytest.approx(0.6)
    assert brightness.shift_in_std == pytest.approx(
        (0.6 - config.reference.signal_means["brightness"])
        / config.reference.signal_stds["brightness"]
    )


def test_alert_ids_are_deterministic_and_distinguish_detector_and_event() -> None:
    first = alert_id("cam-1", "ks", 0, 42)
    assert first == alert_id("cam-1", "ks", 0, 42)
    assert (
        len(
            {
                first,
                alert_id("cam-1", "adwin", 0, 42),
                alert_id("cam-1", "ks", 0, 43),
                alert_id("cam-2", "ks", 0, 42),
                alert_id("cam-1", "ks", 1, 42),
            }
        )
        == 5
    )


def incident_event_of(
    kind: str, opened_at: float = 1.7e9, at: float = 1.7e9 + 30
) -> tuple[DriftAlert, IncidentEvent]:
    """A changed incident of cam-1 opened by an own-normal firing at offset 11, at the
    transition `kind` at offset 40; and the alert that opened it."""
    config = synthetic_config(window_size=10)
    state = SourceState.fresh(config)
    for offset in range(12):
        state.stats.update(0.5)
        state.window.append({"error": 0.5}, f"e{offset}", 2, offset, opened_at + offset)
    changes = (OwnNormalChange("focus", "down", 2.0, 9.0, -7.0, 9, 6),)
    firing = DetectorFiring(OWN_NORMAL, 9.0, 6.0, EventRef("e11", 2, 11, opened_at), None, changes)
    alert = build_alert("cam-1", firing, state, config, "ae-x")
    incident = Incident(
        opened_partition=2,
        opened_offset=11,
        opened_at=opened_at,
        last_alarm_at=opened_at + 5,
        events_since_alarm=25,
        detectors=[OWN_NORMAL],
        signals=["focus"],
        tiles=["tile_r3c3", "tile_r0c0"],
        severity=7.0,
        announced_severity=7.0,
        first_evidence=alert.model_dump_json(),
        latest_evidence=alert.model_dump_json(),
    )
    transition = Transition(kind, incident, "e40", at, 2, 40)  # type: ignore[arg-type]
    return alert, build_incident_event("cam-1", "changed", transition, "ae-x")


def test_an_incident_event_validates_against_the_committed_schema_and_carries_its_evidence() -> (
    None
):
    alert, event = incident_event_of("updated")
    schema = load_schema("incident-event.schema.json")
    jsonschema.validate(json.loads(event.model_dump_json()), schema)
    assert event.first_evidence == alert and event.latest_evidence == alert
    assert event.tiles == ["tile_r0c0", "tile_r3c3"], "in the grid's order"
    assert event.duration_s == pytest.approx(30.0)
    assert (event.trigger.partition, event.trigger.offset, event.trigger.event_id) == (2, 40, "e40")


def test_incident_ids_are_stable_and_each_transition_has_its_own_event_id() -> None:
    _, opened = incident_event_of("opened")
    _, updated = incident_event_of("updated")
    _, again = incident_event_of("updated")
    assert opened.incident_id == updated.incident_id == again.incident_id
    assert updated.event_id == again.event_id, "a re-sent transition is recognisable"
    assert opened.event_id != updated.event_id
    assert opened.incident_id == incident_id("cam-1", "changed", 2, 11)
    assert incident_id("cam-1", "out_of_domain", 2, 11) != opened.incident_id


def test_an_unreadable_stored_alert_leaves_the_evidence_empty_not_the_event() -> None:
    """Evidence stored by an older alert schema must not stop the incident's transitions."""
    _, event = incident_event_of("resolved")
    incident = dataclasses.replace(
        Incident.from_state(StateFields(_incident_state(event), "open")),
        first_evidence='{"schema_version": 5}',
    )
    transition = Transition("resolved", incident, "e90", 1.7e9 + 90, 2, 90, "recovered")
    rebuilt = build_incident_event("cam-1", "changed", transition, "ae-x")
    assert rebuilt.first_evidence is None and rebuilt.latest_evidence is not None
    assert rebuilt.resolution == "recovered"


def _incident_state(event: IncidentEvent) -> dict:
    assert event.first_evidence is not None
    evidence = event.first_evidence.model_dump_json()
    return {
        "opened_partition": 2,
        "opened_offset": 11,
        "opened_at": 1.7e9,
        "last_alarm_at": 1.7e9 + 5,
        "events_since_alarm": 25,
        "detector_count": 1,
        "detectors": ["own_normal"],
        "signal_count": 1,
        "signals": ["focus"],
        "tile_count": 0,
        "tiles": [],
        "severity": 7.0,
        "announced_severity": 7.0,
        "first_evidence": evidence,
        "latest_evidence": evidence,
        "announced": True,
    }


@pytest.mark.parametrize("kind", ["opened", "updated", "resolved"])
def test_cloudevents_headers_carry_the_required_attributes_and_name_the_transition(
    kind: str,
) -> None:
    _, event = incident_event_of(kind)
    headers = dict(cloudevents_headers(event, "urn:framedrift:g"))
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_id"] == event.event_id.encode()
    assert headers["ce_type"] == f"io.framedrift.incident.{kind}.v1".encode()
    assert headers["ce_subject"] == b"cam-1"
    assert headers["content-type"] == b"application/json"
    assert {"ce_source", "ce_time"} <= headers.keys()


def test_raw_image_without_shape_or_dtype_is_rejected_by_the_model() -> None:
    with pytest.raises(ValidationError, match="shape"):
        ImageEvent.model_validate(
            {
                "event_id": "e",
                "source_id": "s",
                "timestamp": "2026-01-01T00:00:00Z",
                "image": {"encoding": "raw", "data": ""},
            }
        )


def test_an_error_cusum_alert_says_up_when_the_error_jumps_though_the_window_is_still_low(
    rng: np.random.Generator,
) -> None:
    """A few events into a drift the window still holds the calm before it; the CUSUM knows."""
    config = synthetic_config()
    monitor = SourceMonitor(config, SourceState.fresh(config))
    calm = synthetic_scores(rng, 1000)
    feed(monitor, config, dataclasses.replace(calm, error=calm.error * 0.9))
    jump = synthetic_scores(rng, 50)
    jump = dataclasses.replace(jump, error=jump.error * 1.6)
    for offset, image in enumerate(scored_images(jump, config.reference), start=1000):
        firings = monitor.update(image, EventRef(f"e{offset}", 0, offset, 0.0))
        cusum_firings = [firing for firing in firings if firing.detector == "error_cusum"]
        if cusum_firings:
            break
    assert cusum_firings, "the error CUSUM missed a 60% jump"
    alert = build_alert("cam-1", cusum_firings[0], monitor.state, config, "ae-x")
    assert alert.current.mean_error < alert.reference.mean_error  # the lagging window
    assert alert.direction == "up"


def test_the_alert_schema_names_exactly_the_detectors_of_the_registry() -> None:
    """`schemas/` imports nothing of the worker, so its list is a copy: this keeps it true."""
    assert get_args(DetectorName) == (*DETECTOR_NAMES, OWN_NORMAL)


def first_alert_of(
    detector: str, monitor: SourceMonitor, scores: ImageScores, start: int
) -> DriftAlert:
    config = monitor.config
    for offset, image in enumerate(scored_images(scores, config.reference), start=start):
        for firing in monitor.update(image, EventRef(f"e{offset}", 0, offset, 1.7e9)):
            if firing.detector == detector:
                alert = build_alert("cam-1", firing, monitor.state, config, "ae-x")
                document = json.loads(alert.model_dump_json())
                jsonschema.validate(document, alert_schema())
                return alert
    raise AssertionError(f"{detector} never fired")


def test_an_alert_reports_the_error_change_in_percent_like_the_relative_increase_detector(
    rng: np.random.Generator,
) -> None:
    """The rule fires on the window mean; the alert, built on the same event, reports it."""
    config = synthetic_config()
    monitor = SourceMonitor(config, SourceState.fresh(config))
    feed(monitor, config, synthetic_scores(rng, 500))
    risen = synthetic_scores(rng, 1000)
    risen = dataclasses.replace(risen, error=risen.error * 1.3)
    alert = first_alert_of("relative_increase", monitor, risen, start=500)
    assert alert.error_change_pct == pytest.approx(alert.statistic)
    assert alert.threshold is not None and alert.error_change_pct > alert.threshold > 1.0


def test_an_adwin_alert_reports_the_change_of_its_mean_and_no_threshold(
    rng: np.random.Generator,
) -> None:
    config = synthetic_config()
    monitor = SourceMonitor(config, SourceState.fresh(config))
    feed(monitor, config, synthetic_scores(rng, 2000))
    fallen = synthetic_scores(rng, 1000)
    fallen = dataclasses.replace(fallen, error=fallen.error * 0.6)
    alert = first_alert_of("adwin", monitor, fallen, start=2000)
    adwin = monitor.state.detectors["adwin"]
    assert alert.threshold is None
    assert alert.statistic == pytest.approx(adwin.estimation - adwin.mean_before)
    assert alert.statistic < 0 and alert.direction == "down"


def test_an_alert_counts_outliers_in_its_window_and_since_the_source_was_first_seen(
    rng: np.random.Generator,
) -> None:
    """Two outliers long gone from the window, three in it: the window says 3, the source 5."""
    config = synthetic_config(window_size=10)
    state = SourceState.fresh(config)
    monitor = SourceMonitor(config, state)
    outlier = 2.0 * config.outlier_threshold
    errors = np.full(40, 0.5 * config.outlier_threshold)
    errors[[3, 8, 31, 35, 39]] = outlier
    images = synthetic_scores(rng, 40)
    feed(monitor, config, dataclasses.replace(images, error=errors))
    trigger = EventRef("e39", 0, 39, 1.7e9)
    alert = build_alert("cam-1", DetectorFiring("ks", 0.9, 0.5, trigger), state, config, "ae-x")
    assert (alert.outliers_in_window, alert.outliers_seen) == (3, 5)
