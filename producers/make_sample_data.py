"""Rebuilds the small real-image sample shipped in `producers/sample_data/`.

Run from an editable install (it writes into the package's sample_data/), naming the
folder with the full datasets:
    python -m framedrift.producers.make_sample_data ../shared/data
The sample lets the demo and the core tests run on a machine without the datasets.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from framedrift.producers.datasets import SAMPLE_DATA_DIR, load_images, write_idx

# (output stem, source dataset file, how many, seed)
SAMPLES = [
    ("fashion-mnist-reference", "fashion-mnist/train-images-idx3-ubyte.gz", 6000, 0),
    ("fashion-mnist-stream", "fashion-mnist/t10k-images-idx3-ubyte.gz", 3000, 1),
    ("mnist-novel", "mnist/t10k-images-idx3-ubyte.gz", 1000, 2),
]


def main(data_root: str) -> None:
    for stem, relative, count, seed in SAMPLES:
        dataset = load_images(Path(data_root) / relative)
        assert dataset.labels is not None
        chosen = np.sort(np.random.default_rng(seed).choice(len(dataset), count, replace=False))
        write_idx(SAMPLE_DATA_DIR / f"{stem}-images-idx3-ubyte.gz", dataset.images[chosen])
        write_idx(
            SAMPLE_DATA_DIR / f"{stem}-labels-idx1-ubyte.gz",
            dataset.labels[chosen].astype(np.uint8),
        )
        print(f"{stem}: {count} images from {relative}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m framedrift.producers.make_sample_data DATA_DIR")
    main(sys.argv[1])
