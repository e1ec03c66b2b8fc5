"""ADWIN on a source's reconstruction errors: finds a change in their mean, up or down."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Self

import numpy as np
import river
from river.drift import ADWIN

from framedrift.worker.detection.parameters import DetectorParameters
from framedrift.worker.detection.plain_state import MalformedState, PlainState, StateFields
from framedrift.worker.detection.protocol import Direction
from framedrift.worker.detection.reference import ReferenceProfile
from framedrift.worker.detection.scores import ScoredImage
from framedrift.worker.detection.window import EventWindow

# ADWIN's window is a few buckets per power of two of its width: kilobytes, even after years.
_MAX_WINDOWING_BYTES = 1 << 20


class Adwin:
    """ADaptive WINdowing (Bifet & Gavaldà, 2007), as implemented by `river.drift.ADWIN`.

    ADWIN keeps a variable-length window of recent errors and drops its older part as
    soon as the two parts' means differ by more than a Hoeffding-style bound. `delta`
    is its false-alarm control: the bound holds with probability 1 - delta per check,
    so a smaller delta means fewer false alarms and a slightly later detection. It
    needs no baseline: it compares the source with its own past. Not calibrated: its
    bound depends on the sub-window sizes, so calibration measures its false-alarm
    rate on clean streams (`clean_alarms`) and leaves the rest of the budget to the
    others.

    Its statistic is the change of ADWIN's mean estimate at the latest update: at an
    alarm, the level after the cut minus the level the source left.

    State: the river wrapper's parameters and its Rust helper's own serialization, which
    only river's deserializer reads (no code runs); a state written by another river
    version is refused, as its helper's byte layout may differ.

    >>> detector = Adwin(delta=0.002)
    >>> stream = [0.3] * 500 + [0.6] * 200
    >>> fired = [i for i, x in enumerate(stream) if detector.observe(x).fired]
    >>> 500 <= fired[0] < 600, detector.direction
    (True, 'up')
    """

    name: ClassVar[str] = "adwin"
    calibrated: ClassVar[bool] = False

    def __init__(self, delta: float) -> None:
        self._adwin = ADWIN(delta=delta)
        self._mean_before = 0.0

    @classmethod
    def build(
        cls,
        parameters: DetectorParameters,
        thresholds: Mapping[str, float],
        reference: ReferenceProfile,
    ) -> Self:
        return cls(parameters.adwin_delta)

    def update(self, image: ScoredImage, window: EventWindow, reference: ReferenceProfile) -> Self:
        return self.observe(image.error)

    def observe(self, error: float) -> Self:
        self._mean_before = self._adwin.estimation
        self._adwin.update(error)
        return self

    @property
    def fired(self) -> bool:
        return bool(self._adwin.drift_detected)

    @classmethod
    def memory_events(cls, parameters: DetectorParameters) -> int:
        """0: its window adapts; a level moving back after a drift is a new point alarm."""
        return 0

    @property
    def in_episode(self) -> bool:
        """False: ADWIN's alarm is a point (it drops the older part of its window)."""
        return False

    @property
    def statistic(self) -> float:
        """ADWIN's mean estimate after the latest update minus before it."""
        return self.estimation - self.mean_before

    @property
    def threshold(self) -> float | None:
        """None: ADWIN's bound depends on the sizes of the two sub-windows it compared."""
        return None

    @property
    def direction(self) -> Direction | None:
        return "up" if self.statistic >= 0.0 else "down"

    @property
    def mean_before(self) -> float:
        """ADWIN's mean estimate just before the latest update: the level the source left."""
        return float(self._mean_before)

    @property
    def width(self) -> int:
        """How many of the latest errors ADWIN's window holds."""
        return int(self._adwin.width)

    @property
    def estimation(self) -> float:
        """ADWIN's mean estimate over its current window."""
        return float(self._adwin.estimation)

    def to_state(self) -> PlainState:
        adwin = self._adwin
        return {
            "river_version": river.__version__,
            "delta": float(adwin.delta),
            "clock": int(adwin.clock),
            "max_buckets": int(adwin.max_buckets),
            "min_window_length": int(adwin.min_window_length),
            "grace_period": int(adwin.grace_period),
            "drift_detected": bool(adwin.drift_detected),
            "mean_before": float(self._mean_before),
            # The Rust helper's own serialisation of its state (its `__getstate__`): plain bytes.
            "windowing": np.frombuffer(adwin._helper.__getstate__(), dtype=np.uint8),
        }

    @classmethod
    def from_state(cls, fields: StateFields) -> Self:
        written_by = fields.text("river_version")
        if written_by != river.__version__:
            raise MalformedState(
                f"adwin written by river {written_by}, this is {river.__version__}"
            )
        adwin = ADWIN(
            delta=fields.number("delta"),
            clock=fields.integer("clock", low=1),
            max_buckets=fields.integer("max_buckets", low=1),
            min_window_length=fields.integer("min_window_length", low=1),
            grace_period=fields.integer("grace_period", low=0),
        )
        windowing = fields.octets("windowing", _MAX_WINDOWING_BYTES)
        try:
            adwin._helper.__setstate__(windowing)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as error:  # a Rust panic is a BaseException
            raise MalformedState(f"adwin window does not load: {error}") from None
        adwin._drift_detected = fields.boolean("drift_detected")
        detector = cls.__new__(cls)  # not `cls(delta)`: that builds a river ADWIN to discard
        detector._adwin = adwin
        detector._mean_before = fields.number("mean_before")
        return detector

    @staticmethod
    def clean_alarms(errors: np.ndarray, parameters: DetectorParameters) -> int:
        """ADWIN's alarms on clean streams of errors (streams × events), each from a fresh start.

        The same river detector that `observe` feeds, without the wrapper's bookkeeping:
        it runs one event at a time, and calibration feeds it a million.
        """
        alarms = 0
        for stream in errors:
            adwin = ADWIN(delta=parameters.adwin_delta)
            for error in stream.tolist():
                adwin.update(error)
                alarms += adwin.drift_detected
        return alarms
