"""What every detector is to the rest of the service: a name, an update, a statistic, a verdict.

The monitor runs the registry's detectors through this interface only, so adding a
detector means writing one class and listing it in `registry.py`; the state, the
calibration, the alert schema's detector names and the evaluation follow from there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol, Self

if TYPE_CHECKING:
    import numpy as np

    from framedrift.worker.detection.episode import EpisodeCounts
    from framedrift.worker.detection.parameters import DetectorParameters
    from framedrift.worker.detection.plain_state import PlainState, StateFields
    from framedrift.worker.detection.reference import ReferenceProfile
    from framedrift.worker.detection.scores import ScoredImage
    from framedrift.worker.detection.window import EventWindow

Direction = Literal["up", "down"]


class Detector(Protocol):
    """One change detector on one source, fed one image at a time.

    Its attributes are its whole state, which `to_state` exports as plain values and
    `from_state` rebuilds; it keeps nothing of the reference (that comes with every
    update) and little else.
    """

    name: ClassVar[str]  # how alerts, thresholds and the evaluation call it
    calibrated: ClassVar[bool]  # whether its threshold comes from `calibration.calibrate`

    @classmethod
    def build(
        cls,
        parameters: DetectorParameters,
        thresholds: Mapping[str, float],
        reference: ReferenceProfile,
    ) -> Self:
        """A fresh detector; a calibrated one takes `thresholds[name]`."""
        ...

    def update(self, image: ScoredImage, window: EventWindow, reference: ReferenceProfile) -> Self:
        """Takes the source's next image; `window` already holds it."""
        ...

    def to_state(self) -> PlainState:
        """Its state as plain values (`plain_state.py`): what the state store keeps."""
        ...

    @classmethod
    def from_state(cls, fields: StateFields) -> Self:
        """The detector `to_state` described, or a `MalformedState` saying what is off."""
        ...

    @property
    def statistic(self) -> float:
        """What it measured at its latest test, in the unit of its threshold."""
        ...

    @property
    def threshold(self) -> float | None:
        """What `statistic` is compared with; None where the bound is not one number."""
        ...

    @property
    def direction(self) -> Direction | None:
        """Which way the reconstruction error moved, where the detector itself can tell."""
        ...

    @property
    def fired(self) -> bool:
        """Whether the latest update raised an alarm (at most once per drift episode)."""
        ...

    @classmethod
    def memory_events(cls, parameters: DetectorParameters) -> int:
        """How many of the source's latest events its statistic still weighs (its window;
        0 where `in_episode` already says when it is done with an alarm): an incident
        does not resolve before that many events have passed since its last alarm."""
        ...

    @property
    def in_episode(self) -> bool:
        """Whether the episode of its latest alarm still lasts (it has not re-armed); False
        for a detector whose alarms are points in time. An incident stays open while it does."""
        ...


class CalibratedDetector(Detector, Protocol):
    """A detector whose threshold is set by simulating clean streams (`calibration.py`)."""

    # Whether the alarms its statistic gives depend on its own threshold (the CUSUM caps
    # its sums at a multiple of it), so that calibration must count again at the fit.
    dynamics_depend_on_threshold: ClassVar[bool]

    @classmethod
    def clean_episodes(
        cls,
        reference: ReferenceProfile,
        rows: np.ndarray,
        parameters: DetectorParameters,
        threshold: float | None = None,
    ) -> tuple[EpisodeCounts, int]:
        """Its alarm episodes on simulated clean streams, as a function of the threshold.

        `rows` (streams × events) index the reference's scores. Computed for all
        streams at once, exactly as `update` computes them event by event; where the
        dynamics depend on the threshold, the counts are exact at `threshold` (None:
        as if it were infinite). Returns the counts and how many events they cover.
        """
        ...
