"""ADWIN on a source's reconstruction errors: finds a change in their mean, up or down."""

from __future__ import annotations

from river.drift import ADWIN


class AdwinDetector:
    """ADaptive WINdowing (Bifet & Gavaldà, 2007), as implemented by `river.drift.ADWIN`.

    ADWIN keeps a variable-length window of recent values and drops its older part as
    soon as the two parts' means differ by more than a Hoeffding-style bound. `delta`
    is its false-alarm control: the bound holds with probability 1 - delta per check,
    so a smaller delta means fewer false alarms and a slightly later detection. It
    needs no baseline: it compares the source with its own past.

    State: the river object itself, pickled by the state codec inside a signed blob.

    >>> detector = AdwinDetector(delta=0.002)
    >>> stream = [0.3] * 500 + [0.6] * 200
    >>> fired = [i for i, x in enumerate(stream) if detector.update(x).drift_detected]
    >>> 500 <= fired[0] < 600
    True
    """

    def __init__(self, delta: float) -> None:
        self._adwin = ADWIN(delta=delta)
        self._mean_before = 0.0

    def update(self, error: float) -> AdwinDetector:
        self._mean_before = self._adwin.estimation
        self._adwin.update(error)
        return self

    @property
    def drift_detected(self) -> bool:
        return bool(self._adwin.drift_detected)

    @property
    def mean_before(self) -> float:
        """ADWIN's mean estimate just before the last update: the level the source left."""
        return float(self._mean_before)

    @property
    def width(self) -> int:
        """How many of the latest errors ADWIN's window holds."""
        return int(self._adwin.width)

    @property
    def estimation(self) -> float:
        """ADWIN's mean estimate over its current window."""
        return float(self._adwin.estimation)
