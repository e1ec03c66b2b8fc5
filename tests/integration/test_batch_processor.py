"""The batch processor, fed garbage among valid events, against the real Redis."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from framedrift.deploy.local_servers import LocalServers
from framedrift.producers.events import image_event_record
from framedrift.worker.model.artifact import ModelArtifact
from framedrift.worker.stream import pipeline
from framedrift.worker.stream.decoding import DecodingLimits
from framedrift.worker.stream.pipeline import BatchProcessor
from framedrift.worker.stream.state_codec import StateCodec
from framedrift.worker.stream.state_store import RedisStateStore
from tests.stream_fakes import consumer_record

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def processor(servers: LocalServers, trained_artifact: ModelArtifact) -> BatchProcessor:
    store = RedisStateStore(
        redis.Redis.from_url(servers.redis_url),
        StateCodec(secrets.token_bytes(32)),
        uuid.uuid4().hex,
        "g",
        trained_artifact.model_version,
    )
    return BatchProcessor(
        trained_artifact.scorer(),
        store,
        trained_artifact.monitor_config(0.999),
        DecodingLimits(64 * 1024, 256 * 256),
        trained_artifact.model_version,
    )


@pytest.fixture(scope="module")
def valid_records(stream_images) -> list[tuple[bytes, bytes, list]]:
    records = []
    for index in range(20):
        record = image_event_record(
            stream_images.images[index],
            f"cam-{index % 3}",
            f"e{index}",
            datetime.now(UTC),
            "binary" if index % 2 else "json",
            "png",
        )
        records.append((record.key, record.value, record.headers))
    return records


JUNK = st.tuples(
    st.one_of(st.none(), st.binary(max_size=12)),
    st.one_of(st.none(), st.binary(max_size=600)),
    st.lists(
        st.tuples(
            st.sampled_from(["schema_version", "encoding", "source_id", "x"]),
            st.binary(max_size=12),
        ),
        max_size=4,
    ),
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(junk=st.lists(JUNK, min_size=1, max_size=12), seed=st.integers(0, 1000))
def test_garbage_among_valid_events_is_dead_lettered_and_every_valid_event_counts(
    processor: BatchProcessor, valid_records, junk, seed: int
) -> None:
    import random

    mixed = [("valid", record) for record in valid_records] + [("junk", record) for record in junk]
    random.Random(seed).shuffle(mixed)
    records = [consumer_record(offset, *record) for offset, (_, record) in enumerate(mixed)]
    outcome = processor.process(records, {0: None})
    assert outcome.scored.total() == len(valid_records)
    assert len(outcome.dead_letters) == len(junk)
    assert sum(state.stats.count for state in outcome.states.values()) == len(valid_records)
    assert outcome.last_offsets == {0: len(records) - 1}


def test_a_decoder_bug_dead_letters_the_record_instead_of_halting_the_partition(
    processor: BatchProcessor, valid_records, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_decode = pipeline.decode_record

    def decode_with_a_bug(key, value, headers, limits):  # type: ignore[no-untyped-def]
        if value == b"trigger":
            raise ZeroDivisionError("a bug nobody foresaw")
        return real_decode(key, value, headers, limits)

    monkeypatch.setattr(pipeline, "decode_record", decode_with_a_bug)
    records = [consumer_record(0, None, b"trigger", [])]
    records += [consumer_record(i + 1, *record) for i, record in enumerate(valid_records[:3])]
    outcome = processor.process(records, {0: None})
    assert [type(dead.error).__name__ for dead in outcome.dead_letters] == [
        "UnexpectedDecodingError"
    ]
    assert "ZeroDivisionError" in str(outcome.dead_letters[0].error)
    assert outcome.scored.total() == 3


def test_reading_in_threads_gives_the_outcome_of_reading_one_record_at_a_time(
    servers: LocalServers, trained_artifact: ModelArtifact, stream_images, novel_images
) -> None:
    """Records are read by a pool of threads and scored `SCORING_CHUNK` at a time; the
    outcome must not depend on which thread finished first, or on where a chunk ends."""
    records = []
    for offset in range(3 * pipeline.SCORING_CHUNK + 5):
        # Source cam-2 turns to digits halfway through: its detectors have alerts to raise.
        novel = offset % 3 == 2 and offset > 1.5 * pipeline.SCORING_CHUNK
        image = (novel_images if novel else stream_images).images[offset]
        if offset % 17 == 0:
            records.append(consumer_record(offset, b"cam-0", b"not an image", []))
            continue
        record = image_event_record(
            image,
            f"cam-{offset % 3}",
            f"e{offset}",
            datetime(2026, 1, 1, tzinfo=UTC),
            "binary",
            "png",
        )
        records.append(consumer_record(offset, record.key, record.value, record.headers))

    def outcome_with(reader_threads: int):  # type: ignore[no-untyped-def]
        store = RedisStateStore(
            redis.Redis.from_url(servers.redis_url),
            StateCodec(b"k" * 32),
            uuid.uuid4().hex,
            "g",
            trained_artifact.model_version,
        )
        processor = BatchProcessor(
            trained_artifact.scorer(),
            store,
            trained_artifact.monitor_config(0.999),
            DecodingLimits(64 * 1024, 256 * 256),
            trained_artifact.model_version,
            reader_threads,
        )
        try:
            return processor.process(records, {0: None})
        finally:
            processor.close()

    one_at_a_time, threaded = outcome_with(1), outcome_with(4)
    assert [event.event_id for event in threaded.incident_events] == [
        event.event_id for event in one_at_a_time.incident_events
    ]
    assert one_at_a_time.incident_events, "cam-2's digits open an incident: a real comparison"
    assert [dead.record.offset for dead in threaded.dead_letters] == [
        dead.record.offset for dead in one_at_a_time.dead_letters
    ]
    assert threaded.states.keys() == one_at_a_time.states.keys()
    codec = StateCodec(b"k" * 32)
    for source, state in threaded.states.items():
        alone = one_at_a_time.states[source]
        assert codec.encode(state, source) == codec.encode(alone, source), source
