"""The last W reconstruction errors of a source, with the events they came from."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ErrorWindow:
    """A ring buffer of the most recent `capacity` errors and their event positions.

    Shared by the windowed detectors (KS test, relative-increase rule), so the errors
    are stored once per source.

    >>> window = ErrorWindow(capacity=3)
    >>> for offset, error in enumerate([0.1, 0.2, 0.3, 0.4]):
    ...     window.append(error, f"e{offset}", 0, offset, 0.0)
    >>> window.errors().tolist(), window.oldest_index(), window.is_full
    ([0.2, 0.3, 0.4], 1, True)
    """

    capacity: int
    size: int = 0
    next_slot: int = 0
    # Parallel rings, one slot per event, in arrival order starting at `oldest_index()`.
    error_ring: np.ndarray = field(default=None)  # type: ignore[assignment]
    offset_ring: np.ndarray = field(default=None)  # type: ignore[assignment]
    partition_ring: np.ndarray = field(default=None)  # type: ignore[assignment]
    timestamp_ring: np.ndarray = field(default=None)  # type: ignore[assignment]  # epoch seconds
    event_ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.error_ring is None:
            self.error_ring = np.zeros(self.capacity, dtype=np.float64)
            self.offset_ring = np.zeros(self.capacity, dtype=np.int64)
            self.partition_ring = np.zeros(self.capacity, dtype=np.int32)
            self.timestamp_ring = np.zeros(self.capacity, dtype=np.float64)
            self.event_ids = [""] * self.capacity

    @property
    def is_full(self) -> bool:
        return self.size == self.capacity

    def append(
        self, error: float, event_id: str, partition: int, offset: int, timestamp: float
    ) -> None:
        slot = self.next_slot
        self.error_ring[slot] = error
        self.offset_ring[slot] = offset
        self.partition_ring[slot] = partition
        self.timestamp_ring[slot] = timestamp
        self.event_ids[slot] = event_id
        self.next_slot = (slot + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def oldest_index(self) -> int:
        return self.next_slot if self.is_full else 0

    def errors(self) -> np.ndarray:
        """The errors in arrival order (a copy)."""
        if not self.is_full:
            return self.error_ring[: self.size].copy()
        return np.roll(self.error_ring, -self.next_slot)
