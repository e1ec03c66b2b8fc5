"""The detector settings a calibration depends on.

Imports nothing heavy: the settings model builds these at start-up, before the command
line has installed its stop handler, so it must stay quick to import.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class DetectorParameters:
    """The settings a calibration depends on."""

    ert: int
    window_size: int
    test_stride: int
    latent_window: int
    cusum_slack: float
    adwin_delta: float

    def __post_init__(self) -> None:
        if self.latent_window % self.test_stride:
            raise ValueError("latent_window must be a multiple of test_stride")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
