"""Count, mean and variance of a source's reconstruction errors since it was first seen."""

from __future__ import annotations

import math
from dataclasses import dataclass

from framedrift.worker.detection.plain_state import PlainState, StateFields


@dataclass
class RunningStats:
    """Welford's online algorithm: numerically stable, one pass, constant memory.

    >>> stats = RunningStats()
    >>> for error in (0.2, 0.4, 0.6):
    ...     _ = stats.update(error)
    >>> stats.count, round(stats.mean, 3), round(stats.variance, 3)
    (3, 0.4, 0.04)
    """

    count: int = 0
    mean: float = 0.0
    sum_squared_deviations: float = 0.0

    def update(self, value: float) -> RunningStats:
        self.count += 1
        delta = value - self.mean
        self.mean += delta / self.count
        self.sum_squared_deviations += delta * (value - self.mean)
        return self

    @property
    def variance(self) -> float:
        """Sample variance (n - 1 in the denominator); 0 below two values."""
        return self.sum_squared_deviations / (self.count - 1) if self.count > 1 else 0.0

    @property
    def std(self) -> float:
        return math.sqrt(self.variance)

    def to_state(self) -> PlainState:
        return {
            "count": int(self.count),
            "mean": float(self.mean),
            "sum_squared_deviations": float(self.sum_squared_deviations),
        }

    @classmethod
    def from_state(cls, fields: StateFields) -> RunningStats:
        return cls(
            count=fields.integer("count", low=0),
            mean=fields.number("mean"),
            sum_squared_deviations=fields.number("sum_squared_deviations"),
        )
