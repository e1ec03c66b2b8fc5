"""The batch processor over an in-memory store: outliers counted, unusable state reset."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

import numpy as np
import structlog
from kafka.consumer.fetcher import ConsumerRecord

from framedrift.producers.events import image_event_record
from framedrift.worker.detection.monitor import SourceState
from framedrift.worker.stream.decoding import DecodingLimits
from framedrift.worker.stream.memory_store import InMemoryStateStore
from framedrift.worker.stream.pipeline import BatchProcessor
from framedrift.worker.stream.state_codec import CODEC_VERSION, StateCodec
from framedrift.worker.stream.state_store import AppliedAdvance
from tests.detector_fixtures import synthetic_config
from tests.state_blobs import pickle_naming, signed_blob
from tests.stream_fakes import (
    TOPIC,
    FakeScorer,
    consumer_record,
    image_records,
    junk_record,
)

KEY = b"k" * 32
CONFIG = synthetic_config()
LIMITS = DecodingLimits(1 << 20, 1 << 20)


def processor(
    store: InMemoryStateStore, rng: np.random.Generator, errors: list[float] | None = None
) -> BatchProcessor:
    return BatchProcessor(FakeScorer(rng, errors), store, CONFIG, LIMITS, "ae-test")


def test_outliers_are_the_scored_images_whose_error_is_above_the_threshold(
    rng: np.random.Generator,
) -> None:
    threshold = CONFIG.outlier_threshold
    errors = [0.5 * threshold, 2.0 * threshold, threshold, 1.01 * threshold, 0.9 * threshold]
    records = [*image_records("cam-1", range(5)), junk_record(5)]
    outcome = processor(InMemoryStateStore(StateCodec(KEY)), rng, errors).process(
        records, {0: None}
    )
    assert outcome.scored.total() == 5
    assert outcome.outliers.total() == 2  # at the threshold is not above it; the junk is not scored


def test_stored_states_this_worker_cannot_use_restart_their_sources_and_say_why(
    rng: np.random.Generator,
) -> None:
    store = InMemoryStateStore(StateCodec(KEY))
    kept = SourceState.fresh(CONFIG)
    for _ in range(7):
        kept.stats.update(0.3)
    claim = store.claim_partitions(TOPIC, [0])[0]
    store.save(
        TOPIC, {0: AppliedAdvance(claim.generation, None, 99)}, {"cam-kept": kept}, {"cam-kept": 0}
    )
    # Left by a worker of the previous codec version, signed with the same key.
    old_key = store.source_key("cam-old")
    store.blobs[old_key] = signed_blob(KEY, old_key, b"fd1", pickle.dumps(kept))
    # Signed by this version, naming a class that has since been renamed.
    moved_key = store.source_key("cam-moved")
    store.blobs[moved_key] = signed_blob(
        KEY,
        moved_key,
        CODEC_VERSION,
        pickle_naming("framedrift.worker.detection.monitor", "RetiredSourceState"),
    )
    records = (
        image_records("cam-kept", range(100, 103))
        + image_records("cam-old", range(103, 106))
        + image_records("cam-moved", range(106, 109))
    )

    with structlog.testing.capture_logs() as logs:
        outcome = processor(store, rng).process(records, {0: 99})

    assert outcome.state_resets == {"cam-old": "codec_version", "cam-moved": "unloadable"}
    counts = {source: state.stats.count for source, state in outcome.states.items()}
    assert counts == {"cam-kept": 10, "cam-old": 3, "cam-moved": 3}
    resets = {
        entry["source_id"]: entry["reason"] for entry in logs if entry["event"] == "state_reset"
    }
    assert resets == outcome.state_resets


def test_records_at_or_below_the_applied_offset_are_skipped_not_counted(
    rng: np.random.Generator,
) -> None:
    outcome = processor(InMemoryStateStore(StateCodec(KEY)), rng).process(
        image_records("cam-1", range(10)), {0: 6}
    )
    assert (outcome.skipped_replays.total(), outcome.scored.total()) == (7, 3)
    assert outcome.states["cam-1"].stats.count == 3
    assert outcome.last_offsets == {0: 9}


def test_a_source_is_counted_on_its_home_partition_and_dead_lettered_from_any_other(
    rng: np.random.Generator,
) -> None:
    store = InMemoryStateStore(StateCodec(KEY))
    claims = store.claim_partitions(TOPIC, [0, 1])
    home = SourceState.fresh(CONFIG)
    store.save(
        TOPIC, {0: AppliedAdvance(claims[0].generation, None, 9)}, {"cam-1": home}, {"cam-1": 0}
    )
    records = image_records("cam-1", range(10, 13)) + image_records("cam-1", range(3), partition=1)

    outcome = processor(store, rng).process(records, {0: 9, 1: None})

    assert outcome.states["cam-1"].stats.count == 3
    assert outcome.source_partitions == {"cam-1": 0}
    strays = [(dead.record.partition, type(dead.error).__name__) for dead in outcome.dead_letters]
    assert strays == [(1, "SourceOnAnotherPartition")] * 3
    assert outcome.last_offsets == {0: 12, 1: 2}


def test_a_source_keeps_the_labels_its_events_last_carried_and_its_incidents_carry_them(
    rng: np.random.Generator,
) -> None:
    def labelled(offset: int, labels: dict[str, str] | None) -> ConsumerRecord:
        event = image_event_record(
            np.full((28, 28), 90, np.uint8),
            "cam-1",
            f"e{offset}",
            datetime.now(UTC),
            "binary",
            source_labels=labels,
        )
        return consumer_record(offset, event.key, event.value, event.headers)

    records = [labelled(0, {"site": "north"}), *[labelled(i, None) for i in range(1, 30)]]
    outcome = processor(InMemoryStateStore(StateCodec(KEY)), rng, [3.0] * 30).process(
        records, {0: None}
    )
    assert outcome.states["cam-1"].labels == {"site": "north"}, "unlabelled events keep them"
    assert outcome.incident_events, "the drifted batch opens an incident"
    assert all(event.labels == {"site": "north"} for event in outcome.incident_events)
    assert outcome.statuses["cam-1"].labels == {"site": "north"}
