"""One incident per problem: opened once, updated on news, resolved after a quiet hold-down."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from framedrift.worker.detection.incident import IncidentTracker, Observation, Transition
from framedrift.worker.detection.monitor import (
    CHANGED,
    OUT_OF_DOMAIN,
    EventRef,
    SourceMonitor,
    SourceState,
    scored_images,
)
from framedrift.worker.detection.plain_state import MalformedState, StateFields
from framedrift.worker.detection.scores import ImageScores
from tests.detector_fixtures import synthetic_config, synthetic_scores

HOLD_DOWN_S = 10.0


def seen(
    t: float,
    *firings: tuple[str, float],
    alarming: bool = False,
    signals: tuple[str, ...] = (),
    tiles: tuple[str, ...] = (),
) -> Observation:
    """Frame `t` (its offset and its timestamp in seconds) on one question."""
    return Observation(
        f"e{t:g}",
        t,
        0,
        int(t),
        tuple((name, severity, f"evidence of {name} at {t:g}") for name, severity in firings),
        alarming,
        signals=signals,
        tiles=tiles,
    )


def run(tracker: IncidentTracker, frames: list[Observation]) -> list[Transition]:
    found = [tracker.observe(frame, HOLD_DOWN_S) for frame in frames]
    return [transition for transition in found if transition is not None]


def test_a_problem_opens_one_incident_and_resolves_after_the_hold_down() -> None:
    tracker = IncidentTracker()
    frames = [seen(0), seen(1, ("coverage", 1.5), alarming=True)]
    frames += [seen(t, alarming=True) for t in range(2, 30)]  # the episode lasts
    frames += [seen(t) for t in range(30, 45)]
    transitions = run(tracker, frames)
    assert [(t.kind, t.offset) for t in transitions] == [("opened", 1), ("resolved", 39)]
    resolved = transitions[1]
    assert resolved.resolution == "recovered"
    assert resolved.incident.last_alarm_at == 29.0
    assert resolved.incident.first_evidence == "evidence of coverage at 1"
    assert tracker.open is None


def test_a_detector_re_firing_within_the_hold_down_stays_in_the_same_incident() -> None:
    """A flickering fault: alarms with quiet gaps shorter than the hold-down."""
    tracker = IncidentTracker()
    frames = [seen(t, ("error_cusum", 1.2)) if t % 8 == 0 else seen(t) for t in range(40)]
    transitions = run(tracker, frames)
    assert [t.kind for t in transitions] == ["opened"]
    assert tracker.open is not None
    assert tracker.open.latest_evidence == "evidence of error_cusum at 32"


def test_news_updates_the_incident_and_tiles_join_quietly() -> None:
    tracker = IncidentTracker()
    frames = [
        seen(0, ("own_normal", 4.0), alarming=True, signals=("focus",), tiles=("tile_r0c0",)),
        seen(1, alarming=True, signals=("focus",), tiles=("tile_r0c0", "tile_r0c1")),
        seen(2, alarming=True, signals=("focus", "noise")),  # a signal joins
        seen(3, ("coverage", 1.1), alarming=True),  # a detector joins
        seen(4, ("own_normal", 7.9), alarming=True),  # severity below twice 4.0
        seen(5, ("own_normal", 8.0), alarming=True),  # twice: news
        seen(6, ("own_normal", 9.0), alarming=True),
    ]
    transitions = run(tracker, frames)
    assert [(t.kind, t.offset) for t in transitions] == [
        ("opened", 0),
        ("updated", 2),
        ("updated", 3),
        ("updated", 5),
    ]
    final = transitions[-1].incident
    assert final.detectors == ["own_normal", "coverage"]
    assert final.signals == ["focus", "noise"]
    assert final.tiles == ["tile_r0c0", "tile_r0c1"]
    assert final.severity == 8.0 and final.announced_severity == 8.0
    assert transitions[0].incident.signals == ["focus"], "a transition keeps its own snapshot"


def test_hold_down_is_event_time_not_frames() -> None:
    """A camera at 1 frame a minute resolves after the hold-down's seconds, not its frames."""
    tracker = IncidentTracker()
    transitions = run(tracker, [seen(0, ("coverage", 2.0)), seen(60), seen(120)])
    assert [(t.kind, t.offset) for t in transitions] == [("opened", 0), ("resolved", 60)]


def test_resolution_waits_until_the_longest_window_holds_none_of_the_problem() -> None:
    """A slow detector whose window still holds the problem's events may yet fire: the
    incident stays open until that many events have passed since the last alarm."""
    tracker = IncidentTracker()
    frames = [seen(0, ("ks", 2.0))]
    frames += [dataclasses.replace(seen(t), memory_events=30) for t in range(1, 40)]
    transitions = run(tracker, frames)
    assert [(t.kind, t.offset) for t in transitions] == [("opened", 0), ("resolved", 30)]


def test_a_new_problem_after_resolution_is_a_new_incident() -> None:
    tracker = IncidentTracker()
    frames = [seen(0, ("coverage", 2.0)), *[seen(t) for t in range(1, 12)], seen(12, ("ks", 1.5))]
    transitions = run(tracker, frames)
    assert [(t.kind, t.offset) for t in transitions] == [
        ("opened", 0),
        ("resolved", 10),
        ("opened", 12),
    ]
    assert transitions[2].incident.detectors == ["ks"]


def test_an_open_incident_survives_its_state_round_trip() -> None:
    tracker = IncidentTracker()
    opening = seen(0, ("own_normal", 3.0), alarming=True, signals=("focus",), tiles=("tile_r1c1",))
    run(tracker, [opening])
    rebuilt = IncidentTracker.from_state(StateFields(tracker.to_state(), "incident"))
    assert rebuilt == tracker
    assert IncidentTracker.from_state(StateFields({}, "incident")) == IncidentTracker()


def test_a_forged_incident_state_is_refused() -> None:
    tracker = IncidentTracker()
    run(tracker, [seen(0, ("coverage", 2.0))])
    state = tracker.to_state()
    state["open"]["detector_count"] = 2  # type: ignore[index]
    with pytest.raises(MalformedState, match="detectors"):
        IncidentTracker.from_state(StateFields(state, "incident"))
    with pytest.raises(MalformedState, match="incident fields"):
        IncidentTracker.from_state(StateFields({"closed": {}}, "incident"))


def follow(monitor: SourceMonitor, scores: ImageScores, start: int) -> list[tuple[str, Transition]]:
    """Runs a source's images (one a second) through the monitor and its incidents."""
    found = []
    for offset, image in enumerate(scored_images(scores, monitor.config.reference), start=start):
        event = EventRef(f"e{offset}", 0, offset, float(offset))
        firings = monitor.update(image, event)
        evidence = [f"{firing.detector} at {offset}" for firing in firings]
        found += monitor.follow_incidents(event, firings, evidence)
    return found


def test_a_drift_on_a_sample_source_is_one_incident_however_many_detectors_fire(
    rng: np.random.Generator,
) -> None:
    """Six detectors ask the out-of-domain question of a sample source; a drift that all
    of them see is still one incident, resolved once every one of them is quiet."""
    config = dataclasses.replace(synthetic_config(), incident_hold_down_s=120.0)
    monitor = SourceMonitor(config, SourceState.fresh(config))
    assert follow(monitor, synthetic_scores(rng, 600), 0) == []
    drifted = synthetic_scores(rng, 400)
    drifted = dataclasses.replace(drifted, error=drifted.error * 1.6)
    during = follow(monitor, drifted, 600)
    after = follow(monitor, synthetic_scores(rng, 1000), 1000)

    kinds = [(question, t.kind) for question, t in during + after]
    assert kinds[0] == (OUT_OF_DOMAIN, "opened") and kinds[-1] == (OUT_OF_DOMAIN, "resolved")
    assert set(kinds[1:-1]) <= {(OUT_OF_DOMAIN, "updated")}
    resolved = (during + after)[-1][1]
    assert len(resolved.incident.detectors) >= 3, "detectors joined the one incident"
    assert resolved.offset > 1000, "resolved after the drift ended, not during it"
    # One event a second: the hold-down, or the longest window if that is longer.
    quiet = max(120.0, config.out_of_domain_memory)
    assert resolved.offset - resolved.incident.last_alarm_at == pytest.approx(quiet)
    stored = SourceState.from_state(StateFields(monitor.state.to_state(), "source"))
    assert stored.incidents[OUT_OF_DOMAIN].open is None
    assert stored.incidents[CHANGED].open is None
