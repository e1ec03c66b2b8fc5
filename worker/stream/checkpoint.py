"""Makes a processed batch durable: publish, persist state with offsets, commit.

The processing guarantee lives here, in `Checkpointer.checkpoint`. Kafka delivers at
least once; Redis stores, next to each partition's detector state, the last input
offset applied to it; together the effect on detector state is exactly once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

import structlog
from kafka import TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from framedrift.schemas.alerts import cloudevents_headers
from framedrift.schemas.dead_letters import DeadLetterHeaders
from framedrift.schemas.headers import as_kafka_headers
from framedrift.worker.ops import metrics
from framedrift.worker.ops.health import Readiness
from framedrift.worker.ops.settings import Settings
from framedrift.worker.stream.backoff import Backoff
from framedrift.worker.stream.pipeline import BatchOutcome
from framedrift.worker.stream.state_store import (
    AppliedAdvance,
    PartitionClaim,
    StateStore,
    StoreUnavailable,
)

log = structlog.get_logger(__name__)

# A fixed namespace makes dead-letter ids stable across workers and restarts.
_DEAD_LETTER_ID_NAMESPACE = uuid.UUID("c3e1a9b2-5d47-4f0e-8a6b-1f2d3c4b5a69")


def dead_letter_id(topic: str, partition: int, offset: int) -> str:
    """The same input record always gives the same id, so a re-sent copy can be dropped."""
    return str(uuid.uuid5(_DEAD_LETTER_ID_NAMESPACE, f"{topic}\0{partition}\0{offset}"))


class CheckpointError(RuntimeError):
    """A batch could not be made durable; its offsets were not committed."""


class AlertPublishFailed(CheckpointError):
    """Step 1: the broker did not acknowledge every alert and dead letter."""


class OffsetCommitFailed(CheckpointError):
    """Step 3: Kafka refused the commit (e.g. after a rebalance). State is safe in Redis;
    the next owner skips what this batch applied."""


class Acknowledgement(Protocol):
    """A sent record's future (kafka-python's `FutureRecordMetadata`)."""

    def get(self, timeout: float | None = None) -> object: ...


class RecordSender(Protocol):
    """The part of a `KafkaProducer` the checkpoint uses."""

    def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Acknowledgement: ...

    def flush(self, timeout: float | None = None) -> None: ...


class OffsetCommitter(Protocol):
    """The part of a `KafkaConsumer` the checkpoint uses."""

    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None: ...


class Checkpointer:
    """Makes each processed batch durable in the order the guarantee needs (`checkpoint`)."""

    def __init__(
        self,
        settings: Settings,
        producer: RecordSender,
        consumer: OffsetCommitter,
        store: StateStore,
        readiness: Readiness,
        should_stop: Callable[[], bool],
    ) -> None:
        self.settings = settings
        self.producer = producer
        self.consumer = consumer
        self.store = store
        self.readiness = readiness
        self.should_stop = should_stop
        self.cloudevents_source = f"urn:framedrift:{settings.group_id}"

    def checkpoint(self, outcome: BatchOutcome, claims: dict[int, PartitionClaim]) -> None:
        """Make one batch's effects durable, in this order:

        Step 1. Publish the batch's alerts and dead letters; wait until the broker has
                acknowledged every one. A crash after this step re-sends them on replay,
                with the same alert ids, so subscribers can drop the copies.
        Step 2. Write the batch's source states and each partition's applied offset to
                Redis in one atomic script, guarded by the partition's generation (a
                worker that lost the partition cannot overwrite its new owner's state),
                by the applied offset this worker expects there (a Redis that went back
                in time is noticed, not written over) and by each source's home
                partition. From here the batch has counted, once.
        Step 3. Commit the next offsets to Kafka. A crash before this step replays the
                batch from the last commit, and step 2's applied offsets turn the replay
                into a no-op.

        Raises AlertPublishFailed (step 1: nothing saved, nothing committed),
        PartitionFenced, AppliedOffsetMoved or SourcePartitionConflict (step 2: nothing
        saved, nothing committed), CheckpointError (step 2:
        the store stayed unreachable until shutdown) or OffsetCommitFailed (step 3: the
        state is saved, the commit is not).
        """
        topic = self.settings.input_topic
        if not outcome.last_offsets:
            return

        # Step 1. Publish alerts and dead letters, wait for acks.
        self._publish(outcome)

        # Step 2. State and applied offsets in one guarded transaction.
        # A batch of replays only (offsets at or below the applied one) must not move the
        # applied offset back: a later replay would then count those events twice.
        applied = {
            partition: AppliedAdvance(
                claims[partition].generation,
                claims[partition].applied_offset,
                max(offset, claims[partition].applied_offset or -1),
            )
            for partition, offset in outcome.last_offsets.items()
        }
        self._save_with_retry(topic, applied, outcome)

        # Step 3. Commit offsets to Kafka.
        offsets = {
            TopicPartition(topic, partition): OffsetAndMetadata(offset + 1, "", -1)
            for partition, offset in outcome.last_offsets.items()
        }
        try:
            self.consumer.commit(offsets)
        except KafkaError as error:
            raise OffsetCommitFailed(
                f"commit of {len(offsets)} partition(s) failed: {error}"
            ) from error

    def _publish(self, outcome: BatchOutcome) -> None:
        futures = []
        for alert in outcome.alerts:
            futures.append(
                self.producer.send(
                    self.settings.alerts_topic,
                    key=alert.source_id.encode(),
                    value=alert.model_dump_json().encode(),
                    headers=cloudevents_headers(alert, self.cloudevents_source),
                )
            )
        failed_at = datetime.now(UTC)
        for dead in outcome.dead_letters:
            record = dead.record
            headers = as_kafka_headers(
                DeadLetterHeaders(
                    dlq_id=dead_letter_id(record.topic, record.partition, record.offset),
                    dlq_error_class=type(dead.error).__name__,
                    dlq_error_message=str(dead.error)[:1024],
                    dlq_source_topic=record.topic,
                    dlq_source_partition=str(record.partition),
                    dlq_source_offset=str(record.offset),
                    dlq_failed_at=failed_at,
                )
            )
            futures.append(
                self.producer.send(
                    self.settings.dead_letter_topic,
                    key=record.key,
                    value=record.value,
                    headers=headers + list(record.headers or []),
                )
            )
        self.producer.flush()
        for future in futures:
            try:
                future.get(timeout=0)
            except KafkaError as error:
                raise AlertPublishFailed(
                    f"{len(futures)} record(s) not all acknowledged: {error}"
                ) from error

    def _save_with_retry(
        self, topic: str, applied: dict[int, AppliedAdvance], outcome: BatchOutcome
    ) -> None:
        """Step 2, retried with capped exponential backoff while Redis is unreachable."""
        backoff = Backoff(self.settings.retry_backoff_max_s)
        while True:
            try:
                self.store.save(topic, applied, outcome.states, outcome.source_partitions)
                self.readiness.set_redis(True)
                return
            except StoreUnavailable as error:
                self.readiness.set_redis(False)
                if self.should_stop():
                    raise CheckpointError(f"Redis unavailable at shutdown: {error}") from error
                metrics.REDIS_ERRORS.labels("checkpoint").inc()
                log.warning(
                    "redis_unavailable",
                    step="checkpoint",
                    error=str(error),
                    retry_in_s=backoff.next_s,
                )
                backoff.wait()
