"""The detector settings a calibration depends on.

Imports nothing heavy: the settings model builds these at start-up, before the command
line has installed its stop handler, so it must stay quick to import.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

# What a source is, which decides how the out-of-domain question is asked of it
# (`registry.OUT_OF_DOMAIN_DETECTORS`): `samples`, a clean source's events are independent
# draws of images like the model's training data (an upload pipeline, a shuffled
# dataset); `cameras`, each source is a fixed camera sending its own scene in time order.
SourceKind = Literal["samples", "cameras"]


def latent_window_in_strides(latent_window: int, test_stride: int) -> bool:
    """Whether the latent-mix window is a whole number of test strides.

    Calibration counts prototypes per stride-long block and sums blocks into windows,
    which only matches the detector when the window is made of whole blocks.
    """
    return latent_window % test_stride == 0


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
        if not latent_window_in_strides(self.latent_window, self.test_stride):
            raise ValueError(
                f"latent_window ({self.latent_window}) must be a multiple of "
                f"test_stride ({self.test_stride})"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
