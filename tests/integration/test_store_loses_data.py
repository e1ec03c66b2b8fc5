"""A Redis that loses data or goes back in time, a source on two partitions, a recreated
topic: each is noticed, said, and the counts come out as the README's Guarantees table
says, against the real broker and Redis.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
import redis
from kafka import KafkaProducer

from framedrift.deploy.local_servers import free_port
from framedrift.producers.datasets import LabelledImages
from framedrift.producers.events import image_event_record
from framedrift.producers.stream import StreamPlan
from tests.integration.conftest import PARTITIONS, Stack
from tests.integration.test_faults import http_get, metric

pytestmark = pytest.mark.integration


def redis_client(stack: Stack) -> redis.Redis:
    return redis.Redis.from_url(stack.servers.redis_url)


def namespace_keys(stack: Stack) -> list[bytes]:
    """Every Redis key of this test's worker (states, applied offsets, generations, homes)."""
    return list(redis_client(stack).scan_iter(match=f"test-{stack.suffix}:*"))


def produce_on_partition(
    stack: Stack,
    images: LabelledImages,
    source_id: str,
    partition: int,
    sequences: range,
) -> None:
    """Events of one source onto a partition of our choosing, not the one its key hashes to."""
    producer = KafkaProducer(bootstrap_servers=stack.servers.bootstrap_servers, acks="all")
    for sequence in sequences:
        record = image_event_record(
            images.images[sequence % len(images)],
            source_id,
            f"{source_id}-{sequence:06d}",
            datetime.now(UTC),
            "binary",
        )
        producer.send(
            stack.input_topic,
            key=record.key,
            value=record.value,
            headers=record.headers,
            partition=partition,
        )
    producer.flush()
    producer.close()


def wait_for_counts(stack: Stack, expected: dict[str, int], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while stack.counts_in_redis() != expected:
        if time.monotonic() > deadline:
            logs = "\n".join(worker.log()[-3000:] for worker in stack.workers)
            raise AssertionError(f"{stack.counts_in_redis()} != {expected}\n{logs}")
        time.sleep(0.5)


def added(*counts: dict[str, int]) -> dict[str, int]:
    total: dict[str, int] = {}
    for count in counts:
        for source, events in count.items():
            total[source] = total.get(source, 0) + events
    return total


def test_a_source_on_two_partitions_is_counted_from_its_home_and_dead_lettered_elsewhere(
    stack: Stack, stream_images: LabelledImages
) -> None:
    """A producer with another partitioner sends one source to two partitions, owned by two
    workers: its state is written from its first partition only, never merged."""
    first = stack.start_worker()
    second = stack.start_worker()
    first.wait_until_owning_partitions()
    second.wait_until_owning_partitions()
    produce_on_partition(stack, stream_images, "camera-x", 0, range(60))
    stack.wait_until_committed(60)
    produce_on_partition(stack, stream_images, "camera-x", 1, range(60, 100))
    others = stack.produce(StreamPlan(sources=2, events_per_source=100, seed=3), stream_images)
    stack.wait_until_committed(100 + sum(others.values()))

    assert stack.counts_in_redis() == {**others, "camera-x": 60}
    dead = stack.read_topic(stack.dead_letter_topic, expected=40)
    headers = [dict(record.headers) for record in dead]
    assert len(dead) == 40
    assert {h["dlq_error_class"] for h in headers} == {b"SourceOnAnotherPartition"}
    assert {h["dlq_source_partition"] for h in headers} == {b"1"}
    messages = {h["dlq_error_message"].decode() for h in headers}
    assert all("lives on images-" in message and "[0]" in message for message in messages)


def test_a_restored_snapshot_under_a_live_worker_loses_no_event(
    stack: Stack, stream_images: LabelledImages
) -> None:
    """Redis goes back in time (a restored snapshot, a failover to a lagging replica): the
    events between the snapshot and the restore are read again, not lost."""
    port = free_port()
    worker = stack.start_worker(FRAMEDRIFT_HEALTH_PORT=str(port))
    before = stack.produce(StreamPlan(sources=3, events_per_source=100, seed=41), stream_images)
    stack.wait_until_committed(sum(before.values()))
    client = redis_client(stack)
    snapshot = {key: client.dump(key) for key in namespace_keys(stack)}

    between = stack.produce(StreamPlan(sources=3, events_per_source=80, seed=42), stream_images)
    stack.wait_until_committed(sum(before.values()) + sum(between.values()))
    for key, dumped in snapshot.items():
        client.restore(key, 0, dumped, replace=True)
    assert stack.counts_in_redis() == before

    after = stack.produce(StreamPlan(sources=3, events_per_source=50, seed=43), stream_images)
    wait_for_counts(stack, added(before, between, after))
    moved = worker.events("applied_offset_moved")
    assert moved and all(event["stored_offset"] < event["expected_offset"] for event in moved)
    assert metric(port, "framedrift_applied_offset_moved_total") == len(moved)


def test_a_lost_generation_is_claimed_anew_and_a_re_sent_dead_letter_keeps_its_id(
    stack: Stack, stream_images: LabelledImages
) -> None:
    """The generation hash disappears (eviction, flush of one key): the worker claims its
    partitions anew after a pause instead of rewinding the same batch forever."""
    port = free_port()
    worker = stack.start_worker(FRAMEDRIFT_HEALTH_PORT=str(port))
    before = stack.produce(StreamPlan(sources=3, events_per_source=100, seed=51), stream_images)
    stack.wait_until_committed(sum(before.values()))
    redis_client(stack).delete(stack.state_store().generation_key(stack.input_topic))

    # The first record after the loss is junk: its dead letter goes out with the fenced
    # batch, and again when the batch is read after the new claim.
    junk_headers = [("schema_version", b"1"), ("source_id", b"camera-000"), ("encoding", b"png")]
    stack.produce_raw([(b"camera-000", b"not an image", junk_headers)])
    after = stack.produce(StreamPlan(sources=3, events_per_source=60, seed=52), stream_images)
    stack.wait_until_committed(sum(before.values()) + sum(after.values()) + 1, timeout=60)

    assert stack.counts_in_redis() == added(before, after)
    fenced = worker.events("partition_fenced")
    assert fenced and all(event["generation_lost"] for event in fenced)
    assert len(fenced) <= PARTITIONS, "fenced again and again instead of claiming anew"
    dead = stack.read_topic(stack.dead_letter_topic, expected=2)
    assert len(dead) >= 2, "the fenced batch's dead letter was not sent again"
    ids = {dict(record.headers)["dlq_id"] for record in dead}
    assert len(ids) == 1
    assert http_get(port, "/readyz")[0] == 200


def test_a_flushed_redis_is_reported_and_the_worker_goes_on_from_the_committed_offsets(
    stack: Stack, stream_images: LabelledImages
) -> None:
    port = free_port()
    worker = stack.start_worker(FRAMEDRIFT_HEALTH_PORT=str(port))
    before = stack.produce(StreamPlan(sources=3, events_per_source=100, seed=61), stream_images)
    stack.wait_until_committed(sum(before.values()))
    redis_client(stack).delete(*namespace_keys(stack))

    after = stack.produce(StreamPlan(sources=3, events_per_source=60, seed=62), stream_images)
    stack.wait_until_committed(sum(before.values()) + sum(after.values()), timeout=60)

    # The lost counts cannot come back; what follows the committed offsets is counted once.
    assert stack.counts_in_redis() == after
    lost = worker.events("state_lost")
    assert {event["partition"] for event in lost} == {
        p for p, offset in stack.committed().items() if offset
    }
    reported = {e["source_id"] for e in worker.events("state_reset") if e["reason"] == "lost"}
    assert reported == set(after)
    assert metric(port, "framedrift_state_lost_partitions_total") == len(lost)
