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
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from framedrift.worker.detection.monitor import QUESTIONS
from framedrift.worker.ops import metrics
from framedrift.worker.ops.health import Readiness, serve_health
from framedrift.worker.ops.settings import Settings, SettingsError
from framedrift.worker.stream.backoff import Backoff
from framedrift.worker.stream.checkpoint import Checkpointer, CheckpointError, OffsetCommitFailed
from framedrift.worker.stream.kafka_clients import BrokersUnavailable, KafkaClients
from framedrift.worker.stream.pipeline import BatchOutcome, BatchProcessor
from framedrift.worker.stream.state_store import (
    AppliedOffsetMoved,
    PartitionClaim,
    PartitionFenced,
    SourcePartitionConflict,
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
    incident_events: int = 0

    def add(self, outcome: BatchOutcome, batch_size: int) -> None:
        self.events += batch_size
        self.batches += 1
        self.dead_letters += len(outcome.dead_letters)
        self.incident_events += len(outcome.incident_events)


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, worker: DriftWorker) -> None:
        self.worker = worker

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # Every batch is checkpointed before the next poll, so nothing is pending here.
        for tp in revoked:
            self.worker.claims.pop(tp.partition, None)
            self.worker.lost_partitions.discard(tp.partition)
            self.worker.resumed_at.pop(tp.partition, None)
            self.worker.paused_until.pop(tp.partition, None)
            self.worker.hold_backoffs.pop(tp.partition, None)
        self.worker.forget_incidents({tp.partition for tp in revoked})
        self.worker.processor.forget_partitions({tp.partition for tp in revoked})
        self.worker.readiness.clear_stalled(tp.partition for tp in revoked)
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
        # partitions claimed with an offset committed in Kafka but no state in the store
        self.lost_partitions: set[int] = set()
        # partitions claimed but not yet checked against Kafka (`_verify_claims`)
        self.unverified: set[int] = set()
        # partition -> the offset a claim sought to, until its first record is seen
        self.resumed_at: dict[int, int] = {}
        self.readiness = Readiness(
            poll_stale_after_s=max(10.0, 3 * settings.poll_timeout_ms / 1000)
        )
        self.backoff = Backoff(settings.retry_backoff_max_s)
        # partition -> when it resumes, after the broker did not take one of its incident
        # events or dead letters (`_hold_back`); and the backoff that grows while that repeats
        self.paused_until: dict[int, float] = {}
        self.hold_backoffs: dict[int, Backoff] = {}
        # source id -> (its partition, the questions on which it has an incident open), for
        # the open-incidents gauge; of the sources this worker saw since it claimed them
        self.open_incidents: dict[str, tuple[int, frozenset[str]]] = {}
        self._stopping = False
        self.consumer: KafkaConsumer | None = None
        self.producer: KafkaProducer | None = None

    def stop(self, *_: object) -> None:
        self._stopping = True

    def claim(self, assigned: set[TopicPartition]) -> set[int]:
        """Take ownership of newly assigned partitions and resume after their applied offset.

        Returns the partitions it moved the consumer on. Runs inside the rebalance callback
        too, where no blocking Kafka call is allowed: the checks against the log's end and
        the committed offsets wait for `_verify_claims`, before the next batch.
        """
        topic = self.settings.input_topic
        partitions = sorted(tp.partition for tp in assigned if tp.topic == topic)
        positioned = set()
        claims = self.store.claim_partitions(topic, partitions)
        # What the store saved of these partitions' sources, to judge the silent ones and
        # to go on from: the store's word replaces what this worker kept (another owner
        # may have moved on).
        self.processor.forget_partitions(set(partitions))
        self.processor.remember_liveness(self.store.liveness(topic, partitions))
        for partition, claim in claims.items():
            self.claims[partition] = claim
            self.unverified.add(partition)
            if claim.applied_offset is not None and self.consumer is not None:
                # Redis is ahead of Kafka's commit after a crash between steps 2 and 3.
                self.consumer.seek(TopicPartition(topic, partition), claim.applied_offset + 1)
                self.resumed_at[partition] = claim.applied_offset + 1
                positioned.add(partition)
        self.readiness.set_redis(True)
        # A claim is a write the store accepted: a partition refused before is ours again.
        self.readiness.clear_stalled(partitions)
        self.readiness.set_partitions(len(self.claims))
        metrics.ASSIGNED_PARTITIONS.set(len(self.claims))
        log.info(
            "partitions_assigned",
            partitions=partitions,
            applied_offsets={p: self.claims[p].applied_offset for p in partitions},
        )
        return positioned

    def _verify_claims(self) -> set[int]:
        """Check new claims against Kafka's commits; returns the partitions it moved the
        consumer on (outside the rebalance callback: it makes blocking Kafka calls).

        An applied offset past Kafka's commit: a worker saved a batch and did not commit
        it (it crashed between steps 2 and 3, or a rebalance refused its commit). The
        claim already resumed after the applied offset; the commit is brought up to it
        (`_catch_up_commits`).

        No applied offset while Kafka holds a committed one: the store lost the
        partition's state (flush, eviction, failover). Said loudly; reading goes on from
        the committed offset, and the partition's sources are reported as reset.
        """
        assert self.consumer is not None
        topic = self.settings.input_topic
        positioned = set()
        behind: dict[TopicPartition, int] = {}
        for partition in sorted(self.unverified):
            claim = self.claims.get(partition)
            if claim is None:
                continue
            tp = TopicPartition(topic, partition)
            committed = self.consumer.committed(tp)
            if claim.applied_offset is not None:
                if committed is None or committed <= claim.applied_offset:
                    behind[tp] = claim.applied_offset + 1
                continue
            if not committed:
                continue  # nothing of this partition was ever checkpointed
            self.lost_partitions.add(partition)
            metrics.STATE_LOST.inc()
            log.error(
                "state_lost",
                partition=partition,
                committed_offset=committed,
                action="the store holds no state for a partition Kafka has offsets "
                "committed for: its sources restart clean from the committed offset",
                hint="expected once after a change of model version or state prefix",
            )
            self.consumer.seek(tp, committed)
            positioned.add(partition)
        self.unverified.clear()
        self._catch_up_commits(behind)
        return positioned

    def _catch_up_commits(self, resume_at: dict[TopicPartition, int]) -> None:
        """Commit each partition's resume offset, as the saved batch's step 3 would have, so
        that a partition with no record after that batch does not show it as lag for ever.

        Best effort: a partition's next checkpoint commits anyway, so a Kafka error only
        leaves the lag showing a while longer, and must not send the claims round again.
        The log's end is not asked first (Tansu's answer is not usable, see the README's
        Guarantees): on a recreated topic the offset committed here may lie past the new
        log's end, until the first batch's commit replaces it.
        """
        assert self.consumer is not None
        if not resume_at:
            return
        try:
            self.consumer.commit(
                {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in resume_at.items()}
            )
        except KafkaError as error:
            metrics.KAFKA_ERRORS.labels("commit").inc()
            log.warning(
                "commit_catch_up_failed",
                partitions=sorted(tp.partition for tp in resume_at),
                error=str(error),
            )
            return
        for tp, offset in resume_at.items():
            log.info("commit_caught_up", partition=tp.partition, to=offset)

    def _forget_applied(self, partition: int, claim: PartitionClaim, **context: object) -> bool:
        """Drop the claim's applied offset, loudly; False if the partition moved on (the
        store refused: another worker holds it now)."""
        assert claim.applied_offset is not None
        if not self.store.forget_applied(self.settings.input_topic, partition, claim.generation):
            return False
        self.claims[partition] = PartitionClaim(claim.generation, None)
        self.resumed_at.pop(partition, None)
        metrics.APPLIED_OFFSET_RESETS.inc()
        log.error(
            "applied_offset_beyond_log_end",
            partition=partition,
            applied_offset=claim.applied_offset,
            **context,
            action="the topic was recreated or truncated: dropping the applied offset and "
            "counting the new log's records",
        )
        return True

    def _check_resumed_positions(self, records: list[ConsumerRecord]) -> bool:
        """A claim sought to applied offset + 1; a first record below that means the broker
        had no such offset and the consumer started over at the log's start (what Kafka
        does for an offset beyond the log's end): the topic was recreated or truncated.

        A partition stays to be checked until the check is done: should the store be down,
        the next reading checks again rather than skip the new log as replays. Returns
        False when a claim had to be given up (the batch is then read again).
        """
        first: dict[int, int] = {}
        for record in records:
            first[record.partition] = min(record.offset, first.get(record.partition, record.offset))
        for partition, offset in first.items():
            sought = self.resumed_at.get(partition)
            claim = self.claims.get(partition)
            if sought is None:
                continue
            if offset < sought and claim is not None:
                if not self._forget_applied(partition, claim, first_offset_read=offset):
                    self._give_up_claim(partition, "fenced", records)
                    return False
            else:
                del self.resumed_at[partition]
        return True

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
                if self.paused_until:
                    self._resume_held_back()
                polled = self.consumer.poll(
                    timeout_ms=self.settings.poll_timeout_ms, max_records=self.settings.batch_size
                )
                self.readiness.polled()
                records = [record for batch in polled.values() for record in batch]
                if self.unverified:
                    records = self._verify_or_discard(records)
                if records:
                    self._handle(records, checkpointer, window)
                if time.monotonic() - window.started >= self.settings.stats_interval_s:
                    self._log_throughput(window)
                    window = Throughput()
        finally:
            log.info("worker_stopping")
            self.processor.close()
            self.consumer.close(autocommit=False)
            self.producer.close(timeout=10)
            if health is not None:
                health.shutdown()

    def _handle(
        self, records: list[ConsumerRecord], checkpointer: Checkpointer, window: Throughput
    ) -> None:
        unclaimed = {record.partition for record in records} - self.claims.keys()
        if unclaimed:  # the assignment callback could not reach Redis, or a write was refused
            try:
                positioned = self.claim(
                    {TopicPartition(self.settings.input_topic, p) for p in unclaimed}
                )
                positioned |= self._verify_claims()
            except StoreUnavailable as error:
                self._redis_down("claim", error, records)
                return
            except KafkaError as error:
                self._claim_check_failed(error, records)
                return
            # Read the batch again: where claiming positioned a partition, from there.
            self._rewind(records, keep=positioned)
            return
        try:
            if self.resumed_at and not self._check_resumed_positions(records):
                return
            applied = {partition: claim.applied_offset for partition, claim in self.claims.items()}
            lost = frozenset(self.lost_partitions)
            with metrics.BATCH_SECONDS.time():
                outcome = self.processor.process(records, applied, lost)
        except StoreUnavailable as error:
            self._redis_down("load_state", error, records)
            return
        self.readiness.set_redis(True)
        try:
            with metrics.CHECKPOINT_SECONDS.time():
                checkpointed = checkpointer.checkpoint(outcome, self.claims)
        except PartitionFenced as error:
            # Another worker claimed the partition, or the store lost its generation. Give
            # up the claim and read the batch again after a pause: if the partition moved,
            # the rebalance at the next poll takes it away; if the group still assigns it
            # here, its next batch claims it anew (above).
            metrics.FENCED_WRITES.inc()
            log.warning(
                "partition_fenced",
                partition=error.partition,
                generation_lost=error.generation_lost,
                reason=str(error),
                retry_in_s=self.backoff.next_s,
            )
            self._give_up_claim(error.partition, "fenced", records)
            self.backoff.wait()
            return
        except AppliedOffsetMoved as error:
            # The store went back in time: writing on top would lose every event between
            # its applied offset and ours. Claim anew and read on from what it holds.
            metrics.APPLIED_OFFSET_MOVED.inc()
            log.error(
                "applied_offset_moved",
                partition=error.partition,
                expected_offset=error.expected,
                stored_offset=error.stored,
                action="re-claiming; reading again after the stored applied offset",
            )
            self._give_up_claim(error.partition, "applied offset moved", records)
            return
        except SourcePartitionConflict as error:
            # Another partition wrote this source first (two owners racing). Read the
            # batch again: it then loads the recorded home and dead-letters the strays.
            metrics.SOURCE_PARTITION_CONFLICTS.inc()
            log.warning(
                "source_partition_conflict",
                source_id=error.source_id,
                home=error.home,
                attempted=error.attempted,
                action="reading the batch again; records from outside the home partition "
                "go to the dead-letter topic",
            )
            self._rewind(records)
            return
        except OffsetCommitFailed as error:
            # The state is saved with its applied offsets: whoever reads these records
            # again skips them, so moving on loses and doubles nothing.
            checkpointed = error.checkpointed
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
            self.backoff.wait()
            return
        if checkpointed.held_back:
            self._hold_back(checkpointed.held_back, records)
        outcome = checkpointed.saved
        self.processor.remember_saved(outcome)
        # Counted once the state is saved: a batch read again after a refused write or a
        # failed publish is not counted twice.
        saved_records = [record for record in records if record.partition in outcome.last_offsets]
        self._count(outcome, len(saved_records))
        self.backoff.reset()
        self.readiness.clear_stalled(outcome.last_offsets)
        for partition in outcome.last_offsets:
            self.hold_backoffs.pop(partition, None)
        for partition, offset in outcome.last_offsets.items():
            claim = self.claims.get(partition)
            if claim is not None:
                applied = max(offset, claim.applied_offset or -1)  # as the checkpoint saved it
                self.claims[partition] = PartitionClaim(claim.generation, applied)
        window.add(outcome, len(saved_records))

    def _hold_back(self, held_back: dict[int, KafkaError], records: list[ConsumerRecord]) -> None:
        """The broker did not take some of these partitions' incident events or dead letters: pause
        each for a growing while and read its records again then; the others go on."""
        assert self.consumer is not None
        self._rewind([record for record in records if record.partition in held_back])
        now = time.monotonic()
        for partition, error in held_back.items():
            backoff = self.hold_backoffs.setdefault(
                partition, Backoff(self.settings.retry_backoff_max_s)
            )
            wait_s = backoff.step()
            self.paused_until[partition] = now + wait_s
            self.consumer.pause(TopicPartition(self.settings.input_topic, partition))
            error_class = type(error).__name__
            metrics.PUBLISH_HELD_BACK.labels(error_class).inc()
            self.readiness.set_stalled(
                partition, f"incident events or dead letters not published ({error_class})"
            )
            log.error(
                "publish_failed",
                partition=partition,
                error_class=error_class,
                error=str(error),
                retriable=bool(getattr(error, "retriable", False)),
                retry_in_s=wait_s,
                action="holding this partition back (nothing of it saved or committed); "
                "the other partitions go on",
            )

    def _resume_held_back(self) -> None:
        """Resume the held-back partitions whose pause is over."""
        assert self.consumer is not None
        now = time.monotonic()
        for partition, until in list(self.paused_until.items()):
            if until <= now:
                del self.paused_until[partition]
                self.consumer.resume(TopicPartition(self.settings.input_topic, partition))

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
        metrics.EVENTS_SCORED.inc(outcome.scored.total())
        metrics.OUTLIERS.inc(outcome.outliers.total())
        metrics.REPLAYS_SKIPPED.inc(outcome.skipped_replays.total())
        for reason in outcome.state_resets.values():
            metrics.STATE_RESETS.labels(reason).inc()
        for event in outcome.incident_events:
            metrics.INCIDENT_EVENTS.labels(event.transition, event.question).inc()
            log.info(
                f"incident_{event.transition}",
                incident_id=event.incident_id,
                source_id=event.source_id,
                question=event.question,
                detectors=event.detectors,
                signals=event.signals,
                tiles=event.tiles,
                severity=round(event.severity, 2),
                duration_s=round(event.duration_s, 1),
                trigger_offset=event.trigger.offset,
            )
        for source_id, entry in outcome.commands_applied:
            metrics.COMMANDS_APPLIED.labels(entry.command.kind).inc()
            log.info(
                "command_applied",
                source_id=source_id,
                command=entry.command.kind,
                command_id=entry.command.command_id,
                issued_by=entry.command.issued_by,
                reason=entry.command.reason,
                outcome=entry.outcome,
                partition=entry.partition,
                offset=entry.offset,
            )
        for source_id, state in outcome.states.items():
            self.open_incidents[source_id] = (
                outcome.source_partitions[source_id],
                frozenset(
                    question
                    for question, tracker in state.incidents.items()
                    if tracker.open is not None and tracker.open.announced
                ),
            )
        self._show_open_incidents()
        for dead in outcome.dead_letters:
            metrics.DEAD_LETTERS.labels(type(dead.error).__name__).inc()
            log.warning(
                "dead_letter",
                reason=type(dead.error).__name__,
                message=str(dead.error)[:200],
                partition=dead.record.partition,
                offset=dead.record.offset,
            )

    def _verify_or_discard(self, records: list[ConsumerRecord]) -> list[ConsumerRecord]:
        """Verify new claims before their first batch; a batch read from a position the
        check moved is read again from there (the records returned are those to process)."""
        try:
            positioned = self._verify_claims()
        except KafkaError as error:
            self._claim_check_failed(error, records)
            return []
        except StoreUnavailable as error:
            self._redis_down("verify_claim", error, records)
            return []
        if positioned:
            self._rewind(records, keep=positioned)
            return []
        return records

    def _claim_check_failed(self, error: KafkaError, records: list[ConsumerRecord]) -> None:
        """Kafka did not answer the claim check: read the batch again after a pause."""
        metrics.KAFKA_ERRORS.labels("verify_claim").inc()
        log.warning("claim_check_failed", error=str(error), retry_in_s=self.backoff.next_s)
        self._rewind(records)
        self.backoff.wait()

    def _give_up_claim(self, partition: int, reason: str, records: list[ConsumerRecord]) -> None:
        """A state write of this partition was refused: not ready until one succeeds."""
        self.claims.pop(partition, None)
        self.processor.forget_partitions({partition})  # re-read from the store at the re-claim
        self.readiness.set_stalled(partition, f"state write refused ({reason})")
        self.readiness.set_partitions(len(self.claims))
        metrics.ASSIGNED_PARTITIONS.set(len(self.claims))
        self._rewind(records)

    def _rewind(self, records: list[ConsumerRecord], keep: set[int] | None = None) -> None:
        """Seek each partition of the batch back to its first record, except those in `keep`."""
        assert self.consumer is not None
        first: dict[int, int] = {}
        for record in records:
            first[record.partition] = min(record.offset, first.get(record.partition, record.offset))
        assigned = {tp.partition for tp in self.consumer.assignment()}
        for partition, offset in first.items():
            if partition in assigned and partition not in (keep or set()):
                self.consumer.seek(TopicPartition(self.settings.input_topic, partition), offset)

    def forget_incidents(self, partitions: set[int]) -> None:
        """The sources of partitions this worker gave up leave its open-incidents gauge."""
        self.open_incidents = {
            source: seen
            for source, seen in self.open_incidents.items()
            if seen[0] not in partitions
        }
        self._show_open_incidents()

    def _show_open_incidents(self) -> None:
        for question in QUESTIONS:
            metrics.INCIDENTS_OPEN.labels(question).set(
                sum(question in open_on for _, open_on in self.open_incidents.values())
            )

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
            incident_events=window.incident_events,
            dead_letters=window.dead_letters,
            lag=lag if known else None,
            partitions=len(self.claims),
        )
