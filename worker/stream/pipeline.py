"""One batch, one pass: skip replays, decode, score, update detectors, collect alerts.

`BatchProcessor.process` does no Kafka I/O and one Redis round trip (loading the states
of the batch's sources); what it returns is made durable by `worker/checkpoint.py`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import structlog
from kafka.consumer.fetcher import ConsumerRecord

from framedrift.schemas.alerts import DriftAlert
from framedrift.worker.detection.monitor import (
    EventRef,
    MonitorConfig,
    SourceMonitor,
    SourceState,
    scored_images,
)
from framedrift.worker.model.scoring import Scorer
from framedrift.worker.stream.alerts import build_alert
from framedrift.worker.stream.decoding import (
    DecodedEvent,
    DecodingLimits,
    InvalidEvent,
    UnexpectedDecodingError,
    decode_record,
)
from framedrift.worker.stream.state_store import RedisStateStore

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class DeadLetter:
    record: ConsumerRecord
    error: InvalidEvent


@dataclass
class BatchOutcome:
    alerts: list[DriftAlert] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    # source id -> its state after this batch
    states: dict[str, SourceState] = field(default_factory=dict)
    # partition -> the highest offset of this batch handled there (scored, dead-lettered or skipped)
    last_offsets: dict[int, int] = field(default_factory=dict)
    scored: int = 0
    skipped_replays: int = 0
    rejected_states: int = 0


class BatchProcessor:
    def __init__(
        self,
        scorer: Scorer,
        store: RedisStateStore,
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
        self, records: list[ConsumerRecord], applied_offsets: dict[int, int | None]
    ) -> BatchOutcome:
        """Records of the input topic, in partition order -> what to publish and persist.

        `applied_offsets` maps partition -> the last offset whose effect is already in
        Redis; records at or below it were counted before a crash and are skipped.
        """
        outcome = BatchOutcome()
        decoded: list[tuple[ConsumerRecord, DecodedEvent]] = []
        for record in records:
            outcome.last_offsets[record.partition] = max(
                record.offset, outcome.last_offsets.get(record.partition, -1)
            )
            applied = applied_offsets.get(record.partition)
            if applied is not None and record.offset <= applied:
                outcome.skipped_replays += 1
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

        scores = self.scorer.score([event.image for _, event in decoded])
        images = scored_images(scores, self.config.reference)
        outcome.scored = len(decoded)

        by_source: dict[str, list[int]] = defaultdict(list)  # source id -> indices into `decoded`
        for index, (_, event) in enumerate(decoded):
            by_source[event.source_id].append(index)
        loaded = self.store.load_sources(list(by_source))
        outcome.rejected_states = len(loaded.rejected)

        for source_id, indices in by_source.items():
            state = loaded.states.get(source_id)
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
                for firing in monitor.update(images[index], position):
                    outcome.alerts.append(
                        build_alert(source_id, firing, state, self.config, self.model_version)
                    )
            outcome.states[source_id] = state
        return outcome
