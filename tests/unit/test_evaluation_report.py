"""The Fashion-MNIST evaluation's report names every detector of the registry."""

from __future__ import annotations

from framedrift.worker.detection.registry import DETECTOR_NAMES
from framedrift.worker.evaluation.evaluate import detector_rows
from tests.detector_fixtures import synthetic_config


def test_the_report_has_a_row_for_every_detector_calibrated_or_not() -> None:
    calibration = synthetic_config().calibration.to_dict()
    everything = {"events": 1000, "run_length_by_detector": dict.fromkeys(DETECTOR_NAMES)}
    rows = detector_rows(calibration, everything)
    assert [row.split(" | ")[0].removeprefix("| ") for row in rows] == list(DETECTOR_NAMES)
    assert all("> 1,000 (no alarm)" in row for row in rows)
