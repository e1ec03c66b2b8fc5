"""One batch, one pass: skip replays, decode, score, update detectors, collect alerts.

`BatchProcessor.process` does no Kafka I/O and one state-store round trip (loading the
states of the batch's sources); what it returns is made durable by `checkpoint.py`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import structlog
from kafka.consumer.fetcher import ConsumerRecord

from framedrift.schemas.alerts import DriftAlert
from framedrift.worker.detection.frame_quality import frame_signals
from framedrift.worker.detection.monitor import (
    EventRef,
    MonitorConfig,
    SourceMonitor,
    SourceState,
    scored_images,
)
from framedrift.worker.detection.scores import FrameScores
from framedrift.worker.stream.alerts import build_alert
from framedrift.worker.stream.decoding import (
    DecodedEvent,
    DecodingLimits,
    InvalidEvent,
    UnexpectedDecodingError,
    decode_record,
)
from framedrift.worker.stream.state_store import StateStore, partition_label

log = structlog.get_logger(__name__)


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


@dataclass
class BatchOutcome:
    """What one batch produced: to publish, to persist and to count."""

    alerts: list[DriftAlert] = field(default_factory=list)
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

    def without_partitions(self, held: set[int]) -> BatchOutcome:
        """This outcome less everything of the `held` partitions: their alerts, dead
        letters, sources' states and counts. What is left can be checkpointed on its own,
        since a source's state only ever comes from its home partition."""
        kept_sources = {s for s, p in self.source_partitions.items() if p not in held}
        return BatchOutcome(
            alerts=[a for a in self.alerts if a.window_last_event.partition not in held],
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
    ) -> None:
        self.scorer = scorer
        self.store = store
        self.config = config
        self.limits = limits
        self.model_version = model_version

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
        decoded: list[tuple[ConsumerRecord, DecodedEvent]] = []
        for record in records:
            outcome.last_offsets[record.partition] = max(
                record.offset, outcome.last_offsets.get(record.partition, -1)
            )
            applied = applied_offsets.get(record.partition)
            if applied is not None and record.offset <= applied:
                outcome.skipped_replays[record.partition] += 1
                continue
            try:
                event = decode_record(record.key, record.value, record.headers, self.limits)
            except InvalidEvent as error:
                outcome.dead_letters.append(DeadLetter(record, error))
                continue
            except Exception as error:
                # Never let one record halt its partition (a poison pill): park it, loudly.
                log.error(
                    "unexpected_decoding_error",
                    partition=record.partition,
                    offset=record.offset,
                    error_class=type(error).__name__,
                )
                unexpected = UnexpectedDecodingError(f"{type(error).__name__}: {error}")
                outcome.dead_letters.append(DeadLetter(record, unexpected))
                continue
            decoded.append((record, event))
        if not decoded:
            return outcome

        scored = self.scorer.score_frames([event.image for _, event in decoded])
        scores = scored.scores
        images = scored_images(scores, self.config.reference)
        qualities = [frame_signals(as_uint8(event.image)) for _, event in decoded]
        is_outlier = scores.error > self.config.outlier_threshold
        for (record, _), outlier in zip(decoded, is_outlier, strict=True):
            outcome.scored[record.partition] += 1
            outcome.outliers[record.partition] += int(outlier)

        by_source: dict[str, list[int]] = defaultdict(list)  # source id -> indices into `decoded`
        for index, (_, event) in enumerate(decoded):
            by_source[event.source_id].append(index)
        loaded = self.store.load_sources(list(by_source))
        outcome.state_resets = loaded.resets

        for source_id, indices in by_source.items():
            first_record = decoded[indices[0]][0]
            home = loaded.homes.get(source_id) or partition_label(
                first_record.topic, first_record.partition
            )
            at_home = []
            for index in indices:
                record = decoded[index][0]
                if partition_label(record.topic, record.partition) == home:
                    at_home.append(index)
                else:
                    error = SourceOnAnotherPartition(
                        f"source {source_id!r} lives on {home}, this record is on "
                        f"{partition_label(record.topic, record.partition)}"
                    )
                    outcome.dead_letters.append(DeadLetter(record, error))
            if not at_home:
                continue
            indices = at_home
            home_partition = decoded[indices[0]][0].partition
            outcome.source_partitions[source_id] = home_partition
            state = loaded.states.get(source_id)
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
            monitor = SourceMonitor(self.config, state)
            for index in indices:
                record, event = decoded[index]
                position = EventRef(
                    event.event_id, record.partition, record.offset, event.timestamp.timestamp()
                )
                frame = (qualities[index], scored.tile_errors[index])
                for firing in monitor.update(images[index], position, frame):
                    outcome.alerts.append(
                        build_alert(source_id, firing, state, self.config, self.model_version)
                    )
            outcome.states[source_id] = state
        return outcome
