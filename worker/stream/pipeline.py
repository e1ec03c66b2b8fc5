"""One batch, one pass: skip replays, decode, score, update detectors, follow incidents.

Operator commands (`schemas/commands.py`) arrive among a source's frames on its
partition; each takes effect between the frames it sits between, as in the topic. A
source that sends nothing is judged at the other sources' frames of its partition
(`detection/cadence.py`), so each partition's records are taken in offset order, every
source's next check in one heap: `BatchProcessor.liveness` holds what the store last
saved of the owned partitions' sources, so the judgement falls at the same record however
the records are cut into batches.

`BatchProcessor.process` does no Kafka I/O and at most one state-store round trip
(loading the states of the batch's sources that it does not keep from its last
checkpoints, `state_cache.py`), and one more per silent source found stopped; what it
returns is made durable by `checkpoint.py`.

Reading a record (decoding its image, reading its frame signals) is most of a camera
frame's cost and runs in a pool of threads (Pillow and numpy release the GIL while they
work), while the model scores the frames already read, `SCORING_CHUNK` at a time. The
detectors then take the frames in the batch's order, so the outcome is the same as a
serial pass's, bit for bit: an image's scores do not depend on its company.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import structlog
from kafka.consumer.fetcher import ConsumerRecord

from framedrift.schemas.alerts import IncidentEvent
from framedrift.schemas.status import SourceStatus
from framedrift.worker.detection.cadence import Liveness
from framedrift.worker.detection.frame_quality import FrameQuality, frame_signals
from framedrift.worker.detection.incident import Transition
from framedrift.worker.detection.monitor import (
    EventRef,
    MonitorConfig,
    ScoredImage,
    SourceMonitor,
    SourceState,
    scored_images,
)
from framedrift.worker.detection.operator import AuditEntry, Command
from framedrift.worker.detection.scores import FrameScores, ImageScores
from framedrift.worker.ops import metrics
from framedrift.worker.stream.alerts import build_alert, build_incident_event
from framedrift.worker.stream.decoding import (
    DecodedEvent,
    DecodingLimits,
    InvalidEvent,
    UnexpectedDecodingError,
    decode_record,
)
from framedrift.worker.stream.fleet_status import source_status, status_changed
from framedrift.worker.stream.operator_commands import InvalidCommand, is_command, read_command
from framedrift.worker.stream.state_cache import CachedState, StateCache
from framedrift.worker.stream.state_store import LoadedStates, StateStore, partition_label

log = structlog.get_logger(__name__)

# Frames per model call while the reader threads go on reading: small enough that the
# model starts early, large enough that a call's overhead is spread thin.
SCORING_CHUNK = 64


class SourceOnAnotherPartition(InvalidEvent):
    """The record's source lives on another partition (its recorded home): two owners of
    one source would overwrite each other's state, so records from elsewhere are refused.
    Causes: a producer with another partitioner, a grown partition count, two topics."""


def as_uint8(image: np.ndarray) -> np.ndarray:
    """A decoded image as 0-255 bytes, as the frame-quality signals read it (raw float32
    images come in [0, 1])."""
    if image.dtype == np.uint8:
        return image
    return np.rint(image * 255.0).astype(np.uint8)


class ImageScorer(Protocol):
    """Decoded images -> their per-image signals and per-tile errors, one model call
    (`model.scoring.Scorer`)."""

    def score_frames(self, images: Sequence[np.ndarray]) -> FrameScores: ...


@dataclass(frozen=True)
class DeadLetter:
    """An input record the worker cannot use, and why."""

    record: ConsumerRecord
    error: InvalidEvent


@dataclass(frozen=True)
class ReadRecord:
    """A record decoded, with its frame's quality signals."""

    record: ConsumerRecord
    event: DecodedEvent
    quality: FrameQuality


@dataclass(frozen=True)
class ReadCommand:
    """A record holding an operator's command on one source."""

    record: ConsumerRecord
    source_id: str
    command: Command


def read_record(
    record: ConsumerRecord, limits: DecodingLimits
) -> ReadRecord | ReadCommand | DeadLetter:
    """A record -> its decoded event and frame signals (or its command), or the dead
    letter saying why not. Runs in the reader threads: no shared state."""
    if is_command(record.headers):
        try:
            command = read_command(record.key, record.value)
        except InvalidCommand as error:
            return DeadLetter(record, error)
        return ReadCommand(record, record.key.decode(), command)
    try:
        event = decode_record(record.key, record.value, record.headers, limits)
    except InvalidEvent as error:
        return DeadLetter(record, error)
    except Exception as error:
        # Never let one record halt its partition (a poison pill): park it, loudly.
        log.error(
            "unexpected_decoding_error",
            partition=record.partition,
            offset=record.offset,
            error_class=type(error).__name__,
        )
        return DeadLetter(record, UnexpectedDecodingError(f"{type(error).__name__}: {error}"))
    return ReadRecord(record, event, frame_signals(as_uint8(event.image)))


@dataclass
class BatchOutcome:
    """What one batch produced: to publish, to persist and to count."""

    incident_events: list[IncidentEvent] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    # source id -> its state after this batch
    states: dict[str, SourceState] = field(default_factory=dict)
    # partition -> the highest offset of this batch handled there (scored, dead-lettered or skipped)
    last_offsets: dict[int, int] = field(default_factory=dict)
    # The counters are kept per partition, so that a partition held back at the
    # checkpoint (`without_partitions`) takes its counts with it.
    scored: Counter[int] = field(default_factory=Counter)
    # scored images whose reconstruction error is above the config's outlier threshold
    outliers: Counter[int] = field(default_factory=Counter)
    skipped_replays: Counter[int] = field(default_factory=Counter)
    # source id -> why its stored state could not be used (it restarted clean)
    state_resets: dict[str, str] = field(default_factory=dict)
    # source id -> the partition its state is written from (its home)
    source_partitions: dict[str, int] = field(default_factory=dict)
    # (source id, entry) of each operator command applied, in order
    commands_applied: list[tuple[str, AuditEntry]] = field(default_factory=list)
    # source id -> its status, where this batch changed what it says (`status_changed`)
    statuses: dict[str, SourceStatus] = field(default_factory=dict)
    # source id -> (its partition, its liveness entry) after this batch, for the
    # processor to keep once the batch is saved (`BatchProcessor.remember_liveness`)
    liveness: dict[str, tuple[int, Liveness | None]] = field(default_factory=dict)

    def without_partitions(self, held: set[int]) -> BatchOutcome:
        """This outcome less everything of the `held` partitions: their alerts, dead
        letters, sources' states and counts. What is left can be checkpointed on its own,
        since a source's state only ever comes from its home partition."""
        kept_sources = {s for s, p in self.source_partitions.items() if p not in held}
        return BatchOutcome(
            incident_events=[
                event for event in self.incident_events if event.trigger.partition not in held
            ],
            dead_letters=[d for d in self.dead_letters if d.record.partition not in held],
            states={s: state for s, state in self.states.items() if s in kept_sources},
            last_offsets={p: o for p, o in self.last_offsets.items() if p not in held},
            scored=Counter({p: n for p, n in self.scored.items() if p not in held}),
            outliers=Counter({p: n for p, n in self.outliers.items() if p not in held}),
            skipped_replays=Counter(
                {p: n for p, n in self.skipped_replays.items() if p not in held}
            ),
            state_resets={s: r for s, r in self.state_resets.items() if s in kept_sources},
            source_partitions={s: self.source_partitions[s] for s in kept_sources},
            commands_applied=[(s, e) for s, e in self.commands_applied if s in kept_sources],
            statuses={s: status for s, status in self.statuses.items() if s in kept_sources},
            liveness={s: entry for s, entry in self.liveness.items() if s in kept_sources},
        )


class BatchProcessor:
    """Turns a batch of input records into a `BatchOutcome`; the checkpoint makes it durable."""

    def __init__(
        self,
        scorer: ImageScorer,
        store: StateStore,
        config: MonitorConfig,
        limits: DecodingLimits,
        model_version: str,
        reader_threads: int = 2,
        cached_states: int = 0,
    ) -> None:
        self.scorer = scorer
        self.store = store
        self.config = config
        self.limits = limits
        self.model_version = model_version
        self.readers = ThreadPoolExecutor(reader_threads, thread_name_prefix="reader")
        # source id -> (its partition, its liveness entry) as last saved, for the sources
        # of the partitions this worker owns: how the silent ones are judged
        self.liveness: dict[str, tuple[int, Liveness | None]] = {}
        # up to `cached_states` of the states this worker last saved (`state_cache.py`)
        self.saved_states = StateCache(cached_states)

    def remember_liveness(self, entries: dict[str, tuple[int, Liveness | None]]) -> None:
        """Keep these entries as the store holds them, read at a claim."""
        self.liveness.update(entries)

    def remember_saved(self, outcome: BatchOutcome) -> None:
        """Keep what the checkpoint has just saved of a batch: its sources' liveness entries
        and states."""
        self.liveness.update(outcome.liveness)
        for source_id, state in outcome.states.items():
            self.saved_states.put(
                source_id, CachedState(outcome.source_partitions[source_id], state)
            )

    def forget_partitions(self, partitions: set[int]) -> None:
        """What this worker kept of these partitions' sources: given up, they are another
        worker's to judge; claimed again, the store's copy is the one to read."""
        self.liveness = {
            source: entry for source, entry in self.liveness.items() if entry[0] not in partitions
        }
        self.saved_states.forget(partitions)

    def close(self) -> None:
        self.readers.shutdown(wait=True, cancel_futures=True)

    def process(
        self,
        records: list[ConsumerRecord],
        applied_offsets: dict[int, int | None],
        lost_partitions: frozenset[int] = frozenset(),
    ) -> BatchOutcome:
        """Records of the input topic, in partition order -> what to publish and persist.

        `applied_offsets` maps partition -> the last offset whose effect is already in
        Redis; records at or below it were counted before a crash and are skipped.
        `lost_partitions` are those whose state the store lost (see `DriftWorker._verify_claims`):
        a source of theirs without stored state is reported as a reset (reason "lost").
        A source's records from a partition other than its home are dead-lettered.
        """
        outcome = BatchOutcome()
        reading: list[Future[ReadRecord | DeadLetter]] = []
        for record in records:
            outcome.last_offsets[record.partition] = max(
                record.offset, outcome.last_offsets.get(record.partition, -1)
            )
            applied = applied_offsets.get(record.partition)
            if applied is not None and record.offset <= applied:
                outcome.skipped_replays[record.partition] += 1
                continue
            reading.append(self.readers.submit(read_record, record, self.limits))

        items: list[ReadRecord | ReadCommand] = []  # in record order
        decoded: list[ReadRecord] = []  # the images of `items`, in order: the scores' rows
        parts: list[FrameScores] = []
        chunk: list[ReadRecord] = []
        for index, future in enumerate(reading):
            result = future.result()
            if isinstance(result, DeadLetter):
                outcome.dead_letters.append(result)
            else:
                items.append(result)
                if isinstance(result, ReadRecord):
                    chunk.append(result)
            if len(chunk) == SCORING_CHUNK or (chunk and index == len(reading) - 1):
                parts.append(self.scorer.score_frames([read.event.image for read in chunk]))
                decoded += chunk
                chunk = []
        if not items:
            return outcome

        row_of = {id(read): row for row, read in enumerate(decoded)}
        images: list[ScoredImage] = []
        tile_errors = np.empty((0, 0), np.float32)
        if decoded:
            scores = ImageScores.concatenate([part.scores for part in parts])
            tile_errors = np.concatenate([part.tile_errors for part in parts])
            images = scored_images(scores, self.config.reference)
            is_outlier = scores.error > self.config.outlier_threshold
            for read, outlier in zip(decoded, is_outlier, strict=True):
                outcome.scored[read.record.partition] += 1
                outcome.outliers[read.record.partition] += int(outlier)

        by_source: dict[str, list[ReadRecord | ReadCommand]] = defaultdict(list)
        for item in items:
            by_source[_source_of(item)].append(item)
        topic = items[0].record.topic
        loaded = self.load_states(list(by_source), topic)
        outcome.state_resets = loaded.resets
        batch = _SourcesOfBatch(self, topic, loaded, set(by_source), lost_partitions, outcome)
        by_partition: dict[int, list[ReadRecord | ReadCommand]] = defaultdict(list)
        for source_id, source_items in by_source.items():
            for item in batch.at_home(source_id, source_items):
                by_partition[item.record.partition].append(item)

        for partition, partition_items in by_partition.items():
            self._walk(
                partition,
                sorted(partition_items, key=_offset_of),
                batch,
                images,
                tile_errors,
                row_of,
            )

        for source_id, source in batch.sources.items():
            state = source.monitor.state
            outcome.states[source_id] = state
            outcome.source_partitions[source_id] = source.partition
            outcome.liveness[source_id] = (source.partition, state.liveness)
            status = source_status(source_id, state)
            if status_changed(source.status_before, status):
                outcome.statuses[source_id] = status
        return outcome

    def load_states(self, source_ids: list[str], topic: str) -> LoadedStates:
        """The states of these sources: those this worker last saved as it kept them, the
        others from the store in one round trip."""
        kept = self.saved_states.take(source_ids)
        loaded = self.store.load_sources([s for s in source_ids if s not in kept])
        for source_id, (partition, state) in kept.items():
            loaded.states[source_id] = state
            loaded.homes[source_id] = partition_label(topic, partition)
        metrics.STATES_LOADED.labels("memory").inc(len(kept))
        metrics.STATES_LOADED.labels("store").inc(len(source_ids) - len(kept))
        return loaded

    def _walk(
        self,
        partition: int,
        items: list[ReadRecord | ReadCommand],
        batch: _SourcesOfBatch,
        images: list[ScoredImage],
        tile_errors: np.ndarray,
        row_of: dict[int, int],
    ) -> None:
        """One partition's records in offset order, each to its source's monitor; and at
        each frame, first, the silence of every source of the partition whose next check
        that frame's time passes (`cadence.py`: the partition's time is its frames')."""
        floor = self.config.stopped_after_s
        # source -> its next check; a heap of them, soonest first, stale ones skipped
        checks: dict[str, float] = {
            source: check
            for source, (home, liveness) in self.liveness.items()
            if home == partition
            and liveness is not None
            and (check := liveness.next_check(floor)) is not None
        }
        for source_id, source in batch.sources.items():
            if source.partition == partition:
                batch.schedule(checks, source_id)
        due = [(check, source) for source, check in checks.items()]
        heapq.heapify(due)
        for item in items:
            source_id = _source_of(item)
            record = item.record
            if isinstance(item, ReadRecord):
                at = EventRef(
                    item.event.event_id,
                    partition,
                    record.offset,
                    _partition_time(item.event.timestamp.timestamp(), record.timestamp, floor),
                )
                while due and due[0][0] < at.timestamp:
                    check, quiet = heapq.heappop(due)
                    if quiet == source_id or checks.get(quiet) != check:
                        continue  # its own frame is no silence; or a check since replaced
                    silent = batch.source(quiet, partition)
                    if silent is None:  # its state is gone: nothing to judge
                        checks.pop(quiet, None)
                        continue
                    batch.publish(quiet, silent.monitor.judge_silence(at))
                    if batch.schedule(checks, quiet):
                        heapq.heappush(due, (checks[quiet], quiet))
            source = batch.source(source_id, partition)
            assert source is not None  # a source with records in the batch has a state
            monitor, state = source.monitor, source.monitor.state
            if isinstance(item, ReadCommand):
                # At the source's own time where it has one: silences end by it.
                latest = state.cadence.last_event_at
                position = EventRef(
                    item.command.command_id,
                    partition,
                    record.offset,
                    latest if latest is not None else record.timestamp / 1000.0,
                )
                entry, transitions = monitor.apply(item.command, position)
                if entry is not None:
                    batch.outcome.commands_applied.append((source_id, entry))
            else:
                row = row_of[id(item)]
                event = item.event
                if event.source_labels:
                    state.labels = dict(event.source_labels)
                position = EventRef(
                    event.event_id, partition, record.offset, event.timestamp.timestamp()
                )
                firings = monitor.update(images[row], position, (item.quality, tile_errors[row]))
                evidence = [
                    build_alert(
                        source_id, firing, state, self.config, self.model_version
                    ).model_dump_json()
                    for firing in firings
                ]
                transitions = monitor.follow_incidents(position, firings, evidence)
            batch.publish(source_id, transitions)
            if batch.schedule(checks, source_id):
                heapq.heappush(due, (checks[source_id], source_id))


@dataclass
class _Source:
    """A source as one batch works on it."""

    monitor: SourceMonitor
    partition: int  # its home
    status_before: SourceStatus | None  # None: new to the store


class _SourcesOfBatch:
    """The sources one batch touches: their states, loaded at once for those with records
    and one by one for silent ones found stopped; where their records may come from."""

    def __init__(
        self,
        processor: BatchProcessor,
        topic: str,
        loaded: LoadedStates,
        loaded_ids: set[str],
        lost_partitions: frozenset[int],
        outcome: BatchOutcome,
    ) -> None:
        self.processor = processor
        self.topic = topic
        self.loaded = loaded
        self.loaded_ids = loaded_ids  # the sources `loaded` was asked for
        self.lost_partitions = lost_partitions
        self.outcome = outcome
        self.sources: dict[str, _Source] = {}

    def at_home(
        self, source_id: str, items: list[ReadRecord | ReadCommand]
    ) -> list[ReadRecord | ReadCommand]:
        """The source's records from its home partition; the others dead-lettered."""
        first = items[0].record
        home = self.loaded.homes.get(source_id) or partition_label(first.topic, first.partition)
        kept = []
        for item in items:
            record = item.record
            if partition_label(record.topic, record.partition) == home:
                kept.append(item)
            else:
                error = SourceOnAnotherPartition(
                    f"source {source_id!r} lives on {home}, this record is on "
                    f"{partition_label(record.topic, record.partition)}"
                )
                self.outcome.dead_letters.append(DeadLetter(record, error))
        return kept

    def source(self, source_id: str, partition: int) -> _Source | None:
        """The source's state in this batch, loaded on first use; None for a silent
        source whose state is gone (there is nothing to judge)."""
        if source_id in self.sources:
            return self.sources[source_id]
        if source_id not in self.loaded_ids:  # silent: known from the liveness index only
            more = self.processor.load_states([source_id], self.topic)
            self.loaded_ids.add(source_id)
            if source_id not in more.states:
                # Evicted or unusable: nothing to judge, and no reason to look again.
                self.processor.liveness.pop(source_id, None)
                return None
            self.loaded.states[source_id] = more.states[source_id]
            self.loaded.homes.update(more.homes)
        state = self.loaded.states.get(source_id)
        # No state although the store knows the source (its blob was evicted or
        # deleted), or none on a partition whose state the store lost as a whole.
        was_known = source_id in self.loaded.homes or partition in self.lost_partitions
        if state is None and was_known and source_id not in self.outcome.state_resets:
            self.outcome.state_resets[source_id] = "lost"
            log.warning(
                "state_reset",
                source_id=source_id,
                reason="lost",
                partition=partition,
                action="the store lost this partition's state; restarting from the "
                "committed offset",
            )
        config = self.processor.config
        status_before = None if state is None else source_status(source_id, state)
        if state is None:
            state = SourceState.fresh(config)
        elif state.config_fingerprint != config.fingerprint:
            log.warning(
                "detector_parameters_changed",
                source_id=source_id,
                action="restarting this source's detectors; its incidents, commands and "
                "pace are kept",
            )
            state.restarted(config)
        self.sources[source_id] = _Source(SourceMonitor(config, state), partition, status_before)
        return self.sources[source_id]

    def publish(self, source_id: str, transitions: list[tuple[str, Transition]]) -> None:
        labels = self.sources[source_id].monitor.state.labels
        for question, transition in transitions:
            self.outcome.incident_events.append(
                build_incident_event(
                    source_id, question, transition, self.processor.model_version, labels
                )
            )

    def schedule(self, checks: dict[str, float], source_id: str) -> bool:
        """Set the source's next silence check from its state; whether it has one."""
        check = self.sources[source_id].monitor.next_silence_check()
        if check is None:
            checks.pop(source_id, None)
            return False
        checks[source_id] = check
        return True


def _partition_time(event_time: float, broker_ms: int, floor_s: float) -> float:
    """A frame's time as its partition's clock: its event time, but never more than the
    floor past the broker's timestamp of its record (one camera whose clock runs ahead
    must not stop its neighbours). A record without a broker timestamp: its event time."""
    if broker_ms <= 0:
        return event_time
    return min(event_time, broker_ms / 1000.0 + floor_s)


def _offset_of(item: ReadRecord | ReadCommand) -> int:
    return item.record.offset


def _source_of(item: ReadRecord | ReadCommand) -> str:
    return item.source_id if isinstance(item, ReadCommand) else item.event.source_id
