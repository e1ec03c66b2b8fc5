"""Capped exponential waits while Kafka or Redis is away."""

from __future__ import annotations

import time
from collections.abc import Callable


class Backoff:
    """Each wait doubles the next one, up to `maximum_s`; the first success resets it.

    >>> backoff = Backoff(maximum_s=0.4, first_s=0.1, sleep=lambda seconds: None)
    >>> [backoff.wait() for _ in range(4)]
    [0.1, 0.2, 0.4, 0.4]
    """

    def __init__(
        self, maximum_s: float, first_s: float = 0.1, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.first_s, self.maximum_s = first_s, maximum_s
        self.next_s = first_s
        self._sleep = sleep

    def wait(self) -> float:
        waited = self.step()
        self._sleep(waited)
        return waited

    def step(self) -> float:
        """The wait due now, doubling the next one, for a caller that does not sleep (a
        partition paused until then while the others go on)."""
        due = self.next_s
        self.next_s = min(self.next_s * 2, self.maximum_s)
        return due

    def reset(self) -> None:
        self.next_s = self.first_s
