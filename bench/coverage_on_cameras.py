"""The coverage test's statistic on the camera fleet's time-ordered streams: clean vs unseen.

    python bench/coverage_on_cameras.py [--model artifacts/camera-fleet-64-strided.pt]
                                        [--frames 20000] [--unseen-frames 4000]

The fleet model (`framedrift evaluate --fleet-only` trains and caches it) was trained on
cameras 0 to 5 of the evaluation's fleet; cameras 6 and 7 of the same fleet look at
photographs it never saw. For each camera, from frame 0 of its day, this prints the
largest `coverage.beyond_upper_tail` of any 200-frame window median (tested every 10
frames), in error and in latent distance: how close a clean camera comes to the coverage
test's `OUTSIDE_BY`, and how far past it an unseen one goes. The README's coverage
figures come from it (about 35 minutes on 2 cores at the defaults).
"""

from __future__ import annotations

import argparse
import multiprocessing
from pathlib import Path

import numpy as np

from framedrift.producers.camera_fleet import CameraFleet, DayCycle
from framedrift.worker.detection.coverage import OUTSIDE_BY, beyond_upper_tail
from framedrift.worker.evaluation.fleet import (
    DEFAULT_FLEET_MODEL,
    SCORING_BATCH,
    FleetSize,
)
from framedrift.worker.model.artifact import ModelArtifact

WINDOW = 200  # FRAMEDRIFT_WINDOW_SIZE's default
TRAINED_CAMERAS = FleetSize().cameras


def worst_windows(job: tuple[Path, int, int]) -> tuple[int, float, float]:
    """A camera's largest window statistic over `frames` frames, in error and latent distance."""
    model, camera, frames = job
    artifact = ModelArtifact.load(model)
    scorer = artifact.scorer(torch_threads=1)
    reference = artifact.reference_profile()
    size = FleetSize()
    fleet = CameraFleet(8, seed=size.seed, day=DayCycle(period=size.day_period))
    errors, distances = [], []
    stream = fleet.frames(camera, 0, frames)
    for start in range(0, frames, SCORING_BATCH):
        chunk = [next(stream) for _ in range(min(SCORING_BATCH, frames - start))]
        scores = scorer.score_frames(chunk).scores
        errors += scores.error.tolist()
        distances += scores.latent_distance.tolist()

    def worst(values: list[float], sorted_reference: np.ndarray) -> float:
        windows = np.lib.stride_tricks.sliding_window_view(np.array(values), WINDOW)[::10]
        medians = np.median(windows, axis=1)
        return max(beyond_upper_tail(float(m), sorted_reference) for m in medians)

    return (
        camera,
        worst(errors, reference.sorted_errors),
        worst(distances, reference.sorted_latent_distances),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_FLEET_MODEL)
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--unseen-frames", type=int, default=4_000)
    args = parser.parse_args()
    jobs = [(args.model, camera, args.frames) for camera in range(TRAINED_CAMERAS)]
    jobs += [(args.model, camera, args.unseen_frames) for camera in (6, 7)]
    print(f"coverage fires beyond {OUTSIDE_BY} (spreads beyond the baseline's 99th percentile)")
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        for camera, error, distance in pool.imap_unordered(worst_windows, jobs):
            kind = "trained" if camera < TRAINED_CAMERAS else "unseen "
            print(
                f"camera {camera} ({kind}): worst window error {error:+.2f}, "
                f"latent distance {distance:+.2f}"
            )


if __name__ == "__main__":
    main()
