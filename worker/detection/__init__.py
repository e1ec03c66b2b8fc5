"""Per-source drift detection: the detectors, what they compare against, and their calibration.

A leaf: numpy, scipy and river only, never torch, the model or any I/O (a test imports
every module in a fresh interpreter and finds none of them). The model feeds it
`ImageScores`; the stream runtime keeps its `SourceState` in Redis.

Where things are: `protocol.py` says what a detector is, `registry.py` lists them, one
module per detector holds its class and its clean-stream simulation, `calibration.py`
sets their thresholds, `monitor.py` runs them for a source. Nothing is re-exported
here: the settings import `parameters.py` at start-up and must not load the rest.
"""
