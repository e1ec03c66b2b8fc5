"""`framedrift status`: each source's condition from its state, the most urgent first."""

from __future__ import annotations

import json

from framedrift.worker.detection.incident import Observation
from framedrift.worker.detection.monitor import CHANGED, SourceState
from framedrift.worker.detection.operator import AuditEntry, Command
from framedrift.worker.stream.fleet_status import render, source_status, status_changed
from tests.detector_fixtures import synthetic_config

CONFIG = synthetic_config()
NOW = 1_800_000_000.0


def state_at(timestamp: float, learnt: bool = True) -> SourceState:
    """A source whose latest frame is at `timestamp`, past its warm-up where `learnt`."""
    state = SourceState.fresh(CONFIG)
    state.window.append({}, "e1", 0, 1, timestamp)
    state.cadence.observe(timestamp)
    state.stats.update(0.1)
    if learnt:
        state.own_normal.reference_count = state.own_normal.parameters.reference_size
    return state


def test_each_condition_reads_from_the_state() -> None:
    healthy = state_at(NOW)
    warming = state_at(NOW, learnt=False)
    silenced = state_at(NOW)
    silenced.operator.silenced_until, silenced.operator.silence_reason = NOW + 60, "new lens"
    troubled = state_at(NOW)
    troubled.incidents[CHANGED].observe(
        Observation("e1", NOW - 30, 0, 1, (("own_normal", 3.0, "{}"),), True, signals=("focus",)),
        hold_down_s=300,
    )

    assert source_status("a", healthy).condition == "healthy"
    assert source_status("b", warming).condition == "warming_up"
    assert "reference frames" in source_status("b", warming).summary
    status = source_status("c", silenced)
    assert (status.condition, status.summary) == (
        "silenced",
        "until 2027-01-15T08:01:00+00:00: new lens",
    )
    status = source_status("d", troubled)
    assert status.condition == "incident" and "changed: own_normal, focus" in status.summary


def test_a_silence_that_ended_by_the_sources_own_time_is_not_shown() -> None:
    state = state_at(NOW)
    state.operator.silenced_until = NOW - 1
    assert source_status("a", state).condition == "healthy"


def test_the_table_puts_incidents_first_oldest_first_and_shows_the_last_command() -> None:
    older, newer, healthy = state_at(NOW), state_at(NOW), state_at(NOW)
    for state, opened in ((older, NOW - 600), (newer, NOW - 60)):
        state.incidents[CHANGED].observe(
            Observation("e", opened, 0, 1, (("own_normal", 2.0, "{}"),), True), hold_down_s=300
        )
    command = Command("accept", "c-1", "alice@ops", NOW - 5, "new mounting")
    healthy.operator.record(AuditEntry(command, NOW - 4, 0, 7, "reference 2 learning from here"))
    statuses = [
        source_status(s, state) for s, state in (("h", healthy), ("n", newer), ("o", older))
    ]

    lines = render(statuses).splitlines()
    rows = [line.split()[0] for line in lines[1:-1] if not line.startswith(" ")]
    assert rows == ["o", "n", "h"]
    assert any(
        "last command: accept by alice@ops" in line and "new mounting" in line for line in lines
    )
    assert lines[-1] == "2 incident, 0 silenced, 0 warming_up, 1 healthy, 0 retired"
    as_json = [json.loads(line) for line in render(statuses, as_json=True).splitlines()]
    assert [entry["source_id"] for entry in as_json] == ["o", "n", "h"]


def test_only_news_changes_a_status_not_frames_or_a_warm_up_s_progress() -> None:
    state = state_at(NOW, learnt=False)
    before = source_status("a", state)
    state.stats.update(0.2)
    state.window.append({}, "e2", 0, 2, NOW + 1)
    state.cadence.observe(NOW + 1)
    state.own_normal.reference_count += 1
    assert not status_changed(before, source_status("a", state))
    state.own_normal.reference_count = state.own_normal.parameters.reference_size
    assert status_changed(before, source_status("a", state)), "warming up -> healthy"
    assert status_changed(None, before), "a source's first status is news"
