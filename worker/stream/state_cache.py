"""The states this worker last saved, kept in memory so that its next batches skip Redis.

A worker that owns a partition is the only writer of its sources' states (the store
fences every other), so what it saved is what Redis holds, as long as it keeps the
partition. Keeping those states saves, per source and batch, a read of its blob (about
45 kB), the signature check and the decoding: half of the store's traffic when a batch's
events are each another source's, and 518 -> 620 events/s with 10,000 sources on the
bench (README, Throughput).

How it stays the store's copy:
- A state is put here only once the checkpoint that saved it succeeded.
- A batch takes its sources' states out, so a batch that is not saved (a refused write,
  Redis down, a publish held back) leaves nothing of its changes behind: those sources
  are read from the store again.
- A partition's states are dropped when it is claimed (another owner may have written
  since), revoked or refused a write.

The cache holds at most `capacity` states, the least recently saved leaving first: a
state takes about as much memory as its blob.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import NamedTuple

from framedrift.worker.detection.monitor import SourceState


class CachedState(NamedTuple):
    partition: int  # the source's home, whose owner this worker is
    state: SourceState


class StateCache:
    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must be 0 or more, got {capacity}")
        self.capacity = capacity
        self._entries: OrderedDict[str, CachedState] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def take(self, source_ids: Iterable[str]) -> dict[str, CachedState]:
        """The kept states of these sources, removed from the cache (see the module's
        docstring): those it does not hold are to be read from the store."""
        return {
            source_id: self._entries.pop(source_id)
            for source_id in source_ids
            if source_id in self._entries
        }

    def put(self, source_id: str, cached: CachedState) -> None:
        """Keep a state the store has just saved, evicting the least recently saved."""
        if self.capacity == 0:
            return
        self._entries.pop(source_id, None)
        self._entries[source_id] = cached
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def forget(self, partitions: set[int]) -> None:
        """Drop the states of these partitions' sources."""
        for source_id in [s for s, kept in self._entries.items() if kept.partition in partitions]:
            del self._entries[source_id]
