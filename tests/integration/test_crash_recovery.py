"""Crashes and replays never lose an event and never count one twice."""

from __future__ import annotations

import random
import threading
import time

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from producers.stream import StreamPlan
from tests.integration.conftest import PARTITIONS, Stack

pytestmark = pytest.mark.integration


def test_worker_killed_mid_stream_and_restarted_counts_each_event_once(
    stack: Stack, stream_images
) -> None:
    plan = StreamPlan(
        sources=6, events_per_source=1000, drift={"camera-001": "covariate"}, drift_at=500, seed=5
    )
    total = plan.sources * plan.events_per_source
    sent: dict[str, int] = {}
    production = threading.Thread(target=lambda: sent.update(stack.produce(plan, stream_images)))
    production.start()
    chaos = random.Random(20261122)
    small_batches = {"FRAMEDRIFT_BATCH_SIZE": "40"}  # more checkpoints, more moments to die in
    worker = stack.start_worker(**small_batches)
    kills, committed_at_kill = 0, []
    while kills < 4:
        before = sum(stack.committed().values())
        # Kill only a worker that is processing: one killed while still joining the group
        # would test nothing (a dead member holds its partitions until its session expires).
        deadline = time.monotonic() + 60
        while sum(stack.committed().values()) == before and time.monotonic() < deadline:
            time.sleep(0.2)
        if sum(stack.committed().values()) >= total:
            break
        time.sleep(chaos.uniform(0.0, 1.0))
        worker.kill()
        kills += 1
        committed_at_kill.append(sum(stack.committed().values()))
        worker = stack.start_worker(**small_batches)
    production.join()
    stack.wait_until_committed(total)

    assert kills >= 3, f"the stream finished after {kills} kills; make it longer"
    assert all(0 < committed < total for committed in committed_at_kill), committed_at_kill
    assert sent == stack.counts_in_redis(), f"after SIGKILLs at {committed_at_kill} of {total}"
    # The drifted source was still detected across the crashes, and no clean one alerted.
    alerts = stack.read_topic(stack.alerts_topic, timeout=5)
    assert {record.key for record in alerts} == {b"camera-001"}
    assert worker.terminate() == 0


def test_replay_from_behind_the_stored_offsets_counts_nothing_twice(
    stack: Stack, stream_images
) -> None:
    """Kafka's commit behind Redis's applied offsets: as after a crash between steps 2 and 3."""
    sent = stack.produce(StreamPlan(sources=3, events_per_source=200, seed=9), stream_images)
    worker = stack.start_worker()
    stack.wait_until_committed(sum(sent.values()))
    assert worker.terminate() == 0
    assert stack.counts_in_redis() == sent

    rewind = KafkaConsumer(
        bootstrap_servers=stack.servers.bootstrap_servers,
        group_id=stack.group_id,
        enable_auto_commit=False,
    )
    partitions = [TopicPartition(stack.input_topic, p) for p in range(PARTITIONS)]
    rewind.assign(partitions)
    rewind.commit({tp: OffsetAndMetadata(0, "", -1) for tp in partitions})
    rewind.close()
    assert sum(stack.committed().values()) == 0

    more = stack.produce(StreamPlan(sources=3, events_per_source=50, seed=10), stream_images)
    stack.start_worker()
    stack.wait_until_committed(sum(sent.values()) + sum(more.values()))
    assert stack.counts_in_redis() == {source: sent[source] + more[source] for source in sent}
