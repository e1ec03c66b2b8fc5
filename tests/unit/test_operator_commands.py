"""Operators' commands on one source: accept a new normal, roll it back, silence, reset."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from framedrift.worker.detection.incident import Transition
from framedrift.worker.detection.monitor import (
    CHANGED,
    OUT_OF_DOMAIN,
    EventRef,
    SourceMonitor,
    SourceState,
    scored_images,
)
from framedrift.worker.detection.operator import HISTORY_KEPT, Command
from framedrift.worker.detection.plain_state import StateFields
from framedrift.worker.ops.health import Readiness
from framedrift.worker.ops.settings import Settings
from framedrift.worker.stream.checkpoint import Checkpointer
from framedrift.worker.stream.decoding import DecodingLimits
from framedrift.worker.stream.fleet_status import source_status
from framedrift.worker.stream.memory_store import InMemoryStateStore
from framedrift.worker.stream.operator_commands import (
    InvalidCommand,
    command_record,
    new_command,
    parse_duration,
    read_command,
)
from framedrift.worker.stream.pipeline import BatchProcessor
from framedrift.worker.stream.state_codec import StateCodec
from tests.detector_fixtures import synthetic_config, synthetic_scores
from tests.stream_fakes import (
    TOPIC,
    FakeConsumer,
    FakeProducer,
    FakeScorer,
    consumer_record,
    image_records,
)
from tests.unit.test_own_normal import Camera

# A short own-normal warm-up (512 frames: a reference frame every 4th) and hold-down.
CONFIG = dataclasses.replace(synthetic_config(), warmup_frames=512, incident_hold_down_s=5.0)
WARM = CONFIG.own_normal.warmup_frames + 50


class Source:
    """One camera's frames, one a second (a frame's offset is its time), through a monitor."""

    def __init__(self, seed: int = 3) -> None:
        self.camera = Camera(seed)
        self.rng = np.random.default_rng(seed)
        self.monitor = SourceMonitor(CONFIG, SourceState.fresh(CONFIG))
        self.offset = 0

    @property
    def state(self) -> SourceState:
        return self.monitor.state

    def frames(self, count: int, **look: float) -> list[tuple[str, Transition]]:
        found = []
        images = scored_images(synthetic_scores(self.rng, count), CONFIG.reference)
        for image in images:
            quality, _, tiles = self.camera.frame(**look)
            event = EventRef(f"e{self.offset}", 0, self.offset, float(self.offset))
            firings = self.monitor.update(image, event, (quality, tiles))
            evidence = [f"{firing.detector} at {self.offset}" for firing in firings]
            found += self.monitor.follow_incidents(event, firings, evidence)
            self.offset += 1
        return found

    def command(self, kind: str, command_id: str = "", **fields: float) -> tuple:
        command = Command(
            kind, command_id or f"{kind}-{self.offset}", "alice", 0.0, "a test", **fields
        )  # type: ignore[arg-type]
        at = EventRef(command.command_id, 0, self.offset, float(self.offset - 1))
        self.offset += 1  # the command record takes its own offset
        return self.monitor.apply(command, at)


def kinds(found: list[tuple[str, Transition]]) -> list[tuple[str, str, int]]:
    return [(question, t.kind, t.offset) for question, t in found]


def test_accept_resolves_the_changed_incident_and_the_new_look_becomes_normal() -> None:
    source = Source()
    assert source.frames(WARM) == []
    darker = source.frames(40, light=0.6)
    assert [(q, kind) for q, kind, _ in kinds(darker)] == [(CHANGED, "opened")]

    entry, found = source.command("accept")

    assert entry is not None and "reference 2" in entry.outcome
    assert [(q, t.kind, t.resolution) for q, t in found] == [(CHANGED, "resolved", "accepted")]
    assert found[0][1].event_id == "accept-" + str(WARM + 40), "its trigger is the command"
    assert source.state.operator.reference_version == 2
    assert source.state.own_normal.warming_up, "the new normal is learnt from here"
    # The darker scene is the normal now: learnt, then tested against, quietly.
    assert source.frames(WARM, light=0.6) == []
    assert not source.state.own_normal.warming_up
    # And a step from it is a new incident.
    assert [kind for _, kind, _ in kinds(source.frames(40, light=0.3))] == ["opened"]


def test_a_copy_of_a_command_already_applied_changes_nothing() -> None:
    source = Source()
    source.frames(WARM)
    first, _ = source.command("accept", command_id="c-1")
    version = source.state.operator.reference_version
    again, found = source.command("accept", command_id="c-1")
    assert first is not None and again is None and found == []
    assert source.state.operator.reference_version == version
    assert len(source.state.operator.history) == 1


def test_rollback_brings_back_the_normal_an_accept_set_aside() -> None:
    source = Source()
    source.frames(WARM)
    before = source.state.own_normal.current_reference
    source.command("accept")
    source.frames(WARM, light=0.6)  # the new normal, learnt
    entry, _ = source.command("rollback")

    assert entry is not None and "reference 1 restored" in entry.outcome
    assert source.state.operator.reference_version == 1
    np.testing.assert_array_equal(source.state.own_normal.reference, before.rows)
    # The old normal judges the darker scene changed again; its own light is quiet.
    assert [kind for _, kind, _ in kinds(source.frames(40, light=0.6))] == ["opened"]
    # A second rollback returns to the accepted normal.
    entry, found = source.command("rollback")
    assert source.state.operator.reference_version == 2
    assert [(t.kind, t.resolution) for _, t in found] == [("resolved", "rolled_back")]


def test_rollback_with_nothing_set_aside_says_so_and_changes_nothing() -> None:
    source = Source()
    source.frames(WARM)
    entry, found = source.command("rollback")
    assert entry is not None and entry.outcome == "nothing to roll back to" and found == []
    assert source.state.operator.reference_version == 1


def test_a_silenced_source_announces_nothing_that_starts_and_ends_within_the_silence() -> None:
    source = Source()
    source.frames(WARM)
    source.command("silence", silence_until=float(source.offset + 200))
    found = source.frames(40, light=0.6)  # a fault...
    found += source.frames(100)  # ...repaired, resolved within the silence
    assert found == []
    assert source.state.incidents[CHANGED].open is None
    # After the silence, a fault is announced as ever.
    found = source.frames(80) + source.frames(40, light=0.6)
    assert [kind for _, kind, _ in kinds(found)] == ["opened"]


def test_an_incident_opened_in_a_silence_and_still_open_after_it_is_announced_then() -> None:
    source = Source()
    source.frames(WARM)
    until = source.offset + 60
    source.command("silence", silence_until=float(until))
    found = source.frames(120, light=0.6)
    assert [(q, kind, offset) for q, kind, offset in kinds(found)] == [(CHANGED, "opened", until)]
    assert found[0][1].incident.opened_at < until, "it says when the problem began"


def test_an_incident_announced_before_a_silence_still_announces_its_resolution() -> None:
    source = Source()
    source.frames(WARM)
    assert [kind for _, kind, _ in kinds(source.frames(40, light=0.6))] == ["opened"]
    source.command("silence", silence_until=float(source.offset + 500))
    found = source.frames(100)
    assert [kind for _, kind, _ in kinds(found)] == ["resolved"]


def test_a_silence_ending_before_now_lifts_the_silence() -> None:
    source = Source()
    source.frames(WARM)
    source.command("silence", silence_until=float(source.offset + 10_000))
    entry, _ = source.command("silence", silence_until=0.0)
    assert entry is not None and entry.outcome == "silence lifted"
    assert source.state.operator.silenced_until is None
    assert [kind for _, kind, _ in kinds(source.frames(40, light=0.6))] == ["opened"]


def test_reset_restarts_the_detectors_and_resolves_every_open_incident() -> None:
    source = Source()
    source.frames(WARM)
    source.frames(40, light=0.6)
    frames_seen = source.state.stats.count
    _, found = source.command("reset")
    assert [(q, t.resolution) for q, t in found] == [(CHANGED, "reset")]
    assert source.state.own_normal.warming_up and source.state.window.size == 0
    assert source.state.stats.count == frames_seen, "what was counted stays counted"
    assert source.state.incidents[OUT_OF_DOMAIN].open is None


def test_the_operator_state_survives_its_round_trip_and_the_history_is_bounded() -> None:
    source = Source()
    source.frames(WARM)
    source.command("accept")
    source.command("silence", silence_until=float(source.offset + 100))
    for _ in range(HISTORY_KEPT + 3):
        source.command("rollback")
    stored = SourceState.from_state(StateFields(source.state.to_state(), "source"))
    operator, original = stored.operator, source.state.operator
    assert len(operator.history) == HISTORY_KEPT
    assert operator.history == original.history
    assert (operator.reference_version, operator.previous_version) == (
        original.reference_version,
        original.previous_version,
    )
    assert operator.silenced_until == original.silenced_until
    assert operator.previous_reference is not None and original.previous_reference is not None
    np.testing.assert_array_equal(
        operator.previous_reference.rows, original.previous_reference.rows
    )


def test_a_command_record_reads_back_as_the_command_sent() -> None:
    sent = new_command("silence", "cam-7", "lens cleaning", "bob@ops", parse_duration("2h"))
    key, value, _ = command_record(sent)
    command = read_command(key, value)
    assert (command.kind, command.issued_by, command.reason) == (
        "silence",
        "bob@ops",
        "lens cleaning",
    )
    assert command.silence_until == pytest.approx((sent.issued_at + timedelta(hours=2)).timestamp())


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        (b"cam-8", None, "no value"),
        (b"cam-8", b"not json", "not an operator command"),
        (b"cam-9", None, "is not the command's source id"),  # value filled in below
    ],
)
def test_a_bad_command_record_is_refused_with_its_reason(
    key: bytes, value: bytes | None, match: str
) -> None:
    if match.startswith("is not"):
        _, value, _ = command_record(new_command("reset", "cam-8", "why", "me"))
    with pytest.raises(InvalidCommand, match=match):
        read_command(key, value)


def test_a_silence_without_an_end_is_not_a_command() -> None:
    command = new_command("silence", "cam-8", "why", "me", timedelta(hours=1))
    document = command.model_dump(mode="json")
    document["silence_until"] = None
    with pytest.raises(InvalidCommand, match="silence_until"):
        read_command(b"cam-8", json.dumps(document).encode())


def test_the_batch_applies_a_command_between_the_frames_it_sits_between(
    rng: np.random.Generator,
) -> None:
    """The command takes effect at its offset; a copy sent again is applied once; its
    partition's replay after a crash skips it like any record."""
    store = InMemoryStateStore(StateCodec(b"k" * 32))
    processor = BatchProcessor(
        FakeScorer(rng), store, CONFIG, DecodingLimits(1 << 20, 1 << 20), "ae-test"
    )
    command = new_command("silence", "cam-1", "maintenance", "carol", timedelta(hours=1))
    key, value, headers = command_record(command)
    records = [
        *image_records("cam-1", range(3)),
        consumer_record(3, key, value, headers),
        *image_records("cam-1", range(4, 6)),
        consumer_record(6, key, value, headers),  # the producer's retry
    ]
    outcome = processor.process(records, {0: None})

    assert outcome.scored.total() == 5 and outcome.dead_letters == []
    assert [(source, entry.offset) for source, entry in outcome.commands_applied] == [("cam-1", 3)]
    state = outcome.states["cam-1"]
    assert state.stats.count == 5
    entry = state.operator.history[0]
    assert (entry.command.issued_by, entry.command.reason) == ("carol", "maintenance")
    # The silence's end is the operator's clock plus an hour; it is measured against the
    # frames' own time, which these test frames take from the clock too.
    assert state.operator.silenced_at(datetime.now(UTC).timestamp())
    assert processor.process(records, {0: 6}).commands_applied == []


def test_retire_closes_the_sources_incidents_and_its_next_frame_brings_it_back() -> None:
    source = Source()
    source.frames(WARM)
    source.frames(40, light=0.6)
    entry, found = source.command("retire")
    assert entry is not None and entry.outcome.startswith("retired")
    assert [(q, t.resolution) for q, t in found] == [(CHANGED, "retired")]
    assert source_status("cam", source.state).condition == "retired"
    assert source.state.liveness is None, "never judged stopped"
    source.frames(1)
    assert not source.state.operator.retired
    assert source_status("cam", source.state).condition == "warming_up"


def test_a_retired_source_s_status_record_is_a_tombstone(rng: np.random.Generator) -> None:
    store = InMemoryStateStore(StateCodec(b"k" * 32))
    processor = BatchProcessor(
        FakeScorer(rng), store, CONFIG, DecodingLimits(1 << 20, 1 << 20), "ae-test"
    )
    key, value, headers = command_record(new_command("retire", "cam-1", "removed", "erin"))
    records = [*image_records("cam-1", range(3)), consumer_record(3, key, value, headers)]
    claims = store.claim_partitions(TOPIC, [0])
    outcome = processor.process(records, {0: None})
    assert outcome.statuses["cam-1"].condition == "retired"
    producer = FakeProducer()
    settings = Settings(input_topic=TOPIC, status_topic="source-status")
    Checkpointer(
        settings, producer, FakeConsumer([0], []), store, Readiness(10.0), lambda: False
    ).checkpoint(outcome, claims)
    (tombstone,) = [sent for sent in producer.sent if sent.topic == "source-status"]
    assert (tombstone.key, tombstone.value) == (b"cam-1", None)
