"""`framedrift alertmanager`: posts the alerts topic's incidents to Prometheus Alertmanager.

Each incident becomes one Alertmanager alert (API v2, `POST /api/v2/alerts`), identified
by its labels: `alertname`, `source`, `kind` (the incident's question), `incident_id` and
the source's own labels. An open incident is posted as firing with an `endsAt` a few
re-send intervals ahead and posted again every interval, as Alertmanager expects of its
clients (Prometheus does the same, with an `endsAt` of four re-send intervals: an alert
whose client stops re-sending it resolves on its own, and one that is still open never
does); a resolved incident is posted once, with `endsAt` at its resolution.

Delivery is at least once. The alerts topic is the source of truth, and the bridge keeps
only what it can rebuild from it:

1. At each start the bridge reads the whole topic from the beginning. Records below its
   consumer group's committed offset were posted before: they only rebuild the book of
   open incidents (their latest state), and nothing of them is posted until the bridge
   has caught up with that offset, so an incident resolved later in the topic never
   flickers back. On a first start (no committed offset) everything already on the
   topic counts as posted before: the incidents still open are posted, none of the
   history's resolutions (Alertmanager never saw those incidents fire).
2. Records at or past the committed offset are new: each incident they touch is posted
   in its latest state, resolved ones included (a resolution read but not posted before
   a crash is posted now).
3. Once caught up, every open incident is posted at once (its horizon, posted before the
   restart, is running out), then again each time its re-send falls due.
4. Offsets are committed only after the posts for their records succeeded. Alertmanager
   identifies an alert by its labels, so a record posted twice (after a crash between
   steps 2 and 4) updates the same alert.

The group only stores offsets: the bridge assigns itself every partition of the topic,
so a second bridge (a standby, or one per Alertmanager cluster) reads everything too,
and Alertmanager merges their identical posts. Limits: an incident whose transitions
have all aged out of the topic's retention is forgotten at the next start, and resolves
in Alertmanager when its last horizon passes; partitions added to the topic are read
from the next start.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypedDict

import structlog
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from framedrift.schemas.alerts import DriftAlert, IncidentEvent
from framedrift.worker.ops.logs import configure_logging
from framedrift.worker.ops.settings import Settings, settings_from_env
from framedrift.worker.stream.alerts import read_incident_event
from framedrift.worker.stream.backoff import Backoff
from framedrift.worker.stream.kafka_clients import any_broker_answers

log = structlog.get_logger(__name__)

DESCRIPTION = "post the alerts topic's incidents to Prometheus Alertmanager"
URL_ENV = "FRAMEDRIFT_ALERTMANAGER_URL"
DEFAULT_URL = "http://localhost:9093"
DEFAULT_GROUP = "framedrift-alertmanager"
DEFAULT_RESEND_INTERVAL_S = 60.0
# An open incident's endsAt lies this many re-send intervals ahead (Prometheus' choice):
# a post or two may fail without the alert resolving, and a bridge that is gone for good
# lets it resolve within minutes.
HORIZON_RESENDS = 4
# Alerts per request: a restart with thousands of open incidents posts them in pieces.
POST_CHUNK = 500

ALERTNAME = "FramedriftIncident"
# The labels the bridge sets itself; a source label of one of these names is renamed
# `exported_<name>`, as Prometheus renames a scraped label that clashes with a target's.
OWN_LABELS = frozenset({"alertname", "source", "kind", "incident_id"})
QUESTION_PHRASES = {
    "out_of_domain": "out of the model's domain",
    "changed": "changed from its own normal",
    "stopped": "stopped sending frames",
}
# How many of an alert's moved signals its evidence annotation names.
EVIDENCE_CHANGES = 3


class KafkaUnavailable(ConnectionError):
    """The brokers do not answer, or the alerts topic does not exist yet: try again later."""


class AlertmanagerUnavailable(ConnectionError):
    """Alertmanager did not take the alerts (no answer, a timeout, a 5xx): post them again."""


class AlertsRejected(ValueError):
    """Alertmanager answered 4xx: it refuses the alerts as sent; posting them again won't help."""


class PostableAlert(TypedDict):
    """One element of `POST /api/v2/alerts`' body (Alertmanager's `postableAlert`)."""

    labels: dict[str, str]
    annotations: dict[str, str]
    startsAt: str
    endsAt: str


# --- The mapping: an incident event -> an Alertmanager alert ---------------------------


def alert_labels(event: IncidentEvent) -> dict[str, str]:
    """What identifies the incident's alert: the same in all of its transitions."""
    labels = {
        "alertname": ALERTNAME,
        "source": event.source_id,
        "kind": event.question,
        "incident_id": event.incident_id,
    }
    # The source's labels (site, team, ...) come under their own names, so that routes
    # can match them; the schema has made them valid label names.
    for name, value in event.labels.items():
        labels.setdefault(f"exported_{name}" if name in OWN_LABELS else name, value)
    return labels


def incident_summary(event: IncidentEvent) -> str:
    """One line for people: the source, its question and what moved.

    A changed incident names its signals and how many tiles moved; any other its detectors.
    """
    moved = list(event.signals)
    if event.tiles:
        moved.append(f"{len(event.tiles)} tile{'s' if len(event.tiles) > 1 else ''}")
    what = moved if event.question == "changed" and moved else list(event.detectors)
    phrase = QUESTION_PHRASES.get(event.question, event.question)
    return f"{event.source_id}: {phrase} ({', '.join(what)})"


def evidence_summary(alert: DriftAlert) -> str:
    """One line of a detector's firing: its statistic against its threshold, the event it
    fired at and, for a changed alert, the first signals that moved."""
    threshold = "" if alert.threshold is None else f" (threshold {alert.threshold:.3g})"
    trigger = alert.window_last_event
    line = (
        f"{alert.detector} {alert.statistic:.3g}{threshold} at event {trigger.event_id} "
        f"({_timestamp(trigger.timestamp)})"
    )
    changes = [
        f"{change.signal} {change.direction} {abs(change.deviation_sd):.1f} sd"
        for change in alert.changes[:EVIDENCE_CHANGES]
    ]
    if len(alert.changes) > EVIDENCE_CHANGES:
        changes.append(f"+{len(alert.changes) - EVIDENCE_CHANGES} more")
    return f"{line}: {', '.join(changes)}" if changes else line


def alert_annotations(event: IncidentEvent) -> dict[str, str]:
    """What people read on the alert; it may change from one transition to the next."""
    annotations = {
        "summary": incident_summary(event),
        "detectors": ", ".join(event.detectors),
        "signals": ", ".join(event.signals),
        "tiles": ", ".join(event.tiles),
        "severity": f"{event.severity:.3g}",
        "model_version": event.model_version,
        "resolution": event.resolution or "",
    }
    if event.first_evidence is not None:
        annotations["first_evidence"] = evidence_summary(event.first_evidence)
    latest = event.latest_evidence
    if latest is not None and (
        event.first_evidence is None or latest.alert_id != event.first_evidence.alert_id
    ):
        annotations["latest_evidence"] = evidence_summary(latest)
    return {name: text for name, text in annotations.items() if text}


def postable_alert(event: IncidentEvent, now: datetime, horizon: timedelta) -> PostableAlert:
    """The incident as Alertmanager takes it: firing until `now + horizon` while it is
    open; ended at its resolution once resolved.

    Event times come from the sources' clocks, and Alertmanager compares them with its
    own: a time ahead of `now` is taken as `now`, so that a source whose clock runs ahead
    neither keeps a resolved alert firing nor posts one that ends before it starts.
    """
    starts_at = min(_aware(event.opened_at), now)
    if event.transition == "resolved":
        ends_at = max(min(_aware(event.at), now), starts_at)
    else:
        ends_at = now + horizon
    return PostableAlert(
        labels=alert_labels(event),
        annotations=alert_annotations(event),
        startsAt=_timestamp(starts_at),
        endsAt=_timestamp(ends_at),
    )


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC, as Alertmanager writes its own."""
    return _aware(moment).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- The book: which incidents are open, and what Alertmanager is owed ------------------


# A due time already past, whatever the clock says.
DUE_AT_ONCE = 0.0


@dataclass
class OpenIncident:
    event: IncidentEvent  # the incident's latest transition
    resend_at: float  # when it must be posted (again), seconds since the epoch


class OpenIncidents:
    """The incidents seen open, each with when it must next be posted, and the
    resolutions not yet posted.

    `record` a transition read from the topic; post what is `due`; say it was `posted`.
    A transition is due at once; an open incident is due again `resend_interval_s` after
    each post; a resolution is due until posted once, then forgotten with its incident.
    Times are seconds since the epoch.
    """

    def __init__(self, resend_interval_s: float) -> None:
        if resend_interval_s <= 0:
            raise ValueError(f"resend_interval_s must be positive, got {resend_interval_s}")
        self.resend_interval_s = resend_interval_s
        self._open: dict[str, OpenIncident] = {}  # incident id -> its latest state
        self._resolutions: dict[str, IncidentEvent] = {}  # incident id -> resolved, unposted

    def __len__(self) -> int:
        """Open incidents."""
        return len(self._open)

    def record(self, event: IncidentEvent) -> None:
        """A new transition: the incident's latest state, to be posted at once."""
        if event.transition == "resolved":
            self._open.pop(event.incident_id, None)
            self._resolutions[event.incident_id] = event
        else:
            self._resolutions.pop(event.incident_id, None)
            self._open[event.incident_id] = OpenIncident(event, resend_at=DUE_AT_ONCE)

    def replay(self, event: IncidentEvent) -> None:
        """A transition posted before this start: it only says whether its incident is open.

        An open one is due at once all the same (its horizon is running out); a
        resolution is owed nothing.
        """
        if event.transition == "resolved":
            self._open.pop(event.incident_id, None)
        else:
            self.record(event)

    def due(self, now: float) -> list[IncidentEvent]:
        """What to post now: every unposted resolution, then each open incident whose
        re-send time has come."""
        resends = [entry.event for entry in self._open.values() if entry.resend_at <= now]
        return [*self._resolutions.values(), *resends]

    def next_due(self) -> float | None:
        """When the next post falls due; None: nothing is owed or open."""
        if self._resolutions:
            return DUE_AT_ONCE
        return min((entry.resend_at for entry in self._open.values()), default=None)

    def posted(self, events: Iterable[IncidentEvent], now: float) -> None:
        """Alertmanager took these at `now`: resolutions are done, open incidents due
        again one interval later. A state newer than the one posted stays due."""
        for event in events:
            if event.transition == "resolved":
                if self._resolutions.get(event.incident_id) is event:
                    del self._resolutions[event.incident_id]
                continue
            entry = self._open.get(event.incident_id)
            if entry is not None and entry.event is event:
                entry.resend_at = now + self.resend_interval_s


# --- I/O: Alertmanager's API and the alerts topic ---------------------------------------


class AlertmanagerClient:
    """Posts alerts to one Alertmanager (or a load balancer in front of its cluster)."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def post_alerts(self, alerts: list[PostableAlert]) -> None:
        """`POST /api/v2/alerts`, or AlertmanagerUnavailable (retry) or AlertsRejected (don't)."""
        request = urllib.request.Request(
            f"{self.url}/api/v2/alerts",
            data=json.dumps(alerts).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read()
        except urllib.error.HTTPError as error:
            body = error.read().decode(errors="replace").strip()[:500]
            # 408 and 429 are "not now", not "not this".
            if 400 <= error.code < 500 and error.code not in (408, 429):
                raise AlertsRejected(f"HTTP {error.code}: {body}") from error
            raise AlertmanagerUnavailable(f"HTTP {error.code}: {body}") from error
        except (OSError, ValueError) as error:  # URLError, refused, reset, timed out
            raise AlertmanagerUnavailable(f"{type(error).__name__}: {error}") from error


class AlertmanagerBridge:
    """Reads the alerts topic and keeps Alertmanager's alerts in step with its incidents;
    the module docstring numbers the steps of its delivery guarantee."""

    def __init__(
        self,
        settings: Settings,
        client: AlertmanagerClient,
        group_id: str = DEFAULT_GROUP,
        resend_interval_s: float = DEFAULT_RESEND_INTERVAL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.client = client
        self.group_id = group_id
        self.book = OpenIncidents(resend_interval_s)
        self.horizon = timedelta(seconds=HORIZON_RESENDS * resend_interval_s)
        self.clock = clock
        self._stopping = threading.Event()
        # Waits wake up as soon as a stop is asked for.
        self.backoff = Backoff(settings.retry_backoff_max_s, sleep=self._stopping.wait)
        self.partitions: list[TopicPartition] = []
        # partition -> its end offset when the bridge started (`run(once=True)` stops there)
        self.end_at_start: dict[TopicPartition, int] = {}
        # partition -> the offset below which records were posted before this start
        self.posted_before: dict[TopicPartition, int] = {}
        # partition -> the next offset to commit once the posts owed are done
        self.uncommitted: dict[TopicPartition, int] = {}

    def stop(self, *_: object) -> None:
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def run(self, once: bool = False) -> None:
        """Until `stop` (SIGTERM, SIGINT); with `once`, until it has posted what the topic
        held at start. The steps are the module docstring's."""
        consumer = self._connect()
        if consumer is None:
            return  # stopped while waiting for Kafka
        caught_up_with_history = False
        try:
            while not self.stopping:
                self._read(consumer, self._poll_timeout_ms(caught_up_with_history))
                # Step 1. Nothing is posted before the history is read.
                if not caught_up_with_history:
                    if not self._reached(consumer, self.posted_before):
                        continue
                    caught_up_with_history = True
                    log.info("alertmanager_history_read", open_incidents=len(self.book))
                # Steps 2 and 3. New transitions, and the open incidents due again.
                if not self._post_due():
                    break  # stopped while Alertmanager was away: nothing owed is committed
                # Step 4.
                self._commit(consumer)
                if once and not self.uncommitted and self._reached(consumer, self.end_at_start):
                    break
        finally:
            log.info("alertmanager_bridge_stopping", open_incidents=len(self.book))
            consumer.close(autocommit=False)

    def _connect(self) -> KafkaConsumer | None:
        """A consumer assigned every partition of the alerts topic, once the brokers answer
        and the topic exists; None when stopped first."""
        consumer = None
        while not self.stopping:
            try:
                if not any_broker_answers(self.settings.bootstrap_servers):
                    raise KafkaUnavailable("no bootstrap server accepts connections")
                consumer = consumer or KafkaConsumer(
                    **self.settings.kafka_client_options(),
                    group_id=self.group_id,
                    enable_auto_commit=False,
                    auto_offset_reset="earliest",
                )
                self._assign(consumer)
            except (KafkaError, KafkaUnavailable) as error:
                log.warning(
                    "alertmanager_bridge_waiting_for_kafka",
                    topic=self.settings.alerts_topic,
                    error=f"{type(error).__name__}: {error}",
                    retry_in_s=self.backoff.next_s,
                )
                self.backoff.wait()
                continue
            self.backoff.reset()
            log.info(
                "alertmanager_bridge_started",
                url=self.client.url,
                topic=self.settings.alerts_topic,
                group_id=self.group_id,
                posted_before={p.partition: o for p, o in self.posted_before.items()},
                end_offsets={p.partition: o for p, o in self.end_at_start.items()},
            )
            return consumer
        if consumer is not None:
            consumer.close(autocommit=False)
        return None

    def _assign(self, consumer: KafkaConsumer) -> None:
        """Read every partition from its beginning, and find up to where records were
        posted before this start."""
        topic = self.settings.alerts_topic
        numbers = consumer.partitions_for_topic(topic)
        if not numbers:
            raise KafkaUnavailable(f"topic {topic} does not exist (yet)")
        self.partitions = [TopicPartition(topic, number) for number in sorted(numbers)]
        consumer.assign(self.partitions)
        self.end_at_start = consumer.end_offsets(self.partitions)
        for partition in self.partitions:
            committed = consumer.committed(partition)
            if committed is None:
                # A first start takes what is on the topic as posted before (step 1), and
                # says so with its first commit: a restart must not take records that
                # arrive after this one for history.
                committed = self.uncommitted[partition] = self.end_at_start[partition]
            self.posted_before[partition] = committed
        consumer.seek_to_beginning(*self.partitions)

    def _poll_timeout_ms(self, caught_up_with_history: bool) -> int:
        wait_ms = self.settings.poll_timeout_ms
        next_due = self.book.next_due()
        if caught_up_with_history and next_due is not None:
            wait_ms = min(wait_ms, max(0, round((next_due - self.clock()) * 1000)))
        return wait_ms

    def _read(self, consumer: KafkaConsumer, timeout_ms: int) -> None:
        for partition, records in consumer.poll(timeout_ms=timeout_ms).items():
            for record in records:
                event = read_incident_event(record)
                if record.offset < self.posted_before[partition]:
                    if event is not None:
                        self.book.replay(event)
                    continue
                if event is not None:
                    self.book.record(event)
                    log.info(
                        "incident_received",
                        incident_id=event.incident_id,
                        source_id=event.source_id,
                        transition=event.transition,
                        partition=record.partition,
                        offset=record.offset,
                    )
                self.uncommitted[partition] = record.offset + 1

    def _reached(self, consumer: KafkaConsumer, offsets: dict[TopicPartition, int]) -> bool:
        return all(consumer.position(p) >= offsets[p] for p in self.partitions)

    def _post_due(self) -> bool:
        """Post everything due, retrying with backoff while Alertmanager is away; False
        when stopped before it was all posted."""
        while not self.stopping:
            now = self.clock()
            try:
                self._post(self.book.due(now), now)
            except AlertmanagerUnavailable as error:
                log.warning(
                    "alertmanager_unavailable",
                    url=self.client.url,
                    error=str(error),
                    retry_in_s=self.backoff.next_s,
                )
                self.backoff.wait()
                continue
            self.backoff.reset()
            return True
        return False

    def _post(self, due: list[IncidentEvent], now: float) -> None:
        moment = datetime.fromtimestamp(now, UTC)
        for start in range(0, len(due), POST_CHUNK):
            chunk = due[start : start + POST_CHUNK]
            try:
                self.client.post_alerts([postable_alert(e, moment, self.horizon) for e in chunk])
            except AlertsRejected as error:
                # Alertmanager keeps a request's valid alerts and names the first invalid
                # one; posting it again at once would be refused again.
                log.error("alerts_rejected", url=self.client.url, error=str(error))
            self.book.posted(chunk, now)
            log.debug("alerts_posted", alerts=len(chunk), open_incidents=len(self.book))

    def _commit(self, consumer: KafkaConsumer) -> None:
        """Commit the offsets of records whose posts are done; a failed commit is tried
        again after the next post (until then a restart would only post them again)."""
        if not self.uncommitted:
            return
        offsets = {p: OffsetAndMetadata(o, "", -1) for p, o in self.uncommitted.items()}
        try:
            consumer.commit(offsets)
        except KafkaError as error:
            log.warning("alertmanager_commit_failed", error=str(error))
            return
        self.uncommitted.clear()


# --- The command --------------------------------------------------------------------------


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="framedrift alertmanager", description=DESCRIPTION)
    parser.add_argument(
        "--url",
        default=os.environ.get(URL_ENV, DEFAULT_URL),
        help=f"Alertmanager's base URL (default: {URL_ENV} or {DEFAULT_URL})",
    )
    parser.add_argument(
        "--resend-interval",
        type=_positive_seconds,
        default=DEFAULT_RESEND_INTERVAL_S,
        help="seconds between posts of an open incident; its endsAt lies "
        f"{HORIZON_RESENDS} intervals ahead (default {DEFAULT_RESEND_INTERVAL_S:g})",
    )
    parser.add_argument(
        "--group", default=DEFAULT_GROUP, help=f"consumer group (default {DEFAULT_GROUP})"
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="stop once what the topic holds is posted (open incidents then expire "
        "after their horizon)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Kafka and logging settings from FRAMEDRIFT_* (`Settings`); the rest from options."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not re.match(r"^https?://[^/]", args.url):
        parser.error(f"--url: expected http:// or https://, got {args.url!r}")
    settings = settings_from_env()
    configure_logging(settings.log_format, settings.log_level)
    bridge = AlertmanagerBridge(
        settings, AlertmanagerClient(args.url), args.group, args.resend_interval
    )
    signal.signal(signal.SIGTERM, bridge.stop)
    signal.signal(signal.SIGINT, bridge.stop)
    bridge.run(once=args.once)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
