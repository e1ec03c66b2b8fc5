"""Reads reference and stream images from IDX (MNIST format, .gz or raw), .npz, or a folder.

Every reader returns a `LabelledImages`: uint8 images (N, H, W) or (N, H, W, C), and
integer labels when the source has them (IDX label file beside the images, `labels`
in the npz, or one sub-folder per class).
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from tqdm import tqdm

IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
SAMPLE_DATA_DIR = Path(__file__).parent / "sample_data"


class DatasetError(ValueError):
    """A dataset file or folder could not be read as images."""


@dataclass(frozen=True)
class LabelledImages:
    images: np.ndarray
    labels: np.ndarray | None

    def __len__(self) -> int:
        return len(self.images)


def _open_maybe_gzip(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
        return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except (OSError, EOFError) as error:  # unreadable, or a corrupt or truncated .gz
        raise DatasetError(f"{path}: cannot read: {error}") from error


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (big-endian header, magic 2051 images / 2049 labels) as a uint8 array."""
    data = _open_maybe_gzip(path)
    if len(data) < 8:
        raise DatasetError(f"{path}: too short to be an IDX file")
    magic, count = struct.unpack(">II", data[:8])
    dimensions = {IDX_IMAGES_MAGIC: 3, IDX_LABELS_MAGIC: 1}.get(magic)
    if dimensions is None:
        raise DatasetError(f"{path}: IDX magic {magic}, expected 2051 or 2049")
    header = 4 + 4 * dimensions
    if len(data) < header:
        raise DatasetError(f"{path}: IDX header cut short")
    shape = (count, *struct.unpack(f">{dimensions - 1}I", data[8:header]))
    expected = int(np.prod(shape))
    if len(data) - header != expected:
        raise DatasetError(
            f"{path}: header says {expected} bytes of data, found {len(data) - header}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _labels_beside(images_path: Path) -> Path | None:
    for old, new in (("images-idx3", "labels-idx1"), ("images", "labels")):
        if old in images_path.name:
            candidate = images_path.with_name(images_path.name.replace(old, new))
            if candidate.is_file():
                return candidate
    return None


# What a folder's images are kept as, each as it is read: a picture that `keep` returns.
Keep = Callable[[np.ndarray], np.ndarray]


def _read_folder(
    folder: Path, mode: Literal["L", "RGB"] | None, keep: Keep | None
) -> LabelledImages:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetError(f"{folder}: no .png, .jpg or .jpeg files")
    class_names = sorted({p.parent.name for p in files if p.parent != folder})
    images = []
    for file in tqdm(files, desc=f"reading {folder}", unit="image", disable=len(files) < 500):
        try:
            with Image.open(file) as image:
                wanted = mode or ("L" if image.mode in ("L", "1", "P") else "RGB")
                pixels = np.asarray(image.convert(wanted))
        except OSError as error:  # PIL's UnidentifiedImageError is one
            raise DatasetError(f"{file}: not a readable image: {error}") from error
        images.append(keep(pixels) if keep is not None else pixels)
    if len({image.shape for image in images}) != 1:
        sizes = sorted({"×".join(map(str, image.shape)) for image in images})
        raise DatasetError(
            f"{folder}: images differ in size or channels ({', '.join(sizes[:4])}): "
            "`framedrift train` resizes them to the model's input as it reads them"
        )
    labels = None
    if class_names and all(p.parent != folder for p in files):
        labels = np.array([class_names.index(p.parent.name) for p in files], dtype=np.int64)
    return LabelledImages(np.stack(images), labels)


def load_images(
    path: Path | str, mode: Literal["L", "RGB"] | None = None, keep: Keep | None = None
) -> LabelledImages:
    """Images (and labels, when known) from an IDX file, an .npz file or an image folder.

    A folder's images, of any sizes, are converted to `mode` (grey or colour; by default
    as each file is) and passed through `keep` as they are read, so that only what it
    returns is held: a month of 1080p reference frames resized to a model's 64×64 input
    takes 12 kB a frame instead of 6 MB.
    """
    path = Path(path)
    if path.is_dir():
        return _read_folder(path, mode, keep)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file or folder")
    if path.suffix == ".npz":
        try:
            archive = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:  # not a zip, or pickled arrays we refuse to run
            raise DatasetError(f"{path}: not a readable .npz file: {error}") from error
        with archive:
            key = next((k for k in ("images", "x", "x_train") if k in archive), None)
            if key is None:
                raise DatasetError(f"{path}: no 'images' array (found {sorted(archive.files)})")
            images = archive[key]
            label_key = next((k for k in ("labels", "y", "y_train") if k in archive), None)
            labels = archive[label_key].astype(np.int64) if label_key else None
        if images.dtype != np.uint8:
            images = np.clip(np.rint(images * 255.0 if images.max() <= 1.0 else images), 0, 255)
            images = images.astype(np.uint8)
        return LabelledImages(images, labels)
    images = read_idx(path)
    if images.ndim != 3:
        raise DatasetError(f"{path}: an IDX label file, not images")
    labels_path = _labels_beside(path)
    labels = read_idx(labels_path).astype(np.int64) if labels_path else None
    if labels is not None and len(labels) != len(images):
        raise DatasetError(f"{labels_path}: {len(labels)} labels for {len(images)} images")
    return LabelledImages(images, labels)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 image (N, H, W) or label (N,) array as a gzipped IDX file."""
    if array.dtype != np.uint8 or array.ndim not in (1, 3):
        raise DatasetError("IDX holds uint8 images (N, H, W) or labels (N,)")
    magic = IDX_IMAGES_MAGIC if array.ndim == 3 else IDX_LABELS_MAGIC
    header = struct.pack(f">I{array.ndim}I", magic, *array.shape)
    path.write_bytes(gzip.compress(header + np.ascontiguousarray(array).tobytes(), mtime=0))
