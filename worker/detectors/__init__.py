"""Per-source drift detectors over the stream of scored images.

Each detector is a small class: `update(...)` feeds it, `drift_detected` tells whether
the last update made it fire, and it carries its own state as plain data for the
state codec (`worker/state_codec.py`). `SourceMonitor` runs them all for one source;
`worker/calibration.py` sets their thresholds.
"""
