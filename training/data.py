"""MNIST from the four canonical IDX files, as whole-split tensors.

Where the data comes from, in order:
  1. the `data_dir` argument (the `--data-dir` flag of every command);
  2. the environment variable SNN_MNIST_DATA;
  3. otherwise a per-user cache, `$XDG_CACHE_HOME/snn-mnist/mnist` (by default
     `~/.cache/snn-mnist/mnist`), filled by one download the first time it is
     needed, so that a fresh machine's commands work with no data flag at all.

A data folder given by the user (1 or 2) is only read: never written to, never
decompressed in place, except that `download=True` (`--download`) lets
torchvision's downloader fill the missing files into `<data_dir>/MNIST/raw/`.

The cache is filled through torchvision's downloader (it knows the mirrors and
checks their MD5s) into a temporary folder beside the cache; the files are then
checked like any data folder, plus MNIST's canonical sizes (60,000 training and
10,000 test examples), and only then renamed into the cache one by one
(`os.replace` is atomic).  So neither an interrupted download nor a second
process downloading at the same time ever leaves a partial file under a final
name; a killed download's temporary folder is ignored, and removed by the next
download once it is a day old.  Offline, the download fails with one `MnistDataError` that names
the cache and says how to point at local files instead.

A data folder holds the four files, gzip-compressed or not, either directly or in
torchvision's layout `MNIST/raw/`:

    train-images-idx3-ubyte[.gz]   train-labels-idx1-ubyte[.gz]
    t10k-images-idx3-ubyte[.gz]    t10k-labels-idx1-ubyte[.gz]

IDX format (big-endian): a 4-byte magic number 0x0000 0x08 ndim (0x08 = uint8),
then ndim uint32 sizes, then the data.  Images: magic 2051, sizes (N, 28, 28).
Labels: magic 2049, size (N,).  Every check below turns a bad file into one
`MnistDataError` that names the file, says what is wrong, and how to fix it.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import math
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator
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
INPUT_SIZE = IMAGE_SIZE * IMAGE_SIZE  # pixels per image, the network's inputs
NUM_CLASSES = 10
FILE_STEMS: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SPLIT_SIZES: dict[str, int] = {"train": 60000, "test": 10000}  # canonical MNIST
# SHA-256 of each published MNIST file's data (the uint8 bytes after its IDX header), the same
# whether the file is gzip-compressed or not, or recompressed: what the cache must hold.
MNIST_DATA_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "train-labels-idx1-ubyte": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "t10k-images-idx3-ubyte": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "t10k-labels-idx1-ubyte": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}
CACHE_FILES: tuple[str, ...] = tuple(f"{stem}.gz" for stems in FILE_STEMS.values() for stem in stems)
DOWNLOAD_TIMEOUT_S = 30.0  # per socket wait; urllib's default is to wait forever
STALE_DOWNLOAD_S = 24 * 3600  # a temporary download folder this old was abandoned
LOCAL_FILES_FIX = (
    f"point --data-dir (or the {DATA_ENV_VAR} environment variable) at a folder holding the "
    "four MNIST IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
    "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz; .gz optional)"
)
HOW_TO_FIX = (
    f"{LOCAL_FILES_FIX}, add --download to fetch them into that folder (needs internet), "
    f"or give neither --data-dir nor {DATA_ENV_VAR} to use the per-user cache, downloaded once"
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


VALIDATION_SEED = 0  # one fixed carve for every run and seed, so trials compare on the same images


def carve_validation(train_split: MnistSplit, count: int, seed: int = VALIDATION_SEED) -> tuple[MnistSplit, MnistSplit]:
    """(training images, validation images): `count` images drawn at random (a permutation
    from a generator seeded with `seed`) out of `train_split`, the rest kept for training in
    their original order.  Settings are chosen on the validation images, never the test set."""
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count < len(train_split):
        raise ValueError(
            f"--validation must be a whole number of images between 1 and {len(train_split) - 1} "
            f"(the training split has {len(train_split)}), got {count!r}"
        )
    held_out = torch.randperm(len(train_split), generator=torch.Generator().manual_seed(seed))[:count]
    keep = torch.ones(len(train_split), dtype=torch.bool)
    keep[held_out] = False
    validation = held_out.sort().values
    return (
        MnistSplit(train_split.images[keep], train_split.labels[keep]),
        MnistSplit(train_split.images[validation], train_split.labels[validation]),
    )


def translate(images: Tensor, offsets: Tensor) -> Tensor:
    """Each image moved by a whole number of pixels, the pixels that enter filled with 0:

        x'[b, i, j] = x[b, i - dy_b, j - dx_b]   (0 where i - dy_b or j - dx_b is off the image)

    images: (B, 28, 28); offsets: (B, 2) integer (dy, dx), each in [-k, k].  The training
    augmentation of `TrainConfig.augment_shift`: the same digit a few pixels off centre."""
    batch, height, width = images.shape
    margin = int(offsets.abs().max()) if offsets.numel() else 0
    if margin == 0:
        return images
    # pad by the largest offset, then read each image's 28x28 window out of its padded copy
    padded = torch.nn.functional.pad(images, (margin, margin, margin, margin))
    rows = torch.arange(height)[None, :] + (margin - offsets[:, 0])[:, None]  # (B, 28)
    cols = torch.arange(width)[None, :] + (margin - offsets[:, 1])[:, None]  # (B, 28)
    return padded[torch.arange(batch)[:, None, None], rows[:, :, None], cols[:, None, :]]


SHIFTS = ("contrast", "noise")


def shifted(split: MnistSplit, kind: str, amount: float, seed: int = 0) -> MnistSplit:
    """The split's images under an input shift, labels unchanged:

        contrast c:  x' = c * x                      (c in (0, 1]: dimmer digits)
        noise s:     x' = clip(x + s * z, 0, 1),  z ~ N(0, 1) per pixel, drawn with `seed`
    """
    if kind not in SHIFTS:
        raise ValueError(f"unknown input shift {kind!r}; use one of {', '.join(SHIFTS)} (e.g. contrast:0.5 or noise:0.3)")
    if not (math.isfinite(amount) and amount > 0) or (kind == "contrast" and amount > 1):
        raise ValueError(f"{kind} needs an amount {'in (0, 1]' if kind == 'contrast' else '> 0'}, got {amount!r}")
    if kind == "contrast":
        return MnistSplit(split.images * amount, split.labels)
    noise = torch.randn(split.images.shape, generator=torch.Generator().manual_seed(seed), dtype=split.images.dtype)
    return MnistSplit((split.images + amount * noise).clamp_(0.0, 1.0), split.labels)


def resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> Path | None:
    """The data folder from the argument, else from $SNN_MNIST_DATA, else None (the cache)."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    from_env = os.environ.get(DATA_ENV_VAR, "")
    return Path(from_env).expanduser() if from_env else None


def mnist_cache_dir() -> Path:
    """The per-user MNIST cache: $XDG_CACHE_HOME/snn-mnist/mnist, else ~/.cache/snn-mnist/mnist.

    As the XDG Base Directory spec says, an empty or relative $XDG_CACHE_HOME is ignored
    (a relative one would put the cache wherever the command happens to run).
    """
    xdg_cache = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg_cache) if os.path.isabs(xdg_cache) else Path.home() / ".cache"
    return base / "snn-mnist" / "mnist"


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


def _one_line(error: BaseException) -> str:
    """An exception as 'Type: message' on one line (torchvision's messages span several)."""
    return f"{error.__class__.__name__}: {' '.join(str(error).split())}"


def _problem_of(error: MnistDataError) -> str:
    """What a check found wrong, without its 'Fix: ...' advice (for re-wrapping it)."""
    return str(error).split(" Fix: ")[0].rstrip(".")


_DOWNLOAD_LOCK = threading.Lock()


@contextlib.contextmanager
def _quiet_bounded_download() -> Iterator[None]:
    """Hide torchvision's progress bars, and bound each network wait by DOWNLOAD_TIMEOUT_S.

    urllib waits forever by default, so on a machine whose firewall drops packets a
    download would hang instead of failing.  torchvision offers no way to pass either
    setting, so both are process-wide while a download runs (an existing socket timeout
    is kept); the lock keeps two threads from nesting them and restoring them wrongly.
    """
    with _DOWNLOAD_LOCK:
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S if previous is None else previous)
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                yield
        finally:
            socket.setdefaulttimeout(previous)


def _torchvision_download(root: Path, train: bool) -> None:
    """torchvision's MNIST downloader: all four files into root/MNIST/raw (.gz and unpacked).

    It tries each of its mirrors and checks each file's MD5; any failure raises.
    """
    from torchvision.datasets import MNIST

    with _quiet_bounded_download():
        MNIST(root=str(root), train=train, download=True)


def _download(folder: Path, split: Split) -> None:
    """Fetch MNIST with torchvision into folder/MNIST/raw (needs internet)."""
    print(f"snn-mnist: downloading MNIST (about 11 MB) into {folder / 'MNIST' / 'raw'}", file=sys.stderr)
    try:
        _torchvision_download(folder, train=(split == "train"))
    except Exception as error:  # network errors come in many types
        raise MnistDataError(
            f"MNIST download into {folder} failed: {_one_line(error)}. "
            f"Fix: check the internet connection, or {HOW_TO_FIX}."
        ) from error


def _offline_fix(cache: Path) -> str:
    """How to get MNIST without downloading it into `cache`."""
    return f"{LOCAL_FILES_FIX}, or copy the four .gz files into {cache}"


def _remove_stale_downloads(cache: Path) -> None:
    """Delete temporary download folders beside `cache` left by killed processes.

    Only folders older than STALE_DOWNLOAD_S go: a younger one may belong to a
    download running right now in another process.
    """
    for leftover in cache.parent.glob(f".{cache.name}.download-*"):
        with contextlib.suppress(OSError):
            if time.time() - leftover.stat().st_mtime > STALE_DOWNLOAD_S:
                shutil.rmtree(leftover, ignore_errors=True)


def _check_download(raw: Path, cache: Path) -> None:
    """The downloaded .gz files pass every check of `_read_arrays` and have MNIST's sizes."""
    try:
        for split, (image_stem, label_stem) in FILE_STEMS.items():
            images, labels = _read_arrays(raw / f"{image_stem}.gz", raw / f"{label_stem}.gz")
            if len(images) != SPLIT_SIZES[split]:
                raise MnistDataError(
                    f"MNIST split of the wrong size: {raw / f'{image_stem}.gz'} holds "
                    f"{len(images):,} examples, but MNIST's {split} split has {SPLIT_SIZES[split]:,}"
                )
            _check_published(split, images, labels, raw / f"{image_stem}.gz", raw / f"{label_stem}.gz")
    except MnistDataError as error:
        problem = _problem_of(error).replace(f"{raw}{os.sep}", "")  # the temporary folder is gone
        raise MnistDataError(
            f"downloaded MNIST failed our checks and was not put into the cache {cache}: {problem}. "
            f"Fix: rerun to download it again (a mirror may have served a bad file); "
            f"offline, {_offline_fix(cache)}."
        ) from error


def _fill_cache(cache: Path, announcement: str) -> None:
    """Download MNIST into a temporary folder beside `cache`, check it, then rename the four
    .gz files into `cache` one by one (each rename is atomic; the unpacked copies are dropped)."""
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_downloads(cache)
        staging = Path(tempfile.mkdtemp(prefix=f".{cache.name}.download-", dir=cache.parent))
    except OSError as error:
        raise MnistDataError(
            f"cannot create the MNIST cache folder {cache}: {_one_line(error)}. Fix: set "
            f"XDG_CACHE_HOME to a writable absolute folder, or {LOCAL_FILES_FIX}."
        ) from error
    try:
        print(announcement, file=sys.stderr)
        try:
            _torchvision_download(staging, train=False)  # train=False: it then loads only the small split
        except Exception as error:  # network, HTTP, MD5 and unpacking errors come in many types
            raise MnistDataError(
                f"MNIST is not in the cache {cache} and downloading it failed: {_one_line(error)}. "
                f"Fix: connect to the internet and rerun; offline, {_offline_fix(cache)}."
            ) from error
        raw = staging / "MNIST" / "raw"
        _check_download(raw, cache)
        try:
            cache.mkdir(exist_ok=True)
            for name in CACHE_FILES:
                os.replace(raw / name, cache / name)
        except OSError as error:
            raise MnistDataError(
                f"cannot write the MNIST cache {cache}: {_one_line(error)}. Fix: set XDG_CACHE_HOME "
                f"to a writable absolute folder, or {LOCAL_FILES_FIX}."
            ) from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _cache_is_complete(cache: Path) -> bool:
    """All four .gz files are in the cache (each got there whole, by one rename)."""
    return all((cache / name).is_file() for name in CACHE_FILES)


def ensure_mnist_cache(cache: Path | None = None) -> Path:
    """The cache folder (default `mnist_cache_dir()`), downloading MNIST into it if incomplete."""
    cache = mnist_cache_dir() if cache is None else cache
    if not _cache_is_complete(cache):
        _fill_cache(
            cache, f"snn-mnist: downloading MNIST (about 11 MB) once into {cache}; later runs reuse it"
        )
    return cache


def _load_cached(split: Split, cache: Path) -> MnistSplit:
    """A split from the cache, filling it first if needed; a damaged cache is downloaded again once."""
    ensure_mnist_cache(cache)
    image_path, label_path = (cache / f"{stem}.gz" for stem in FILE_STEMS[split])

    def read() -> MnistSplit:
        images, labels = _read_arrays(image_path, label_path)
        _check_published(split, images, labels, image_path, label_path)
        return _to_split(images, labels)

    try:
        return read()
    except MnistDataError as error:  # a disk error or a hand edit: the files are ours to replace
        _fill_cache(
            cache, f"snn-mnist: the MNIST cache is damaged ({_problem_of(error)}); downloading it again"
        )
    return read()


def _read_arrays(image_path: Path, label_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One split's images (N, 28, 28) and labels (N,) as uint8 arrays, every check passed."""
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
    return images, labels


def _check_published(split: Split, images: np.ndarray, labels: np.ndarray, image_path: Path, label_path: Path) -> None:
    """The arrays are the published MNIST's (MNIST_DATA_SHA256), else MnistDataError."""
    for stem, array, path in zip(FILE_STEMS[split], (images, labels), (image_path, label_path)):
        if hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest() != MNIST_DATA_SHA256[stem]:
            raise MnistDataError(
                f"MNIST file differs from the published MNIST: {path} (the SHA-256 of its data is not MNIST's). "
                f"Fix: replace the file, or {HOW_TO_FIX}."
            )


def _header_shape(path: Path) -> tuple[int, ...] | None:
    """The IDX sizes in a file's header, reading only the header (None if it has none)."""
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as handle:
            head = handle.read(4)
            if len(head) < 4:
                return None
            ndim = head[3]
            sizes = handle.read(4 * ndim)
    except (OSError, EOFError, zlib.error):
        return None
    if len(sizes) < 4 * ndim:
        return None
    return tuple(int.from_bytes(sizes[4 * i : 4 * i + 4], "big") for i in range(ndim))


def _check_user_folder(folder: Path, split: Split, images: np.ndarray, image_path: Path) -> None:
    """Checks a user's folder can pass without the published checksums (it may hold another
    data set in MNIST's format): a .gz and its uncompressed twin side by side hold the same
    data, and the training and test images are not the same file's."""
    for stem in FILE_STEMS["train"] + FILE_STEMS["test"]:
        for base in (folder, folder / "MNIST" / "raw"):
            plain, packed = base / stem, base / f"{stem}.gz"
            if plain.is_file() and packed.is_file() and _read_bytes(plain) != _read_bytes(packed):
                raise MnistDataError(
                    f"MNIST files disagree: {plain} and {packed} hold different data, and only {plain} would be read. "
                    f"Fix: delete the one that is wrong, or {HOW_TO_FIX}."
                )
    other_split: Split = "test" if split == "train" else "train"
    try:
        other_path = find_idx_file(folder, FILE_STEMS[other_split][0])
    except MnistDataError:
        return
    if other_path.resolve() != image_path.resolve() and _header_shape(other_path) != images.shape:
        return
    if other_path.resolve() == image_path.resolve() or np.array_equal(read_idx(other_path, IMAGE_MAGIC), images):
        train_path, test_path = (image_path, other_path) if split == "train" else (other_path, image_path)
        raise MnistDataError(
            f"MNIST training and test images are the same: {train_path} holds the images of {test_path} "
            f"(one copied over the other?), so a test would measure the training set. Fix: replace them, or {HOW_TO_FIX}."
        )


def _to_split(images: np.ndarray, labels: np.ndarray) -> MnistSplit:
    """Checked uint8 arrays as the float32 [0, 1] images and int64 labels of an MnistSplit."""
    image_tensor = torch.from_numpy(images.astype(np.float32)) / 255.0
    label_tensor = torch.from_numpy(labels.astype(np.int64))
    return MnistSplit(images=image_tensor, labels=label_tensor)


def load_mnist(
    split: Split,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
) -> MnistSplit:
    """Load a whole MNIST split ("train": 60,000 images, "test": 10,000) as tensors.

    data_dir falls back to $SNN_MNIST_DATA, then to the per-user cache (`mnist_cache_dir()`),
    which is downloaded once when incomplete, whatever `download` says.  For a folder given
    by the user, download=True fetches with torchvision only the files that are not
    already there; without it that folder is only read.
    """
    if split not in FILE_STEMS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    folder = resolve_data_dir(data_dir)
    if folder is None:
        return _load_cached(split, mnist_cache_dir())
    image_stem, label_stem = FILE_STEMS[split]
    if download and not _have_files(folder, (image_stem, label_stem)):
        _download(folder, split)
    if not folder.is_dir():
        problem = "is not a folder" if folder.exists() else "does not exist"
        raise MnistDataError(f"MNIST data folder {problem}: {folder}. Fix: {HOW_TO_FIX}.")
    image_path = find_idx_file(folder, image_stem)
    images, labels = _read_arrays(image_path, find_idx_file(folder, label_stem))
    _check_user_folder(folder, split, images, image_path)
    return _to_split(images, labels)


def mnist_files(data_dir: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """The four files `load_mnist` reads for this `data_dir` (same fallbacks), by stem.
    For the per-user cache, call it after a load (the cache is complete by then)."""
    folder = resolve_data_dir(data_dir)
    if folder is None:
        cache = mnist_cache_dir()
        return {stem: cache / f"{stem}.gz" for stems in FILE_STEMS.values() for stem in stems}
    return {stem: find_idx_file(folder, stem) for stems in FILE_STEMS.values() for stem in stems}
