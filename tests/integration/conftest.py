"""A real broker and a real Redis for the whole session; a fresh namespace for each test.

Each test gets its own topics, consumer group and Redis key prefix, so tests share the
servers without sharing state. Workers run as separate processes (`framedrift worker`),
as in production, so that they can be killed with SIGKILL.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from framedrift.deploy.local_servers import LocalServers
from framedrift.producers.datasets import LabelledImages
from framedrift.producers.stream import StreamPlan, produce_stream
from framedrift.schemas.commands import OperatorCommand
from framedrift.worker.detection.monitor import SourceState
from framedrift.worker.model.artifact import ModelArtifact
from framedrift.worker.ops.settings import settings_from_env
from framedrift.worker.stream.assembly import build_worker
from framedrift.worker.stream.operator_commands import command_record
from framedrift.worker.stream.state_codec import StateCodec
from framedrift.worker.stream.state_store import RedisStateStore
from tests.conftest import TEST_DETECTOR_SETTINGS

PARTITIONS = 4


@pytest.fixture(scope="session")
def servers() -> Iterator[LocalServers]:
    with LocalServers.start() as running:
        yield running


@dataclass
class WorkerProcess:
    process: subprocess.Popen
    log_path: Path

    def terminate(self, timeout: float = 30) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        self.process.kill()  # SIGKILL: no cleanup, no last commit
        self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text()

    def events(self, name: str) -> list[dict]:
        """The worker's JSON log events of one kind."""
        lines = [line for line in self.log().splitlines() if line.startswith("{")]
        return [event for event in map(json.loads, lines) if event.get("event") == name]

    def owns_partitions(self) -> bool:
        return any(event["partitions"] for event in self.events("partitions_assigned"))

    def wait_until_owning_partitions(self, timeout: float = 60) -> None:
        """Start-up takes seconds (imports, model); a joiner owns nothing until it is done."""
        deadline = time.monotonic() + timeout
        while not self.owns_partitions():
            if time.monotonic() > deadline:
                raise AssertionError(f"no partitions assigned within {timeout} s\n{self.log()}")
            time.sleep(0.1)


@dataclass
class Stack:
    """One test's slice of the servers: its topics, group, key prefix and workers."""

    servers: LocalServers
    model_path: Path
    workdir: Path
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    hmac_key: str = field(default_factory=lambda: secrets.token_hex(16))
    workers: list[WorkerProcess] = field(default_factory=list)

    @property
    def input_topic(self) -> str:
        return f"images-{self.suffix}"

    @property
    def alerts_topic(self) -> str:
        return f"alerts-{self.suffix}"

    @property
    def dead_letter_topic(self) -> str:
        return f"dlq-{self.suffix}"

    @property
    def group_id(self) -> str:
        return f"group-{self.suffix}"

    def environment(self, **overrides: str) -> dict[str, str]:
        return {
            **os.environ,
            "FRAMEDRIFT_BOOTSTRAP_SERVERS": self.servers.bootstrap_servers,
            "FRAMEDRIFT_REDIS_URL": self.servers.redis_url,
            "FRAMEDRIFT_INPUT_TOPIC": self.input_topic,
            "FRAMEDRIFT_ALERTS_TOPIC": self.alerts_topic,
            "FRAMEDRIFT_DEAD_LETTER_TOPIC": self.dead_letter_topic,
            "FRAMEDRIFT_GROUP_ID": self.group_id,
            "FRAMEDRIFT_STATE_PREFIX": f"test-{self.suffix}",
            "FRAMEDRIFT_STATE_HMAC_KEY": self.hmac_key,
            "FRAMEDRIFT_MODEL_PATH": str(self.model_path),
            "FRAMEDRIFT_LOG_FORMAT": "json",
            "FRAMEDRIFT_STATS_INTERVAL_S": "1",
            "FRAMEDRIFT_TORCH_THREADS": "1",
            "FRAMEDRIFT_HEALTH_PORT": "0",
            **{f"FRAMEDRIFT_{name.upper()}": str(v) for name, v in TEST_DETECTOR_SETTINGS.items()},
            **overrides,
        }

    def start_worker(self, **overrides: str) -> WorkerProcess:
        log_path = self.workdir / f"worker-{len(self.workers)}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "framedrift.worker.cli", "worker"],
            env=self.environment(**overrides),
            stdout=log_path.open("wb"),
            stderr=subprocess.STDOUT,
        )
        worker = WorkerProcess(process, log_path)
        self.workers.append(worker)
        return worker

    def produce(
        self, plan: StreamPlan, clean: LabelledImages, novel: LabelledImages | None = None
    ) -> dict[str, int]:
        producer = KafkaProducer(
            bootstrap_servers=self.servers.bootstrap_servers, acks="all", linger_ms=10
        )
        try:
            return produce_stream(
                producer, self.input_topic, plan, clean, novel, show_progress=False
            )
        finally:
            producer.close()

    def send_commands(self, commands: list[OperatorCommand]) -> dict[str, tuple[int, int]]:
        """Operator commands onto the input topic, as `framedrift accept` and its siblings
        send them: command id -> the (partition, offset) it landed at."""
        producer = KafkaProducer(bootstrap_servers=self.servers.bootstrap_servers, acks="all")
        landed = {}
        try:
            for command in commands:
                key, value, headers = command_record(command)
                sent = producer.send(self.input_topic, key=key, value=value, headers=headers)
                metadata = sent.get(timeout=30)
                landed[command.command_id] = (metadata.partition, metadata.offset)
        finally:
            producer.close()
        return landed

    def produce_raw(self, records: list[tuple[bytes | None, bytes | None, list]]) -> None:
        producer = KafkaProducer(bootstrap_servers=self.servers.bootstrap_servers, acks="all")
        for key, value, headers in records:
            producer.send(self.input_topic, key=key, value=value, headers=headers)
        producer.flush()
        producer.close()

    def committed(self, group_id: str | None = None) -> dict[int, int]:
        consumer = KafkaConsumer(
            bootstrap_servers=self.servers.bootstrap_servers,
            group_id=group_id or self.group_id,
            enable_auto_commit=False,
        )
        try:
            return {
                p: consumer.committed(TopicPartition(self.input_topic, p)) or 0
                for p in range(PARTITIONS)
            }
        finally:
            consumer.close()

    def wait_until_committed(
        self, total: int, timeout: float = 120, group_id: str | None = None
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(self.committed(group_id).values()) >= total:
                return
            time.sleep(0.5)
        logs = "\n".join(worker.log()[-3000:] for worker in self.workers)
        committed = sum(self.committed(group_id).values())
        raise AssertionError(f"only {committed} of {total} committed\n{logs}")

    def read_topic(self, topic: str, expected: int | None = None, timeout: float = 10):  # type: ignore[no-untyped-def]
        consumer = KafkaConsumer(
            topic,
            bootstrap_servers=self.servers.bootstrap_servers,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        records, deadline = [], time.monotonic() + timeout
        try:
            while time.monotonic() < deadline and (expected is None or len(records) < expected):
                for batch in consumer.poll(timeout_ms=500).values():
                    records.extend(batch)
        finally:
            consumer.close()
        return records

    def state_store(
        self, prefix: str | None = None, group_id: str | None = None
    ) -> RedisStateStore:
        """The worker's store; another prefix and group give another run's states."""
        return RedisStateStore(
            redis.Redis.from_url(self.servers.redis_url),
            StateCodec(self.hmac_key.encode()),
            prefix or f"test-{self.suffix}",
            group_id or self.group_id,
            ModelArtifact.load(self.model_path).model_version,
        )

    def counts_in_redis(self) -> dict[str, int]:
        return {
            source: state.stats.count
            for source, state in self.state_store().load_all_sources().items()
        }

    def worker_log_and_alerts(self) -> str:
        """Everything the workers wrote where people and subscribers read: logs and alerts."""
        logs = "".join(worker.log() for worker in self.workers)
        alerts = b"".join(r.value for r in self.read_topic(self.alerts_topic, timeout=3))
        return logs + alerts.decode()

    def stop_all(self) -> None:
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.kill()


class SimulatedCrash(Exception):
    """Stands for the worker process dying between checkpoint steps 1 and 2."""


def crash_in_process_worker(
    stack: Stack,
    monkeypatch: pytest.MonkeyPatch,
    dies_before_saving: Callable[[dict[str, SourceState]], bool],
    **overrides: str,
) -> None:
    """Run a worker in this process until the first checkpoint whose states
    `dies_before_saving` picks: it published that batch's events (step 1), then dies
    before saving anything (step 2)."""
    for name, value in stack.environment(**overrides).items():
        if name.startswith("FRAMEDRIFT_"):
            monkeypatch.setenv(name, value)
    doomed = build_worker(settings_from_env())
    save = doomed.store.save

    def save_unless_doomed(topic, applied, states, source_partitions):  # type: ignore[no-untyped-def]
        if dies_before_saving(states):
            raise SimulatedCrash
        save(topic, applied, states, source_partitions)

    monkeypatch.setattr(doomed.store, "save", save_unless_doomed)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with pytest.raises(SimulatedCrash):
            doomed.run()
    finally:
        for sig, handler in handlers.items():  # run() installed its own
            signal.signal(sig, handler)


@pytest.fixture
def stack(servers: LocalServers, model_path: Path, tmp_path: Path) -> Iterator[Stack]:
    running = Stack(servers, model_path, tmp_path)
    servers.create_topics(
        {running.input_topic: PARTITIONS, running.alerts_topic: 1, running.dead_letter_topic: 1}
    )
    try:
        yield running
    finally:
        running.stop_all()
