"""`framedrift fleet` against the real broker: a storm is one fleet incident, and a
restart publishes nothing twice."""

from __future__ import annotations

import json

import pytest
from kafka import KafkaProducer

from framedrift.worker.ops.settings import settings_from_env
from framedrift.worker.stream.fleet_grouping import FleetService
from tests.integration.conftest import Stack
from tests.unit.test_fleet_grouping import NORTH, incident_event

pytestmark = pytest.mark.integration


def test_a_storm_is_one_fleet_incident_through_restarts(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet_topic = f"fleet-{stack.suffix}"
    stack.servers.create_topics({fleet_topic: 1})
    environment = stack.environment(
        FRAMEDRIFT_FLEET_TOPIC=fleet_topic, FRAMEDRIFT_FLEET_THRESHOLD="3"
    )
    for name, value in environment.items():
        if name.startswith("FRAMEDRIFT_"):
            monkeypatch.setenv(name, value)
    producer = KafkaProducer(bootstrap_servers=stack.servers.bootstrap_servers, acks="all")

    def publish(kind: str, storm_at: int = 0) -> None:
        for second, source in ((0, "cam-1"), (30, "cam-2"), (60, "cam-3")):
            opened = storm_at + second
            event = incident_event(source, kind, opened, opened + 500 * (kind != "opened"), NORTH)
            producer.send(
                stack.alerts_topic, key=source.encode(), value=event.model_dump_json().encode()
            )
        producer.flush()

    def fleet_events() -> list[dict]:
        return [json.loads(r.value) for r in stack.read_topic(fleet_topic, timeout=3)]

    # The service's first start takes the topic's history as published before it.
    publish("opened")
    FleetService(settings_from_env(), group_id=stack.group_id).run(once=True)
    assert fleet_events() == []

    publish("resolved")
    publish("opened", storm_at=1000)  # the same cameras, a second storm
    FleetService(settings_from_env(), group_id=stack.group_id).run(once=True)
    events = fleet_events()
    assert [(e["transition"], len(e["members"])) for e in events] == [
        ("resolved", 1),
        ("opened", 3),
    ], "a restart rebuilt the open storm from the topic and published only what is new"
    assert events[0]["fleet_incident_id"] != events[1]["fleet_incident_id"]
    assert {r.key for r in stack.read_topic(fleet_topic, timeout=3)} == {b"site=north"}

    FleetService(settings_from_env(), group_id=stack.group_id).run(once=True)
    assert fleet_events() == events, "nothing new, nothing published"
    producer.close()
