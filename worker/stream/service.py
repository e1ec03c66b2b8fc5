"""`framedrift worker`: the Kafka consumer loop that ties the stages together.

poll a batch -> `BatchProcessor.process` -> `Checkpointer.checkpoint`, repeated until
SIGTERM or SIGINT, which finish the current batch, checkpoint it and leave the group.
Kafka or Redis being away is waited out with capped backoff, never a crash: nothing is
committed that was not checkpointed, so the batch is simply read again.

The loop receives what it runs with; `assembly.build_worker` makes those from the
settings.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.consumer.subscription_state import ConsumerRebalanceListener

from framedrift.worker.ops import metrics
from framedrift.worker.ops.health import Readiness, serve_health
from framedrift.worker.ops.settings import Settings, SettingsError
from framedrift.worker.stream.backoff import Backoff
from framedrift.worker.stream.checkpoint import Checkpointer, CheckpointError, OffsetCommitFailed
from framedrift.worker.stream.kafka_clients import BrokersUnavailable, KafkaClients
from framedrift.worker.stream.pipeline import BatchOutcome, BatchProcessor
from framedrift.worker.stream.state_store import (
    PartitionClaim,
    PartitionFenced,
    StateStore,
    StoreUnavailable,
)

log = structlog.get_logger(__name__)


@dataclass
class Throughput:
    """Counts between two periodic throughput log lines."""

    started: float = field(default_factory=time.monotonic)
    events: int = 0
    batches: int = 0
    dead_letters: int = 0
    alerts: int = 0

    def add(self, outcome: BatchOutcome, batch_size: int) -> None:
        self.events += batch_size
        self.batches += 1
        self.dead_letters += len(outcome.dead_letters)
        self.alerts += len(outcome.alerts)


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, worker: DriftWorker) -> None:
        self.worker = worker

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # Every batch is checkpointed before the next poll, so nothing is pending here.
        for tp in revoked:
            self.worker.claims.pop(tp.partition, None)
        self.worker.readiness.set_partitions(len(self.worker.claims))
        metrics.ASSIGNED_PARTITIONS.set(len(self.worker.claims))
        log.info("partitions_revoked", partitions=sorted(tp.partition for tp in revoked))

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        try:
            self.worker.claim(assigned)
        except StoreUnavailable as error:
            # The loop claims them before their first batch (see DriftWorker._handle).
            metrics.REDIS_ERRORS.labels("claim").inc()
            log.warning("redis_unavailable", step="claim_on_assignment", error=str(error))


class DriftWorker:
    """The loop: poll a batch, process it, checkpoint it; wait out outages of Kafka or Redis.

    `connect_kafka` makes the Kafka clients; the loop calls it until it stops raising
    `BrokersUnavailable`, so a worker started before its brokers waits for them.
    """

    def __init__(
        self,
        settings: Settings,
        store: StateStore,
        processor: BatchProcessor,
        connect_kafka: Callable[[], KafkaClients],
    ) -> None:
        self.settings = settings
        self.store = store
        self.processor = processor
        self.connect_kafka = connect_kafka
        # partition -> this worker's claim on it (generation, last applied offset)
        self.claims: dict[int, PartitionClaim] = {}
        self.readiness = Readiness(
            poll_stale_after_s=max(10.0, 3 * settings.poll_timeout_ms / 1000)
        )
        self.backoff = Backoff(settings.retry_backoff_max_s)
        self._stopping = False
        self.consumer: KafkaConsumer | None = None
        self.producer: KafkaProducer | None = None

    def stop(self, *_: object) -> None:
        self._stopping = True

    def claim(self, assigned: set[TopicPartition]) -> None:
        """Take ownership of newly assigned partitions and resume after their applied offset."""
        topic = self.settings.input_topic
        partitions = sorted(tp.partition for tp in assigned if tp.topic == topic)
        for partition, claim in self.store.claim_partitions(topic, partitions).items():
            self.claims[partition] = claim
            if claim.applied_offset is not None and self.consumer is not None:
                # Redis is ahead of Kafka's commit after a crash between steps 2 and 3.
                self.consumer.seek(TopicPartition(topic, partition), claim.applied_offset + 1)
        self.readiness.set_redis(True)
        self.readiness.set_partitions(len(self.claims))
        metrics.ASSIGNED_PARTITIONS.set(len(self.claims))
        log.info(
            "partitions_assigned",
            partitions=partitions,
            applied_offsets={p: self.claims[p].applied_offset for p in partitions},
        )

    def _connect(self) -> None:
        """Create the Kafka clients, waiting for the brokers as long as it takes."""
        while not self._stopping:
            try:
                clients = self.connect_kafka()
            except BrokersUnavailable as error:
                metrics.KAFKA_ERRORS.labels("connect").inc()
                log.warning(
                    "broker_unavailable",
                    bootstrap_servers=self.settings.bootstrap_servers,
                    error=str(error),
                    retry_in_s=self.backoff.next_s,
                )
                self.backoff.wait()
                continue
            self.backoff.reset()
            self.producer, self.consumer = clients.producer, clients.consumer
            self.consumer.subscribe([self.settings.input_topic], listener=_Rebalance(self))
            return

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        health = None
        if self.settings.health_port:
            address = f"{self.settings.health_host}:{self.settings.health_port}"
            try:
                health = serve_health(
                    self.settings.health_host, self.settings.health_port, self.readiness
                )
            except OSError as error:
                raise SettingsError(
                    f"FRAMEDRIFT_HEALTH_PORT: cannot listen on {address}: {error}"
                ) from None
        self._connect()
        if self.consumer is None or self.producer is None:
            return  # stopped while waiting for the brokers
        checkpointer = Checkpointer(
            self.settings,
            self.producer,
            self.consumer,
            self.store,
            self.readiness,
            should_stop=lambda: self._stopping,
        )
        log.info(
            "worker_started",
            model_version=self.processor.model_version,
            input_topic=self.settings.input_topic,
            group_id=self.settings.group_id,
        )
        window = Throughput()
        try:
            while not self._stopping:
                polled = self.consumer.poll(
                    timeout_ms=self.settings.poll_timeout_ms, max_records=self.settings.batch_size
                )
                self.readiness.polled()
                records = [record for batch in polled.values() for record in batch]
                if records:
                    self._handle(records, checkpointer, window)
                if time.monotonic() - window.started >= self.settings.stats_interval_s:
                    self._log_throughput(window)
                    window = Throughput()
        finally:
            log.info("worker_stopping")
            self.consumer.close(autocommit=False)
            self.producer.close(timeout=10)
            if health is not None:
                health.shutdown()

    def _handle(
        self, records: list[ConsumerRecord], checkpointer: Checkpointer, window: Throughput
    ) -> None:
        unclaimed = {record.partition for record in records} - self.claims.keys()
        if unclaimed:  # the assignment callback could not reach Redis
            try:
                self.claim({TopicPartition(self.settings.input_topic, p) for p in unclaimed})
            except StoreUnavailable as error:
                self._redis_down("claim", error, records)
                return
            self._rewind(records)  # claiming may have moved the position past applied offsets
            return
        try:
            applied = {partition: claim.applied_offset for partition, claim in self.claims.items()}
            with metrics.BATCH_SECONDS.time():
                outcome = self.processor.process(records, applied)
        except StoreUnavailable as error:
            self._redis_down("load_state", error, records)
            return
        self.readiness.set_redis(True)
        self._count(outcome, len(records))
        try:
            with metrics.CHECKPOINT_SECONDS.time():
                checkpointer.checkpoint(outcome, self.claims)
        except PartitionFenced as error:
            # Another worker owns it now. Rewind so that, if the group hands it back, the
            # batch is read again rather than silently skipped.
            metrics.FENCED_WRITES.inc()
            log.warning("partition_fenced", partition=error.partition, reason=str(error))
            self._rewind(records)
            return
        except OffsetCommitFailed as error:
            # The state is saved with its applied offsets: whoever reads these records
            # again skips them, so moving on loses and doubles nothing.
            metrics.KAFKA_ERRORS.labels("commit").inc()
            log.warning(
                "offset_commit_failed", reason=str(error), last_offsets=outcome.last_offsets
            )
        except CheckpointError as error:
            # Nothing was committed: read the batch again on the next poll.
            log.error(
                "checkpoint_failed",
                error_class=type(error).__name__,
                reason=str(error),
                last_offsets=outcome.last_offsets,
            )
            self._rewind(records)
            return
        self.backoff.reset()
        for partition, offset in outcome.last_offsets.items():
            claim = self.claims.get(partition)
            if claim is not None:
                self.claims[partition] = PartitionClaim(claim.generation, offset)
        window.add(outcome, len(records))

    def _redis_down(self, operation: str, error: Exception, records: list[ConsumerRecord]) -> None:
        """Redis is away: read this batch again after a pause; Kafka keeps our membership."""
        metrics.REDIS_ERRORS.labels(operation).inc()
        self.readiness.set_redis(False)
        log.warning(
            "redis_unavailable", step=operation, error=str(error), retry_in_s=self.backoff.next_s
        )
        self._rewind(records)
        self.backoff.wait()

    def _count(self, outcome: BatchOutcome, batch_size: int) -> None:
        metrics.EVENTS_IN.inc(batch_size)
        metrics.EVENTS_SCORED.inc(outcome.scored)
        metrics.OUTLIERS.inc(outcome.outliers)
        metrics.REPLAYS_SKIPPED.inc(outcome.skipped_replays)
        for reason in outcome.state_resets.values():
            metrics.STATE_RESETS.labels(reason).inc()
        for alert in outcome.alerts:
            metrics.ALERTS.labels(alert.detector).inc()
            log.info(
                "drift_alert",
                alert_id=alert.alert_id,
                source_id=alert.source_id,
                detector=alert.detector,
                statistic=round(alert.statistic, 4),
                threshold=None if alert.threshold is None else round(alert.threshold, 4),
                error_change_pct=round(alert.error_change_pct, 2),
                trigger_offset=alert.window_last_event.offset,
            )
        for dead in outcome.dead_letters:
            metrics.DEAD_LETTERS.labels(type(dead.error).__name__).inc()
            log.warning(
                "dead_letter",
                reason=type(dead.error).__name__,
                message=str(dead.error)[:200],
                partition=dead.record.partition,
                offset=dead.record.offset,
            )

    def _rewind(self, records: list[ConsumerRecord]) -> None:
        assert self.consumer is not None
        first: dict[int, int] = {}
        for record in records:
            first[record.partition] = min(record.offset, first.get(record.partition, record.offset))
        assigned = {tp.partition for tp in self.consumer.assignment()}
        for partition, offset in first.items():
            if partition in assigned:
                self.consumer.seek(TopicPartition(self.settings.input_topic, partition), offset)

    def _log_throughput(self, window: Throughput) -> None:
        assert self.consumer is not None
        elapsed = max(time.monotonic() - window.started, 1e-9)
        lag, known = 0, False
        for tp in self.consumer.assignment():
            highwater = self.consumer.highwater(tp)
            if highwater is not None:
                known = True
                lag += max(0, highwater - self.consumer.position(tp))
        if known:
            metrics.LAG.set(lag)
        log.info(
            "throughput",
            events_per_s=round(window.events / elapsed, 1),
            events=window.events,
            mean_batch_size=round(window.events / window.batches, 1) if window.batches else 0,
            alerts=window.alerts,
            dead_letters=window.dead_letters,
            lag=lag if known else None,
            partitions=len(self.claims),
        )
