"""States kept in memory as this worker last saved them: the outcome of reading them from
the store, and nothing of a batch that was not saved."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import pytest

from framedrift.producers.events import image_event_record
from framedrift.worker.detection.monitor import SourceState
from framedrift.worker.detection.scores import TILE_NAMES, FrameScores, ImageScores
from framedrift.worker.stream.decoding import DecodingLimits
from framedrift.worker.stream.memory_store import InMemoryStateStore
from framedrift.worker.stream.pipeline import BatchOutcome, BatchProcessor
from framedrift.worker.stream.state_cache import CachedState, StateCache
from framedrift.worker.stream.state_codec import StateCodec
from framedrift.worker.stream.state_store import AppliedAdvance, PartitionClaim
from tests.detector_fixtures import synthetic_config, synthetic_scores
from tests.stream_fakes import TOPIC, consumer_record

CONFIG = synthetic_config()
START = 1_800_000_000.0
SOURCES = ("cam-a", "cam-b", "cam-c")
FAULT_FROM = 300  # cam-b's frames are brighter and its errors higher from this round on


class ImageSeededScorer:
    """Synthetic scores drawn from a seed that is each image's checksum: an image's scores
    do not depend on its batch, nor on how often it was scored before."""

    def score_frames(self, images: Sequence[np.ndarray]) -> FrameScores:
        parts = []
        for image in images:
            scores = synthetic_scores(np.random.default_rng(zlib.crc32(image.tobytes())), 1)
            if image.mean() > 150:  # a faulty frame
                scores = ImageScores(**{**vars(scores), "error": scores.error * 3.0})
            parts.append(scores)
        joined = ImageScores.concatenate(parts)
        return FrameScores(joined, np.repeat(joined.error[:, None], len(TILE_NAMES), axis=1))


def stream(rounds: int = 500) -> list:  # type: ignore[type-arg]
    """The three sources, a frame each a second, in one partition."""
    records = []
    for second in range(rounds):
        for source in SOURCES:
            rng = np.random.default_rng(len(records))
            image = rng.integers(60, 120, (28, 28), dtype=np.uint8)
            if source == "cam-b" and second >= FAULT_FROM:
                image += 100
            event = image_event_record(
                image,
                source,
                f"{source}-{second}",
                datetime.fromtimestamp(START + second, UTC),
                "binary",
                "png",
            )
            records.append(consumer_record(len(records), event.key, event.value, event.headers))
    return records


class Worker:
    """A processor and an in-memory store, each batch saved as the checkpoint saves it."""

    def __init__(self, cached_states: int, store: InMemoryStateStore | None = None) -> None:
        self.store = store or InMemoryStateStore(StateCodec(b"k" * 32))
        self.processor = BatchProcessor(
            ImageSeededScorer(),
            self.store,
            CONFIG,
            DecodingLimits(1 << 20, 1 << 20),
            "ae-test",
            cached_states=cached_states,
        )
        self.claim = self.store.claim_partitions(TOPIC, [0])[0]
        self.events: list[str] = []

    def process(self, batch: list) -> BatchOutcome:  # type: ignore[type-arg]
        return self.processor.process(batch, {0: self.claim.applied_offset})

    def save(self, outcome: BatchOutcome) -> None:
        applied = self.claim.applied_offset
        advance = AppliedAdvance(self.claim.generation, applied, outcome.last_offsets[0])
        self.store.save(TOPIC, {0: advance}, outcome.states, outcome.source_partitions)
        self.processor.remember_saved(outcome)
        self.claim = PartitionClaim(self.claim.generation, outcome.last_offsets[0])
        # All but the wall-clock time of their making.
        self.events += [
            event.model_dump_json(exclude={"emitted_at"}) for event in outcome.incident_events
        ]

    def run(self, batches: list[list]) -> None:  # type: ignore[type-arg]
        for batch in batches:
            self.save(self.process(batch))


def batches(records: list, size: int) -> list[list]:  # type: ignore[type-arg]
    return [records[i : i + size] for i in range(0, len(records), size)]


@pytest.mark.parametrize("cached_states", [1, 2, 100])
def test_states_kept_in_memory_give_what_states_read_from_the_store_give(
    cached_states: int,
) -> None:
    """To the byte: the incident events and every saved state. One and two kept states,
    fewer than the sources, have them evicted and read back from the store in turn."""
    records = stream()
    from_store, kept = Worker(cached_states=0), Worker(cached_states)
    from_store.run(batches(records, 16))
    kept.run(batches(records, 16))
    assert any('"opened"' in event for event in from_store.events), "the fault opens an incident"
    assert kept.events == from_store.events
    assert kept.store.blobs == from_store.store.blobs
    assert len(kept.processor.saved_states) == min(cached_states, len(SOURCES))


def test_a_batch_that_was_not_saved_leaves_nothing_in_memory() -> None:
    """A refused checkpoint reads the batch again: it must start from the saved states,
    not from the ones its first attempt moved on."""
    records = stream()
    straight, retried = Worker(cached_states=0), Worker(cached_states=100)
    straight.run(batches(records, 32))
    for batch in batches(records, 32):
        retried.process(batch)  # the attempt whose checkpoint fails
        retried.save(retried.process(batch))
    assert retried.events == straight.events
    assert retried.store.blobs == straight.store.blobs


def test_the_states_of_a_partition_given_up_or_claimed_again_are_read_from_the_store() -> None:
    records = stream(rounds=50)
    worker = Worker(cached_states=100)
    worker.run(batches(records, 30))
    assert len(worker.processor.saved_states) == len(SOURCES)
    worker.processor.forget_partitions({1})
    assert len(worker.processor.saved_states) == len(SOURCES), "another partition's: kept"
    worker.processor.forget_partitions({0})
    assert len(worker.processor.saved_states) == 0


def test_the_cache_keeps_the_most_recently_saved_states_and_hands_each_out_once() -> None:
    cache = StateCache(capacity=2)
    state = SourceState.fresh(CONFIG)
    for source in ("a", "b", "c"):
        cache.put(source, CachedState(0, state))
    cache.put("b", CachedState(0, state))  # saved again: now the most recent
    cache.put("d", CachedState(1, state))
    assert set(cache.take(["a", "b", "c", "d"])) == {"b", "d"}
    assert len(cache) == 0 and cache.take(["b"]) == {}
    nothing = StateCache(capacity=0)
    nothing.put("a", CachedState(0, state))
    assert len(nothing) == 0
