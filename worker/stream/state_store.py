"""Where detector state and applied offsets live: the store contract and its Redis backend.

`StateStore` is what the pipeline and the checkpoint use; `RedisStateStore` is the one
the worker runs with, `InMemoryStateStore` (`memory_store.py`) the one unit tests use.

Redis keys, under `{prefix}:{group_id}:{model_version}` so that two models or two
consumer groups never share state:
- `...:source:{source_id}`        signed state blob of one source (`StateCodec`)
- `...:applied:{topic}`           hash partition -> last input offset whose effect is stored
- `...:generation:{topic}`        hash partition -> ownership generation, bumped on assignment
- `...:source-partitions`         hash source id -> its home, `topic[partition]`, set by its
                                  first write

A worker that is assigned a partition bumps its generation and remembers the new value
with the applied offset it read. Its checkpoint writes, in one Lua script, only if
1. every partition's generation is still that value (else `PartitionFenced`: another
   worker claimed it since, or the generation was lost),
2. every partition's applied offset is still the one this worker expects (else
   `AppliedOffsetMoved`: Redis went back in time, e.g. a restored snapshot or a failover
   to a lagging replica, and writing on top would skip the events in between),
3. every source's home is the partition its events came from (else
   `SourcePartitionConflict`: one source on two partitions would have two owners whose
   writes overwrite each other).
Nothing is written unless all three hold.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

import redis
import structlog

from framedrift.worker.detection.cadence import Liveness
from framedrift.worker.detection.monitor import SourceState
from framedrift.worker.stream.state_codec import StateCodec, UnusableState

log = structlog.get_logger(__name__)

# What redis-py raises when the server cannot take a request now: unreachable, too slow,
# a replica during a failover (READONLY, MASTERDOWN), out of memory under `noeviction`
# (OOM) or busy. The one place that knows it: the store turns these into
# `StoreUnavailable`, which the worker waits out (not ready, backoff) instead of crashing.
REDIS_UNAVAILABLE: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.MasterDownError,
    redis.exceptions.TryAgainError,
)

# KEYS: applied hash, generation hash, source-partitions hash, liveness hash, then one key
#       per source state.
# ARGV: n, then n quadruples (partition, expected generation, expected applied offset or '',
#       new applied offset), then one quadruple (source id, home, blob, liveness entry or
#       '' for none) per source state key.
# Checks everything before writing anything; the steps are those of the module docstring.
_CHECKPOINT_SCRIPT = """
local n = tonumber(ARGV[1])
for i = 0, n - 1 do
  local partition = ARGV[2 + 4 * i]
  local generation = redis.call('HGET', KEYS[2], partition)
  if generation ~= ARGV[3 + 4 * i] then
    return {'fenced', partition, generation or ''}
  end
end
for i = 0, n - 1 do
  local partition = ARGV[2 + 4 * i]
  local applied = redis.call('HGET', KEYS[1], partition) or ''
  if applied ~= ARGV[4 + 4 * i] then
    return {'applied_moved', partition, applied}
  end
end
local first_source = 2 + 4 * n
for k = 5, #KEYS do
  local at = first_source + 4 * (k - 5)
  local home = redis.call('HGET', KEYS[3], ARGV[at])
  if home and home ~= ARGV[at + 1] then
    return {'source_elsewhere', ARGV[at], home}
  end
end
for i = 0, n - 1 do
  redis.call('HSET', KEYS[1], ARGV[2 + 4 * i], ARGV[5 + 4 * i])
end
for k = 5, #KEYS do
  local at = first_source + 4 * (k - 5)
  redis.call('HSET', KEYS[3], ARGV[at], ARGV[at + 1])
  redis.call('SET', KEYS[k], ARGV[at + 2])
  if ARGV[at + 3] == '' then
    redis.call('HDEL', KEYS[4], ARGV[at])
  else
    redis.call('HSET', KEYS[4], ARGV[at], ARGV[at + 3])
  end
end
return {'ok'}
"""

# KEYS: applied hash, generation hash. ARGV: partition, expected generation.
# Forgets the partition's applied offset if the generation is still the caller's.
_FORGET_APPLIED_SCRIPT = """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then
  return 0
end
redis.call('HDEL', KEYS[1], ARGV[1])
return 1
"""


class PartitionFenced(RuntimeError):
    """The partition's generation is no longer this worker's (another worker claimed it, or
    the store lost the generation: `generation_lost`): its state write was refused."""

    def __init__(self, topic: str, partition: int, stored_generation: str) -> None:
        super().__init__(
            f"{topic}[{partition}] now has generation {stored_generation or 'none'}; "
            "this worker no longer owns it"
        )
        self.topic, self.partition = topic, partition
        self.generation_lost = not stored_generation


class AppliedOffsetMoved(RuntimeError):
    """The partition's stored applied offset is not the one this worker expects: the store
    went back in time (restored snapshot, failover to a lagging replica, eviction) or lost
    it. Nothing was written; re-claim and go on from what is stored."""

    def __init__(self, topic: str, partition: int, expected: int | None, stored: str) -> None:
        super().__init__(
            f"{topic}[{partition}] has applied offset {stored or 'none'} in the store, "
            f"this worker expected {'none' if expected is None else expected}"
        )
        self.topic, self.partition = topic, partition
        self.expected = expected
        self.stored = int(stored) if stored else None


class SourcePartitionConflict(RuntimeError):
    """A source's state would be written from a partition other than its recorded home.
    Nothing was written; its records from elsewhere are to be dead-lettered."""

    def __init__(self, source_id: str, home: str, attempted: str) -> None:
        super().__init__(
            f"source {source_id!r} lives on {home}; a write from {attempted} was refused"
        )
        self.source_id, self.home, self.attempted = source_id, home, attempted


def partition_label(topic: str, partition: int) -> str:
    """How a source's home partition is recorded: `images[3]`."""
    return f"{topic}[{partition}]"


class StoreUnavailable(ConnectionError):
    """The store's server cannot be reached; nothing was written. Retry later."""


@dataclass(frozen=True)
class PartitionClaim:
    generation: int
    applied_offset: int | None  # None: nothing of this partition has been applied yet


@dataclass(frozen=True)
class AppliedAdvance:
    """One partition's part of a checkpoint: written only if the store still holds
    `generation` and `expected` (the applied offset this worker claimed or last wrote)."""

    generation: int
    expected: int | None
    offset: int  # the new applied offset


@dataclass(frozen=True)
class LoadedStates:
    states: dict[str, SourceState]  # only sources with a usable stored state
    # source id -> why its stored blob could not be used (`UnusableState.reason`); the
    # source restarts clean
    resets: dict[str, str]
    # source id -> its recorded home (`partition_label`), for sources that have one
    homes: dict[str, str] = field(default_factory=dict)


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
        self,
        topic: str,
        applied: dict[int, AppliedAdvance],
        states: dict[str, SourceState],
        source_partitions: dict[str, int],
    ) -> None:
        """Atomically store states, their home partitions and each partition's applied offset.

        Writes nothing and raises PartitionFenced if a partition's generation moved on,
        AppliedOffsetMoved if its applied offset is not the expected one, or
        SourcePartitionConflict if a source's recorded home is another partition.
        """
        ...

    def forget_applied(self, topic: str, partition: int, generation: int) -> bool:
        """Drop the partition's applied offset if `generation` still owns it (else False)."""
        ...

    def applied_offsets(self, topic: str) -> dict[int, int]:
        """partition -> the last input offset whose effect is stored."""
        ...

    def liveness(self, topic: str, partitions: list[int]) -> dict[str, tuple[int, Liveness]]:
        """The liveness index (`cadence.py`) of the sources homed on these partitions:
        source id -> (its partition, its entry), as of each one's last saved state."""
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


def liveness_entry(state: SourceState) -> str:
    """The source's entry of the liveness index ('' for none: retired, or it never sent)."""
    liveness = state.liveness
    if liveness is None or liveness.cadence.last_event_at is None:
        return ""
    return liveness.to_text()


def liveness_on(
    homes: dict[str, str], entries: dict[str, str], topic: str, partitions: list[int]
) -> dict[str, tuple[int, Liveness]]:
    """The liveness index entries of the sources homed on `partitions` of `topic`."""
    wanted = {partition_label(topic, partition): partition for partition in partitions}
    found = {}
    for source_id, entry in entries.items():
        partition = wanted.get(homes.get(source_id, ""))
        if partition is None:
            continue
        try:
            found[source_id] = (partition, Liveness.from_text(entry))
        except ValueError:
            log.warning("liveness_entry_unreadable", source_id=source_id, entry=entry[:64])
    return found


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
        if client.get_connection_kwargs().get("decode_responses"):
            # Blobs are bytes, and a decoded refusal must never pass for a success.
            raise ValueError("the state store needs a Redis client with decode_responses off")
        self.client = client
        self.codec = codec
        self.namespace = f"{prefix}:{group_id}:{model_version}"
        self._checkpoint = client.register_script(_CHECKPOINT_SCRIPT)
        self._forget_applied = client.register_script(_FORGET_APPLIED_SCRIPT)

    def source_key(self, source_id: str) -> str:
        return f"{self.namespace}:source:{source_id}"

    def applied_key(self, topic: str) -> str:
        return f"{self.namespace}:applied:{topic}"

    def generation_key(self, topic: str) -> str:
        return f"{self.namespace}:generation:{topic}"

    def source_partitions_key(self) -> str:
        return f"{self.namespace}:source-partitions"

    def liveness_key(self) -> str:
        return f"{self.namespace}:liveness"

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
        pipe = self.client.pipeline(transaction=False)
        pipe.mget(keys)
        pipe.hmget(self.source_partitions_key(), source_ids)
        with _unavailable_when_redis_is_down():
            blobs, homes = pipe.execute()
        loaded = decode_stored_states(self.codec, zip(source_ids, keys, blobs, strict=True))
        loaded.homes.update(
            (source_id, home.decode())
            for source_id, home in zip(source_ids, homes, strict=True)
            if home is not None
        )
        return loaded

    def save(
        self,
        topic: str,
        applied: dict[int, AppliedAdvance],
        states: dict[str, SourceState],
        source_partitions: dict[str, int],
    ) -> None:
        """Atomically store states, their home partitions and each partition's applied offset.

        Writes nothing and raises PartitionFenced if a partition's generation moved on,
        AppliedOffsetMoved if its applied offset is not the expected one, or
        SourcePartitionConflict if a source's recorded home is another partition.
        """
        keys = [
            self.applied_key(topic),
            self.generation_key(topic),
            self.source_partitions_key(),
            self.liveness_key(),
        ]
        arguments: list[str | bytes | int] = [len(applied)]
        for partition, advance in sorted(applied.items()):
            expected = "" if advance.expected is None else str(advance.expected)
            arguments += [str(partition), str(advance.generation), expected, str(advance.offset)]
        for source_id, state in states.items():
            key = self.source_key(source_id)
            keys.append(key)
            home = partition_label(topic, source_partitions[source_id])
            arguments += [source_id, home, self.codec.encode(state, key), liveness_entry(state)]
        with _unavailable_when_redis_is_down():
            result = self._checkpoint(keys=keys, args=arguments)
        outcome, *detail = (item.decode() for item in result)
        if outcome == "ok":
            return
        if outcome == "fenced":
            raise PartitionFenced(topic, int(detail[0]), detail[1])
        if outcome == "applied_moved":
            partition = int(detail[0])
            raise AppliedOffsetMoved(topic, partition, applied[partition].expected, detail[1])
        if outcome == "source_elsewhere":
            source_id = detail[0]
            attempted = partition_label(topic, source_partitions[source_id])
            raise SourcePartitionConflict(source_id, detail[1], attempted)
        raise RuntimeError(f"unexpected checkpoint reply from Redis: {result!r}")

    def forget_applied(self, topic: str, partition: int, generation: int) -> bool:
        """Drop the partition's applied offset if `generation` still owns it (else False)."""
        keys = [self.applied_key(topic), self.generation_key(topic)]
        with _unavailable_when_redis_is_down():
            return bool(self._forget_applied(keys=keys, args=[str(partition), str(generation)]))

    def applied_offsets(self, topic: str) -> dict[int, int]:
        with _unavailable_when_redis_is_down():
            stored = self.client.hgetall(self.applied_key(topic))
        return {int(partition): int(offset) for partition, offset in stored.items()}

    def liveness(self, topic: str, partitions: list[int]) -> dict[str, tuple[int, Liveness]]:
        """The liveness index of the sources homed on these partitions of `topic`: source id
        -> (its partition, its entry). An entry this code cannot read is left out (logged):
        that source is judged again from its next frame."""
        with _unavailable_when_redis_is_down():
            pipe = self.client.pipeline(transaction=False)
            pipe.hgetall(self.source_partitions_key())
            pipe.hgetall(self.liveness_key())
            homes, entries = pipe.execute()
        return liveness_on(
            {source.decode(): home.decode() for source, home in homes.items()},
            {source.decode(): entry.decode() for source, entry in entries.items()},
            topic,
            partitions,
        )

    def load_all_sources(self) -> dict[str, SourceState]:
        """Every stored source state of this namespace (for tools and tests, not the hot path)."""
        prefix = self.source_key("")
        source_ids = [
            key.decode()[len(prefix) :] for key in self.client.scan_iter(match=prefix + "*")
        ]
        return self.load_sources(source_ids).states
