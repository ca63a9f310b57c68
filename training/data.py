"""MNIST from the four canonical IDX files, as whole-split tensors.

Where the data comes from, in order:
  1. the `data_dir` argument (the `--data-dir` flag of every command);
  2. the environment variable SNN_MNIST_DATA;
  3. with `download=True` (`--download`), torchvision's downloader fills
     `<data_dir or ./data>/MNIST/raw/` on a machine with internet access.

A data folder holds the four files, gzip-compressed or not, either directly or in
torchvision's layout `MNIST/raw/`:

    train-images-idx3-ubyte[.gz]   train-labels-idx1-ubyte[.gz]
    t10k-images-idx3-ubyte[.gz]    t10k-labels-idx1-ubyte[.gz]

The folder is only ever read (never written to, never decompressed in place).

IDX format (big-endian): a 4-byte magic number 0x0000 0x08 ndim (0x08 = uint8),
then ndim uint32 sizes, then the data.  Images: magic 2051, sizes (N, 28, 28).
Labels: magic 2049, size (N,).  Every check below turns a bad file into one
`MnistDataError` that names the file, says what is wrong, and how to fix it.
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from training.errors import SnnMnistError

DATA_ENV_VAR = "SNN_MNIST_DATA"
Split = Literal["train", "test"]
IMAGE_MAGIC = 2051
LABEL_MAGIC = 2049
IMAGE_SIZE = 28
NUM_CLASSES = 10
FILE_STEMS: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
HOW_TO_FIX = (
    f"point --data-dir (or the {DATA_ENV_VAR} environment variable) at a folder holding the "
    "four MNIST IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
    "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz; .gz optional), "
    "or add --download on a machine with internet access"
)


class MnistDataError(SnnMnistError):
    """The MNIST files are missing, unreadable or malformed; the message says which and why."""


@dataclass(frozen=True)
class MnistSplit:
    """A whole MNIST split in memory.

    images: (N, 28, 28) float32 in [0, 1] (uint8 / 255)
    labels: (N,) int64 in 0..9
    """

    images: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def flat_images(self) -> Tensor:
        """(N, 784) view of the images, the network's input layout."""
        return self.images.reshape(len(self), IMAGE_SIZE * IMAGE_SIZE)

    def subset(self, count: int) -> MnistSplit:
        """The first `count` examples (for quick runs and tests)."""
        if count < 1:
            raise ValueError(f"subset size must be a positive integer, got {count}")
        return MnistSplit(self.images[:count], self.labels[:count])


def resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> Path | None:
    """The data folder from the argument, else from $SNN_MNIST_DATA, else None."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    from_env = os.environ.get(DATA_ENV_VAR, "")
    return Path(from_env).expanduser() if from_env else None


def find_idx_file(folder: Path, stem: str) -> Path:
    """Locate `stem` or `stem.gz` in `folder` or `folder/MNIST/raw`."""
    candidates = [
        base / name
        for base in (folder, folder / "MNIST" / "raw")
        for name in (stem, stem + ".gz")
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise MnistDataError(
        f"MNIST file missing: no {stem} or {stem}.gz in {folder} (nor in {folder / 'MNIST' / 'raw'}). "
        f"Fix: {HOW_TO_FIX}."
    )


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:
        # gzip.BadGzipFile is an OSError; a cut-off .gz raises EOFError.
        raise MnistDataError(
            f"MNIST file unreadable: {path}: {error.__class__.__name__}: {error} "
            f"(corrupt or truncated download?). Fix: replace the file (re-download it), or {HOW_TO_FIX}."
        ) from error


def read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """Read one uint8 IDX file (gzip or raw) into an array, checking header and size."""
    data = _read_bytes(path)
    kind = "images" if expected_magic == IMAGE_MAGIC else "labels"
    if len(data) < 4:
        raise MnistDataError(
            f"MNIST file truncated: {path} has {len(data)} bytes, too few for an IDX header. "
            f"Fix: replace the file, or {HOW_TO_FIX}."
        )
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        raise MnistDataError(
            f"MNIST file malformed: {path} starts with IDX magic number {magic}, but MNIST {kind} "
            f"files start with {expected_magic} (wrong file, or not an IDX file). "
            f"Fix: replace the file, or {HOW_TO_FIX}."
        )
    ndim = magic & 0xFF
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise MnistDataError(
            f"MNIST file truncated: {path} ends inside its {header_size}-byte header. "
            f"Fix: replace the file, or {HOW_TO_FIX}."
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected_bytes = header_size + int(np.prod(shape, dtype=np.int64))
    if len(data) != expected_bytes:
        problem = "truncated" if len(data) < expected_bytes else "has trailing bytes"
        raise MnistDataError(
            f"MNIST file {problem}: {path} holds {len(data) - header_size} data bytes but its "
            f"header {shape} needs {expected_bytes - header_size}. Fix: replace the file, or {HOW_TO_FIX}."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape)


def _have_files(folder: Path, stems: tuple[str, ...]) -> bool:
    """True when every file is already present (so --download has nothing to fetch)."""
    try:
        for stem in stems:
            find_idx_file(folder, stem)
    except MnistDataError:
        return False
    return True


def _download(folder: Path, split: Split) -> None:
    """Fetch MNIST with torchvision into folder/MNIST/raw (needs internet)."""
    from torchvision.datasets import MNIST

    try:
        MNIST(root=str(folder), train=(split == "train"), download=True)
    except Exception as error:  # network errors come in many types
        raise MnistDataError(
            f"MNIST download into {folder} failed: {error.__class__.__name__}: {error}. "
            f"Fix: check the internet connection, or {HOW_TO_FIX}."
        ) from error


def load_mnist(
    split: Split,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
) -> MnistSplit:
    """Load a whole MNIST split ("train": 60,000 images, "test": 10,000) as tensors.

    data_dir falls back to $SNN_MNIST_DATA; with download=True and no folder given,
    ./data is used.  download=True fetches with torchvision only the files that
    are not already there.
    """
    if split not in FILE_STEMS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    folder = resolve_data_dir(data_dir)
    if folder is None:
        if not download:
            raise MnistDataError(f"no MNIST data folder given. Fix: {HOW_TO_FIX}.")
        folder = Path("data")
    image_stem, label_stem = FILE_STEMS[split]
    if download and not _have_files(folder, (image_stem, label_stem)):
        _download(folder, split)
    if not folder.is_dir():
        problem = "is not a folder" if folder.exists() else "does not exist"
        raise MnistDataError(f"MNIST data folder {problem}: {folder}. Fix: {HOW_TO_FIX}.")

    image_path = find_idx_file(folder, image_stem)
    label_path = find_idx_file(folder, label_stem)
    images = read_idx(image_path, IMAGE_MAGIC)
    labels = read_idx(label_path, LABEL_MAGIC)

    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise MnistDataError(
            f"MNIST file malformed: {image_path} holds images of shape {images.shape[1:]}, "
            f"expected ({IMAGE_SIZE}, {IMAGE_SIZE}). Fix: replace the file, or {HOW_TO_FIX}."
        )
    if labels.ndim != 1:
        raise MnistDataError(
            f"MNIST file malformed: {label_path} has {labels.ndim} dimensions, expected 1. "
            f"Fix: replace the file, or {HOW_TO_FIX}."
        )
    if images.shape[0] != labels.shape[0]:
        raise MnistDataError(
            f"MNIST files disagree: {image_path} holds {images.shape[0]} images but {label_path} "
            f"holds {labels.shape[0]} labels (files from different splits or versions?). "
            f"Fix: replace them, or {HOW_TO_FIX}."
        )
    if labels.size and int(labels.max()) >= NUM_CLASSES:
        raise MnistDataError(
            f"MNIST file malformed: {label_path} contains label {int(labels.max())}, "
            f"outside 0..{NUM_CLASSES - 1}. Fix: replace the file, or {HOW_TO_FIX}."
        )

    image_tensor = torch.from_numpy(images.astype(np.float32)) / 255.0
    label_tensor = torch.from_numpy(labels.astype(np.int64))
    return MnistSplit(images=image_tensor, labels=label_tensor)
