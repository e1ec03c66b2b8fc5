"""Has this source stopped sending? Its own pace, learnt, against its partition's time.

A camera that goes dark sends nothing, so nothing of its own can say so. Its partition
goes on: the other sources' frames carry the time forward. A source is *stopped* at the
first record of another source on its partition whose event time lies more than
`stopped_after` past the source's own latest frame, where `stopped_after` is
`PAUSE_FACTOR` times the longest pause it has been seen to take lately (a decaying
maximum of the gaps between its frames), and never less than the configured floor.
Judged on records of the partition, in offset order, with event times only, the
moment is the same however the records are cut into batches and however often they
are read again: a replay after a crash finds the same stop at the same record.

A stop found while the source is silenced opens its incident unannounced; it is
announced, as opened, at the partition's first record at or past the silence's end.
The partition's time at a record is its event time, but never more than the floor past
the broker's timestamp of the record: one camera whose clock runs ahead must not stop
its neighbours (the broker's timestamp is in the log, so a replay reads the same).

A source takes `MIN_GAPS` gaps to show its pace before it is judged at all, and a
partition whose every source stops (a site losing power, a broken uploader) carries no
time forward: the worker's own health rules see that one (the input falls silent).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, NamedTuple, Self

from framedrift.worker.detection.plain_state import MalformedState, PlainState, StateFields

__all__ = ["MIN_GAPS", "PAUSE_FACTOR", "Cadence", "Liveness"]

# A source is stopped after this many times its longest usual pause: a camera at 5 fps
# that stalls for a second now and then is stopped after 5 s (or the floor).
PAUSE_FACTOR = 5.0
# Per frame, the longest pause remembered shrinks by this factor: a pause seen once
# counts half as much 700 frames later, so the source's pace follows its recent habits.
PAUSE_MEMORY = 0.999
# Gaps a source must show before it is judged: its pace is unknown until then.
MIN_GAPS = 32


@dataclass
class Cadence:
    """When a source last sent, and how long it usually pauses."""

    last_event_at: float | None = None  # epoch seconds of its latest frame (the newest seen)
    longest_pause_s: float = 0.0  # decaying maximum of the gaps between its frames
    gaps: int = 0  # gaps seen, up to MIN_GAPS

    def observe(self, timestamp: float) -> None:
        """A frame at `timestamp`. A frame older than the latest (sent late) moves nothing."""
        if self.last_event_at is None:
            self.last_event_at = timestamp
            return
        if timestamp <= self.last_event_at:
            return
        gap = timestamp - self.last_event_at
        self.longest_pause_s = max(gap, self.longest_pause_s * PAUSE_MEMORY)
        self.gaps = min(self.gaps + 1, MIN_GAPS)
        self.last_event_at = timestamp

    def stopped_after(self, floor_s: float) -> float | None:
        """Seconds without a frame after which the source is stopped (None: not judged yet)."""
        if self.gaps < MIN_GAPS:
            return None
        return max(floor_s, PAUSE_FACTOR * self.longest_pause_s)

    def to_state(self) -> PlainState:
        state: PlainState = {"longest_pause_s": float(self.longest_pause_s), "gaps": self.gaps}
        if self.last_event_at is not None:
            state["last_event_at"] = float(self.last_event_at)
        return state

    @classmethod
    def from_state(cls, fields: StateFields) -> Self:
        longest = fields.number("longest_pause_s")
        if not longest >= 0.0:
            raise MalformedState(f"cadence.longest_pause_s: {longest}")
        return cls(
            last_event_at=fields.number("last_event_at")
            if "last_event_at" in fields.names()
            else None,
            longest_pause_s=longest,
            gaps=fields.integer("gaps", low=0, high=MIN_GAPS),
        )


StoppedIncident = Literal["none", "announced", "unannounced"]


class Liveness(NamedTuple):
    """What the store indexes of each source (`SourceState.liveness`), so that its
    partition's owner knows when to judge it next without loading its state: its pace,
    its stopped incident, and the end of its silence (when an operator silenced it)."""

    cadence: Cadence
    stopped: StoppedIncident
    silenced_until: float | None

    def next_check(self, floor_s: float) -> float | None:
        """The partition time after which the source must be judged again (None: not
        until it sends): its deadline while it sends; once stopped in a silence, the
        silence's end, when the stop is announced; once the stop is announced, never."""
        if self.stopped == "announced":
            return None
        if self.stopped == "unannounced":
            if self.silenced_until is None:
                return -math.inf  # the silence was lifted: announce at the next record
            # Judged at the first record at or past the end (the heap pops times below it).
            return math.nextafter(self.silenced_until, -math.inf)
        stopped_after = self.cadence.stopped_after(floor_s)
        if self.cadence.last_event_at is None or stopped_after is None:
            return None
        return self.cadence.last_event_at + stopped_after

    def to_text(self) -> str:
        cadence = self.cadence
        last = "-" if cadence.last_event_at is None else repr(cadence.last_event_at)
        until = "-" if self.silenced_until is None else repr(self.silenced_until)
        return f"{last} {cadence.longest_pause_s!r} {cadence.gaps} {self.stopped} {until}"

    @classmethod
    def from_text(cls, text: str) -> Liveness:
        """The index entry `to_text` wrote; ValueError for anything else (the index is not
        signed: a value that could stall the judgement of a partition is refused)."""
        last, longest, gaps, stopped, until = text.split()
        numbers = [float(value) for value in (last, longest, until) if value != "-"]
        if not all(math.isfinite(value) and value >= 0.0 for value in numbers):
            raise ValueError(f"liveness entry {text!r}: not finite, non-negative numbers")
        if stopped not in ("none", "announced", "unannounced") or not gaps.isdigit():
            raise ValueError(f"liveness entry {text!r}")
        cadence = Cadence(
            None if last == "-" else float(last), float(longest), min(int(gaps), MIN_GAPS)
        )
        return cls(cadence, stopped, None if until == "-" else float(until))  # type: ignore[arg-type]
