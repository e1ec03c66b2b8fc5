"""Fleet incidents: a storm of sources sharing a label is one incident, not a page each."""

from __future__ import annotations

from framedrift.schemas.alerts import IncidentEvent
from framedrift.worker.detection.incident import Incident, Transition
from framedrift.worker.stream.alerts import build_incident_event
from framedrift.worker.stream.fleet_grouping import FleetGrouper

START = 1_800_000_000.0


def incident_event(
    source: str, kind: str, opened_s: float, at_s: float, labels: dict[str, str]
) -> IncidentEvent:
    """`source`'s incident opened at `opened_s` (its offset too), at transition `kind`."""
    offset = int(opened_s)
    incident = Incident(
        opened_partition=0,
        opened_offset=offset,
        opened_at=START + opened_s,
        last_alarm_at=START + opened_s,
        events_since_alarm=0,
        detectors=["own_normal"],
        signals=["brightness"],
        tiles=[],
        severity=3.0,
        announced_severity=3.0,
        first_evidence="",
        latest_evidence="",
    )
    transition = Transition(kind, incident, f"{source}-{at_s:g}", START + at_s, 0, int(at_s))  # type: ignore[arg-type]
    return build_incident_event(source, "changed", transition, "ae-x", labels)


NORTH, SOUTH = {"site": "north"}, {"site": "south"}


def grouper() -> FleetGrouper:
    return FleetGrouper(("site",), threshold=3, window_s=300.0)


def test_a_storm_at_one_site_opens_one_fleet_incident_that_resolves_with_its_last_member() -> None:
    rule = grouper()
    made = []
    for second, source in ((0, "cam-1"), (40, "cam-2"), (90, "cam-3"), (100, "cam-4")):
        made += rule.take(incident_event(source, "opened", second, second, NORTH))
    assert [(e.transition, [m.source_id for m in e.members]) for e in made] == [
        ("opened", ["cam-1", "cam-2", "cam-3"]),
        ("updated", ["cam-1", "cam-2", "cam-3", "cam-4"]),
    ]
    assert made[0].label == "site" and made[0].value == "north"
    resolved = []
    for second, source in ((400, "cam-2"), (410, "cam-1"), (420, "cam-4"), (430, "cam-3")):
        opened_s = {"cam-1": 0, "cam-2": 40, "cam-3": 90, "cam-4": 100}[source]
        resolved += rule.take(incident_event(source, "resolved", opened_s, second, NORTH))
    assert [(e.transition, e.fleet_incident_id) for e in resolved] == [
        ("resolved", made[0].fleet_incident_id)
    ]
    assert resolved[0].member_count == 4


def test_troubles_spread_over_more_than_the_window_or_over_sites_stay_single_incidents() -> None:
    rule = grouper()
    made = rule.take(incident_event("cam-1", "opened", 0, 0, NORTH))
    made += rule.take(incident_event("cam-2", "opened", 200, 200, NORTH))
    made += rule.take(incident_event("cam-3", "opened", 600, 600, NORTH))  # cam-1's is old
    made += rule.take(incident_event("cam-4", "opened", 610, 610, SOUTH))
    made += rule.take(incident_event("cam-5", "opened", 620, 620, {}))
    assert made == []


def test_a_source_that_recovered_before_the_storm_does_not_count_towards_it() -> None:
    rule = grouper()
    made = rule.take(incident_event("cam-1", "opened", 0, 0, NORTH))
    made += rule.take(incident_event("cam-1", "resolved", 0, 20, NORTH))
    made += rule.take(incident_event("cam-2", "opened", 30, 30, NORTH))
    made += rule.take(incident_event("cam-3", "opened", 40, 40, NORTH))
    assert made == []
    made = rule.take(incident_event("cam-4", "opened", 50, 50, NORTH))
    assert [m.source_id for m in made[0].members] == ["cam-2", "cam-3", "cam-4"]


def test_the_same_incidents_read_again_make_the_same_fleet_events() -> None:
    """What a restart relies on: reading the topic again rebuilds the same ids."""
    events = [
        incident_event(source, "opened", second, second, NORTH)
        for second, source in ((0, "cam-1"), (10, "cam-2"), (20, "cam-3"), (30, "cam-4"))
    ]

    def fleet_events() -> list[dict]:
        rule = grouper()
        return [made.model_dump() for event in events for made in rule.take(event)]

    first = fleet_events()
    assert [event["transition"] for event in first] == ["opened", "updated"]
    assert fleet_events() == first


def test_a_transition_re_sent_after_a_worker_s_crash_counts_once() -> None:
    rule = grouper()
    events = [
        incident_event(source, "opened", second, second, NORTH)
        for second, source in ((0, "cam-1"), (10, "cam-2"), (20, "cam-3"))
    ]
    made = [fleet for event in events for fleet in rule.take(event)]
    assert [fleet.transition for fleet in made] == ["opened"]
    assert rule.take(events[1].model_copy()) == [], "a copy is no news"
    assert rule.open[("site", "north")].joined == 3
