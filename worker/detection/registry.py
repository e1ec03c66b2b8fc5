"""Every detector a source may run, in the order it runs them: the one list of detector names.

The state (`monitor.SourceState`) builds one of each, calibration sets a threshold for
each calibrated one, the evaluation reports each, and the alert schema's
`DetectorName` must list the same names (a test compares: `schemas/` imports nothing
of the worker).
"""

from __future__ import annotations

from typing import cast

from framedrift.worker.detection.adwin import Adwin
from framedrift.worker.detection.coverage import Coverage
from framedrift.worker.detection.cusum import ErrorCusum, LatentCusum
from framedrift.worker.detection.ks import KsTest
from framedrift.worker.detection.latent_mix import LatentMix
from framedrift.worker.detection.parameters import SourceKind
from framedrift.worker.detection.protocol import CalibratedDetector, Detector
from framedrift.worker.detection.relative_increase import RelativeIncrease

# Alarms of one event are reported in this order: the fast CUSUMs first.
DETECTORS: tuple[type[Detector], ...] = (
    ErrorCusum,
    LatentCusum,
    KsTest,
    RelativeIncrease,
    LatentMix,
    Adwin,
    Coverage,
)
CALIBRATED_DETECTORS = cast(
    tuple[type[CalibratedDetector], ...], tuple(d for d in DETECTORS if d.calibrated)
)
DETECTOR_NAMES = tuple(detector.name for detector in DETECTORS)
CALIBRATED_DETECTOR_NAMES = tuple(detector.name for detector in CALIBRATED_DETECTORS)

# The detectors that answer the out-of-domain question for each kind of source. All but
# `Coverage` assume a clean source's events are independent draws of the validation
# images (the calibrated ones are set on such streams; ADWIN takes a level shift of the
# source's own errors for a change); a fixed camera's clean stream is nothing like that
# (one scene, in time order, following the light), so on cameras they would page on
# every clean source, and only the coverage test runs.
OUT_OF_DOMAIN_DETECTORS: dict[SourceKind, tuple[str, ...]] = {
    "samples": DETECTOR_NAMES,
    "cameras": (Coverage.name,),
}
