"""Crashes and replays never lose an event and never count one twice."""

from __future__ import annotations

import json
import random
import time
from collections import defaultdict

import numpy as np
import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from framedrift.producers.stream import StreamPlan
from framedrift.worker.detection.monitor import SourceState
from tests.integration.conftest import PARTITIONS, Stack, crash_in_process_worker

pytestmark = pytest.mark.integration


def test_ten_sigkills_over_twenty_thousand_events_change_nothing(
    stack: Stack, stream_images
) -> None:
    """Kill -9 at random moments of processing; compare with an uninterrupted run.

    Nothing lost or counted twice; every detector and incident ends in the state an
    uninterrupted worker reaches on the same events; every incident transition of the
    uninterrupted run is published (opened once, resolved once: no copy under another id),
    and a re-sent one has the id of the first send.
    """
    plan = StreamPlan(
        sources=8,
        events_per_source=2500,
        seed=5,
        drift_at=1000,
        drift_until=1500,  # the drifted sources' incidents resolve before the stream ends
        event_interval_s=1.0,
        drift={"camera-001": "covariate", "camera-005": "noise"},
    )
    total = plan.sources * plan.events_per_source
    sent = stack.produce(plan, stream_images)
    # Small batches give more checkpoints to die between; a short session lets the
    # group notice a dead member in ~3 s instead of 6.
    chaos_settings = {
        "FRAMEDRIFT_BATCH_SIZE": "100",
        "FRAMEDRIFT_SESSION_TIMEOUT_MS": "3000",
        "FRAMEDRIFT_INCIDENT_HOLD_DOWN_S": "60",
    }
    chaos = random.Random(20261122)
    worker = stack.start_worker(**chaos_settings)
    committed_at_kill: list[int] = []
    while len(committed_at_kill) < 10:
        before = sum(stack.committed().values())
        # Kill only a worker that is processing: one killed while still joining the group
        # would test nothing (a dead member holds its partitions until its session expires).
        deadline = time.monotonic() + 60
        while sum(stack.committed().values()) == before and time.monotonic() < deadline:
            time.sleep(0.1)
        if sum(stack.committed().values()) >= total:
            break
        time.sleep(chaos.uniform(0.0, 0.6))
        worker.kill()
        committed_at_kill.append(sum(stack.committed().values()))
        worker = stack.start_worker(**chaos_settings)
    stack.wait_until_committed(total)
    assert worker.terminate() == 0
    assert len(committed_at_kill) >= 10, f"stream ended after kills at {committed_at_kill}"
    assert sent == stack.counts_in_redis(), f"SIGKILLs at {committed_at_kill} of {total}"

    reference = f"reference-{stack.suffix}"
    reference_alerts_topic = f"alerts-{reference}"
    stack.servers.create_topics({reference_alerts_topic: 1})
    stack.start_worker(
        FRAMEDRIFT_GROUP_ID=reference,
        FRAMEDRIFT_STATE_PREFIX=reference,
        FRAMEDRIFT_ALERTS_TOPIC=reference_alerts_topic,
        FRAMEDRIFT_INCIDENT_HOLD_DOWN_S="60",
    )
    stack.wait_until_committed(total, group_id=reference)

    crashed = stack.state_store().load_all_sources()
    uninterrupted = stack.state_store(prefix=reference, group_id=reference).load_all_sources()
    assert crashed.keys() == uninterrupted.keys() == sent.keys()
    for source, state in crashed.items():
        expected = uninterrupted[source]
        assert state.stats.count == expected.stats.count
        assert state.stats.mean == pytest.approx(expected.stats.mean, rel=1e-6)
        assert state.stats.variance == pytest.approx(expected.stats.variance, rel=1e-5)
        assert state.outliers == expected.outliers
        assert state.window.event_ids == expected.window.event_ids
        np.testing.assert_allclose(
            state.window.values("error"), expected.window.values("error"), rtol=1e-5
        )
        assert state.detectors["adwin"].width == expected.detectors["adwin"].width
        assert state.detectors["adwin"].estimation == pytest.approx(
            expected.detectors["adwin"].estimation, rel=1e-5
        )
        assert state.detectors["ks"].events_since_test == expected.detectors["ks"].events_since_test
        assert state.detectors["ks"].episode == expected.detectors["ks"].episode
        assert (
            state.detectors["relative_increase"].episode
            == expected.detectors["relative_increase"].episode
        )
        for cusum, expected_cusum in (
            (state.detectors["error_cusum"], expected.detectors["error_cusum"]),
            (state.detectors["latent_cusum"], expected.detectors["latent_cusum"]),
        ):
            assert cusum.upper == pytest.approx(expected_cusum.upper, abs=1e-6)
            assert cusum.lower == pytest.approx(expected_cusum.lower, abs=1e-6)
            assert cusum.in_drift == expected_cusum.in_drift
        np.testing.assert_array_equal(
            state.detectors["latent_mix"].counts, expected.detectors["latent_mix"].counts
        )
        assert state.detectors["latent_mix"].episode == expected.detectors["latent_mix"].episode
        assert state.incidents == expected.incidents, source

    def events_by_id(topic: str) -> dict[str, list[tuple[str, str, str, int]]]:
        found: dict[str, list[tuple[str, str, str, int]]] = {}
        for record in stack.read_topic(topic, timeout=5):
            event = json.loads(record.value)
            transition = (
                event["source_id"],
                event["incident_id"],
                event["transition"],
                event["trigger"]["offset"],
            )
            found.setdefault(event["event_id"], []).append(transition)
        return found

    crashed_events = events_by_id(stack.alerts_topic)
    reference_events = events_by_id(reference_alerts_topic)
    assert crashed_events.keys() == reference_events.keys()
    for event_id, sends in crashed_events.items():
        # A re-send after a crash carries the id, incident, transition and trigger of the first.
        assert set(sends) == set(reference_events[event_id]), event_id
    transitions = defaultdict(list)  # (source, incident) -> its transitions, uninterrupted run
    for (source, incident, transition, _), *_ in reference_events.values():
        transitions[source, incident].append(transition)
    assert {source for source, _ in transitions} == {"camera-001", "camera-005"}
    for incident, kinds in transitions.items():
        assert kinds.count("opened") == 1 and kinds.count("resolved") == 1, incident


def test_replay_from_behind_the_stored_offsets_counts_nothing_twice(
    stack: Stack, stream_images
) -> None:
    """Kafka's commit behind Redis's applied offsets: as after a crash between steps 2 and 3."""
    sent = stack.produce(StreamPlan(sources=3, events_per_source=200, seed=9), stream_images)
    worker = stack.start_worker()
    stack.wait_until_committed(sum(sent.values()))
    assert worker.terminate() == 0
    assert stack.counts_in_redis() == sent

    rewind = KafkaConsumer(
        bootstrap_servers=stack.servers.bootstrap_servers,
        group_id=stack.group_id,
        enable_auto_commit=False,
    )
    partitions = [TopicPartition(stack.input_topic, p) for p in range(PARTITIONS)]
    rewind.assign(partitions)
    rewind.commit({tp: OffsetAndMetadata(0, "", -1) for tp in partitions})
    rewind.close()
    assert sum(stack.committed().values()) == 0

    stack.start_worker()
    # Nothing past the stored offsets to read: the new owner commits up to them, or the
    # group would show the replayed batches as lag for ever.
    stack.wait_until_committed(sum(sent.values()), timeout=60)
    more = stack.produce(StreamPlan(sources=3, events_per_source=50, seed=10), stream_images)
    stack.wait_until_committed(sum(sent.values()) + sum(more.values()))
    assert stack.counts_in_redis() == {source: sent[source] + more[source] for source in sent}


def test_alert_re_sent_after_a_crash_between_publish_and_persist_keeps_its_id(
    stack: Stack, stream_images, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = StreamPlan(
        sources=2, events_per_source=600, drift={"camera-001": "noise"}, drift_at=200, seed=8
    )
    sent = stack.produce(plan, stream_images)

    def alerted(states: dict[str, SourceState]) -> bool:
        return any(
            state.detectors["relative_increase"].episode.in_drift
            or state.detectors["ks"].episode.in_drift
            for state in states.values()
        )

    crash_in_process_worker(stack, monkeypatch, alerted, FRAMEDRIFT_BATCH_SIZE="100")
    first_sends = [json.loads(r.value) for r in stack.read_topic(stack.alerts_topic, timeout=5)]
    committed = stack.committed()
    # The lost batch's transitions: those of events past the committed offsets.
    lost = [
        e for e in first_sends if e["trigger"]["offset"] >= committed[e["trigger"]["partition"]]
    ]
    assert lost, "the doomed worker published nothing of the batch it lost"

    stack.start_worker()
    stack.wait_until_committed(sum(sent.values()))
    all_sends = [json.loads(r.value) for r in stack.read_topic(stack.alerts_topic, timeout=5)]
    assert stack.counts_in_redis() == sent, "the replayed batch was counted twice"
    for first in first_sends:
        copies = [event for event in all_sends if event["event_id"] == first["event_id"]]
        assert len(copies) == (2 if first in lost else 1), "re-sent: the lost batch's, only"
        assert all(unchanging(copy) == unchanging(first) for copy in copies)


def unchanging(event: dict) -> dict:
    """An incident event less what a replay makes anew: the time the worker made it."""
    return {key: value for key, value in event.items() if key != "emitted_at"}
