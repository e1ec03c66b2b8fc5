"""A source that stops sending: its pace learnt, judged at its partition's other frames."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import numpy as np
import pytest

from framedrift.producers.events import image_event_record
from framedrift.schemas.commands import OperatorCommand
from framedrift.worker.detection.cadence import MIN_GAPS, PAUSE_FACTOR, Cadence, Liveness
from framedrift.worker.detection.monitor import STOPPED
from framedrift.worker.detection.plain_state import MalformedState, StateFields
from framedrift.worker.stream.decoding import DecodingLimits
from framedrift.worker.stream.memory_store import InMemoryStateStore
from framedrift.worker.stream.operator_commands import command_record, new_command
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


@pytest.mark.parametrize(
    "entry",
    [
        Liveness(Cadence(START + 0.25, 1.5, MIN_GAPS), "unannounced", START + 600.0),
        Liveness(Cadence(), "none", None),
    ],
)
def test_a_liveness_entry_reads_back(entry: Liveness) -> None:
    assert Liveness.from_text(entry.to_text()) == entry


@pytest.mark.parametrize(
    "text",
    ["nan 1.0 32 none -", "1.0 inf 32 none -", "-5 1.0 32 none -", "1 1 -3 none -", "1 1 3 up -"],
)
def test_an_unusable_liveness_entry_is_refused(text: str) -> None:
    """The index is not signed: a NaN deadline would stall the judgement of a partition."""
    with pytest.raises(ValueError, match="liveness entry"):
        Liveness.from_text(text)


def test_a_bad_cadence_state_is_refused() -> None:
    with pytest.raises(MalformedState, match="longest_pause_s"):
        Cadence.from_state(StateFields({"longest_pause_s": -1.0, "gaps": 3}, "cadence"))


def record(source: str, offset: int, second: float, broker_second: float | None = None):  # type: ignore[no-untyped-def]
    """A frame of `source` at `second`; with the broker's timestamp where given."""
    event = image_event_record(
        np.full((28, 28), 90, np.uint8),
        source,
        f"{source}-{offset}",
        datetime.fromtimestamp(START + second, UTC),
        "binary",
        "png",
    )
    found = consumer_record(offset, event.key, event.value, event.headers)
    if broker_second is None:
        return found
    return found._replace(timestamp=int((START + broker_second) * 1000))


def command(kind: str, offset: int, **fields: object):  # type: ignore[no-untyped-def]
    key, value, headers = command_record(new_command(kind, "cam-a", "a test", "op", **fields))  # type: ignore[arg-type]
    return consumer_record(offset, key, value, headers)


def stream(dark: range = range(100, 250), commands: dict[int, object] | None = None) -> list:  # type: ignore[type-arg]
    """cam-a and cam-b, a frame each a second; cam-a silent in the `dark` seconds;
    `commands`: second -> a command record maker, sent before that second's frames."""
    records: list = []  # type: ignore[type-arg]
    for second in range(400):
        if commands and second in commands:
            records.append(commands[second](len(records)))  # type: ignore[operator]
        for source in ("cam-a", "cam-b"):
            if source == "cam-a" and second in dark:
                continue
            records.append(record(source, len(records), second))
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
    assert opened_at.key == b"cam-b" and second_of(opened_at) == 130
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


CUTS = [1, 7, 64, 1000]


def same_for_every_cut(records: list) -> list[tuple[str, str, str, int]]:  # type: ignore[type-arg]
    """The stopped transitions of one run, checked equal for every cut into batches."""
    whole = run([records])
    for size in CUTS:
        assert run([records[i : i + size] for i in range(0, len(records), size)]) == whole, size
    return whole


def test_a_reset_of_a_dark_camera_does_not_page_it_again_however_the_stream_is_cut() -> None:
    records = stream(dark=range(100, 400), commands={200: lambda o: command("reset", o)})
    events = same_for_every_cut(records)
    kinds = [(transition, resolution_of(records, offset)) for _, _, transition, offset in events]
    assert kinds == [
        ("opened", "cam-b"),
        ("resolved", "command"),
    ]


def resolution_of(records: list, offset: int) -> str:  # type: ignore[type-arg]
    """What kind of record the transition happened at."""
    key = records[offset].key
    return "command" if dict(records[offset].headers).get("framedrift_command") else key.decode()


def second_of(found) -> float:  # type: ignore[no-untyped-def]
    """A frame record's event time, in seconds of the stream."""
    stamp = datetime.fromisoformat(dict(found.headers)["timestamp"].decode())
    return stamp.timestamp() - START


def test_a_camera_dark_through_a_silence_is_announced_when_the_silence_ends() -> None:
    """Silenced at second 50 until 150, dark from 100: its stop opens unannounced at 130
    and is announced at the first frame of second 150, the same for every cut."""

    def silence(offset: int):  # type: ignore[no-untyped-def]
        until = datetime.fromtimestamp(START + 150, UTC)
        sent = OperatorCommand(
            command_id="s-1",
            command="silence",
            source_id="cam-a",
            issued_by="op",
            issued_at=datetime.fromtimestamp(START + 50, UTC),
            reason="maintenance",
            silence_until=until,
        )
        return consumer_record(offset, *command_record(sent))

    records = stream(dark=range(100, 400), commands={50: silence})
    events = same_for_every_cut(records)
    assert [transition for _, _, transition, _ in events] == ["opened"]
    announced_at = records[events[0][3]]
    assert announced_at.key == b"cam-b" and second_of(announced_at) == 150


def test_a_camera_whose_clock_runs_ahead_does_not_stop_its_neighbours() -> None:
    """cam-b's event times run 600 s ahead of the broker's; cam-a is never dark."""
    records = []
    for second in range(300):
        records.append(record("cam-a", len(records), second, broker_second=second))
        records.append(record("cam-b", len(records), second + 600, broker_second=second))
    assert run([records]) == []
