"""Detection is a leaf: numpy, scipy and river only, never torch, the rest of the worker, or I/O.

The evaluation and the calibration run without a model server, and a detector that
pulled in torch would make every import of the settings (which build detector
parameters) pay for it.
"""

from __future__ import annotations

import json
import subprocess
import sys

IMPORT_EVERY_DETECTION_MODULE = """
import importlib, json, pkgutil, sys
import framedrift.worker.detection as detection
names = [m.name for m in pkgutil.walk_packages(detection.__path__, detection.__name__ + ".")]
for name in names:
    importlib.import_module(name)
print(json.dumps({"imported": names, "loaded": sorted(sys.modules)}))
"""


def test_importing_every_detection_module_loads_no_torch_io_or_other_worker_code() -> None:
    """In a fresh interpreter, so nothing another test imported hides a dependency."""
    completed = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERY_DETECTION_MODULE],
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(completed.stdout)
    assert "framedrift.worker.detection.registry" in report["imported"]
    assert "framedrift.worker.detection.calibration" in report["imported"]
    loaded = report["loaded"]
    top_level = {name.split(".")[0] for name in loaded}
    assert not top_level & {"torch", "kafka", "redis", "structlog", "pydantic"}, top_level
    outside = [
        name
        for name in loaded
        if name.startswith("framedrift.")
        and name != "framedrift.worker"
        and not name.startswith("framedrift.worker.detection")
    ]
    assert outside == []
