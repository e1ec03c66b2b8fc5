"""A `StateStore` in one process's memory, with the Redis store's contract, for unit tests.

Same semantics as `RedisStateStore`: claims bump a per-partition generation, a save
whose generation moved on raises `PartitionFenced` and writes nothing, and states go
through the same signed codec, so a stored state is a copy and an unusable blob resets
its source exactly as it would from Redis.
"""

from __future__ import annotations

from framedrift.worker.detection.monitor import SourceState
from framedrift.worker.stream.state_codec import StateCodec
from framedrift.worker.stream.state_store import (
    LoadedStates,
    PartitionClaim,
    PartitionFenced,
    decode_stored_states,
)


class InMemoryStateStore:
    """Detector state and applied offsets in dicts; nothing survives the process.

    >>> store = InMemoryStateStore(StateCodec(b"k" * 32))
    >>> stale = store.claim_partitions("images", [0])[0]
    >>> fresh = store.claim_partitions("images", [0])[0]  # another worker took it over
    >>> store.save("images", {0: (fresh.generation, 9)}, {})
    >>> try:
    ...     store.save("images", {0: (stale.generation, 4)}, {})
    ... except PartitionFenced as fenced:
    ...     print(fenced)
    images[0] now has generation 2; this worker no longer owns it
    >>> store.applied_offsets("images")
    {0: 9}
    """

    def __init__(self, codec: StateCodec) -> None:
        self.codec = codec
        self.blobs: dict[str, bytes] = {}  # source key -> signed state blob
        self.generations: dict[tuple[str, int], int] = {}  # (topic, partition) -> generation
        self.applied: dict[tuple[str, int], int] = {}  # (topic, partition) -> applied offset

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
        return decode_stored_states(self.codec, zip(source_ids, keys, stored, strict=True))

    def save(
        self, topic: str, applied: dict[int, tuple[int, int]], states: dict[str, SourceState]
    ) -> None:
        for partition, (generation, _) in sorted(applied.items()):
            current = self.generations.get((topic, partition))
            if current != generation:
                raise PartitionFenced(topic, partition, "" if current is None else str(current))
        for partition, (_, offset) in applied.items():
            self.applied[topic, partition] = offset
        for source_id, state in states.items():
            key = self.source_key(source_id)
            self.blobs[key] = self.codec.encode(state, key)

    def applied_offsets(self, topic: str) -> dict[int, int]:
        return {
            partition: offset
            for (stored_topic, partition), offset in self.applied.items()
            if stored_topic == topic
        }
