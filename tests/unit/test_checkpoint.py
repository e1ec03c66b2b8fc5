"""The checkpoint's order and its failure branches: publish, then save, then commit.

Each step that fails leaves the later ones undone, with its own exception. The Kafka
clients are fakes; the store is the in-memory one, with the Redis store's fencing.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import jsonschema
import numpy as np
import pytest
import structlog
from kafka.errors import CommitFailedError, KafkaTimeoutError, MessageSizeTooLargeError

from framedrift.schemas.export import SCHEMA_DIR
from framedrift.schemas.status import SourceStatus
from framedrift.worker.ops.health import Readiness
from framedrift.worker.ops.settings import Settings
from framedrift.worker.stream.checkpoint import (
    Checkpointer,
    CheckpointError,
    OffsetCommitFailed,
)
from framedrift.worker.stream.decoding import DecodingLimits
from framedrift.worker.stream.memory_store import InMemoryStateStore
from framedrift.worker.stream.pipeline import BatchOutcome, BatchProcessor
from framedrift.worker.stream.state_codec import StateCodec
from framedrift.worker.stream.state_store import (
    PartitionClaim,
    PartitionFenced,
)
from tests.detector_fixtures import synthetic_config
from tests.stream_fakes import (
    TOPIC,
    FakeConsumer,
    FakeProducer,
    FakeScorer,
    FlakyStore,
    SentRecord,
    image_records,
    junk_record,
)

KEY = b"k" * 32
CONFIG = synthetic_config()
SETTINGS = Settings(input_topic=TOPIC, retry_backoff_max_s=0.05)
# Errors far above the baseline: the error CUSUM alerts within the batch.
DRIFTED_ERRORS = [3.0] * 30


def processed_batch(
    store: InMemoryStateStore, rng: np.random.Generator
) -> tuple[BatchOutcome, dict[int, PartitionClaim]]:
    """A batch of 30 drifted images and one junk record on partition 0, processed, not saved."""
    claims = store.claim_partitions(TOPIC, [0])
    processor = BatchProcessor(
        FakeScorer(rng, DRIFTED_ERRORS),
        store,
        CONFIG,
        DecodingLimits(1 << 20, 1 << 20),
        "ae-test",
    )
    records = [*image_records("cam-1", range(30)), junk_record(30)]
    outcome = processor.process(records, {0: None})
    assert outcome.incident_events and outcome.dead_letters, "the batch should publish both kinds"
    return outcome, claims


def checkpointer(
    store: InMemoryStateStore,
    producer: FakeProducer,
    consumer: FakeConsumer,
    stopping: bool = False,
) -> Checkpointer:
    return Checkpointer(
        SETTINGS, producer, consumer, store, Readiness(10.0), should_stop=lambda: stopping
    )


def fresh_store() -> InMemoryStateStore:
    return InMemoryStateStore(StateCodec(KEY))


def test_a_batch_is_published_saved_and_committed(rng: np.random.Generator) -> None:
    store, producer, consumer = fresh_store(), FakeProducer(), FakeConsumer([0], [])
    outcome, claims = processed_batch(store, rng)

    checkpointer(store, producer, consumer).checkpoint(outcome, claims)

    topics = [sent.topic for sent in producer.sent]
    assert topics.count(SETTINGS.alerts_topic) == len(outcome.incident_events)
    assert topics.count(SETTINGS.dead_letter_topic) == 1
    assert store.applied_offsets(TOPIC) == {0: 30}
    assert store.load_sources(["cam-1"]).states["cam-1"].stats.count == 30
    assert consumer.commits == [{0: 31}]


def test_an_unacknowledged_publish_saves_nothing_and_commits_nothing(
    rng: np.random.Generator,
) -> None:
    store, consumer = fresh_store(), FakeConsumer([0], [])
    error = KafkaTimeoutError("no ack within the timeout")
    outcome, claims = processed_batch(store, rng)

    checkpointed = checkpointer(store, FakeProducer(error=error), consumer).checkpoint(
        outcome, claims
    )

    assert checkpointed.held_back == {0: error}
    assert not checkpointed.saved.last_offsets
    assert store.applied_offsets(TOPIC) == {}
    assert store.load_sources(["cam-1"]).states == {}
    assert consumer.commits == []


def two_partition_batch(
    store: InMemoryStateStore, rng: np.random.Generator
) -> tuple[BatchOutcome, dict[int, PartitionClaim]]:
    """Drifted images of cam-1 on partition 0, of cam-2 on partition 1, a junk record each."""
    claims = store.claim_partitions(TOPIC, [0, 1])
    processor = BatchProcessor(
        FakeScorer(rng, DRIFTED_ERRORS * 2), store, CONFIG, DecodingLimits(1 << 20, 1 << 20), "ae"
    )
    records = [
        *image_records("cam-1", range(30)),
        junk_record(30),
        *image_records("cam-2", range(30), partition=1),
        junk_record(30, partition=1, source_id="cam-2"),
    ]
    return processor.process(records, {0: None, 1: None}), claims


def from_partition(partition: int) -> Callable[[SentRecord], bool]:
    """Whether a sent record stems from this input partition (an incident event or a dead
    letter)."""

    def stems_from(record: SentRecord) -> bool:
        if record.topic == SETTINGS.dead_letter_topic:
            return (dict(record.headers)["dlq_source_partition"]) == str(partition).encode()
        return json.loads(record.value or b"{}")["trigger"]["partition"] == partition

    return stems_from


@pytest.mark.parametrize("at_send", [False, True], ids=["at-ack", "at-send"])
def test_a_partition_whose_dead_letter_is_refused_is_held_back_and_the_other_is_saved(
    rng: np.random.Generator, at_send: bool
) -> None:
    """One partition's poison record must not stop the others; a refusal raised by `send`
    itself is handled like one at the acknowledgement, never raised through the loop."""
    store, consumer = fresh_store(), FakeConsumer([0, 1], [])
    error = KafkaTimeoutError("topic metadata not available")
    refuse_partition_1 = from_partition(1)
    producer = FakeProducer(
        refuse=lambda record: error if refuse_partition_1(record) else None,
        refuse_at_send=at_send,
    )
    outcome, claims = two_partition_batch(store, rng)

    checkpointed = checkpointer(store, producer, consumer).checkpoint(outcome, claims)

    assert checkpointed.held_back == {1: error}
    assert store.applied_offsets(TOPIC) == {0: 30}
    assert set(store.load_sources(["cam-1", "cam-2"]).states) == {"cam-1"}
    assert consumer.commits == [{0: 31}]
    assert checkpointed.saved.scored.total() == 30
    assert all(event.source_id == "cam-1" for event in checkpointed.saved.incident_events)


def test_a_dead_letter_too_large_for_its_topic_goes_out_without_its_value(
    rng: np.random.Generator,
) -> None:
    """Retrying a record the topic refuses for its size cannot succeed; sent without its
    value, with its size in a header, it lets the partition move on."""
    store, consumer = fresh_store(), FakeConsumer([0], [])
    too_large = MessageSizeTooLargeError("the record is larger than max.message.bytes")
    producer = FakeProducer(
        refuse=lambda record: (
            too_large if record.topic == SETTINGS.dead_letter_topic and record.value else None
        )
    )
    outcome, claims = processed_batch(store, rng)

    checkpointed = checkpointer(store, producer, consumer).checkpoint(outcome, claims)

    assert checkpointed.held_back == {}
    (letter,) = [sent for sent in producer.sent if sent.topic == SETTINGS.dead_letter_topic]
    headers = dict(letter.headers)
    assert letter.value is None
    assert headers["dlq_value_omitted_bytes"] == str(len(b"not an image")).encode()
    assert headers["dlq_source_offset"] == b"30"
    assert store.applied_offsets(TOPIC) == {0: 30}


def test_a_dead_letter_refused_even_without_its_value_holds_its_partition_back(
    rng: np.random.Generator,
) -> None:
    store, consumer = fresh_store(), FakeConsumer([0], [])
    too_large = MessageSizeTooLargeError("the topic takes nothing of this size")
    producer = FakeProducer(
        refuse=lambda record: too_large if record.topic == SETTINGS.dead_letter_topic else None
    )
    outcome, claims = processed_batch(store, rng)

    checkpointed = checkpointer(store, producer, consumer).checkpoint(outcome, claims)

    assert checkpointed.held_back == {0: too_large}
    assert store.applied_offsets(TOPIC) == {}
    assert consumer.commits == []


def test_a_refused_commit_is_raised_after_the_state_is_saved(rng: np.random.Generator) -> None:
    store, producer = fresh_store(), FakeProducer()
    consumer = FakeConsumer([0], [], commit_error=CommitFailedError("group rebalanced"))
    outcome, claims = processed_batch(store, rng)

    with pytest.raises(OffsetCommitFailed, match="commit of 1 partition"):
        checkpointer(store, producer, consumer).checkpoint(outcome, claims)

    # Whoever reads these records again skips them: the applied offset is stored.
    assert store.applied_offsets(TOPIC) == {0: 30}
    assert store.load_sources(["cam-1"]).states["cam-1"].stats.count == 30


def test_a_partition_claimed_by_another_worker_is_fenced_and_nothing_is_committed(
    rng: np.random.Generator,
) -> None:
    store, producer, consumer = fresh_store(), FakeProducer(), FakeConsumer([0], [])
    outcome, stale_claims = processed_batch(store, rng)
    store.claim_partitions(TOPIC, [0])  # a rebalance gave partition 0 to another worker

    with pytest.raises(PartitionFenced, match=r"images\[0\]") as fenced:
        checkpointer(store, producer, consumer).checkpoint(outcome, stale_claims)

    assert fenced.value.partition == 0
    assert store.applied_offsets(TOPIC) == {}
    assert store.load_sources(["cam-1"]).states == {}
    assert consumer.commits == []


def test_an_unreachable_store_is_retried_until_it_answers(rng: np.random.Generator) -> None:
    store, producer, consumer = FlakyStore(KEY, save=2), FakeProducer(), FakeConsumer([0], [])
    outcome, claims = processed_batch(store, rng)
    step = checkpointer(store, producer, consumer)

    with structlog.testing.capture_logs() as logs:
        step.checkpoint(outcome, claims)

    retries = [entry for entry in logs if entry["event"] == "redis_unavailable"]
    assert [entry["step"] for entry in retries] == ["checkpoint", "checkpoint"]
    assert store.applied_offsets(TOPIC) == {0: 30}
    assert consumer.commits == [{0: 31}]
    assert step.readiness.redis_ok


def test_an_unreachable_store_at_shutdown_ends_the_checkpoint_without_a_commit(
    rng: np.random.Generator,
) -> None:
    store, producer, consumer = FlakyStore(KEY, save=1), FakeProducer(), FakeConsumer([0], [])
    outcome, claims = processed_batch(store, rng)

    with pytest.raises(CheckpointError, match="at shutdown"):
        checkpointer(store, producer, consumer, stopping=True).checkpoint(outcome, claims)

    assert store.applied_offsets(TOPIC) == {}
    assert consumer.commits == []


def test_dead_letter_headers_as_they_travel_match_the_published_schema(
    rng: np.random.Generator,
) -> None:
    store, producer = fresh_store(), FakeProducer()
    outcome, claims = processed_batch(store, rng)
    checkpointer(store, producer, FakeConsumer([0], [])).checkpoint(outcome, claims)

    schema = json.loads((SCHEMA_DIR / "dead-letter-headers.schema.json").read_text())
    (dead_letter,) = [sent for sent in producer.sent if sent.topic == SETTINGS.dead_letter_topic]
    # What a subscriber receives: byte values, which it decodes as UTF-8 text. The
    # original record's headers follow the worker's `dlq_` ones.
    received = {name: value.decode() for name, value in dead_letter.headers}
    assert ("encoding", b"png") in dead_letter.headers
    jsonschema.validate(received, schema, format_checker=jsonschema.FormatChecker())
    assert (received["dlq_source_partition"], received["dlq_source_offset"]) == ("0", "30")


def test_a_batch_of_replays_only_does_not_move_the_applied_offset_back(
    rng: np.random.Generator,
) -> None:
    """Records at or below the applied offset are skipped; saving their offset as the
    applied one would make a later replay count the events above it a second time."""
    store, producer = fresh_store(), FakeProducer()
    outcome, claims = processed_batch(store, rng)
    checkpointer(store, producer, FakeConsumer([0], [])).checkpoint(outcome, claims)
    claims = {0: PartitionClaim(claims[0].generation, 30)}

    processor = BatchProcessor(
        FakeScorer(rng, DRIFTED_ERRORS), store, CONFIG, DecodingLimits(1 << 20, 1 << 20), "ae"
    )
    replays = processor.process(list(image_records("cam-1", range(10, 20))), {0: 30})
    assert replays.skipped_replays.total() == 10
    checkpointer(store, producer, FakeConsumer([0], [])).checkpoint(replays, claims)

    assert store.applied_offsets(TOPIC) == {0: 30}


def test_changed_statuses_go_to_the_status_topic_and_hold_back_their_partition_if_refused(
    rng: np.random.Generator,
) -> None:
    settings = SETTINGS.model_copy(update={"status_topic": "source-status"})
    store, consumer = fresh_store(), FakeConsumer([0, 1], [])
    error = KafkaTimeoutError("topic metadata not available")
    producer = FakeProducer(
        refuse=lambda record: (
            error if record.topic == "source-status" and record.key == b"cam-2" else None
        )
    )
    outcome, claims = two_partition_batch(store, rng)
    assert set(outcome.statuses) == {"cam-1", "cam-2"}, "a source's first batch is news"

    checkpointed = Checkpointer(
        settings, producer, consumer, store, Readiness(10.0), should_stop=lambda: False
    ).checkpoint(outcome, claims)

    statuses = [sent for sent in producer.sent if sent.topic == "source-status"]
    assert [sent.key for sent in statuses] == [b"cam-1"]  # cam-2's was refused
    published = SourceStatus.model_validate_json(
        next(sent.value for sent in statuses if sent.key == b"cam-1") or b""
    )
    assert published.condition == "incident" and published.open_incidents
    assert checkpointed.held_back == {1: error}
    assert consumer.commits == [{0: 31}]


def test_without_a_status_topic_no_status_is_published(rng: np.random.Generator) -> None:
    store, producer, consumer = fresh_store(), FakeProducer(), FakeConsumer([0], [])
    outcome, claims = processed_batch(store, rng)
    assert outcome.statuses
    checkpointer(store, producer, consumer).checkpoint(outcome, claims)
    assert {sent.topic for sent in producer.sent} == {
        SETTINGS.alerts_topic,
        SETTINGS.dead_letter_topic,
    }
