"""Operators' commands travel with the data: applied once, where they stand in the stream,
through a crash in the middle of applying one and a rebalance while a silence lasts."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

import pytest

from framedrift.producers.events import image_event_record
from framedrift.producers.stream import StreamPlan
from framedrift.worker.detection.monitor import SourceState
from framedrift.worker.stream.operator_commands import new_command
from tests.integration.conftest import Stack, crash_in_process_worker

pytestmark = pytest.mark.integration


def test_a_worker_killed_while_applying_a_command_leaves_it_applied_once_where_it_stood(
    stack: Stack, stream_images, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = stack.produce(
        StreamPlan(sources=2, events_per_source=200, event_interval_s=1.0, seed=12), stream_images
    )
    commands = [
        new_command("silence", "camera-001", "lens cleaning", "test", timedelta(hours=2)),
        new_command("accept", "camera-000", "new lens", "test"),
    ]
    landed = stack.send_commands(commands)
    after = stack.produce(
        StreamPlan(sources=2, events_per_source=200, event_interval_s=1.0, seed=13), stream_images
    )
    records = sum(before.values()) + sum(after.values()) + len(commands)

    def a_command_applied(states: dict[str, SourceState]) -> bool:
        return any(state.operator.history for state in states.values())

    crash_in_process_worker(stack, monkeypatch, a_command_applied, FRAMEDRIFT_BATCH_SIZE="50")
    committed = stack.committed()
    assert any(committed[partition] <= offset for partition, offset in landed.values()), (
        "the crash came after the command's batch was committed: it tested nothing"
    )

    stack.start_worker()
    stack.wait_until_committed(records)
    counted = stack.counts_in_redis()
    assert counted == {source: before[source] + after[source] for source in before}
    states = stack.state_store().load_all_sources()
    for command in commands:
        history = states[command.source_id].operator.history
        assert [entry.command.command_id for entry in history] == [command.command_id]
        assert (history[0].partition, history[0].offset) == landed[command.command_id]
        assert (history[0].command.issued_by, history[0].command.reason) == (
            command.issued_by,
            command.reason,
        )
    silenced = states["camera-001"].operator
    assert silenced.silenced_until == pytest.approx(
        (commands[0].issued_at + timedelta(hours=2)).timestamp()
    )
    assert states["camera-000"].operator.reference_version == 2


def test_a_silence_holds_through_rebalances(stack: Stack, stream_images) -> None:
    """Two cameras with the same fault, one silenced: workers join and leave while the
    silence lasts; the silenced camera raises nothing, the other its one incident."""
    silence = new_command("silence", "camera-001", "maintenance", "test", timedelta(hours=2))
    stack.send_commands([silence])
    plan = StreamPlan(
        sources=4,
        events_per_source=1300,
        drift={"camera-001": "noise", "camera-002": "noise"},
        drift_at=300,
        drift_until=550,
        event_interval_s=1.0,
        rate=500.0,
        seed=11,
        value_format="binary",
    )
    sent: dict[str, int] = {}
    production = threading.Thread(target=lambda: sent.update(stack.produce(plan, stream_images)))
    production.start()
    settings = {"FRAMEDRIFT_BATCH_SIZE": "50", "FRAMEDRIFT_INCIDENT_HOLD_DOWN_S": "60"}
    first = stack.start_worker(**settings)
    stack.wait_until_committed(800)
    second = stack.start_worker(**settings)
    second.wait_until_owning_partitions()
    stack.wait_until_committed(2500)
    assert first.terminate() == 0  # its partitions, the silenced camera's perhaps, move
    production.join()
    stack.wait_until_committed(sum(sent.values()) + 1)

    events = [json.loads(r.value) for r in stack.read_topic(stack.alerts_topic, timeout=5)]
    by_source = {event["source_id"] for event in events}
    assert by_source == {"camera-002"}, "the silenced camera raised something"
    # One incident, opened once and resolved once, though its partition moved twice (a
    # transition re-sent by the partition's next owner carries the id it had).
    transitions = {event["event_id"]: event["transition"] for event in events}
    assert sorted(transitions.values()).count("opened") == 1
    assert sorted(transitions.values()).count("resolved") == 1
    assert len({event["incident_id"] for event in events}) == 1
    states = stack.state_store().load_all_sources()
    assert stack.counts_in_redis() == sent
    operator = states["camera-001"].operator
    assert [entry.command.command_id for entry in operator.history] == [silence.command_id]
    assert second.terminate() == 0


def test_the_command_line_sends_a_command_and_status_shows_its_effect(
    stack: Stack, stream_images
) -> None:
    """`framedrift accept` as an operator types it; `framedrift status` as they read it."""
    sent = stack.produce(StreamPlan(sources=2, events_per_source=100, seed=14), stream_images)
    labelled = image_event_record(
        stream_images.images[0],
        "camera-000",
        "camera-000-labelled",
        datetime.now(UTC),
        "binary",
        source_labels={"site": "north"},
    )
    stack.produce_raw([(labelled.key, labelled.value, labelled.headers)])

    def framedrift(*arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "framedrift.worker.cli", *arguments],
            env=stack.environment(),
            capture_output=True,
            text=True,
            timeout=120,
        )

    refused = framedrift("silence", "camera-000", "--reason", "why", "--for", "soon")
    assert refused.returncode == 2 and "not a duration like 90s" in refused.stderr
    worker = stack.start_worker()
    stack.wait_until_committed(sum(sent.values()) + 1)
    unknown = framedrift("accept", "camera-999", "--reason", "why")
    assert unknown.returncode == 2 and "knows no source camera-999 (a typo?)" in unknown.stderr

    accepted = framedrift("accept", "camera-001", "--reason", "new mounting", "--by", "dana")
    assert accepted.returncode == 0, accepted.stderr
    assert "accept camera-001: sent as" in accepted.stdout
    stack.wait_until_committed(sum(sent.values()) + 2)
    # Silence by label: the sources the store knows with it, one command each.
    silenced = framedrift("silence", "--label", "site=north", "--for", "1h", "--reason", "storm")
    assert silenced.returncode == 0, silenced.stderr
    assert "silence camera-000: sent as" in silenced.stdout
    assert "camera-001" not in silenced.stdout
    stack.wait_until_committed(sum(sent.values()) + 3)
    assert worker.terminate() == 0
    north = framedrift("status", "--label", "site=north", "--json")
    (only,) = [json.loads(line) for line in north.stdout.splitlines()]
    assert (only["source_id"], only["labels"]) == ("camera-000", {"site": "north"})
    assert "silence by" in only["last_command"]
    status = framedrift("status", "--json")
    assert status.returncode == 0, status.stderr
    lines = {line["source_id"]: line for line in map(json.loads, status.stdout.splitlines())}
    assert lines.keys() == {"camera-000", "camera-001"}
    assert lines["camera-001"]["reference_version"] == 2
    assert "accept by dana" in lines["camera-001"]["last_command"]
    assert "'new mounting'" in lines["camera-001"]["last_command"]
    assert lines["camera-000"]["reference_version"] == 1
    assert framedrift("status", "camera-000").stdout.splitlines()[1].startswith("camera-000")
