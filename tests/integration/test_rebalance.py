"""Workers join, leave and freeze mid-stream; each source's state follows its partition."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

from framedrift.producers.datasets import LabelledImages
from framedrift.producers.stream import StreamPlan
from tests.integration.conftest import Stack, WorkerProcess

pytestmark = pytest.mark.integration

# A short session makes the group notice a frozen member within ~3 s.
GROUP_SETTINGS = {"FRAMEDRIFT_BATCH_SIZE": "50", "FRAMEDRIFT_SESSION_TIMEOUT_MS": "3000"}
# The worker that will be frozen takes large batches: working through a backlog, it
# spends nearly all its time between a poll and that batch's state write.
LARGE_BATCHES = {**GROUP_SETTINGS, "FRAMEDRIFT_BATCH_SIZE": "500"}
# A freeze can still land between two batches, where nothing is being written; then
# it is tried again, at most this many times.
FREEZE_ATTEMPTS = 4


def owns_partitions_now(worker: WorkerProcess) -> bool:
    """Whether the worker's last assignment change gave it partitions."""
    lines = [line for line in worker.log().splitlines() if line.startswith("{")]
    changes = [
        event
        for event in map(json.loads, lines)
        if event.get("event") in ("partitions_assigned", "partitions_revoked")
    ]
    return (
        bool(changes)
        and changes[-1]["event"] == "partitions_assigned"
        and bool(changes[-1]["partitions"])
    )


def wait_for(condition, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def freeze_mid_batch_until_fenced(
    stack: Stack, worker: WorkerProcess, images: LabelledImages
) -> list[dict[str, int]]:
    """Freezes `worker` longer than its session while it is busy with a batch, until the
    state write of that batch is fenced off; returns the events produced for it."""
    bursts = []
    for attempt in range(FREEZE_ATTEMPTS):
        assert wait_for(lambda: owns_partitions_now(worker), timeout=30), worker.log()[-3000:]
        # Paused for less than its session, so that it keeps its partitions while a
        # backlog piles up there that only it will read.
        os.kill(worker.process.pid, signal.SIGSTOP)
        backlog = StreamPlan(sources=12, events_per_source=150, seed=100 + attempt)
        bursts.append(stack.produce(backlog, images))
        os.kill(worker.process.pid, signal.SIGCONT)
        time.sleep(0.3)  # into its first large batch of that backlog
        # Frozen longer than its session: the group moves its partitions while it cannot
        # know. When it thaws, the batch it was busy with must not land over the new owner.
        os.kill(worker.process.pid, signal.SIGSTOP)
        time.sleep(6)
        os.kill(worker.process.pid, signal.SIGCONT)
        if wait_for(lambda: bool(worker.events("partition_fenced")), timeout=8):
            return bursts
    raise AssertionError(f"no fenced write in {FREEZE_ATTEMPTS} freezes\n{worker.log()[-3000:]}")


def test_joining_leaving_and_frozen_workers_keep_counts_exact(stack: Stack, stream_images) -> None:
    plan = StreamPlan(sources=12, events_per_source=1000, rate=800.0, seed=31)
    sent: dict[str, int] = {}
    production = threading.Thread(target=lambda: sent.update(stack.produce(plan, stream_images)))
    production.start()

    def progress_by(events: int) -> None:
        total = plan.sources * plan.events_per_source
        stack.wait_until_committed(min(total, sum(stack.committed().values()) + events))

    first = stack.start_worker(**GROUP_SETTINGS)
    progress_by(500)
    second = stack.start_worker(**LARGE_BATCHES)
    third = stack.start_worker(**GROUP_SETTINGS)
    # Progress is counted in events, and one worker alone can take the whole stream in
    # the seconds the joiners need to start: wait for them to share the partitions.
    second.wait_until_owning_partitions()
    third.wait_until_owning_partitions()
    progress_by(1500)
    assert first.terminate() == 0  # leaves the group cleanly mid-stream
    progress_by(500)

    bursts = freeze_mid_batch_until_fenced(stack, second, stream_images)
    fourth = stack.start_worker(**GROUP_SETTINGS)
    production.join()
    expected = {
        source: count + sum(burst.get(source, 0) for burst in bursts)
        for source, count in sent.items()
    }
    stack.wait_until_committed(sum(expected.values()), timeout=180)

    # The fenced batch was read again by the partition's new owner, and counted once.
    assert stack.counts_in_redis() == expected
    fenced = second.events("partition_fenced")
    assert fenced and all("no longer owns it" in event["reason"] for event in fenced)
    for worker in (second, third, fourth):
        assert worker.terminate() == 0
