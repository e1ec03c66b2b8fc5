"""Stand-ins for the Kafka clients and the model, for unit tests of the stream room.

What they fake is I/O or torch, never the subject of a test: the batch processor,
the checkpoint and the loop run for real on top of them, with an `InMemoryStateStore`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import numpy as np
from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from framedrift.producers.events import image_event_record
from framedrift.worker.detection.monitor import SourceState
from framedrift.worker.detection.scores import TILE_NAMES, FrameScores
from framedrift.worker.stream.memory_store import InMemoryStateStore
from framedrift.worker.stream.state_codec import StateCodec
from framedrift.worker.stream.state_store import (
    AppliedAdvance,
    LoadedStates,
    PartitionClaim,
    StoreUnavailable,
)
from tests.detector_fixtures import synthetic_scores

TOPIC = "images"


def consumer_record(
    offset: int,
    key: bytes | None,
    value: bytes | None,
    headers: list[tuple[str, bytes]],
    partition: int = 0,
) -> ConsumerRecord:
    return ConsumerRecord(
        TOPIC,
        partition,
        None,
        offset,
        0,
        0,
        key,
        value,
        headers,
        None,
        len(key or b""),
        len(value or b""),
        -1,
    )


def image_records(
    source_id: str, offsets: Iterable[int], partition: int = 0
) -> list[ConsumerRecord]:
    """Valid binary-format image events of one source, at these offsets of one partition."""
    image = np.full((28, 28), 90, dtype=np.uint8)
    records = []
    for offset in offsets:
        event = image_event_record(
            image, source_id, f"{source_id}-{offset}", datetime.now(UTC), "binary", "png"
        )
        records.append(consumer_record(offset, event.key, event.value, event.headers, partition))
    return records


def junk_record(offset: int, partition: int = 0, source_id: str = "cam-1") -> ConsumerRecord:
    """A record no decoder accepts (its headers say binary format, its value is no image)."""
    headers = [("schema_version", b"1"), ("source_id", source_id.encode()), ("encoding", b"png")]
    return consumer_record(offset, source_id.encode(), b"not an image", headers, partition)


class FakeScorer:
    """Synthetic signals instead of a model; `errors`, when given, are handed out in order."""

    def __init__(self, rng: np.random.Generator, errors: Sequence[float] | None = None) -> None:
        self.rng = rng
        self.errors = deque(errors) if errors is not None else None

    def score_frames(self, images: Sequence[np.ndarray]) -> FrameScores:
        scores = synthetic_scores(self.rng, len(images))
        if self.errors is not None:
            scores = replace(scores, error=np.array([self.errors.popleft() for _ in images]))
        # Every tile as bad as the whole image, give or take 2%.
        spread = 1.0 + 0.02 * self.rng.standard_normal((len(images), len(TILE_NAMES)))
        return FrameScores(scores, scores.error[:, None] * spread)


class FlakyStore(InMemoryStateStore):
    """An in-memory store whose first calls fail as they would with Redis unreachable.

    `outages` maps a method name (claim_partitions, load_sources, save) to how many of
    its calls fail before it answers again.
    """

    def __init__(self, hmac_key: bytes, **outages: int) -> None:
        super().__init__(StateCodec(hmac_key))
        self.outages = outages

    def _fail_while_down(self, method: str) -> None:
        if self.outages.get(method, 0) > 0:
            self.outages[method] -= 1
            raise StoreUnavailable("ConnectionError: Error 111 connecting. Connection refused.")

    def claim_partitions(self, topic: str, partitions: list[int]) -> dict[int, PartitionClaim]:
        self._fail_while_down("claim_partitions")
        return super().claim_partitions(topic, partitions)

    def load_sources(self, source_ids: list[str]) -> LoadedStates:
        self._fail_while_down("load_sources")
        return super().load_sources(source_ids)

    def save(
        self,
        topic: str,
        applied: dict[int, AppliedAdvance],
        states: dict[str, SourceState],
        source_partitions: dict[str, int],
    ) -> None:
        self._fail_while_down("save")
        super().save(topic, applied, states, source_partitions)


@dataclass
class SentRecord:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


@dataclass
class FakeAcknowledgement:
    error: KafkaError | None

    def get(self, timeout: float | None = None) -> object:
        if self.error is not None:
            raise self.error
        return None


@dataclass
class FakeProducer:
    """Keeps what the broker would have taken (`sent`) and acknowledges it, except: every
    acknowledgement fails with `error` when that is set; a record for which `refuse`
    returns an error fails with it, at `send` itself when `refuse_at_send` (as
    kafka-python does for a record larger than its `max_request_size`), else at its
    acknowledgement."""

    error: KafkaError | None = None
    refuse: Callable[[SentRecord], KafkaError | None] = lambda record: None
    refuse_at_send: bool = False
    sent: list[SentRecord] = field(default_factory=list)
    flushes: int = 0
    closed: bool = False

    def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> FakeAcknowledgement:
        record = SentRecord(topic, key, value, list(headers or []))
        refusal = self.refuse(record)
        if refusal is not None and self.refuse_at_send:
            raise refusal
        if self.error is None and refusal is None:
            self.sent.append(record)
        return FakeAcknowledgement(self.error or refusal)

    def flush(self, timeout: float | None = None) -> None:
        self.flushes += 1

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


@dataclass
class FakeConsumer:
    """Owns `partitions` of `TOPIC` from the first poll on and hands out `batches` in order.

    A callable among the batches runs in its turn instead, and that poll returns nothing
    (something happening elsewhere between two polls). Once all are handed out it calls
    `when_drained` (a test passes the worker's `stop`). Commits fail with `commit_error`
    when it is set. A partition's committed offset is its last commit.
    """

    partitions: list[int]
    batches: list[list[ConsumerRecord] | Callable[[], object]]
    when_drained: Callable[[], None] = lambda: None
    commit_error: KafkaError | None = None
    commits: list[dict[int, int]] = field(default_factory=list)  # partition -> next offset
    seeks: list[tuple[int, int]] = field(default_factory=list)  # (partition, offset)
    paused: set[int] = field(default_factory=set)
    listener: ConsumerRebalanceListener | None = None
    assigned: bool = False
    closed: bool = False

    def subscribe(self, topics: list[str], listener: ConsumerRebalanceListener) -> None:
        assert topics == [TOPIC]
        self.listener = listener

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict:
        if not self.assigned and self.listener is not None:
            self.assigned = True
            self.listener.on_partitions_assigned(self.assignment())
        if not self.batches:
            self.when_drained()
            return {}
        batch = self.batches.pop(0)
        if callable(batch):
            batch()
            return {}
        polled: dict[TopicPartition, list[ConsumerRecord]] = {}
        for record in batch:
            polled.setdefault(TopicPartition(record.topic, record.partition), []).append(record)
        return polled

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(TOPIC, partition) for partition in self.partitions}

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.seeks.append((partition.partition, offset))

    def pause(self, *partitions: TopicPartition) -> None:
        self.paused |= {tp.partition for tp in partitions}

    def resume(self, *partitions: TopicPartition) -> None:
        self.paused -= {tp.partition for tp in partitions}

    def committed(self, partition: TopicPartition) -> int | None:
        offsets = [
            commit[partition.partition] for commit in self.commits if partition.partition in commit
        ]
        return offsets[-1] if offsets else None

    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        if self.commit_error is not None:
            raise self.commit_error
        self.commits.append({tp.partition: meta.offset for tp, meta in offsets.items()})

    def highwater(self, partition: TopicPartition) -> int | None:
        return None

    def position(self, partition: TopicPartition) -> int:
        return 0

    def close(self, autocommit: bool = True) -> None:
        self.closed = True
