"""`framedrift fleet`: one fleet incident for many sources sharing a label in trouble at once.

`FleetGrouper` is the rule (`schemas/fleet.py` says what it publishes): per grouping label
and value, the incidents opened within `window_s` of each other by distinct sources
are counted; the source that makes `threshold` opens a fleet incident listing them all.
While it is open, any source of that value that opens an incident joins it (updated),
and when the last member's incident resolves, it resolves. Below the threshold the
members' own incidents are all there is. Time is the incidents' event time and the ids
are derived from the member events, so reading the same alerts topic again gives the
same fleet events with the same ids.

`FleetService` runs it: it reads the whole alerts topic from the start at every start,
feeding the grouper without publishing up to its group's committed offsets (those fleet
events went out before; on a first start, up to what the topic held), then publishes
what the new incident events make, waits for the broker's acks and commits. A crash
between the two publishes some fleet events again, under the ids they had. Run one: the
grouping needs every incident in one place (the topic is small: incidents, not frames).
"""

from __future__ import annotations

import argparse
import signal
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from framedrift.schemas.alerts import IncidentEvent
from framedrift.schemas.fleet import FleetIncidentEvent, FleetMember
from framedrift.worker.ops.logs import configure_logging
from framedrift.worker.ops.settings import Settings, settings_from_env
from framedrift.worker.stream.alerts import read_incident_event
from framedrift.worker.stream.backoff import Backoff

log = structlog.get_logger(__name__)

_FLEET_ID_NAMESPACE = uuid.UUID("5b0c7f0e-2f6e-4d4b-9a53-6f1d3c8a2e41")
DEFAULT_GROUP = "framedrift-fleet"
# Incident event ids remembered to drop copies: far more than a crash re-sends.
SEEN_KEPT = 100_000


@dataclass
class _FleetIncident:
    identity: str
    opened_at: float
    members: dict[str, FleetMember] = field(default_factory=dict)  # incident id -> member
    joined: int = 0  # members that ever joined


@dataclass
class FleetGrouper:
    """The rule of the module docstring, over incident events in the topic's order."""

    group_by: tuple[str, ...]
    threshold: int
    window_s: float
    # (label, value) -> incidents opened lately, while no fleet incident is open
    recent: dict[tuple[str, str], list[FleetMember]] = field(default_factory=dict)
    open: dict[tuple[str, str], _FleetIncident] = field(default_factory=dict)
    # The latest incident events taken, by id: a worker re-sends a transition after a
    # crash under the id it had, and a copy must not count twice.
    seen: deque[str] = field(default_factory=lambda: deque(maxlen=SEEN_KEPT))

    def take(self, event: IncidentEvent) -> list[FleetIncidentEvent]:
        """One incident event; the fleet events it makes."""
        if event.event_id in self.seen:
            return []
        self.seen.append(event.event_id)
        made = []
        for label in self.group_by:
            value = event.labels.get(label)
            if value is None:
                continue
            key = (label, value)
            if event.transition == "opened":
                made += self._opened(key, event)
            elif event.transition == "resolved":
                made += self._resolved(key, event)
        return made

    def _opened(self, key: tuple[str, str], event: IncidentEvent) -> list[FleetIncidentEvent]:
        member = FleetMember(
            source_id=event.source_id,
            incident_id=event.incident_id,
            question=event.question,
            opened_at=event.opened_at,
        )
        fleet = self.open.get(key)
        if fleet is not None:
            fleet.members[event.incident_id] = member
            fleet.joined += 1
            return [self._event(key, fleet, "updated", event)]
        now = event.opened_at.timestamp()
        # By time, not arrival: a source's incident may reach the topic late.
        recent = [
            m for m in self.recent.get(key, []) if m.opened_at.timestamp() >= now - self.window_s
        ]
        recent.append(member)
        self.recent[key] = recent
        if len({m.source_id for m in recent}) < self.threshold:
            return []
        label, value = key
        identity = str(uuid.uuid5(_FLEET_ID_NAMESPACE, f"{label}\0{value}\0{event.incident_id}"))
        fleet = _FleetIncident(identity, now, {m.incident_id: m for m in recent}, len(recent))
        self.open[key] = fleet
        del self.recent[key]
        return [self._event(key, fleet, "opened", event)]

    def _resolved(self, key: tuple[str, str], event: IncidentEvent) -> list[FleetIncidentEvent]:
        recent = self.recent.get(key)
        if recent is not None:  # no longer in trouble: it does not count towards a storm
            self.recent[key] = [m for m in recent if m.incident_id != event.incident_id]
        fleet = self.open.get(key)
        if fleet is None or event.incident_id not in fleet.members:
            return []
        if len(fleet.members) > 1:
            del fleet.members[event.incident_id]
            return []
        del self.open[key]
        return [self._event(key, fleet, "resolved", event)]

    def _event(
        self, key: tuple[str, str], fleet: _FleetIncident, transition: str, cause: IncidentEvent
    ) -> FleetIncidentEvent:
        label, value = key
        return FleetIncidentEvent(
            event_id=str(
                uuid.uuid5(_FLEET_ID_NAMESPACE, f"{fleet.identity}\0{transition}\0{cause.event_id}")
            ),
            fleet_incident_id=fleet.identity,
            transition=transition,  # type: ignore[arg-type]
            label=label,
            value=value,
            members=list(fleet.members.values()),
            member_count=fleet.joined,
            opened_at=_datetime(fleet.opened_at),
            at=cause.at,
            trigger_event_id=cause.event_id,
        )


def _datetime(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


class FleetService:
    """Runs a `FleetGrouper` over the alerts topic (module docstring)."""

    def __init__(self, settings: Settings, group_id: str = DEFAULT_GROUP) -> None:
        self.settings = settings
        self.group_id = group_id
        self.grouper = FleetGrouper(
            tuple(settings.fleet_group_by.split(",")),
            settings.fleet_threshold,
            settings.fleet_window_s,
        )
        self._stopping = threading.Event()
        self.backoff = Backoff(settings.retry_backoff_max_s, sleep=self._stopping.wait)

    def stop(self, *_: object) -> None:
        self._stopping.set()

    def run(self, once: bool = False) -> None:
        """Until `stop`; with `once`, until a poll finds nothing new."""
        topic = self.settings.alerts_topic
        consumer = KafkaConsumer(
            **self.settings.kafka_client_options(),
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        producer = KafkaProducer(**self.settings.kafka_client_options(), acks="all")
        try:
            partitions = self._assign(consumer, topic)
            if partitions is None:
                return
            # Below a partition's committed offset, fleet events went out before this start.
            # Without one (a first start), what the topic holds now is history: read until
            # a poll finds nothing (the log's end offset is not asked for: Tansu's answer
            # is not usable), then commit there, so a restart does not take later records
            # for history.
            published_before: dict[TopicPartition, int | None] = {
                p: consumer.committed(p) for p in partitions
            }
            uncommitted: dict[TopicPartition, int] = {}
            consumer.seek_to_beginning(*partitions)
            while not self._stopping.is_set():
                polled = consumer.poll(self.settings.poll_timeout_ms)
                if not polled:
                    first_start = [p for p, o in published_before.items() if o is None]
                    for partition in first_start:
                        published_before[partition] = uncommitted[partition] = consumer.position(
                            partition
                        )
                    if once and not first_start:
                        return
                owed: list[FleetIncidentEvent] = []
                for partition, records in polled.items():
                    for record in records:
                        made = self._take(record)
                        before = published_before[partition]
                        if before is not None and record.offset >= before:
                            owed += made
                            uncommitted[partition] = record.offset + 1
                if not self._publish(producer, owed):
                    return  # stopped before the broker took them: not committed
                if uncommitted:
                    consumer.commit(
                        {p: OffsetAndMetadata(o, "", -1) for p, o in uncommitted.items()}
                    )
                    uncommitted = {}
        finally:
            producer.close()
            consumer.close(autocommit=False)

    def _assign(self, consumer: KafkaConsumer, topic: str) -> list[TopicPartition] | None:
        """Every partition of the alerts topic, once it exists (None: stopped first)."""
        while not self._stopping.is_set():
            numbers = consumer.partitions_for_topic(topic)
            if numbers:
                if len(numbers) > 1:
                    # Which incident tips a storm would then depend on how the partitions'
                    # records interleave, which a restart does not reproduce.
                    log.warning(
                        "fleet_alerts_topic_has_several_partitions",
                        topic=topic,
                        partitions=len(numbers),
                        consequence="fleet incident ids may differ after a restart; "
                        "create the alerts topic with one partition",
                    )
                partitions = [TopicPartition(topic, number) for number in sorted(numbers)]
                consumer.assign(partitions)
                log.info("fleet_grouping_started", topic=topic, group_id=self.group_id)
                return partitions
            log.warning("fleet_waiting_for_topic", topic=topic, retry_in_s=self.backoff.next_s)
            self.backoff.wait()
        return None

    def _take(self, record: ConsumerRecord) -> list[FleetIncidentEvent]:
        event = read_incident_event(record)
        return [] if event is None else self.grouper.take(event)

    def _publish(self, producer: KafkaProducer, owed: list[FleetIncidentEvent]) -> bool:
        """Send the fleet events and wait for their acks, retrying with backoff; False when
        stopped first."""
        while owed and not self._stopping.is_set():
            try:
                sent = [
                    producer.send(
                        self.settings.fleet_topic,
                        key=f"{event.label}={event.value}".encode(),
                        value=event.model_dump_json().encode(),
                    )
                    for event in owed
                ]
                for future in sent:
                    future.get(timeout=30)
            except KafkaError as error:
                log.warning(
                    "fleet_publish_failed", error=str(error), retry_in_s=self.backoff.next_s
                )
                self.backoff.wait()
                continue
            self.backoff.reset()
            for event in owed:
                log.info(
                    f"fleet_incident_{event.transition}",
                    fleet_incident_id=event.fleet_incident_id,
                    label=event.label,
                    value=event.value,
                    members=len(event.members),
                )
            return True
        return not owed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="framedrift fleet",
        description="Group incidents of sources sharing a label into fleet incidents "
        "(settings: FRAMEDRIFT_FLEET_*, the alerts topic and Kafka as the worker's).",
    )
    parser.add_argument("--group", default=DEFAULT_GROUP, help="its consumer group")
    parser.add_argument("--once", action="store_true", help="stop once caught up")
    args = parser.parse_args(argv)
    settings = settings_from_env()
    configure_logging(settings.log_format, settings.log_level)
    service = FleetService(settings, args.group)
    signal.signal(signal.SIGTERM, service.stop)
    signal.signal(signal.SIGINT, service.stop)
    service.run(once=args.once)
    return 0
