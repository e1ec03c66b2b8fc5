"""A source that stops sending: its pace learnt, judged at its partition's other frames."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import numpy as np
import pytest

from framedrift.producers.events import image_event_record
from framedrift.worker.detection.cadence import MIN_GAPS, PAUSE_FACTOR, Cadence, Liveness
from framedrift.worker.detection.monitor import STOPPED
from framedrift.worker.detection.plain_state import MalformedState, StateFields
from framedrift.worker.stream.decoding import DecodingLimits
from framedrift.worker.stream.memory_store import InMemoryStateStore
from framedrift.worker.stream.pipeline import BatchOutcome, BatchProcessor
from framedrift.worker.stream.state_codec import StateCodec
from framedrift.worker.stream.state_store import AppliedAdvance
from tests.detector_fixtures import synthetic_config
from tests.stream_fakes import TOPIC, FakeScorer, consumer_record

FLOOR_S = 30.0
CONFIG = dataclasses.replace(synthetic_config(), stopped_after_s=FLOOR_S)
START = 1_800_000_000.0


def test_a_source_is_judged_once_it_showed_its_pace_and_by_its_longest_usual_pause() -> None:
    cadence = Cadence()
    for second in range(MIN_GAPS):
        cadence.observe(START + second)
    assert cadence.stopped_after(FLOOR_S) is None, "one gap short of its pace"
    resumed = START + MIN_GAPS - 1 + 20  # after a pause of 20 s
    cadence.observe(resumed)
    assert cadence.stopped_after(FLOOR_S) == pytest.approx(PAUSE_FACTOR * 20)
    cadence.observe(resumed - 10)  # late: moves nothing
    assert cadence.last_event_at == resumed
    for second in range(1, 5000):
        cadence.observe(resumed + second)
    assert cadence.stopped_after(FLOOR_S) == FLOOR_S, "the long pause is forgotten"


def test_a_liveness_entry_reads_back_and_a_bad_cadence_state_is_refused() -> None:
    entry = Liveness(Cadence(START + 0.25, 1.5, MIN_GAPS), stopped=True)
    assert Liveness.from_text(entry.to_text()) == entry
    assert Liveness.from_text(Liveness(Cadence(), False).to_text()) == Liveness(Cadence(), False)
    with pytest.raises(MalformedState, match="longest_pause_s"):
        Cadence.from_state(StateFields({"longest_pause_s": -1.0, "gaps": 3}, "cadence"))


def record(source: str, offset: int, second: float):  # type: ignore[no-untyped-def]
    event = image_event_record(
        np.full((28, 28), 90, np.uint8),
        source,
        f"{source}-{offset}",
        datetime.fromtimestamp(START + second, UTC),
        "binary",
        "png",
    )
    return consumer_record(offset, event.key, event.value, event.headers)


def stream() -> list:  # type: ignore[type-arg]
    """cam-a and cam-b, a frame each a second; cam-a silent from second 100 to 250."""
    records, offset = [], 0
    for second in range(400):
        for source in ("cam-a", "cam-b"):
            if source == "cam-a" and 100 <= second < 250:
                continue
            records.append(record(source, offset, second))
            offset += 1
    return records


def run(batches: list[list]) -> list[tuple[str, str, str, int]]:  # type: ignore[type-arg]
    """The batches through a processor and an in-memory store, each saved before the next
    as the checkpoint would: the incident events, as (source, question, transition,
    trigger offset)."""
    store = InMemoryStateStore(StateCodec(b"k" * 32))
    processor = BatchProcessor(
        FakeScorer(np.random.default_rng(0)),
        store,
        CONFIG,
        DecodingLimits(1 << 20, 1 << 20),
        "ae-test",
    )
    claim = store.claim_partitions(TOPIC, [0])[0]
    processor.remember_liveness(store.liveness(TOPIC, [0]))
    applied, events = None, []
    for batch in batches:
        outcome: BatchOutcome = processor.process(batch, {0: applied})
        advance = AppliedAdvance(claim.generation, applied, outcome.last_offsets[0])
        store.save(TOPIC, {0: advance}, outcome.states, outcome.source_partitions)
        processor.remember_liveness(outcome.liveness)
        applied = outcome.last_offsets[0]
        events += [
            (e.source_id, e.question, e.transition, e.trigger.offset)
            for e in outcome.incident_events
            if e.question == STOPPED
        ]
    return events


def test_a_source_that_falls_silent_is_stopped_at_its_neighbours_frame_and_back_when_it_sends() -> (
    None
):
    records = stream()
    events = run([records])
    assert [(source, transition) for source, _, transition, _ in events] == [
        ("cam-a", "opened"),
        ("cam-a", "resolved"),
    ]
    opened_at = records[events[0][3]]
    # cam-a's last frame at second 99, its floor 30 s: stopped at cam-b's frame of 130.
    assert opened_at.key == b"cam-b" and opened_at.offset == 100 + 30 + 100
    resolved_at = records[events[1][3]]
    assert resolved_at.key == b"cam-a"


@pytest.mark.parametrize("size", [1, 7, 64, 250])
def test_the_stop_is_found_at_the_same_frame_however_the_stream_is_cut_into_batches(
    size: int,
) -> None:
    records = stream()
    whole = run([records])
    assert run([records[i : i + size] for i in range(0, len(records), size)]) == whole


def test_a_worker_that_claims_the_partition_later_finds_the_silent_source_from_the_store() -> None:
    """The silent source sends nothing after the claim: only the store's entry knows it."""
    records = stream()
    store = InMemoryStateStore(StateCodec(b"k" * 32))
    first = BatchProcessor(
        FakeScorer(np.random.default_rng(0)), store, CONFIG, DecodingLimits(1 << 20, 1 << 20), "x"
    )
    claim = store.claim_partitions(TOPIC, [0])[0]
    before = records[:150]  # both sources, up to second 75
    outcome = first.process(before, {0: None})
    store.save(
        TOPIC,
        {0: AppliedAdvance(claim.generation, None, 149)},
        outcome.states,
        outcome.source_partitions,
    )

    second = BatchProcessor(
        FakeScorer(np.random.default_rng(0)), store, CONFIG, DecodingLimits(1 << 20, 1 << 20), "x"
    )
    store.claim_partitions(TOPIC, [0])
    second.remember_liveness(store.liveness(TOPIC, [0]))
    later = [r for r in records[150:] if r.key == b"cam-b"][:100]
    outcome = second.process(later, {0: 149})
    assert [(e.source_id, e.transition) for e in outcome.incident_events] == [("cam-a", "opened")]
    assert outcome.states["cam-a"].incidents[STOPPED].open is not None
