"""A `StateStore` in one process's memory, with the Redis store's contract, for unit tests.

Same semantics as `RedisStateStore`: claims bump a per-partition generation; a save
whose generation moved on, whose expected applied offset is not the stored one, or that
would move a source to another partition raises and writes nothing; states go through
the same signed codec, so a stored state is a copy and an unusable blob resets its
source exactly as it would from Redis.
"""

from __future__ import annotations

from framedrift.worker.detection.cadence import Liveness
from framedrift.worker.detection.monitor import SourceState
from framedrift.worker.stream.state_codec import StateCodec
from framedrift.worker.stream.state_store import (
    AppliedAdvance,
    AppliedOffsetMoved,
    LoadedStates,
    PartitionClaim,
    PartitionFenced,
    SourcePartitionConflict,
    decode_stored_states,
    liveness_entry,
    liveness_on,
    partition_label,
)


class InMemoryStateStore:
    """Detector state and applied offsets in dicts; nothing survives the process.

    >>> store = InMemoryStateStore(StateCodec(b"k" * 32))
    >>> stale = store.claim_partitions("images", [0])[0]
    >>> fresh = store.claim_partitions("images", [0])[0]  # another worker took it over
    >>> store.save("images", {0: AppliedAdvance(fresh.generation, None, 9)}, {}, {})
    >>> try:
    ...     store.save("images", {0: AppliedAdvance(stale.generation, None, 4)}, {}, {})
    ... except PartitionFenced as fenced:
    ...     print(fenced)
    images[0] now has generation 2; this worker no longer owns it
    >>> store.applied_offsets("images")
    {0: 9}
    """

    def __init__(self, codec: StateCodec) -> None:
        self.codec = codec
        self.blobs: dict[str, bytes] = {}  # source key -> signed state blob
        self.homes: dict[str, str] = {}  # source id -> its home (`partition_label`)
        self.generations: dict[tuple[str, int], int] = {}  # (topic, partition) -> generation
        self.applied: dict[tuple[str, int], int] = {}  # (topic, partition) -> applied offset
        self.liveness_entries: dict[str, str] = {}  # source id -> its liveness index entry

    def source_key(self, source_id: str) -> str:
        return f"source:{source_id}"

    def claim_partitions(self, topic: str, partitions: list[int]) -> dict[int, PartitionClaim]:
        claims = {}
        for partition in partitions:
            generation = self.generations.get((topic, partition), 0) + 1
            self.generations[topic, partition] = generation
            claims[partition] = PartitionClaim(generation, self.applied.get((topic, partition)))
        return claims

    def load_sources(self, source_ids: list[str]) -> LoadedStates:
        keys = [self.source_key(source_id) for source_id in source_ids]
        stored = [self.blobs.get(key) for key in keys]
        loaded = decode_stored_states(self.codec, zip(source_ids, keys, stored, strict=True))
        loaded.homes.update((s, self.homes[s]) for s in source_ids if s in self.homes)
        return loaded

    def save(
        self,
        topic: str,
        applied: dict[int, AppliedAdvance],
        states: dict[str, SourceState],
        source_partitions: dict[str, int],
    ) -> None:
        for partition, advance in sorted(applied.items()):
            current = self.generations.get((topic, partition))
            if current != advance.generation:
                raise PartitionFenced(topic, partition, "" if current is None else str(current))
        for partition, advance in sorted(applied.items()):
            stored = self.applied.get((topic, partition))
            if stored != advance.expected:
                raise AppliedOffsetMoved(
                    topic, partition, advance.expected, "" if stored is None else str(stored)
                )
        for source_id in states:
            home = self.homes.get(source_id)
            attempted = partition_label(topic, source_partitions[source_id])
            if home is not None and home != attempted:
                raise SourcePartitionConflict(source_id, home, attempted)
        for partition, advance in applied.items():
            self.applied[topic, partition] = advance.offset
        for source_id, state in states.items():
            key = self.source_key(source_id)
            self.homes[source_id] = partition_label(topic, source_partitions[source_id])
            self.blobs[key] = self.codec.encode(state, key)
            entry = liveness_entry(state)
            if entry:
                self.liveness_entries[source_id] = entry
            else:
                self.liveness_entries.pop(source_id, None)

    def forget_applied(self, topic: str, partition: int, generation: int) -> bool:
        if self.generations.get((topic, partition)) != generation:
            return False
        self.applied.pop((topic, partition), None)
        return True

    def liveness(self, topic: str, partitions: list[int]) -> dict[str, tuple[int, Liveness]]:
        return liveness_on(self.homes, self.liveness_entries, topic, partitions)

    def applied_offsets(self, topic: str) -> dict[int, int]:
        return {
            partition: offset
            for (stored_topic, partition), offset in self.applied.items()
            if stored_topic == topic
        }
