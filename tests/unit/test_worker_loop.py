"""The worker loop without Kafka: what it does when a checkpoint step fails, when the store
or the brokers are away, and what it counts.

`DriftWorker.run` runs for real over fake Kafka clients and an in-memory store; the fake
consumer stops the worker once it has handed out its batches. A rewound batch is not
delivered again by the fake: a test that needs the re-read lists the batch twice.
"""

from __future__ import annotations

import itertools
import pickle
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pytest
import structlog
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import CommitFailedError, KafkaError, KafkaTimeoutError

from framedrift.worker.detection.monitor import SourceState
from framedrift.worker.ops import metrics
from framedrift.worker.ops.settings import Settings
from framedrift.worker.stream.decoding import DecodingLimits
from framedrift.worker.stream.kafka_clients import BrokersUnavailable, KafkaClients
from framedrift.worker.stream.memory_store import InMemoryStateStore
from framedrift.worker.stream.pipeline import BatchProcessor
from framedrift.worker.stream.service import DriftWorker
from framedrift.worker.stream.state_codec import CODEC_VERSION, StateCodec
from framedrift.worker.stream.state_store import AppliedAdvance
from tests.detector_fixtures import synthetic_config
from tests.state_blobs import pickle_naming, signed_blob
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
SETTINGS = Settings(
    input_topic=TOPIC, health_port=0, retry_backoff_max_s=0.05, stats_interval_s=3600
)


@pytest.fixture(autouse=True)
def _restore_signal_handlers() -> Iterator[None]:
    """`run` installs its own SIGTERM and SIGINT handlers; pytest keeps its own."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@dataclass
class LoopRun:
    worker: DriftWorker
    store: InMemoryStateStore
    producer: FakeProducer
    consumer: FakeConsumer
    logs: list[dict]

    def events(self, name: str) -> list[dict]:
        return [entry for entry in self.logs if entry["event"] == name]

    def counts(self, *source_ids: str) -> dict[str, int]:
        loaded = self.store.load_sources(list(source_ids))
        return {source: state.stats.count for source, state in loaded.states.items()}


def run_loop(
    batches: list[list[ConsumerRecord] | Callable[[], object]],
    rng: np.random.Generator,
    store: InMemoryStateStore | None = None,
    producer: FakeProducer | None = None,
    commit_error: CommitFailedError | None = None,
    errors: list[float] | None = None,
    unreachable_brokers: int = 0,
    started: list[DriftWorker] | None = None,
    partitions: list[int] | None = None,
) -> LoopRun:
    """Runs a worker over these batches of its `partitions` (default: 0) until the consumer
    has handed them out. The worker keeps the states it saved in memory, as deployed.

    Its first `unreachable_brokers` attempts to connect find no broker. The worker is
    appended to `started` before it runs, for callables among the batches that look at it.
    """
    store = store if store is not None else InMemoryStateStore(StateCodec(KEY))
    producer = producer or FakeProducer()
    consumer = FakeConsumer(partitions or [0], batches, commit_error=commit_error)
    processor = BatchProcessor(
        FakeScorer(rng, errors),
        store,
        CONFIG,
        DecodingLimits(1 << 20, 1 << 20),
        "ae-test",
        cached_states=SETTINGS.state_cache_sources,
    )
    attempts = itertools.count()

    def connect_kafka() -> KafkaClients:
        if next(attempts) < unreachable_brokers:
            raise BrokersUnavailable("no bootstrap server accepts connections")
        return KafkaClients(producer, consumer)  # type: ignore[arg-type]

    worker = DriftWorker(SETTINGS, store, processor, connect_kafka)
    consumer.when_drained = worker.stop
    if started is not None:
        started.append(worker)
    with structlog.testing.capture_logs() as logs:
        worker.run()
    assert consumer.closed and producer.closed
    return LoopRun(worker, store, producer, consumer, logs)


def counter(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_failed_publish_rewinds_the_batch_and_commits_nothing(
    rng: np.random.Generator,
) -> None:
    batch = [*image_records("cam-1", range(5)), junk_record(5)]  # the junk goes to the DLQ
    held_before = counter("framedrift_publish_held_back_total", error="KafkaTimeoutError")
    readiness_seen: list[list[str]] = []
    batches: list = [batch, lambda: readiness_seen.append(started[0].readiness.problems())]
    started: list[DriftWorker] = []
    run = run_loop(
        batches, rng, producer=FakeProducer(error=KafkaTimeoutError("no ack")), started=started
    )

    (failed,) = run.events("publish_failed")
    assert failed["error_class"] == "KafkaTimeoutError" and failed["partition"] == 0
    assert run.consumer.seeks == [(0, 0)]
    assert run.consumer.paused == {0}, "held back until its pause is over"
    assert any(
        "partition 0: incident events or dead letters not published" in problem
        for problem in readiness_seen[0]
    )
    assert counter("framedrift_publish_held_back_total", error="KafkaTimeoutError") == (
        held_before + 1
    )
    assert run.consumer.commits == []
    assert run.store.applied_offsets(TOPIC) == {}
    assert run.worker.claims[0].applied_offset is None


def test_a_held_back_partition_does_not_stop_the_others_and_resumes_after_its_pause(
    rng: np.random.Generator,
) -> None:
    """Partition 1's first publish fails: partition 0 is saved and committed at once;
    partition 1 is paused, resumed after its backoff, read again and counted once."""
    refusals = iter([KafkaTimeoutError("no ack")])

    def refuse_partition_1_once(record: SentRecord) -> KafkaError | None:
        from_partition_1 = dict(record.headers).get("dlq_source_partition") == b"1"
        return next(refusals, None) if from_partition_1 else None

    both = [
        *image_records("cam-1", range(5)),
        *image_records("cam-2", range(5), partition=1),
        junk_record(5, partition=1, source_id="cam-2"),
    ]
    read_again = [*image_records("cam-2", range(5), partition=1), junk_record(5, 1, "cam-2")]
    run = run_loop(
        [both, lambda: time.sleep(0.15), read_again],
        rng,
        producer=FakeProducer(refuse=refuse_partition_1_once),
        partitions=[0, 1],
    )

    assert run.consumer.commits == [{0: 5}, {1: 6}]
    assert run.counts("cam-1", "cam-2") == {"cam-1": 5, "cam-2": 5}
    assert run.consumer.paused == set()
    assert [event["partition"] for event in run.events("publish_failed")] == [1]


def test_a_fenced_checkpoint_is_counted_and_the_batch_rewound(rng: np.random.Generator) -> None:
    store = InMemoryStateStore(StateCodec(KEY))
    fenced_before = counter("framedrift_fenced_writes_total")

    def another_worker_claims_partition_0() -> None:
        store.claim_partitions(TOPIC, [0])

    run = run_loop(
        [another_worker_claims_partition_0, image_records("cam-1", range(5))], rng, store
    )

    assert counter("framedrift_fenced_writes_total") == fenced_before + 1
    assert [event["partition"] for event in run.events("partition_fenced")] == [0]
    assert run.consumer.seeks == [(0, 0)]
    assert run.consumer.commits == []
    assert run.counts("cam-1") == {}


def test_a_refused_commit_is_counted_and_the_loop_moves_on(rng: np.random.Generator) -> None:
    commits_failed_before = counter("framedrift_kafka_errors_total", operation="commit")
    batches = [image_records("cam-1", range(5)), image_records("cam-1", range(5, 10))]
    run = run_loop(batches, rng, commit_error=CommitFailedError("the group rebalanced"))

    assert counter("framedrift_kafka_errors_total", operation="commit") == (
        commits_failed_before + 2
    )
    assert len(run.events("offset_commit_failed")) == 2
    # Saved with its applied offset, so the batch is not read again here or anywhere.
    assert run.consumer.seeks == []
    assert run.store.applied_offsets(TOPIC) == {0: 9}
    assert run.counts("cam-1") == {"cam-1": 10}
    assert run.worker.claims[0].applied_offset == 9


def test_an_unreachable_store_rewinds_the_batch_and_counts_it_once_when_back(
    rng: np.random.Generator,
) -> None:
    errors_before = counter("framedrift_redis_errors_total", operation="load_state")
    batch = image_records("cam-1", range(5))
    run = run_loop([batch, batch], rng, FlakyStore(KEY, load_sources=1))

    assert counter("framedrift_redis_errors_total", operation="load_state") == errors_before + 1
    assert [event["step"] for event in run.events("redis_unavailable")] == ["load_state"]
    assert run.consumer.seeks == [(0, 0)]
    assert run.consumer.commits == [{0: 5}]
    assert run.counts("cam-1") == {"cam-1": 5}
    assert run.worker.readiness.redis_ok


def test_partitions_the_assignment_could_not_claim_are_claimed_before_their_first_batch(
    rng: np.random.Generator,
) -> None:
    batch = image_records("cam-1", range(5))
    run = run_loop([batch, batch], rng, FlakyStore(KEY, claim_partitions=1))

    assert [event["step"] for event in run.events("redis_unavailable")] == ["claim_on_assignment"]
    assert [event["partitions"] for event in run.events("partitions_assigned")] == [[0]]
    assert run.consumer.seeks == [(0, 0)]  # claimed instead of processed: read it again
    assert run.counts("cam-1") == {"cam-1": 5}


def test_stored_states_that_cannot_be_used_are_counted_by_reason_and_never_stop_the_worker(
    rng: np.random.Generator,
) -> None:
    store = InMemoryStateStore(StateCodec(KEY))
    old_key, moved_key = store.source_key("cam-old"), store.source_key("cam-moved")
    # A blob of the previous codec version, and one naming a class that was renamed.
    old_state = pickle.dumps(SourceState.fresh(CONFIG))
    store.blobs[old_key] = signed_blob(KEY, old_key, b"fd1", old_state)
    store.blobs[moved_key] = signed_blob(
        KEY,
        moved_key,
        CODEC_VERSION,
        pickle_naming("framedrift.worker.detection.monitor", "RetiredSourceState"),
    )
    before = {
        reason: counter("framedrift_state_resets_total", reason=reason)
        for reason in ("codec_version", "unloadable")
    }
    batch = image_records("cam-old", range(3)) + image_records("cam-moved", range(3, 6))

    run = run_loop([batch], rng, store)

    assert counter("framedrift_state_resets_total", reason="codec_version") == (
        before["codec_version"] + 1
    )
    assert counter("framedrift_state_resets_total", reason="unloadable") == (
        before["unloadable"] + 1
    )
    assert {event["source_id"] for event in run.events("state_reset")} == {"cam-old", "cam-moved"}
    assert run.counts("cam-old", "cam-moved") == {"cam-old": 3, "cam-moved": 3}
    assert run.consumer.commits == [{0: 6}]


def test_images_above_the_outlier_threshold_are_counted(rng: np.random.Generator) -> None:
    threshold = CONFIG.outlier_threshold
    outliers_before = counter("framedrift_outliers_total")
    errors = [2 * threshold, 0.5 * threshold, 1.5 * threshold, 0.9 * threshold]

    run_loop([image_records("cam-1", range(4))], rng, errors=errors)

    assert counter("framedrift_outliers_total") == outliers_before + 2


def test_a_worker_started_before_its_brokers_waits_for_them(rng: np.random.Generator) -> None:
    connect_errors_before = counter("framedrift_kafka_errors_total", operation="connect")

    run = run_loop([image_records("cam-1", range(5))], rng, unreachable_brokers=2)

    assert len(run.events("broker_unavailable")) == 2
    assert counter("framedrift_kafka_errors_total", operation="connect") == (
        connect_errors_before + 2
    )
    assert run.consumer.commits == [{0: 5}]


def test_a_lost_generation_makes_the_worker_not_ready_then_claim_anew_after_a_pause(
    rng: np.random.Generator,
) -> None:
    """The generation hash is evicted: one refused write, then a new claim, not a hot loop."""
    store = InMemoryStateStore(StateCodec(KEY))
    started: list[DriftWorker] = []
    readiness_seen: list[list[str]] = []

    def the_generation_is_lost() -> None:
        store.generations.clear()

    def look_at_readiness() -> None:
        readiness_seen.append(started[0].readiness.problems())

    batch = image_records("cam-1", range(5))
    # fenced; re-read and claimed anew (that batch is read again); then written
    batches: list[list[ConsumerRecord] | Callable[[], object]] = [
        the_generation_is_lost,
        batch,
        look_at_readiness,
        batch,
        batch,
        look_at_readiness,
    ]
    run = run_loop(batches, rng, store, started=started)

    (fenced,) = run.events("partition_fenced")
    assert fenced["generation_lost"] and fenced["retry_in_s"] > 0
    assert any("state write refused (fenced)" in problem for problem in readiness_seen[0])
    assert not any("refused" in problem for problem in readiness_seen[1])
    assert [event["partitions"] for event in run.events("partitions_assigned")] == [[0], [0]]
    assert run.consumer.commits == [{0: 5}]
    assert run.counts("cam-1") == {"cam-1": 5}


def test_a_claim_resumes_right_after_the_stored_applied_offset(rng: np.random.Generator) -> None:
    """The claim's seek on its own: Redis holds more than Kafka's commit says."""
    store = InMemoryStateStore(StateCodec(KEY))
    claim = store.claim_partitions(TOPIC, [0])[0]
    store.save(TOPIC, {0: AppliedAdvance(claim.generation, None, 41)}, {}, {})

    run = run_loop([], rng, store)

    assert run.consumer.seeks == [(0, 42)]
    assert run.worker.claims[0].applied_offset == 41


def test_a_claim_brings_kafkas_commit_up_to_the_stored_applied_offset(
    rng: np.random.Generator,
) -> None:
    """The saved batch's commit was refused and nothing came after it: without the commit
    the group would show that batch as lag for ever."""
    store = InMemoryStateStore(StateCodec(KEY))
    claim = store.claim_partitions(TOPIC, [0])[0]
    store.save(TOPIC, {0: AppliedAdvance(claim.generation, None, 41)}, {}, {})

    run = run_loop([[]], rng, store)

    assert run.consumer.commits == [{0: 42}]
    assert [entry["to"] for entry in run.events("commit_caught_up")] == [42]


def test_a_refused_catch_up_commit_neither_stops_nor_repeats_the_batch(
    rng: np.random.Generator,
) -> None:
    """Kafka refuses the claim's catch-up commit (a rebalance under way): the next
    checkpoint commits anyway, so the batch goes on, counted once."""
    store = InMemoryStateStore(StateCodec(KEY))
    claim = store.claim_partitions(TOPIC, [0])[0]
    store.save(TOPIC, {0: AppliedAdvance(claim.generation, None, 41)}, {}, {})

    run = run_loop(
        [image_records("cam-1", range(42, 47))],
        rng,
        store,
        commit_error=CommitFailedError("group rebalanced"),
    )

    assert len(run.events("commit_catch_up_failed")) == 1
    assert run.events("claim_check_failed") == []
    assert run.counts("cam-1") == {"cam-1": 5}
    assert run.store.applied_offsets(TOPIC) == {0: 46}


def test_an_applied_offset_beyond_the_log_end_is_dropped_loudly(rng: np.random.Generator) -> None:
    """The topic was recreated: the claim seeks to 42, the broker has no such offset, and
    the consumer starts over at 0; the store still says 41 was applied."""
    store = InMemoryStateStore(StateCodec(KEY))
    claim = store.claim_partitions(TOPIC, [0])[0]
    store.save(TOPIC, {0: AppliedAdvance(claim.generation, None, 41)}, {}, {})
    resets_before = counter("framedrift_applied_offset_resets_total")

    run = run_loop([image_records("cam-1", range(5))], rng, store)

    (reset,) = run.events("applied_offset_beyond_log_end")
    assert (reset["applied_offset"], reset["first_offset_read"]) == (41, 0)
    assert counter("framedrift_applied_offset_resets_total") == resets_before + 1
    assert run.counts("cam-1") == {"cam-1": 5}
    assert run.store.applied_offsets(TOPIC) == {0: 4}
    # The claim's catch-up commit (42, past the new log's end) is replaced by the batch's.
    assert run.consumer.commits == [{0: 42}, {0: 5}]
