"""Outages and shutdowns: the worker waits, retries, and keeps its counts exact.

These tests stop and start servers, so each brings its own instead of sharing the
session's.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from framedrift.deploy.local_servers import LocalServers, free_port
from framedrift.producers.stream import StreamPlan
from tests.integration.conftest import PARTITIONS, Stack

pytestmark = pytest.mark.integration


@pytest.fixture
def own_servers() -> Iterator[LocalServers]:
    with LocalServers.start() as servers:
        yield servers


@pytest.fixture
def own_stack(own_servers: LocalServers, model_path: Path, tmp_path: Path) -> Iterator[Stack]:
    """A stack on this test's own servers; its workers are killed when the test ends, also
    when it fails, so none is left waiting for servers that are gone."""
    stack = Stack(own_servers, model_path, tmp_path)
    own_servers.create_topics(
        {stack.input_topic: PARTITIONS, stack.alerts_topic: 1, stack.dead_letter_topic: 1}
    )
    try:
        yield stack
    finally:
        stack.stop_all()


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except urllib.error.URLError:
        return 0, ""  # not listening yet


def metric(port: int, name: str) -> float:
    """Sum of a Prometheus metric's samples (all label sets)."""
    _, text = http_get(port, "/metrics")
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


def test_redis_down_for_ten_seconds_mid_stream_loses_and_doubles_nothing(
    own_servers: LocalServers, own_stack: Stack, stream_images
) -> None:
    stack = own_stack
    port = free_port()
    plan = StreamPlan(sources=4, events_per_source=1500, rate=400.0, seed=21)
    sent: dict[str, int] = {}
    production = threading.Thread(target=lambda: sent.update(stack.produce(plan, stream_images)))
    production.start()
    worker = stack.start_worker(
        FRAMEDRIFT_HEALTH_PORT=str(port),
        FRAMEDRIFT_RETRY_BACKOFF_MAX_S="1",
        FRAMEDRIFT_BATCH_SIZE="50",
    )
    stack.wait_until_committed(1000)

    own_servers.stop_redis()
    time.sleep(2)  # let the worker run into the outage and stop committing
    committed_during = sum(stack.committed().values())
    time.sleep(8)
    assert sum(stack.committed().values()) == committed_during, "committed without Redis"
    assert worker.process.poll() is None, "the worker died during the outage"
    status, body = http_get(port, "/readyz")
    assert status == 503 and "redis" in body
    own_servers.start_redis()

    production.join()
    stack.wait_until_committed(plan.sources * plan.events_per_source)
    assert stack.counts_in_redis() == sent
    assert metric(port, "framedrift_redis_errors_total") >= 1
    assert '"redis_unavailable"' in worker.log()
    assert http_get(port, "/readyz")[0] == 200
    assert worker.terminate() == 0


def test_worker_started_before_the_broker_waits_for_it(
    model_path: Path, tmp_path: Path, stream_images
) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        servers = LocalServers(free_port(), free_port(), Path(workdir))
        try:
            servers.start_redis()
            stack = Stack(servers, model_path, tmp_path)
            worker = stack.start_worker(FRAMEDRIFT_RETRY_BACKOFF_MAX_S="1")
            # Start-up (torch, the model) takes seconds on a busy machine: wait for the
            # worker to say it is waiting, and check it is still there.
            deadline = time.monotonic() + 60
            while '"broker_unavailable"' not in worker.log() and time.monotonic() < deadline:
                assert worker.process.poll() is None, worker.log()
                time.sleep(0.5)
            assert '"broker_unavailable"' in worker.log()
            time.sleep(3)  # a few retries later, still waiting
            assert worker.process.poll() is None, worker.log()

            servers.start_broker()
            servers.create_topics(
                {stack.input_topic: PARTITIONS, stack.alerts_topic: 1, stack.dead_letter_topic: 1}
            )
            sent = stack.produce(
                StreamPlan(sources=3, events_per_source=100, seed=2), stream_images
            )
            stack.wait_until_committed(sum(sent.values()))
            assert stack.counts_in_redis() == sent
            assert worker.terminate() == 0
        finally:
            stack.stop_all()
            servers.stop_all()


def test_sigterm_finishes_the_batch_commits_and_leaves(stack: Stack, stream_images) -> None:
    port = free_port()
    sent = stack.produce(StreamPlan(sources=4, events_per_source=1500, seed=4), stream_images)
    total = sum(sent.values())
    worker = stack.start_worker(FRAMEDRIFT_HEALTH_PORT=str(port), FRAMEDRIFT_BATCH_SIZE="64")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and http_get(port, "/healthz")[0] != 200:
        time.sleep(0.2)
    assert http_get(port, "/healthz") == (200, "ok\n")
    stack.wait_until_committed(500)
    status, body = http_get(port, "/readyz")
    assert status == 200 and json.loads(body)["ready"], body
    assert metric(port, "framedrift_events_total") >= 500

    stopped_at = time.monotonic()
    assert worker.terminate(timeout=20) == 0
    assert time.monotonic() - stopped_at < 10
    committed = sum(stack.committed().values())
    assert 0 < committed < total, "stop earlier in the stream: nothing left to prove"
    # What was committed is exactly what Redis counted: no batch left half-done.
    assert sum(stack.counts_in_redis().values()) == committed
    assert '"worker_stopping"' in worker.log()

    stack.start_worker()
    stack.wait_until_committed(total)
    assert stack.counts_in_redis() == sent


def test_redis_refusing_writes_out_of_memory_or_read_only_is_waited_out(
    own_servers: LocalServers, own_stack: Stack, stream_images
) -> None:
    """OOM under `noeviction`, then READONLY (the server demoted to a replica, as during a
    failover): the worker stays up, not ready, commits nothing, and counts every event
    once when Redis takes writes again."""
    stack = own_stack
    port = free_port()
    worker = stack.start_worker(
        FRAMEDRIFT_HEALTH_PORT=str(port), FRAMEDRIFT_RETRY_BACKOFF_MAX_S="1"
    )
    before = stack.produce(StreamPlan(sources=3, events_per_source=100, seed=71), stream_images)
    stack.wait_until_committed(sum(before.values()))
    client = redis.Redis.from_url(own_servers.redis_url)
    sent = [before]
    refusals = {
        "OOM": (
            lambda: client.config_set("maxmemory", "1"),
            lambda: client.config_set("maxmemory", "0"),
        ),
        "READONLY": (
            lambda: client.execute_command("REPLICAOF", "127.0.0.1", str(free_port())),
            lambda: client.execute_command("REPLICAOF", "NO", "ONE"),
        ),
    }
    client.config_set("maxmemory-policy", "noeviction")
    for seed, (refuse, accept) in enumerate(refusals.values()):
        committed_before = sum(stack.committed().values())
        refuse()
        sent.append(
            stack.produce(
                StreamPlan(sources=3, events_per_source=40, seed=80 + seed), stream_images
            )
        )
        time.sleep(4)
        assert worker.process.poll() is None, "the worker died on a refused write"
        assert sum(stack.committed().values()) == committed_before, "committed without state"
        status, body = http_get(port, "/readyz")
        assert status == 503 and "redis" in body
        accept()
        stack.wait_until_committed(committed_before + sum(sent[-1].values()))

    totals: dict[str, int] = {}
    for batch in sent:
        for source, events in batch.items():
            totals[source] = totals.get(source, 0) + events
    assert stack.counts_in_redis() == totals
    assert metric(port, "framedrift_redis_errors_total") >= 2
    assert http_get(port, "/readyz")[0] == 200
    assert worker.terminate() == 0
