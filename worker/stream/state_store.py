"""Per-source detector state and per-partition applied offsets, in Redis.

Keys, under `{prefix}:{group_id}:{model_version}` so that two models or two consumer
groups never share state:
- `...:source:{source_id}`        signed state blob of one source (`StateCodec`)
- `...:applied:{topic}`           hash partition -> last input offset whose effect is stored
- `...:generation:{topic}`        hash partition -> ownership generation, bumped on assignment

A worker that is assigned a partition bumps its generation and remembers the new value;
its checkpoint writes only if the generation is still that value, checked atomically in
a Lua script. A worker that lost the partition (rebalance, long pause) is thereby fenced
off and cannot overwrite the new owner's state.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
import structlog

from framedrift.worker.detection.monitor import SourceState
from framedrift.worker.stream.state_codec import StateCodec, StateVerificationError

log = structlog.get_logger(__name__)

# KEYS: applied hash, generation hash, then one key per source state.
# ARGV: n, then n triples (partition, expected generation, applied offset),
#       then one blob per source.
_CHECKPOINT_SCRIPT = """
local n = tonumber(ARGV[1])
for i = 0, n - 1 do
  local partition = ARGV[2 + 3 * i]
  local current = redis.call('HGET', KEYS[2], partition)
  if current ~= ARGV[3 + 3 * i] then
    return {'fenced', partition, current or ''}
  end
end
for i = 0, n - 1 do
  redis.call('HSET', KEYS[1], ARGV[2 + 3 * i], ARGV[4 + 3 * i])
end
local first_blob = 2 + 3 * n
for k = 3, #KEYS do
  redis.call('SET', KEYS[k], ARGV[first_blob + k - 3])
end
return {'ok'}
"""


class PartitionFenced(RuntimeError):
    """Another worker claimed the partition since this one did: its state write was refused."""

    def __init__(self, topic: str, partition: int, stored_generation: str) -> None:
        super().__init__(
            f"{topic}[{partition}] now has generation {stored_generation or 'none'}; "
            "this worker no longer owns it"
        )
        self.topic, self.partition = topic, partition


@dataclass(frozen=True)
class PartitionClaim:
    generation: int
    applied_offset: int | None  # None: nothing of this partition has been applied yet


@dataclass(frozen=True)
class LoadedStates:
    states: dict[str, SourceState]  # only sources with a verified stored state
    rejected: list[str]  # sources whose stored blob failed verification


class RedisStateStore:
    def __init__(
        self, client: redis.Redis, codec: StateCodec, prefix: str, group_id: str, model_version: str
    ) -> None:
        self.client = client
        self.codec = codec
        self.namespace = f"{prefix}:{group_id}:{model_version}"
        self._checkpoint = client.register_script(_CHECKPOINT_SCRIPT)

    def source_key(self, source_id: str) -> str:
        return f"{self.namespace}:source:{source_id}"

    def applied_key(self, topic: str) -> str:
        return f"{self.namespace}:applied:{topic}"

    def generation_key(self, topic: str) -> str:
        return f"{self.namespace}:generation:{topic}"

    def claim_partitions(self, topic: str, partitions: list[int]) -> dict[int, PartitionClaim]:
        """Take ownership: bump each partition's generation and read its applied offset."""
        if not partitions:
            return {}
        pipe = self.client.pipeline(transaction=True)
        for partition in partitions:
            pipe.hincrby(self.generation_key(topic), str(partition), 1)
        pipe.hmget(self.applied_key(topic), [str(p) for p in partitions])
        *generations, applied = pipe.execute()
        return {
            partition: PartitionClaim(int(generation), int(offset) if offset is not None else None)
            for partition, generation, offset in zip(partitions, generations, applied, strict=True)
        }

    def load_sources(self, source_ids: list[str]) -> LoadedStates:
        """Stored states of these sources in one round trip; unverifiable blobs are dropped."""
        if not source_ids:
            return LoadedStates({}, [])
        keys = [self.source_key(source_id) for source_id in source_ids]
        states, rejected = {}, []
        for source_id, key, blob in zip(source_ids, keys, self.client.mget(keys), strict=True):
            if blob is None:
                continue
            try:
                states[source_id] = self.codec.decode(blob, key)
            except StateVerificationError as error:
                log.warning("state_verification_failed", source_id=source_id, reason=str(error))
                rejected.append(source_id)
        return LoadedStates(states, rejected)

    def save(
        self, topic: str, applied: dict[int, tuple[int, int]], states: dict[str, SourceState]
    ) -> None:
        """Atomically store states and each partition's (generation, applied offset).

        Raises PartitionFenced, writing nothing, if any partition's generation moved on.
        """
        keys = [self.applied_key(topic), self.generation_key(topic)]
        arguments: list[str | bytes | int] = [len(applied)]
        for partition, (generation, offset) in sorted(applied.items()):
            arguments += [str(partition), str(generation), str(offset)]
        for source_id, state in states.items():
            key = self.source_key(source_id)
            keys.append(key)
            arguments.append(self.codec.encode(state, key))
        result = self._checkpoint(keys=keys, args=arguments)
        if result[0] == b"fenced":
            raise PartitionFenced(topic, int(result[1]), result[2].decode())

    def applied_offsets(self, topic: str) -> dict[int, int]:
        return {int(p): int(o) for p, o in self.client.hgetall(self.applied_key(topic)).items()}

    def load_all_sources(self) -> dict[str, SourceState]:
        """Every stored source state of this namespace (for tools and tests, not the hot path)."""
        prefix = self.source_key("")
        source_ids = [
            key.decode()[len(prefix) :] for key in self.client.scan_iter(match=prefix + "*")
        ]
        return self.load_sources(source_ids).states
