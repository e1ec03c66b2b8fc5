"""Calibrated thresholds across ERTs: monotone, and how far the tail extrapolation holds.

    python bench/calibration_tail.py MODEL [--simulated-events N]

Prints each calibrated detector's threshold for ERTs from 10^4 to 10^9 (and whether
10^10 is refused), then checks the extrapolation where it can be checked: thresholds
from a simulation ten times smaller, extrapolated, against the full simulation's.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from framedrift.worker.detection.calibration import CalibrationRefused, calibrate
from framedrift.worker.model.artifact import ModelArtifact

ERTS = [10**4, 10**5, 10**6, 10**7, 10**8, 4 * 10**8, 10**9, 10**10]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--simulated-events", type=int, default=10_000_000)
    args = parser.parse_args()
    artifact = ModelArtifact.load(args.model)
    profile = artifact.reference_profile()
    base = artifact.calibration.parameters
    print(f"model {args.model.name}, {args.simulated_events:,} simulated clean events")
    for ert in ERTS:
        parameters = dataclasses.replace(base, ert=ert)
        started = time.perf_counter()
        try:
            thresholds = calibrate(profile, parameters, args.simulated_events).thresholds
        except CalibrationRefused as error:
            print(f"ERT {ert:>7.0e}: refused ({error.parameter}): {error}")
            continue
        cells = "  ".join(f"{name} {value:8.4f}" for name, value in thresholds.items())
        print(f"ERT {ert:>7.0e}: {cells}  ({time.perf_counter() - started:.1f} s)")

    print("extrapolated from a tenth of the events vs fitted on all of them:")
    for ert in (10**6, 10**7):
        parameters = dataclasses.replace(base, ert=ert)
        small = calibrate(profile, parameters, args.simulated_events // 10).thresholds
        full = calibrate(profile, parameters, args.simulated_events).thresholds
        cells = "  ".join(
            f"{name} {small[name]:.3f}/{full[name]:.3f} ({small[name] / full[name] - 1:+.1%})"
            for name in full
        )
        print(f"ERT {ert:>7.0e}: {cells}")


if __name__ == "__main__":
    main()
