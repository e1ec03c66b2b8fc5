"""The last W events of a source: their per-image signals and where they came from."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from framedrift.worker.detection.plain_state import MalformedState, PlainState, StateFields
from framedrift.worker.detection.scores import SIGNALS


def signal_dtype(signal: str) -> type[np.floating]:
    """Errors in full precision: the KS test ranks them against the baseline."""
    return np.float64 if signal == "error" else np.float32


@dataclass
class EventWindow:
    """Ring buffers of the most recent `capacity` events' signals and positions.

    Shared by the windowed detectors (KS test, relative-increase rule) and the alerts,
    which report how each signal's window mean moved against the baseline.

    >>> window = EventWindow(capacity=3)
    >>> for offset, error in enumerate([0.1, 0.2, 0.3, 0.4]):
    ...     window.append({"error": error}, f"e{offset}", 0, offset, 0.0)
    >>> window.values("error").tolist(), window.oldest_index(), window.is_full
    ([0.2, 0.3, 0.4], 1, True)
    """

    capacity: int
    size: int = 0
    next_slot: int = 0
    # One ring per signal and per event coordinate; slot order starts at `oldest_index()`.
    signal_rings: dict[str, np.ndarray] = field(default_factory=dict)
    offset_ring: np.ndarray = field(default=None)  # type: ignore[assignment]
    partition_ring: np.ndarray = field(default=None)  # type: ignore[assignment]
    timestamp_ring: np.ndarray = field(default=None)  # type: ignore[assignment]  # epoch seconds
    event_ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.signal_rings:
            self.signal_rings = {
                name: np.zeros(self.capacity, signal_dtype(name)) for name in SIGNALS
            }
            self.offset_ring = np.zeros(self.capacity, dtype=np.int64)
            self.partition_ring = np.zeros(self.capacity, dtype=np.int32)
            self.timestamp_ring = np.zeros(self.capacity, dtype=np.float64)
            self.event_ids = [""] * self.capacity

    @property
    def is_full(self) -> bool:
        return self.size == self.capacity

    def append(
        self,
        signals: dict[str, float],
        event_id: str,
        partition: int,
        offset: int,
        timestamp: float,
    ) -> None:
        slot = self.next_slot
        for name, value in signals.items():
            self.signal_rings[name][slot] = value
        self.offset_ring[slot] = offset
        self.partition_ring[slot] = partition
        self.timestamp_ring[slot] = timestamp
        self.event_ids[slot] = event_id
        self.next_slot = (slot + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def oldest_index(self) -> int:
        return self.next_slot if self.is_full else 0

    def values(self, signal: str) -> np.ndarray:
        """One signal's values in arrival order (a copy)."""
        ring = self.signal_rings[signal]
        if not self.is_full:
            return ring[: self.size].copy()
        return np.roll(ring, -self.next_slot)

    def mean(self, signal: str) -> float:
        """A signal's mean over the window (any order will do for a mean)."""
        return float(self.signal_rings[signal][: self.size].mean())

    def to_state(self) -> PlainState:
        return {
            "capacity": int(self.capacity),
            "size": int(self.size),
            "next_slot": int(self.next_slot),
            "signal_rings": dict(self.signal_rings),
            "offset_ring": self.offset_ring,
            "partition_ring": self.partition_ring,
            "timestamp_ring": self.timestamp_ring,
            "event_ids": list(self.event_ids),
        }

    @classmethod
    def from_state(cls, fields: StateFields) -> EventWindow:
        capacity = fields.integer("capacity", low=1)
        rings = fields.part("signal_rings")
        if rings.names() != list(SIGNALS):
            raise MalformedState(f"window signals {rings.names()}, this code has {list(SIGNALS)}")
        return cls(
            capacity=capacity,
            size=fields.integer("size", low=0, high=capacity),
            next_slot=fields.integer("next_slot", low=0, high=capacity - 1),
            signal_rings={
                name: rings.array(name, signal_dtype(name), (capacity,)) for name in SIGNALS
            },
            offset_ring=fields.array("offset_ring", np.int64, (capacity,)),
            partition_ring=fields.array("partition_ring", np.int32, (capacity,)),
            timestamp_ring=fields.array("timestamp_ring", np.float64, (capacity,)),
            event_ids=fields.texts("event_ids", capacity),
        )
