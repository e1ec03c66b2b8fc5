"""Workers join, leave and freeze mid-stream; each source's state follows its partition."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from framedrift.producers.stream import StreamPlan
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration

# A short session makes the group notice a frozen member within ~3 s.
GROUP_SETTINGS = {"FRAMEDRIFT_BATCH_SIZE": "50", "FRAMEDRIFT_SESSION_TIMEOUT_MS": "3000"}


def test_joining_leaving_and_frozen_workers_keep_counts_exact(stack: Stack, stream_images) -> None:
    plan = StreamPlan(sources=12, events_per_source=1000, rate=800.0, seed=31)
    total = plan.sources * plan.events_per_source
    sent: dict[str, int] = {}
    production = threading.Thread(target=lambda: sent.update(stack.produce(plan, stream_images)))
    production.start()

    def progress_by(events: int) -> None:
        stack.wait_until_committed(min(total, sum(stack.committed().values()) + events))

    first = stack.start_worker(**GROUP_SETTINGS)
    progress_by(500)
    second = stack.start_worker(**GROUP_SETTINGS)
    third = stack.start_worker(**GROUP_SETTINGS)
    # Progress is counted in events, and one worker alone can take the whole stream in
    # the seconds the joiners need to start: wait for them to share the partitions.
    second.wait_until_owning_partitions()
    third.wait_until_owning_partitions()
    progress_by(1500)
    assert first.terminate() == 0  # leaves the group cleanly mid-stream
    progress_by(500)

    # Frozen longer than its session: the group moves its partitions while it cannot
    # know. When it thaws, whatever it was writing must not land over the new owner.
    os.kill(second.process.pid, signal.SIGSTOP)
    time.sleep(6)
    progress_by(300)
    os.kill(second.process.pid, signal.SIGCONT)
    fourth = stack.start_worker(**GROUP_SETTINGS)
    production.join()
    stack.wait_until_committed(total, timeout=180)

    assert stack.counts_in_redis() == sent
    owners = [worker for worker in (first, second, third, fourth) if worker.owns_partitions()]
    assert len(owners) >= 3, "the partitions never moved between workers"
    for worker in (second, third, fourth):
        assert worker.terminate() == 0
