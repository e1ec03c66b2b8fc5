"""Where detector state and applied offsets live: the store contract and its Redis backend.

`StateStore` is what the pipeline and the checkpoint use; `RedisStateStore` is the one
the worker runs with, `InMemoryStateStore` (`memory_store.py`) the one unit tests use.

Redis keys, under `{prefix}:{group_id}:{model_version}` so that two models or two
consumer groups never share state:
- `...:source:{source_id}`        signed state blob of one source (`StateCodec`)
- `...:applied:{topic}`           hash partition -> last input offset whose effect is stored
- `...:generation:{topic}`        hash partition -> ownership generation, bumped on assignment

A worker that is assigned a partition bumps its generation and remembers the new value;
its checkpoint writes only if the generation is still that value, checked atomically in
a Lua script. A worker that lost the partition (rebalance, long pause) is thereby fenced
off and cannot overwrite the new owner's state.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import redis
import structlog

from framedrift.worker.detection.monitor import SourceState
from framedrift.worker.stream.state_codec import StateCodec, UnusableState

log = structlog.get_logger(__name__)

# What redis-py raises when the server cannot be reached or does not answer in time:
# the one place that knows it. The store turns these into `StoreUnavailable`.
REDIS_UNAVAILABLE: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError)

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


class StoreUnavailable(ConnectionError):
    """The store's server cannot be reached; nothing was written. Retry later."""


@dataclass(frozen=True)
class PartitionClaim:
    generation: int
    applied_offset: int | None  # None: nothing of this partition has been applied yet


@dataclass(frozen=True)
class LoadedStates:
    states: dict[str, SourceState]  # only sources with a usable stored state
    # source id -> why its stored blob could not be used (`UnusableState.reason`); the
    # source restarts clean
    resets: dict[str, str]


class StateStore(Protocol):
    """Per-source detector state and per-partition applied offsets, fenced by generation.

    Every method raises `StoreUnavailable` when the backend cannot be reached.
    """

    def claim_partitions(self, topic: str, partitions: list[int]) -> dict[int, PartitionClaim]:
        """Take ownership: bump each partition's generation and read its applied offset."""
        ...

    def load_sources(self, source_ids: list[str]) -> LoadedStates:
        """Stored states of these sources; unusable blobs are reported, never raised."""
        ...

    def save(
        self, topic: str, applied: dict[int, tuple[int, int]], states: dict[str, SourceState]
    ) -> None:
        """Atomically store states and each partition's (generation, applied offset).

        Raises PartitionFenced, writing nothing, if any partition's generation moved on.
        """
        ...

    def applied_offsets(self, topic: str) -> dict[int, int]:
        """partition -> the last input offset whose effect is stored."""
        ...


def decode_stored_states(
    codec: StateCodec, stored: Iterable[tuple[str, str, bytes | None]]
) -> LoadedStates:
    """(source id, storage key, blob or None) -> the usable states and the sources to reset.

    A blob that cannot be used resets its source, with a log line; it never raises,
    since the same blob would stop the worker again after every restart.
    """
    states: dict[str, SourceState] = {}
    resets: dict[str, str] = {}
    for source_id, key, blob in stored:
        if blob is None:
            continue
        try:
            states[source_id] = codec.decode(blob, key)
        except UnusableState as error:
            log.warning(
                "state_reset",
                source_id=source_id,
                reason=error.reason,
                detail=str(error),
                action="restarting this source's detectors",
            )
            resets[source_id] = error.reason
    return LoadedStates(states, resets)


@contextmanager
def _unavailable_when_redis_is_down() -> Iterator[None]:
    try:
        yield
    except REDIS_UNAVAILABLE as error:
        raise StoreUnavailable(f"{type(error).__name__}: {error}") from error


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
        with _unavailable_when_redis_is_down():
            *generations, applied = pipe.execute()
        return {
            partition: PartitionClaim(int(generation), int(offset) if offset is not None else None)
            for partition, generation, offset in zip(partitions, generations, applied, strict=True)
        }

    def load_sources(self, source_ids: list[str]) -> LoadedStates:
        """Stored states of these sources in one round trip; unusable blobs reset their source."""
        if not source_ids:
            return LoadedStates({}, {})
        keys = [self.source_key(source_id) for source_id in source_ids]
        with _unavailable_when_redis_is_down():
            blobs = self.client.mget(keys)
        return decode_stored_states(self.codec, zip(source_ids, keys, blobs, strict=True))

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
        with _unavailable_when_redis_is_down():
            result = self._checkpoint(keys=keys, args=arguments)
        if result[0] == b"fenced":
            raise PartitionFenced(topic, int(result[1]), result[2].decode())

    def applied_offsets(self, topic: str) -> dict[int, int]:
        with _unavailable_when_redis_is_down():
            stored = self.client.hgetall(self.applied_key(topic))
        return {int(partition): int(offset) for partition, offset in stored.items()}

    def load_all_sources(self) -> dict[str, SourceState]:
        """Every stored source state of this namespace (for tools and tests, not the hot path)."""
        prefix = self.source_key("")
        source_ids = [
            key.decode()[len(prefix) :] for key in self.client.scan_iter(match=prefix + "*")
        ]
        return self.load_sources(source_ids).states
