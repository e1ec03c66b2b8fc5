"""Makes a processed batch durable: publish, persist state with offsets, commit.

The processing guarantee lives here, in `Checkpointer.checkpoint`. Kafka delivers at
least once; Redis stores, next to each partition's detector state, the last input
offset applied to it; together the effect on detector state is exactly once.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import structlog
from kafka import TopicPartition
from kafka.errors import KafkaError, MessageSizeTooLargeError, RecordListTooLargeError
from kafka.structs import OffsetAndMetadata

from framedrift.schemas.alerts import cloudevents_headers
from framedrift.schemas.dead_letters import DeadLetterHeaders
from framedrift.schemas.headers import as_kafka_headers
from framedrift.worker.ops import metrics
from framedrift.worker.ops.health import Readiness
from framedrift.worker.ops.settings import Settings
from framedrift.worker.stream.backoff import Backoff
from framedrift.worker.stream.pipeline import BatchOutcome, DeadLetter
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


class OffsetCommitFailed(CheckpointError):
    """Step 3: Kafka refused the commit (e.g. after a rebalance). State is safe in Redis;
    the next owner skips what this batch applied. `checkpointed` says what was saved."""

    def __init__(self, message: str, checkpointed: Checkpointed) -> None:
        super().__init__(message)
        self.checkpointed = checkpointed


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


# What the producer or broker says when a record is larger than it accepts (the producer's
# `max_request_size`, the topic's `max.message.bytes`): never cured by retrying.
_TOO_LARGE = (MessageSizeTooLargeError, RecordListTooLargeError)


def _sent(send: Callable[[], Acknowledgement]) -> Acknowledgement | KafkaError:
    """Call `send`; an error it raises at once (a record too large for the producer,
    metadata not available in time) is kept as that record's outcome, not raised."""
    try:
        return send()
    except KafkaError as error:
        return error


def _refusal(sent: Acknowledgement | KafkaError) -> KafkaError | None:
    """Why a record was not acknowledged (after `flush`), or None if it was."""
    if isinstance(sent, KafkaError):
        return sent
    try:
        sent.get(timeout=0)
    except KafkaError as error:
        return error
    return None


def _first_refusals(
    sent: list[tuple[int, Acknowledgement | KafkaError]],
) -> dict[int, KafkaError]:
    """(input partition, sent record) pairs -> per partition, the first error of a record
    the broker did not take (after `flush`)."""
    failed: dict[int, KafkaError] = {}
    for partition, outcome in sent:
        error = _refusal(outcome)
        if error is not None:
            failed.setdefault(partition, error)
    return failed


@dataclass(frozen=True)
class Checkpointed:
    """What one checkpoint made durable (`saved`), and the partitions it held back because
    the broker did not take one of their incident events or dead letters (partition -> error):
    nothing of those was saved or committed, and their records are to be read again."""

    saved: BatchOutcome
    held_back: dict[int, KafkaError]


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

    def checkpoint(self, outcome: BatchOutcome, claims: dict[int, PartitionClaim]) -> Checkpointed:
        """Make one batch's effects durable, in this order:

        Step 1. Publish the batch's incident events, dead letters and changed source
                statuses (where a status topic is set); wait until the
                broker has acknowledged every one. A crash after this step re-sends them
                on replay, with the same event ids, so subscribers can drop the copies. A partition
                with a record the broker did not take is held back: nothing of it is
                saved or committed, and the other partitions go on without it.
        Step 2. Write the batch's source states and each partition's applied offset to
                Redis in one atomic script, guarded by the partition's generation (a
                worker that lost the partition cannot overwrite its new owner's state),
                by the applied offset this worker expects there (a Redis that went back
                in time is noticed, not written over) and by each source's home
                partition. From here the batch has counted, once.
        Step 3. Commit the next offsets to Kafka. A crash before this step replays the
                batch from the last commit, and step 2's applied offsets turn the replay
                into a no-op.

        Returns what was made durable and what was held back. Raises PartitionFenced,
        AppliedOffsetMoved or SourcePartitionConflict (step 2: nothing saved, nothing
        committed), CheckpointError (step 2: the store stayed unreachable until shutdown)
        or OffsetCommitFailed (step 3: the state is saved, the commit is not).
        """
        topic = self.settings.input_topic
        # Step 1. Publish incident events and dead letters, wait for acks.
        held_back = self._publish(outcome) if outcome.last_offsets else {}
        saved = outcome.without_partitions(set(held_back)) if held_back else outcome
        if not saved.last_offsets:
            return Checkpointed(saved, held_back)

        # Step 2. State and applied offsets in one guarded transaction.
        # A batch of replays only (offsets at or below the applied one) must not move the
        # applied offset back: a later replay would then count those events twice.
        applied = {
            partition: AppliedAdvance(
                claims[partition].generation,
                claims[partition].applied_offset,
                max(offset, claims[partition].applied_offset or -1),
            )
            for partition, offset in saved.last_offsets.items()
        }
        self._save_with_retry(topic, applied, saved)

        # Step 3. Commit offsets to Kafka.
        offsets = {
            TopicPartition(topic, partition): OffsetAndMetadata(offset + 1, "", -1)
            for partition, offset in saved.last_offsets.items()
        }
        try:
            self.consumer.commit(offsets)
        except KafkaError as error:
            raise OffsetCommitFailed(
                f"commit of {len(offsets)} partition(s) failed: {error}",
                Checkpointed(saved, held_back),
            ) from error
        return Checkpointed(saved, held_back)

    def _publish(self, outcome: BatchOutcome) -> dict[int, KafkaError]:
        """Send the incident events, statuses and dead letters and wait for their acks; returns, per
        input partition, the error of a record the broker did not take (empty: all taken)."""
        pending: list[tuple[int, Acknowledgement | KafkaError]] = []
        for event in outcome.incident_events:
            send = functools.partial(
                self.producer.send,
                self.settings.alerts_topic,
                key=event.source_id.encode(),
                value=event.model_dump_json().encode(),
                headers=cloudevents_headers(event, self.cloudevents_source),
            )
            pending.append((event.trigger.partition, _sent(send)))
        if self.settings.status_topic:
            for source_id, status in outcome.statuses.items():
                # A retired source's record is a tombstone: compaction forgets it.
                retired = status.condition == "retired"
                send = functools.partial(
                    self.producer.send,
                    self.settings.status_topic,
                    key=source_id.encode(),
                    value=None if retired else status.model_dump_json().encode(),
                )
                pending.append((outcome.source_partitions[source_id], _sent(send)))
        failed_at = datetime.now(UTC)
        dead_letters: list[tuple[DeadLetter, Acknowledgement | KafkaError]] = []
        for dead in outcome.dead_letters:
            send = functools.partial(
                self.producer.send,
                self.settings.dead_letter_topic,
                key=dead.record.key,
                value=dead.record.value,
                headers=self._dead_letter_headers(dead, failed_at),
            )
            dead_letters.append((dead, _sent(send)))
        self.producer.flush()
        failed = _first_refusals(pending)
        too_large = []
        for dead, sent in dead_letters:
            error = _refusal(sent)
            if isinstance(error, _TOO_LARGE):
                too_large.append((dead, error))
            elif error is not None:
                failed.setdefault(dead.record.partition, error)
        for partition, error in self._publish_without_values(too_large, failed_at).items():
            failed.setdefault(partition, error)
        return failed

    def _publish_without_values(
        self, too_large: list[tuple[DeadLetter, KafkaError]], failed_at: datetime
    ) -> dict[int, KafkaError]:
        """A dead letter the producer or broker refuses for its size is sent again without
        its value. Retrying it whole could never succeed and would hold its partition back
        for good; the original stays on the input topic at the offset the headers name."""
        if not too_large:
            return {}
        resent = []
        for dead, error in too_large:
            size = len(dead.record.value or b"")
            metrics.DEAD_LETTER_VALUES_OMITTED.inc()
            log.warning(
                "dead_letter_value_omitted",
                partition=dead.record.partition,
                offset=dead.record.offset,
                value_bytes=size,
                error=str(error),
            )
            send = functools.partial(
                self.producer.send,
                self.settings.dead_letter_topic,
                key=dead.record.key,
                value=None,
                headers=self._dead_letter_headers(dead, failed_at, omitted_bytes=size),
            )
            resent.append((dead.record.partition, _sent(send)))
        self.producer.flush()
        return _first_refusals(resent)

    def _dead_letter_headers(
        self, dead: DeadLetter, failed_at: datetime, omitted_bytes: int | None = None
    ) -> list[tuple[str, bytes]]:
        """The dead-letter headers, then the original record's own."""
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
                dlq_value_omitted_bytes=None if omitted_bytes is None else str(omitted_bytes),
            )
        )
        return headers + list(record.headers or [])

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
