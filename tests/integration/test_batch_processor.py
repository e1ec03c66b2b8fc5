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
