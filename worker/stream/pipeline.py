"""One batch, one pass: skip replays, decode, score, update detectors, follow incidents.

Operator commands (`schemas/commands.py`) arrive among a source's frames on its
partition; each takes effect between the frames it sits between, as in the topic. A
source that sends nothing is judged at the other sources' frames of its partition
(`detection/cadence.py`): `BatchProcessor.liveness` holds what the store last saved of
each source of the owned partitions, so the judgement is the same however the records
are cut into batches.

`BatchProcessor.process` does no Kafka I/O and one state-store round trip (loading the
states of the batch's sources); what it returns is made durable by `checkpoint.py`.

Reading a record (decoding its image, reading its frame signals) is most of a camera
frame's cost and runs in a pool of threads (Pillow and numpy release the GIL while they
work), while the model scores the frames already read, `SCORING_CHUNK` at a time. The
detectors then take the frames in the batch's order, so the outcome is the same as a
serial pass's, bit for bit: an image's scores do not depend on its company.
"""

from __future__ import annotations

import dataclasses
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
from framedrift.worker.detection.cadence import Cadence, Liveness
from framedrift.worker.detection.frame_quality import FrameQuality, frame_signals
from framedrift.worker.detection.monitor import (
    EventRef,
    MonitorConfig,
    SourceMonitor,
    SourceState,
    scored_images,
)
from framedrift.worker.detection.operator import AuditEntry, Command
from framedrift.worker.detection.scores import FrameScores, ImageScores
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
from framedrift.worker.stream.state_store import StateStore, partition_label

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


@dataclass(frozen=True)
class Stall:
    """Another source's frame (`record`, at `at`) that carried its partition's time past a
    silent source's deadline: where that source's stopped incident opens."""

    record: ConsumerRecord
    at: EventRef


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
    liveness: dict[str, tuple[int, Liveness]] = field(default_factory=dict)

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
    ) -> None:
        self.scorer = scorer
        self.store = store
        self.config = config
        self.limits = limits
        self.model_version = model_version
        self.readers = ThreadPoolExecutor(reader_threads, thread_name_prefix="reader")
        # source id -> (its partition, its liveness entry) as last saved, for the sources
        # of the partitions this worker owns: how the silent ones are judged
        self.liveness: dict[str, tuple[int, Liveness]] = {}

    def remember_liveness(self, entries: dict[str, tuple[int, Liveness]]) -> None:
        """Keep these saved entries: from the store at a claim, or a batch once saved."""
        self.liveness.update(entries)

    def forget_liveness(self, partitions: set[int]) -> None:
        """The sources of partitions given up are another worker's to judge."""
        self.liveness = {
            source: entry for source, entry in self.liveness.items() if entry[0] not in partitions
        }

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
        if decoded:
            scores = ImageScores.concatenate([part.scores for part in parts])
            tile_errors = np.concatenate([part.tile_errors for part in parts])
            images = scored_images(scores, self.config.reference)
            is_outlier = scores.error > self.config.outlier_threshold
            for read, outlier in zip(decoded, is_outlier, strict=True):
                outcome.scored[read.record.partition] += 1
                outcome.outliers[read.record.partition] += int(outlier)

        by_source: dict[str, list[ReadRecord | ReadCommand | Stall]] = defaultdict(list)
        for item in items:
            by_source[_source_of(item)].append(item)
        loaded = self.store.load_sources(list(by_source))
        stalls = self._stalls(decoded, loaded.states)
        silent = [source for source in stalls if source not in by_source]
        if silent:  # sources with nothing in this batch but their silence
            more = self.store.load_sources(silent)
            loaded.states.update(more.states)
            loaded.resets.update(more.resets)
            loaded.homes.update(more.homes)
        for source, found in stalls.items():
            by_source[source] = sorted([*by_source[source], *found], key=_offset_of)
        outcome.state_resets = loaded.resets

        for source_id, source_items in by_source.items():
            first_record = source_items[0].record
            home = loaded.homes.get(source_id) or partition_label(
                first_record.topic, first_record.partition
            )
            at_home = []
            for item in source_items:
                record = item.record
                if partition_label(record.topic, record.partition) == home:
                    at_home.append(item)
                elif not isinstance(item, Stall):  # a stall is judged at home only
                    error = SourceOnAnotherPartition(
                        f"source {source_id!r} lives on {home}, this record is on "
                        f"{partition_label(record.topic, record.partition)}"
                    )
                    outcome.dead_letters.append(DeadLetter(record, error))
            state = loaded.states.get(source_id)
            if state is None and all(isinstance(item, Stall) for item in at_home):
                continue  # judged silent by the saved entry, but its state is gone
            if not at_home:
                continue
            home_partition = at_home[0].record.partition
            outcome.source_partitions[source_id] = home_partition
            # No state although the store knows the source (its blob was evicted or
            # deleted), or none on a partition whose state the store lost as a whole.
            was_known = source_id in loaded.homes or home_partition in lost_partitions
            if state is None and was_known and source_id not in outcome.state_resets:
                outcome.state_resets[source_id] = "lost"
                log.warning(
                    "state_reset",
                    source_id=source_id,
                    reason="lost",
                    partition=home_partition,
                    action="the store lost this partition's state; restarting from the "
                    "committed offset",
                )
            if state is None or state.config_fingerprint != self.config.fingerprint:
                if state is not None:
                    log.warning(
                        "detector_parameters_changed",
                        source_id=source_id,
                        action="restarting this source's detectors",
                    )
                state = SourceState.fresh(self.config)
            status_before = source_status(source_id, state) if source_id in loaded.states else None
            monitor = SourceMonitor(self.config, state)
            for item in at_home:
                record = item.record
                if isinstance(item, Stall):
                    transitions = monitor.stopped(item.at)
                elif isinstance(item, ReadCommand):
                    # At the source's own time where it has one: silences end by it.
                    latest = state.cadence.last_event_at
                    position = EventRef(
                        item.command.command_id,
                        record.partition,
                        record.offset,
                        latest if latest is not None else record.timestamp / 1000.0,
                    )
                    entry, transitions = monitor.apply(item.command, position)
                    if entry is not None:
                        outcome.commands_applied.append((source_id, entry))
                else:
                    row = row_of[id(item)]
                    event = item.event
                    if event.source_labels:
                        state.labels = dict(event.source_labels)
                    position = EventRef(
                        event.event_id, record.partition, record.offset, event.timestamp.timestamp()
                    )
                    firings = monitor.update(
                        images[row], position, (item.quality, tile_errors[row])
                    )
                    evidence = [
                        build_alert(
                            source_id, firing, state, self.config, self.model_version
                        ).model_dump_json()
                        for firing in firings
                    ]
                    transitions = monitor.follow_incidents(position, firings, evidence)
                for question, transition in transitions:
                    outcome.incident_events.append(
                        build_incident_event(
                            source_id, question, transition, self.model_version, state.labels
                        )
                    )
            outcome.states[source_id] = state
            outcome.liveness[source_id] = (
                home_partition,
                Liveness(dataclasses.replace(state.cadence), state.liveness.stopped),
            )
            status = source_status(source_id, state)
            if status_changed(status_before, status):
                outcome.statuses[source_id] = status
        return outcome

    def _stalls(
        self, decoded: list[ReadRecord], states: dict[str, SourceState]
    ) -> dict[str, list[Stall]]:
        """The sources this batch's frames find stopped, and at which frame each: per
        partition, in offset order, the first frame of another source whose event time is
        past a source's deadline (`cadence.py`). A source's pace is its loaded state's
        where it has frames in the batch, else the saved entry this processor keeps."""
        floor = self.config.stopped_after_s
        stalls: dict[str, list[Stall]] = defaultdict(list)
        by_partition: dict[int, list[ReadRecord]] = defaultdict(list)
        for read in decoded:
            by_partition[read.record.partition].append(read)
        for partition, reads in by_partition.items():
            # source -> (its cadence, a copy to walk forward; whether it is stopped)
            pace = {
                source: (dataclasses.replace(entry.cadence), entry.stopped)
                for source, (home, entry) in self.liveness.items()
                if home == partition
            }
            for read in reads:
                state = states.get(read.event.source_id)
                if state is not None:
                    liveness = state.liveness
                    pace[read.event.source_id] = (
                        dataclasses.replace(liveness.cadence),
                        liveness.stopped,
                    )
            deadlines = []  # (deadline, source) of those that can stop, soonest first
            for source, (cadence, stopped) in pace.items():
                deadline = Liveness(cadence, stopped).deadline(floor)
                if deadline is not None and not stopped:
                    deadlines.append((deadline, source))
            heapq.heapify(deadlines)
            for read in sorted(reads, key=lambda read: read.record.offset):
                source, timestamp = read.event.source_id, read.event.timestamp.timestamp()
                while deadlines and deadlines[0][0] < timestamp:
                    deadline, quiet = heapq.heappop(deadlines)
                    cadence, stopped = pace[quiet]
                    # Its own frame is no silence; an entry its later frames replaced is stale.
                    if quiet == source or stopped:
                        continue
                    if Liveness(cadence, stopped).deadline(floor) != deadline:
                        continue
                    at = EventRef(read.event.event_id, partition, read.record.offset, timestamp)
                    stalls[quiet].append(Stall(read.record, at))
                    pace[quiet] = (cadence, True)
                cadence = pace.get(source, (Cadence(), False))[0]
                cadence.observe(timestamp)
                pace[source] = (cadence, False)
                deadline = Liveness(cadence, False).deadline(floor)
                if deadline is not None:
                    heapq.heappush(deadlines, (deadline, source))
        return stalls


def _offset_of(item: ReadRecord | ReadCommand | Stall) -> int:
    return item.record.offset


def _source_of(item: ReadRecord | ReadCommand) -> str:
    return item.source_id if isinstance(item, ReadCommand) else item.event.source_id
