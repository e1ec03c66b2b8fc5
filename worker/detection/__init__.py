"""Per-source drift detection: the detectors, what they compare against, and their calibration.

A leaf: numpy, scipy and river only, never torch, the model or any I/O (a test imports
it in a fresh interpreter and finds no torch). The model feeds it `ImageScores`; the
stream runtime keeps its `SourceState` in Redis.
"""
