"""Turns a test that stays positive while drift lasts into one alarm per drift episode."""

from __future__ import annotations

from dataclasses import dataclass


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
