"""Page's CUSUM on standardised per-image scores: the detector that reacts within events."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Cusum:
    """Accumulates evidence of a shift in standardised scores z (N(0, 1) without drift).

    upper = max(0, upper + z - slack) grows while scores run high, lower the same for
    low scores (two-sided only). Each event far out in the tail adds several units, so
    a strong drift crosses the threshold within a handful of events, while a clean
    stream's sums keep falling back to zero. `slack` is half the shift (in standard
    deviations) it is tuned for; the threshold comes from calibration (`worker/calibration.py`).

    One alarm per excursion: after firing it stays quiet until both sums are back at
    zero, so a camera that stays broken is not paged again and again. The sums are
    capped at twice the threshold so that the detector re-arms soon after drift ends.

    >>> cusum = Cusum(slack=0.5, threshold=5.0)
    >>> [cusum.update(z).drift_detected for z in (0.1, 3.0, 3.0, 3.0, 3.0)]
    [False, False, False, True, False]
    """

    slack: float
    threshold: float
    two_sided: bool = True
    upper: float = 0.0
    lower: float = 0.0
    in_drift: bool = False
    fired: bool = False

    def update(self, z: float) -> Cusum:
        cap = 2.0 * self.threshold
        self.upper = min(max(0.0, self.upper + z - self.slack), cap)
        if self.two_sided:
            self.lower = min(max(0.0, self.lower - z - self.slack), cap)
        self.fired = self.statistic > self.threshold and not self.in_drift
        if self.fired:
            self.in_drift = True
        elif self.statistic == 0.0:
            self.in_drift = False
        return self

    @property
    def statistic(self) -> float:
        return max(self.upper, self.lower)

    @property
    def direction(self) -> str:
        """Which sum is larger: 'up' (scores run high) or 'down'."""
        return "down" if self.lower > self.upper else "up"

    @property
    def drift_detected(self) -> bool:
        return self.fired
