"""`framedrift alertmanager` against a real Prometheus Alertmanager: incidents on the
alerts topic become firing alerts, resolutions resolve them, restarts and outages lose
nothing.

Alertmanager is the Debian package's binary (`prometheus-alertmanager`, v0.25 in
bookworm), started on a free port with a null receiver and no cluster.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from framedrift.deploy.local_servers import LocalServers, free_port
from framedrift.schemas import IncidentEvent, cloudevents_headers
from framedrift.worker.ops.settings import Settings, settings_from_env
from framedrift.worker.stream.alertmanager import (
    ALERTNAME,
    HORIZON_RESENDS,
    AlertmanagerBridge,
    AlertmanagerClient,
    AlertmanagerUnavailable,
    AlertsRejected,
)
from tests.unit.test_alertmanager_mapping import incident

pytestmark = pytest.mark.integration

ALERTS_PARTITIONS = 2
RESEND_INTERVAL_S = 30.0
ALERTMANAGER_CONFIG = """\
route:
  receiver: "null"
receivers:
  - name: "null"
"""


def alertmanager_binary() -> str:
    found = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if found is None:
        pytest.skip(
            "Alertmanager not installed (Debian package prometheus-alertmanager); "
            ".ci/run installs it"
        )
    return found


@dataclass
class RunningAlertmanager:
    url: str
    process: subprocess.Popen
    log_path: Path

    def alerts(self, incident_ids: set[str] | None = None) -> dict[str, dict]:
        """What `GET /api/v2/alerts` lists (every state), by incident id."""
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts", timeout=5) as response:
            listed = json.load(response)
        by_incident = {alert["labels"].get("incident_id"): alert for alert in listed}
        if incident_ids is None:
            return by_incident
        return {key: alert for key, alert in by_incident.items() if key in incident_ids}

    def received(self, status: str) -> float:
        """How many alerts of a status ("firing", "resolved") it has been posted."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as response:
            lines = response.read().decode().splitlines()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in lines
            if line.startswith("alertmanager_alerts_received_total{")
            and f'status="{status}"' in line
        )

    def wait_until(self, condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout} s; alerts: {self.alerts()}")
            time.sleep(0.2)


@contextlib.contextmanager
def running_alertmanager(workdir: Path, port: int) -> Iterator[RunningAlertmanager]:
    binary = alertmanager_binary()
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "alertmanager.yml"
    config.write_text(ALERTMANAGER_CONFIG)
    log_path = workdir / "alertmanager.log"
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # one instance: no gossip port
        ],
        stdout=subprocess.DEVNULL,
        stderr=log_path.open("wb"),
    )
    running = RunningAlertmanager(f"http://127.0.0.1:{port}", process, log_path)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{running.url}/-/ready", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"Alertmanager did not start: {log_path.read_text()}"
                    ) from None
                time.sleep(0.1)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAlertmanager]:
    with running_alertmanager(tmp_path_factory.mktemp("alertmanager"), free_port()) as running:
        yield running


@dataclass
class AlertsTopic:
    """One test's alerts topic and the bridge's consumer group on it."""

    servers: LocalServers
    name: str
    group_id: str

    def settings(self) -> Settings:
        return settings_from_env(
            bootstrap_servers=self.servers.bootstrap_servers,
            alerts_topic=self.name,
            retry_backoff_max_s=0.5,
        )

    def publish(self, *events: IncidentEvent) -> None:
        """As the worker publishes them: keyed by the source, CloudEvents headers."""
        producer = KafkaProducer(bootstrap_servers=self.servers.bootstrap_servers, acks="all")
        try:
            for event in events:
                producer.send(
                    self.name,
                    key=event.source_id.encode(),
                    value=event.model_dump_json().encode(),
                    headers=cloudevents_headers(event, "urn:framedrift:test"),
                ).get(timeout=30)
        finally:
            producer.close()

    def bridge(self, url: str) -> AlertmanagerBridge:
        return AlertmanagerBridge(
            self.settings(), AlertmanagerClient(url), self.group_id, RESEND_INTERVAL_S
        )

    def run_bridge_once(self, url: str) -> None:
        """A bridge's whole life: start, read the topic, post, commit, stop."""
        self.bridge(url).run(once=True)

    def committed(self) -> int:
        consumer = KafkaConsumer(
            bootstrap_servers=self.servers.bootstrap_servers,
            group_id=self.group_id,
            enable_auto_commit=False,
        )
        try:
            return sum(
                consumer.committed(TopicPartition(self.name, p)) or 0
                for p in range(ALERTS_PARTITIONS)
            )
        finally:
            consumer.close()


@pytest.fixture
def topic(servers: LocalServers) -> AlertsTopic:
    suffix = uuid.uuid4().hex[:8]
    alerts = AlertsTopic(servers, f"alerts-{suffix}", f"alertmanager-{suffix}")
    servers.create_topics({alerts.name: ALERTS_PARTITIONS})
    return alerts


def transitions(source_id: str, **labels: str) -> dict[str, IncidentEvent]:
    """One changed incident of a source, opened ten minutes ago: its opened, updated
    (brightness joined) and resolved (a minute ago) transitions."""
    incident_id = f"{source_id}-incident"
    opened_at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    at = opened_at + timedelta(minutes=9)
    common = {
        "source_id": source_id,
        "incident_id": incident_id,
        "opened_at": opened_at,
        "labels": labels,
    }
    return {
        "opened": incident("opened", **common, at=opened_at),
        "updated": incident("updated", **common, at=at, signals=["focus", "brightness"]),
        "resolved": incident("resolved", **common, at=at, resolution="recovered"),
    }


def parsed(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def unique_source() -> str:
    return f"cam-{uuid.uuid4().hex[:6]}"


def test_a_first_start_posts_the_incidents_still_open_and_none_of_the_past(
    alertmanager: RunningAlertmanager, topic: AlertsTopic
) -> None:
    still_open = transitions(unique_source(), site="north", source="spoofed")
    past = transitions(unique_source())
    topic.publish(still_open["opened"], past["opened"], past["resolved"])
    resolved_before = alertmanager.received("resolved")

    started = datetime.now(UTC)
    topic.run_bridge_once(alertmanager.url)

    ids = {still_open["opened"].incident_id, past["opened"].incident_id}
    alerts = alertmanager.alerts(ids)
    assert list(alerts) == [still_open["opened"].incident_id], "the past one is not listed"
    alert = alerts[still_open["opened"].incident_id]
    assert alert["status"]["state"] == "active"
    assert alert["labels"] == {
        "alertname": ALERTNAME,
        "source": still_open["opened"].source_id,
        "kind": "changed",
        "incident_id": still_open["opened"].incident_id,
        "site": "north",
        "exported_source": "spoofed",
    }
    annotations = alert["annotations"]
    assert annotations["summary"] == (
        f"{still_open['opened'].source_id}: changed from its own normal (focus, 2 tiles)"
    )
    assert (annotations["detectors"], annotations["signals"]) == ("own_normal", "focus")
    assert annotations["tiles"] == "tile_r0c0, tile_r3c3"
    assert annotations["first_evidence"].startswith("own_normal 9 (threshold 6) at event e11")
    assert parsed(alert["startsAt"]) == still_open["opened"].opened_at
    horizon = timedelta(seconds=HORIZON_RESENDS * RESEND_INTERVAL_S)
    assert started + horizon <= parsed(alert["endsAt"]) <= datetime.now(UTC) + horizon
    assert alertmanager.received("resolved") == resolved_before, (
        "a resolution from before the bridge's first start is not posted"
    )
    assert topic.committed() == 3, "a first start marks the history as done"


def test_after_a_restart_the_bridge_posts_what_changed_meanwhile_and_re_sends_what_is_open(
    alertmanager: RunningAlertmanager, topic: AlertsTopic
) -> None:
    stays, resolves = transitions(unique_source()), transitions(unique_source())
    ids = {stays["opened"].incident_id, resolves["opened"].incident_id}
    topic.run_bridge_once(alertmanager.url)  # the group's first start, on an empty topic
    topic.publish(stays["opened"], resolves["opened"])
    topic.run_bridge_once(alertmanager.url)
    first = alertmanager.alerts(ids)
    assert {alert["status"]["state"] for alert in first.values()} == {"active"} and len(first) == 2
    assert topic.committed() == 2

    # While the bridge is down: one incident resolves, the other gets an update.
    topic.publish(resolves["resolved"], stays["updated"])
    resolved_before = alertmanager.received("resolved")
    topic.run_bridge_once(alertmanager.url)

    after = alertmanager.alerts(ids)
    assert list(after) == [stays["opened"].incident_id], (
        "Alertmanager's API lists no alert whose endsAt has passed"
    )
    alert = after[stays["opened"].incident_id]
    assert alert["status"]["state"] == "active"
    assert alert["annotations"]["signals"] == "focus, brightness"
    assert parsed(alert["endsAt"]) > parsed(first[stays["opened"].incident_id]["endsAt"])
    assert alertmanager.received("resolved") == resolved_before + 1
    assert topic.committed() == 4

    # Nothing new: a restart re-sends the open incident and no resolution of the past.
    topic.run_bridge_once(alertmanager.url)
    assert alertmanager.received("resolved") == resolved_before + 1
    assert list(alertmanager.alerts(ids)) == [stays["opened"].incident_id]


def test_incidents_read_while_alertmanager_is_away_are_posted_once_it_answers(
    topic: AlertsTopic, tmp_path: Path
) -> None:
    port = free_port()
    events = transitions(unique_source())
    topic.run_bridge_once(f"http://127.0.0.1:{port}")  # first start: nothing to post yet
    topic.publish(events["opened"])
    bridge = topic.bridge(f"http://127.0.0.1:{port}")
    runner = threading.Thread(target=bridge.run, kwargs={"once": True})
    runner.start()
    try:
        time.sleep(3)  # it reads the incident and finds no Alertmanager
        assert runner.is_alive(), "it waits for Alertmanager instead of dropping the incident"
        assert topic.committed() == 0, "nothing is committed before its post succeeded"
        with running_alertmanager(tmp_path, port) as late:
            runner.join(timeout=30)
            assert not runner.is_alive()
            alert = late.alerts()[events["opened"].incident_id]
            assert alert["status"]["state"] == "active"
        assert topic.committed() == 1
    finally:
        bridge.stop()
        runner.join(timeout=30)


def test_a_running_bridge_re_sends_open_incidents_and_stops_cleanly_on_sigterm(
    alertmanager: RunningAlertmanager, topic: AlertsTopic, tmp_path: Path
) -> None:
    events = transitions(unique_source())
    incident_id = events["opened"].incident_id
    log_path = tmp_path / "bridge.log"
    bridge = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "framedrift.worker.stream.alertmanager",
            "--url",
            alertmanager.url,
            "--resend-interval",
            "1",
            "--group",
            topic.group_id,
        ],
        env={
            **os.environ,
            "FRAMEDRIFT_BOOTSTRAP_SERVERS": topic.servers.bootstrap_servers,
            "FRAMEDRIFT_ALERTS_TOPIC": topic.name,
            "FRAMEDRIFT_LOG_FORMAT": "json",
        },
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        topic.publish(events["opened"])
        alertmanager.wait_until(
            lambda: incident_id in alertmanager.alerts(), "the opened incident fires"
        )
        first_ends_at = parsed(alertmanager.alerts()[incident_id]["endsAt"])
        alertmanager.wait_until(
            lambda: parsed(alertmanager.alerts()[incident_id]["endsAt"]) > first_ends_at,
            "a re-send moves its endsAt on",
        )
        assert alertmanager.alerts()[incident_id]["status"]["state"] == "active"

        topic.publish(events["resolved"])
        alertmanager.wait_until(
            lambda: incident_id not in alertmanager.alerts(), "the resolution ends it"
        )
        bridge.send_signal(signal.SIGTERM)
        assert bridge.wait(timeout=30) == 0
    finally:
        if bridge.poll() is None:
            bridge.kill()
            bridge.wait()
    logged = [json.loads(line) for line in log_path.read_text().splitlines() if line[:1] == "{"]
    names = [entry["event"] for entry in logged]
    assert "alertmanager_bridge_started" in names and names[-1] == "alertmanager_bridge_stopping"
    assert topic.committed() == 2


def test_the_client_tells_a_refused_alert_from_an_absent_alertmanager(
    alertmanager: RunningAlertmanager,
) -> None:
    now = datetime.now(UTC)
    backwards = {
        "labels": {"alertname": ALERTNAME, "source": unique_source()},
        "annotations": {},
        "startsAt": now.isoformat(),
        "endsAt": (now - timedelta(minutes=1)).isoformat(),
    }
    with pytest.raises(AlertsRejected, match="start time must be before end time"):
        AlertmanagerClient(alertmanager.url).post_alerts([backwards])  # type: ignore[list-item]
    with pytest.raises(AlertmanagerUnavailable):
        AlertmanagerClient(f"http://127.0.0.1:{free_port()}").post_alerts([])
