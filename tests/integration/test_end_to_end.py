"""The whole path against the real broker and Redis: events in, state in Redis, incidents out."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from kafka import KafkaProducer

from framedrift.producers.events import image_event_record
from framedrift.producers.stream import StreamPlan, sequence_of
from framedrift.schemas.alerts import IncidentEvent
from framedrift.schemas.status import SourceStatus
from tests.hostile_payloads import png_claiming
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration

# The incident resolves about 550 events after the drift ends (its detectors' windows
# emptied of drifted events, then the hold-down).
DRIFT_AT, DRIFT_UNTIL = 300, 550
HOLD_DOWN_S = 60.0
PLAN = StreamPlan(
    sources=4,
    events_per_source=1300,
    drift={"camera-002": "noise"},
    drift_at=DRIFT_AT,
    drift_until=DRIFT_UNTIL,
    event_interval_s=1.0,
    seed=11,
    value_format="binary",
)


def test_drift_on_one_source_is_one_incident_for_that_source_resolved_when_it_ends(
    stack: Stack, stream_images
) -> None:
    status_topic = f"status-{stack.suffix}"
    stack.servers.create_topics({status_topic: 1})
    stack.start_worker(
        FRAMEDRIFT_INCIDENT_HOLD_DOWN_S=str(HOLD_DOWN_S), FRAMEDRIFT_STATUS_TOPIC=status_topic
    )
    sent = stack.produce(PLAN, stream_images)
    total = sum(sent.values())
    stack.wait_until_committed(total)

    events = [
        IncidentEvent.model_validate_json(r.value)
        for r in stack.read_topic(stack.alerts_topic, timeout=5)
    ]
    assert events, "the noisy source raised nothing"
    assert {event.source_id for event in events} == {"camera-002"}
    assert len({event.incident_id for event in events}) == 1, "one problem, one incident"
    opened, *updates, resolved = events
    assert opened.transition == "opened" and resolved.transition == "resolved"
    assert {update.transition for update in updates} <= {"updated"}
    assert DRIFT_AT <= sequence_of(opened.trigger.event_id) < DRIFT_AT + 200
    assert opened.first_evidence is not None
    assert opened.first_evidence.window_last_event == opened.trigger
    # Resolved after the drift ended, no sooner than the hold-down after the last alarm
    # (later when a detector's window is longer: it still remembers drifted events).
    assert sequence_of(resolved.trigger.event_id) > DRIFT_UNTIL
    assert resolved.duration_s > (DRIFT_UNTIL - DRIFT_AT) * PLAN.event_interval_s  # type: ignore[operator]
    assert (resolved.at - resolved.last_alarm_at).total_seconds() >= HOLD_DOWN_S

    # The status topic told the same story: each source's news, the noisy one's incident
    # while it lasted, and last of all healthy again.
    statuses = [
        SourceStatus.model_validate_json(r.value) for r in stack.read_topic(status_topic, timeout=5)
    ]
    noisy = [status for status in statuses if status.source_id == "camera-002"]
    during = next(status for status in noisy if status.condition == "incident")
    assert during.open_incidents == [opened.incident_id]
    latest = {status.source_id: status for status in statuses}
    assert latest.keys() == set(sent)
    assert latest["camera-002"].condition != "incident"
    assert all(status.frames < sent[status.source_id] for status in statuses), (
        "news, not a record per frame"
    )

    # Every event counted once in Redis; every offset committed; applied offsets stored.
    assert stack.counts_in_redis() == sent
    committed = stack.committed()
    assert sum(committed.values()) == total
    applied = stack.state_store().applied_offsets(stack.input_topic)
    assert {p: o + 1 for p, o in applied.items()} == {p: c for p, c in committed.items() if c}

    # Incident events carry CloudEvents headers and are keyed by source.
    record = stack.read_topic(stack.alerts_topic, expected=1)[0]
    headers = dict(record.headers)
    assert record.key == b"camera-002"
    assert headers["ce_id"].decode() == json.loads(record.value)["event_id"]
    assert headers["ce_type"] == b"io.framedrift.incident.opened.v1"
    assert headers["ce_specversion"] == b"1.0"
    assert stack.workers[0].terminate() == 0

    # Neither the state key nor any image bytes reach the log or the alerts.
    png = stack.read_topic(stack.input_topic, expected=1)[0].value
    pixels = png[60:120]  # compressed pixel data, past the generic PNG header; 60 % 3 == 0
    published = stack.worker_log_and_alerts()
    assert stack.hmac_key not in published
    assert base64.b64encode(pixels).decode() not in published  # as it would leak in JSON
    assert pixels.hex() not in published
    assert repr(pixels)[2:40] not in published  # as a logged bytes object would show


def test_bad_records_go_to_the_dead_letter_topic_and_valid_ones_still_count(
    stack: Stack, stream_images
) -> None:
    bad = [
        (b"camera-000", b"{not json", [("trace", b"abc")]),
        (b"camera-001", json.dumps({"schema_version": 7}).encode(), []),
        (
            b"camera-000",
            b"\x89PNG truncated",
            [
                ("schema_version", b"1"),
                ("event_id", b"b1"),
                ("source_id", b"camera-000"),
                ("timestamp", b"2026-01-01T00:00:00Z"),
                ("encoding", b"png"),
            ],
        ),
    ]
    valid = image_event_record(
        stream_images.images[0], "camera-000", "x1", datetime.now(UTC), "binary", "png"
    )
    bad.append((b"camera-001", valid.value, valid.headers))  # keyed by another source
    bad.append((b"camera-000", b"x" * 70_000, []))  # over FRAMEDRIFT_MAX_RECORD_BYTES below
    bomb = png_claiming(50_000, 50_000)
    bad.append(
        (
            b"camera-000",
            bomb,
            [(n, v) for n, v in valid.headers if n != "encoding"] + [("encoding", b"png")],
        )
    )
    stack.produce_raw(bad)
    sent = stack.produce(StreamPlan(sources=2, events_per_source=150, seed=3), stream_images)
    stack.produce_raw(bad[:1])
    stack.start_worker(FRAMEDRIFT_MAX_RECORD_BYTES="65536")
    stack.wait_until_committed(sum(sent.values()) + len(bad) + 1)

    dead = stack.read_topic(stack.dead_letter_topic, expected=len(bad) + 1)
    reasons = sorted(dict(r.headers)["dlq_error_class"].decode() for r in dead)
    assert reasons == [
        "ImageTooLarge",
        "MalformedEvent",
        "MalformedEvent",
        "RecordTooLarge",
        "SourceKeyMismatch",
        "UndecodableImage",
        "UnsupportedSchemaVersion",
    ]
    first = next(r for r in dead if r.value == b"{not json")
    assert dict(first.headers)["trace"] == b"abc", "original headers are kept"
    assert dict(first.headers)["dlq_source_topic"].decode() == stack.input_topic
    assert stack.counts_in_redis() == sent


def test_a_record_too_large_for_the_dead_letter_topic_is_dead_lettered_without_its_value(
    stack: Stack, stream_images
) -> None:
    """A record far over FRAMEDRIFT_MAX_RECORD_BYTES is larger than the worker's producer
    sends (`max_request_size`): its dead letter goes out without the value, the size in a
    header, and the partition moves on instead of failing the same publish forever."""
    huge = 1_500_000  # above 2 x 65,536 + 1 MiB, what the worker's producer accepts
    producer = KafkaProducer(
        bootstrap_servers=stack.servers.bootstrap_servers, acks="all", max_request_size=4 << 20
    )
    producer.send(stack.input_topic, key=b"camera-000", value=b"x" * huge)
    producer.flush()
    producer.close()
    sent = stack.produce(StreamPlan(sources=2, events_per_source=100, seed=4), stream_images)
    worker = stack.start_worker(FRAMEDRIFT_MAX_RECORD_BYTES="65536")
    stack.wait_until_committed(sum(sent.values()) + 1, timeout=90)

    (dead,) = stack.read_topic(stack.dead_letter_topic, expected=1)
    headers = dict(dead.headers)
    assert dead.value is None
    assert headers["dlq_value_omitted_bytes"] == str(huge).encode()
    assert headers["dlq_error_class"] == b"RecordTooLarge"
    assert stack.counts_in_redis() == sent
    assert worker.process.poll() is None


def test_a_camera_that_falls_silent_is_one_stopped_incident_resolved_when_it_sends_again(
    stack: Stack, stream_images
) -> None:
    """Four sources a frame a second; camera-003 sends nothing from second 100 to 250.
    The frames are sent at once, so their times lie in the past, as a backlog's do: a
    partition's time is never more than the floor ahead of the broker's timestamps."""
    start = datetime.now(UTC).timestamp() - 400
    records = []
    for second in range(300):
        for index in range(4):
            source = f"camera-{index:03d}"
            if source == "camera-003" and 100 <= second < 250:
                continue
            event = image_event_record(
                stream_images.images[(second * 4 + index) % len(stream_images.images)],
                source,
                f"{source}-{second:07d}",
                datetime.fromtimestamp(start + second, UTC),
                "binary",
                "png",
            )
            records.append((event.key, event.value, event.headers))
    stack.produce_raw(records)
    stack.start_worker(FRAMEDRIFT_STOPPED_AFTER_S="30", FRAMEDRIFT_BATCH_SIZE="64")
    stack.wait_until_committed(len(records))

    events = [
        IncidentEvent.model_validate_json(r.value)
        for r in stack.read_topic(stack.alerts_topic, timeout=5)
    ]
    stopped = [event for event in events if event.question == "stopped"]
    assert [(e.source_id, e.transition) for e in stopped] == [
        ("camera-003", "opened"),
        ("camera-003", "resolved"),
    ]
    opened, resolved = stopped
    # Its last frame at second 99, its floor 30 s: stopped at a neighbour's frame of 130.
    assert sequence_of(opened.trigger.event_id) == 130
    assert opened.detectors == ["silence"] and opened.first_evidence is None
    assert resolved.trigger.event_id == "camera-003-0000250"
    assert resolved.duration_s == pytest.approx(120.0)
