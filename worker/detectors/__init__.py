"""Per-source drift detectors over the reconstruction-error stream.

Each detector is a small class: `update(...)` feeds it, `drift_detected` tells whether
the last update made it fire, and it carries its own state as plain data for the
state codec (`worker/state_codec.py`). `SourceMonitor` runs them all for one source.
"""

from worker.detectors.adwin import AdwinDetector
from worker.detectors.ks import KSWindowTest
from worker.detectors.monitor import DetectorFiring, EventRef, MonitorConfig, SourceMonitor
from worker.detectors.relative_increase import RelativeIncreaseRule
from worker.detectors.running_stats import RunningStats
from worker.detectors.window import ErrorWindow

__all__ = [
    "AdwinDetector",
    "DetectorFiring",
    "ErrorWindow",
    "EventRef",
    "KSWindowTest",
    "MonitorConfig",
    "RelativeIncreaseRule",
    "RunningStats",
    "SourceMonitor",
]
