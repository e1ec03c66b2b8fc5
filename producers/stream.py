"""`framedrift produce`: streams dataset images as events from N simulated sources.

Sources take turns, one event each, so every source advances at the same pace. Drift
switches on at the source's event number `drift_at` (0-based) for the sources given a
scenario. Event ids are `{source_id}-{sequence:07d}`, so a consumer can tell which
events came after the onset.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
from kafka import KafkaProducer
from tqdm import tqdm

from framedrift.producers.datasets import LabelledImages
from framedrift.producers.events import (
    Encoding,
    KafkaRecord,
    ValueFormat,
    image_event_record,
)
from framedrift.producers.scenarios import ScenarioParameters, ScenarioSampler


def source_ids(count: int) -> list[str]:
    return [f"camera-{index:03d}" for index in range(count)]


def event_id(source_id: str, sequence: int) -> str:
    return f"{source_id}-{sequence:07d}"


def refuse_unknown_sources(naming: str, named: Iterable[str], count: int) -> None:
    """A ValueError if `named` holds a source id that is not one of `source_ids(count)`."""
    unknown = set(named) - set(source_ids(count))
    if unknown:
        raise ValueError(
            f"{naming} unknown sources {sorted(unknown)}; "
            f"sources are camera-000..camera-{count - 1:03d}"
        )


def sequence_of(event_id: str) -> int:
    """The per-source sequence number in an event id made by `event_id`."""
    return int(event_id.rsplit("-", 1)[1])


@dataclass(frozen=True)
class StreamPlan:
    sources: int = 4
    events_per_source: int = 1000
    # source id -> scenario switched on at `drift_at` (off again at `drift_until`, where
    # given); sources not named stay clean
    drift: dict[str, str] = field(default_factory=dict)
    drift_at: int = 500
    drift_until: int | None = None
    # Event time between a source's events, from the time of the first; None: each
    # event's time is when it is made.
    event_interval_s: float | None = None
    rate: float | None = None  # events per second over all sources; None: as fast as possible
    value_format: ValueFormat = "json"
    encoding: Encoding = "png"
    seed: int = 0

    def __post_init__(self) -> None:
        refuse_unknown_sources("drift names", self.drift, self.sources)


def produce_stream(
    producer: KafkaProducer,
    topic: str,
    plan: StreamPlan,
    clean: LabelledImages,
    novel: LabelledImages | None = None,
    parameters: ScenarioParameters | None = None,
    show_progress: bool = True,
) -> dict[str, int]:
    """Send the plan's events and wait for every ack; returns events sent per source."""
    parameters = parameters or ScenarioParameters()
    root = np.random.default_rng(plan.seed)
    samplers = {
        source: ScenarioSampler(
            plan.drift.get(source, "none"),
            clean,
            np.random.default_rng(root.integers(2**63)),
            novel,
            parameters,
        )
        for source in source_ids(plan.sources)
    }

    until = plan.drift_until if plan.drift_until is not None else plan.events_per_source
    clock = EventClock(plan.event_interval_s)

    def records() -> Iterator[KafkaRecord]:
        for sequence in range(plan.events_per_source):
            for source, sampler in samplers.items():
                image, label = sampler.draw(drifted=plan.drift_at <= sequence < until)
                yield image_event_record(
                    image,
                    source,
                    event_id(source, sequence),
                    clock.time_of(sequence),
                    plan.value_format,
                    plan.encoding,
                    label,
                )

    return send_records(
        producer,
        topic,
        records(),
        plan.sources * plan.events_per_source,
        plan.rate,
        show_progress,
    )


@dataclass
class EventClock:
    """The event time of a source's `sequence`-th event: `interval_s` apart from the first
    event's (a camera's frame rate), or, without an interval, when the event is made."""

    interval_s: float | None
    started: datetime = field(default_factory=lambda: datetime.now(UTC))

    def time_of(self, sequence: int) -> datetime:
        if self.interval_s is None:
            return datetime.now(UTC)
        return self.started + timedelta(seconds=sequence * self.interval_s)


def send_records(
    producer: KafkaProducer,
    topic: str,
    records: Iterable[KafkaRecord],
    total: int,
    rate: float | None = None,
    show_progress: bool = True,
) -> dict[str, int]:
    """Send `records` (at most `rate` a second) and wait for every ack; returns records
    sent per source (Kafka key)."""
    sent: Counter[str] = Counter()
    futures = []
    started = time.monotonic()
    with tqdm(total=total, desc="producing", unit="event", disable=not show_progress) as progress:
        for record in records:
            futures.append(
                producer.send(topic, key=record.key, value=record.value, headers=record.headers)
            )
            sent[record.key.decode()] += 1
            progress.update()
            if rate:
                ahead = sent.total() / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
    producer.flush()
    failed = [future for future in futures if future.failed()]
    if failed:
        raise RuntimeError(
            f"{len(failed)} of {len(futures)} events were not acknowledged: {failed[0].exception}"
        )
    return dict(sent)
