"""One alarm per drift episode: the latch the detectors run with and the count calibration fits.

A test that stays positive while drift lasts must page once, not on every test: at run
time `EpisodeLatch` turns its results into alarms, and `WindowedTest` schedules a
windowed test and latches its result. The calibration simulates the same thing over
whole clean streams at once: `EpisodeCounts` says how many alarms each threshold would
have raised, and `upcrossing_episodes` builds it for the windowed tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np

from framedrift.worker.detection.plain_state import PlainState, StateFields
from framedrift.worker.detection.protocol import Direction

if TYPE_CHECKING:
    from framedrift.worker.detection.parameters import DetectorParameters
    from framedrift.worker.detection.reference import ReferenceProfile


@dataclass
class EpisodeLatch:
    """Fires on the first positive test of an episode; re-arms after a negative one.

    A windowed test keeps failing for as long as a camera stays broken; paging on every
    failure would teach people to ignore the alerts.

    >>> latch = EpisodeLatch()
    >>> [latch.observe(positive).fired for positive in (False, True, True, False, True)]
    [False, True, False, False, True]
    """

    in_drift: bool = False
    fired: bool = False

    def observe(self, positive: bool) -> EpisodeLatch:
        self.fired = positive and not self.in_drift
        self.in_drift = positive
        return self

    def quiet(self) -> None:
        """No test this update: nothing fires."""
        self.fired = False

    def to_state(self) -> PlainState:
        return {"in_drift": bool(self.in_drift), "fired": bool(self.fired)}

    @classmethod
    def from_state(cls, fields: StateFields) -> EpisodeLatch:
        return cls(in_drift=fields.boolean("in_drift"), fired=fields.boolean("fired"))


@dataclass(kw_only=True)
class WindowedTest:
    """What the windowed tests share: test every `stride` events once their window is full.

    The statistic is compared with `threshold` and the result goes through an
    `EpisodeLatch`. Subclasses say what the window is and compute the statistic.
    """

    name: ClassVar[str]
    threshold: float
    stride: int  # test every this many events: neighbouring windows overlap almost entirely
    events_since_test: int = 0
    statistic: float = 0.0  # the latest test's statistic
    episode: EpisodeLatch = field(default_factory=EpisodeLatch)

    @classmethod
    def build(
        cls,
        parameters: DetectorParameters,
        thresholds: Mapping[str, float],
        reference: ReferenceProfile,
    ) -> Self:
        """A test of the source's event window, every `test_stride` events."""
        return cls(threshold=thresholds[cls.name], stride=parameters.test_stride)

    def _test_due(self, window_full: bool) -> bool:
        """Counts one event; True when this event's window should be tested."""
        self.episode.quiet()
        self.events_since_test += 1
        if not window_full or self.events_since_test < self.stride:
            return False
        self.events_since_test = 0
        return True

    def _judge(self, statistic: float) -> None:
        self.statistic = statistic
        self.episode.observe(statistic > self.threshold)

    @property
    def fired(self) -> bool:
        return self.episode.fired

    @classmethod
    def memory_events(cls, parameters: DetectorParameters) -> int:
        return parameters.window_size

    @property
    def in_episode(self) -> bool:
        return self.episode.in_drift

    @property
    def direction(self) -> Direction | None:
        """Unknown to a test of shape or mix: the alert reads it from the window's mean."""
        return None

    def to_state(self) -> PlainState:
        return {
            "threshold": float(self.threshold),
            "stride": int(self.stride),
            "events_since_test": int(self.events_since_test),
            "statistic": float(self.statistic),
            "episode": self.episode.to_state(),
        }

    @classmethod
    def from_state(cls, fields: StateFields) -> Self:
        return cls(**cls._windowed_test_fields(fields))

    @staticmethod
    def _windowed_test_fields(fields: StateFields) -> dict[str, Any]:
        """The constructor arguments `WindowedTest` itself stores, read from `fields`."""
        return {
            "threshold": fields.number("threshold"),
            "stride": fields.integer("stride", low=1),
            "events_since_test": fields.integer("events_since_test", low=0),
            "statistic": fields.number("statistic"),
            "episode": EpisodeLatch.from_state(fields.part("episode")),
        }


class EpisodeCounts:
    """How many false-alarm episodes a threshold h would give: a step function of h.

    Each episode candidate raises an alarm for every h in [start, end).

    >>> counts = EpisodeCounts(np.array([-np.inf, 1.0]), np.array([2.0, 3.0]))
    >>> counts(np.array([0.5, 1.5, 2.5, 3.5])).tolist()
    [1, 2, 1, 0]
    """

    def __init__(self, starts: np.ndarray, ends: np.ndarray) -> None:
        self.starts = np.sort(starts)
        self.ends = np.sort(ends)

    def __call__(self, thresholds: np.ndarray) -> np.ndarray:
        started = np.searchsorted(self.starts, thresholds, side="right")
        ended = np.searchsorted(self.ends, thresholds, side="right")
        return started - ended


def upcrossing_episodes(
    statistics: np.ndarray, events_per_test: int = 1
) -> tuple[EpisodeCounts, int]:
    """Episodes of windowed tests (streams × tests), as `WindowedTest` raises them.

    Test j alarms at threshold h when its statistic is above h and test j-1's is not
    (the latch re-armed); a stream's first test alarms whenever it is above h.
    Returns the counts and how many events the tests covered.
    """
    previous = np.concatenate([np.full((len(statistics), 1), -np.inf), statistics[:, :-1]], axis=1)
    rising = statistics > previous
    return EpisodeCounts(previous[rising], statistics[rising]), statistics.size * events_per_test
