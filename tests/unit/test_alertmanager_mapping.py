"""The Alertmanager bridge's pure part: incident events as Alertmanager alerts, and the
book of open incidents that says what to post when."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

import pytest

from framedrift.schemas import IncidentEvent
from framedrift.schemas.alerts import Transition
from framedrift.worker.stream.alertmanager import (
    ALERTNAME,
    OpenIncidents,
    build_parser,
    incident_summary,
    postable_alert,
)
from tests.unit.test_schemas import incident_event_of

HORIZON = timedelta(minutes=4)
# The worker's clock, a day after the incidents of `incident_event_of` (opened at 1.7e9).
NOW = datetime.fromtimestamp(1.7e9 + 86_400, UTC)


@functools.cache
def worker_made_incident() -> IncidentEvent:
    """A changed incident of cam-1 (own_normal fired; focus and two tiles moved), as the
    worker builds it: made once, it takes seconds (the detectors are calibrated)."""
    _, event = incident_event_of("opened")
    return event


def incident(
    transition: Transition,
    incident_id: str = "inc-1",
    source_id: str = "cam-1",
    **changes: object,
) -> IncidentEvent:
    """A transition of the worker-made incident, with its ids and any field changed."""
    return worker_made_incident().model_copy(
        update={
            "transition": transition,
            "incident_id": incident_id,
            "event_id": f"{incident_id}-{transition}",
            "source_id": source_id,
            **changes,
        }
    )


def parsed(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


# --- The mapping -----------------------------------------------------------------------


def test_an_open_incident_fires_from_its_opening_until_a_horizon_ahead_of_now() -> None:
    event = incident("opened")
    alert = postable_alert(event, NOW, HORIZON)
    assert alert["labels"] == {
        "alertname": ALERTNAME,
        "source": "cam-1",
        "kind": "changed",
        "incident_id": "inc-1",
    }
    assert parsed(alert["startsAt"]) == event.opened_at
    assert parsed(alert["endsAt"]) == NOW + HORIZON


def test_every_transition_of_an_incident_has_the_same_labels_so_alertmanager_sees_one_alert() -> (
    None
):
    labels = [
        postable_alert(incident(transition), NOW, HORIZON)["labels"]
        for transition in ("opened", "updated", "resolved")
    ]
    assert labels[0] == labels[1] == labels[2]
    other = postable_alert(incident("opened", incident_id="inc-2"), NOW, HORIZON)
    assert other["labels"] != labels[0], "a later incident of the source is another alert"


def test_a_resolved_incident_ends_at_its_resolution() -> None:
    event = incident("resolved", resolution="recovered")
    alert = postable_alert(event, NOW, HORIZON)
    assert parsed(alert["startsAt"]) == event.opened_at
    assert parsed(alert["endsAt"]) == event.at < NOW
    assert alert["annotations"]["resolution"] == "recovered"


def test_event_times_ahead_of_the_bridges_clock_are_taken_as_now() -> None:
    """A source whose clock runs ahead must not keep a resolved alert firing."""
    ahead = NOW + timedelta(hours=1)
    event = incident("resolved", opened_at=ahead, at=ahead + timedelta(seconds=30))
    alert = postable_alert(event, NOW, HORIZON)
    assert parsed(alert["startsAt"]) == parsed(alert["endsAt"]) == NOW


def test_the_summary_names_the_source_its_question_and_what_moved() -> None:
    assert incident_summary(incident("opened")) == (
        "cam-1: changed from its own normal (focus, 2 tiles)"
    )
    out_of_domain = incident(
        "opened", question="out_of_domain", detectors=["coverage", "ks"], signals=[], tiles=[]
    )
    assert incident_summary(out_of_domain) == "cam-1: out of the model's domain (coverage, ks)"
    only_tiles = incident("opened", signals=[], tiles=["tile_r1c2"])
    assert incident_summary(only_tiles) == "cam-1: changed from its own normal (1 tile)"


def test_the_annotations_carry_detectors_signals_tiles_severity_and_short_evidence() -> None:
    annotations = postable_alert(incident("updated"), NOW, HORIZON)["annotations"]
    assert annotations["detectors"] == "own_normal"
    assert annotations["signals"] == "focus"
    assert annotations["tiles"] == "tile_r0c0, tile_r3c3"
    assert annotations["severity"] == "7"
    assert annotations["model_version"] == "ae-x"
    assert annotations["first_evidence"] == (
        "own_normal 9 (threshold 6) at event e11 (2023-11-14T22:13:20.000000Z): focus down 7.0 sd"
    )
    assert "latest_evidence" not in annotations, "the same alert as the first"
    assert "resolution" not in annotations, "empty annotations are left out"


def test_the_latest_evidence_is_shown_once_another_detector_has_fired() -> None:
    event = incident("updated")
    assert event.first_evidence is not None
    latest = event.first_evidence.model_copy(
        update={"alert_id": "later", "detector": "coverage", "threshold": None, "changes": []}
    )
    annotations = postable_alert(
        event.model_copy(update={"latest_evidence": latest}), NOW, HORIZON
    )["annotations"]
    assert annotations["latest_evidence"] == (
        "coverage 9 at event e11 (2023-11-14T22:13:20.000000Z)"
    )


def test_an_incident_without_evidence_still_makes_an_alert() -> None:
    event = incident("opened", first_evidence=None, latest_evidence=None)
    annotations = postable_alert(event, NOW, HORIZON)["annotations"]
    assert "first_evidence" not in annotations and "latest_evidence" not in annotations


def test_source_labels_are_copied_and_cannot_replace_the_bridges_own() -> None:
    event = incident(
        "opened", labels={"site": "north", "team": "vision", "source": "spoofed", "kind": "x"}
    )
    labels = postable_alert(event, NOW, HORIZON)["labels"]
    assert labels == {
        "alertname": ALERTNAME,
        "source": "cam-1",
        "kind": "changed",
        "incident_id": "inc-1",
        "site": "north",
        "team": "vision",
        "exported_source": "spoofed",
        "exported_kind": "x",
    }


# --- The book of open incidents ----------------------------------------------------------


def test_an_opened_incident_is_due_at_once_then_again_after_each_resend_interval() -> None:
    book = OpenIncidents(resend_interval_s=60)
    opened = incident("opened")
    book.record(opened)
    assert book.due(now=1000.0) == [opened] and len(book) == 1
    book.posted([opened], now=1000.0)
    assert book.due(now=1059.9) == []
    assert book.next_due() == 1060.0
    assert book.due(now=1060.0) == [opened]


def test_an_update_replaces_the_open_state_and_is_due_at_once() -> None:
    book = OpenIncidents(resend_interval_s=60)
    opened, updated = incident("opened"), incident("updated", severity=14.0)
    book.record(opened)
    book.posted([opened], now=1000.0)
    book.record(updated)
    assert book.due(now=1001.0) == [updated] and len(book) == 1


def test_a_resolution_is_due_until_posted_once_then_the_incident_is_forgotten() -> None:
    book = OpenIncidents(resend_interval_s=60)
    opened, resolved = incident("opened"), incident("resolved")
    book.record(opened)
    book.posted([opened], now=1000.0)
    book.record(resolved)
    assert book.due(now=1001.0) == [resolved] and len(book) == 0
    assert book.due(now=1002.0) == [resolved], "not posted yet: still owed"
    book.posted([resolved], now=1002.0)
    assert book.due(now=5000.0) == [] and book.next_due() is None


def test_a_replayed_history_owes_its_open_incidents_and_none_of_its_resolutions() -> None:
    book = OpenIncidents(resend_interval_s=60)
    still_open = incident("opened", incident_id="inc-open")
    book.replay(incident("opened", incident_id="inc-done"))
    book.replay(still_open)
    book.replay(incident("resolved", incident_id="inc-done"))
    assert book.due(now=1000.0) == [still_open], "its horizon, posted before, runs out"


def test_a_state_recorded_while_its_predecessor_was_being_posted_stays_due() -> None:
    book = OpenIncidents(resend_interval_s=60)
    opened, updated = incident("opened"), incident("updated")
    book.record(opened)
    in_flight = book.due(now=1000.0)
    book.record(updated)
    book.posted(in_flight, now=1000.0)
    assert book.due(now=1000.0) == [updated]


def test_each_open_incident_has_its_own_resend_time() -> None:
    book = OpenIncidents(resend_interval_s=60)
    first, second = incident("opened", incident_id="a"), incident("opened", incident_id="b")
    book.record(first)
    book.posted([first], now=1000.0)
    book.record(second)
    book.posted([second], now=1030.0)
    assert book.due(now=1060.0) == [first]
    assert book.due(now=1090.0) == [first, second]


def test_the_resend_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="resend_interval_s"):
        OpenIncidents(resend_interval_s=0)


# --- The command's options -----------------------------------------------------------------


def test_the_url_comes_from_the_environment_unless_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAMEDRIFT_ALERTMANAGER_URL", "http://alertmanager:9093")
    assert build_parser().parse_args([]).url == "http://alertmanager:9093"
    args = build_parser().parse_args(["--url", "http://am:1", "--resend-interval", "15"])
    assert (args.url, args.resend_interval, args.group) == (
        "http://am:1",
        15.0,
        "framedrift-alertmanager",
    )


def test_a_resend_interval_that_is_not_positive_is_refused() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--resend-interval", "0"])
