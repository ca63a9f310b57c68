"""MNIST loading: the real data's published facts, the accepted folder layouts, and one
clear `MnistDataError` (file, problem, fix) for every way the files can be wrong.

Bad files are built in `tmp_path`; the shared data folder is only ever read.
"""

from __future__ import annotations

import gzip
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import training.data as data_module
from training.data import (
    DATA_ENV_VAR,
    IMAGE_MAGIC,
    LABEL_MAGIC,
    MnistDataError,
    MnistSplit,
    load_mnist,
)
from training.errors import SnnMnistError

TRAIN_LABEL_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"


# --------------------------------------------------------------------------- helpers


def idx_bytes(magic: int, array: np.ndarray) -> bytes:
    """An IDX file: big-endian magic, one big-endian uint32 per dimension, then uint8 data."""
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", n) for n in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_file(path: Path, payload: bytes, compress: bool) -> Path:
    """Write `payload` to `path` (+ '.gz', gzip-compressed, when `compress`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def synthetic_images(count: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 28, 28), dtype=np.uint8)


def write_test_split(
    folder: Path,
    images: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    compress: bool = True,
    image_magic: int = IMAGE_MAGIC,
    label_magic: int = LABEL_MAGIC,
) -> tuple[Path, Path]:
    """A small synthetic test split (t10k files) in `folder`; returns (images path, labels path)."""
    images = synthetic_images() if images is None else images
    labels = (np.arange(len(images)) % 10).astype(np.uint8) if labels is None else labels
    image_path = write_file(folder / TEST_IMAGES, idx_bytes(image_magic, images), compress)
    label_path = write_file(folder / TEST_LABELS, idx_bytes(label_magic, labels), compress)
    return image_path, label_path


def load_error(folder: Path | None, split: str = "test") -> str:
    """The message of the MnistDataError that loading `split` from `folder` must raise."""
    with pytest.raises(MnistDataError) as excinfo:
        load_mnist(split, folder)  # type: ignore[arg-type]
    assert isinstance(excinfo.value, SnnMnistError)  # the CLI prints these as one clean line
    return str(excinfo.value)


def assert_clear_message(message: str, *fragments: str) -> None:
    """The message holds every fragment (file, problem) and says how to fix it."""
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in message: {message}"
    assert "--data-dir" in message and DATA_ENV_VAR in message, message


def decompress_into(source: Path, target_dir: Path) -> Path:
    """Decompress `source` (.gz) into `target_dir` under its name without .gz."""
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / source.name.removesuffix(".gz")
    with gzip.open(source, "rb") as src, target.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    return target


# --------------------------------------------------------------------------- the real data


def test_train_split_matches_published_facts(mnist_dir: Path) -> None:
    """60,000 training images, (N, 28, 28) float32 in [0, 1], int64 labels with MNIST's exact
    class counts, pixel mean 0.1307 and std 0.3081."""
    train = load_mnist("train", mnist_dir)
    assert len(train) == 60000
    assert train.images.shape == (60000, 28, 28) and train.images.dtype == torch.float32
    assert train.labels.shape == (60000,) and train.labels.dtype == torch.int64
    assert train.images.min().item() == 0.0 and train.images.max().item() == 1.0
    assert torch.bincount(train.labels, minlength=10).tolist() == TRAIN_LABEL_COUNTS
    pixels = train.images.double()
    assert pixels.mean().item() == pytest.approx(0.1307, abs=5e-5)
    assert pixels.std().item() == pytest.approx(0.3081, abs=5e-5)


def test_test_split_matches_published_facts(mnist_test: MnistSplit) -> None:
    """10,000 test images with MNIST's exact class counts, same dtypes and range."""
    assert len(mnist_test) == 10000
    assert mnist_test.images.shape == (10000, 28, 28) and mnist_test.images.dtype == torch.float32
    assert mnist_test.labels.shape == (10000,) and mnist_test.labels.dtype == torch.int64
    assert mnist_test.images.min().item() == 0.0 and mnist_test.images.max().item() == 1.0
    assert torch.bincount(mnist_test.labels, minlength=10).tolist() == TEST_LABEL_COUNTS


def test_test_split_equals_independent_parse(mnist_dir: Path, mnist_test: MnistSplit) -> None:
    """Images are the file's uint8 bytes / 255 in row-major order; labels are the label bytes."""
    raw_images = gzip.decompress((mnist_dir / f"{TEST_IMAGES}.gz").read_bytes())
    raw_labels = gzip.decompress((mnist_dir / f"{TEST_LABELS}.gz").read_bytes())
    assert struct.unpack(">IIII", raw_images[:16]) == (IMAGE_MAGIC, 10000, 28, 28)
    assert struct.unpack(">II", raw_labels[:8]) == (LABEL_MAGIC, 10000)
    pixels = torch.from_numpy(np.frombuffer(raw_images, np.uint8, offset=16).reshape(10000, 28, 28).copy())
    labels = torch.from_numpy(np.frombuffer(raw_labels, np.uint8, offset=8).astype(np.int64))
    assert torch.equal(mnist_test.images, pixels.float() / 255.0)
    assert torch.equal(mnist_test.labels, labels)


def test_flat_images_and_subset(mnist_test: MnistSplit) -> None:
    """flat_images is the (N, 784) view; subset(n) takes the first n; subset(0) is refused."""
    assert mnist_test.flat_images.shape == (10000, 784)
    assert torch.equal(mnist_test.flat_images[3], mnist_test.images[3].flatten())
    small = mnist_test.subset(5)
    assert len(small) == 5 and torch.equal(small.labels, mnist_test.labels[:5])
    with pytest.raises(ValueError, match="positive"):
        mnist_test.subset(0)


@pytest.mark.parametrize("layout", ["flat", "torchvision-raw"])
@pytest.mark.parametrize("compressed", [False, True], ids=["uncompressed", "gzip"])
def test_layouts_and_uncompressed_files_load_identically(
    mnist_dir: Path, mnist_test: MnistSplit, tmp_path: Path, layout: str, compressed: bool
) -> None:
    """The test split loads the same from DIR/ or torchvision's DIR/MNIST/raw/, .gz or not."""
    target = tmp_path if layout == "flat" else tmp_path / "MNIST" / "raw"
    target.mkdir(parents=True, exist_ok=True)
    for stem in (TEST_IMAGES, TEST_LABELS):
        if compressed:
            shutil.copy(mnist_dir / f"{stem}.gz", target)
        else:
            decompress_into(mnist_dir / f"{stem}.gz", target)
    loaded = load_mnist("test", tmp_path)
    assert torch.equal(loaded.images, mnist_test.images)
    assert torch.equal(loaded.labels, mnist_test.labels)


def test_synthetic_round_trip_keeps_pixel_order(tmp_path: Path) -> None:
    """Known uint8 images and labels come back as images / 255 and int64 labels, unpermuted."""
    images = synthetic_images(7, seed=3)
    labels = np.array([9, 0, 1, 8, 2, 7, 3], dtype=np.uint8)
    write_test_split(tmp_path, images, labels, compress=False)
    loaded = load_mnist("test", tmp_path)
    assert torch.equal(loaded.images, torch.from_numpy(images).float() / 255.0)
    assert torch.equal(loaded.labels, torch.from_numpy(labels.astype(np.int64)))


def test_loading_never_writes_into_the_data_folder(tmp_path: Path) -> None:
    """Loading .gz files decompresses in memory: the folder's files and times are unchanged."""
    write_test_split(tmp_path)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    load_mnist("test", tmp_path)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before


# --------------------------------------------------------------------------- where the folder comes from


def test_env_var_is_the_fallback_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no data_dir, $SNN_MNIST_DATA is used."""
    write_test_split(tmp_path, synthetic_images(4))
    monkeypatch.setenv(DATA_ENV_VAR, str(tmp_path))
    assert len(load_mnist("test")) == 4


def test_data_dir_argument_wins_over_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An explicit data_dir takes precedence over $SNN_MNIST_DATA."""
    write_test_split(tmp_path / "given", synthetic_images(3))
    monkeypatch.setenv(DATA_ENV_VAR, str(tmp_path / "elsewhere"))
    assert len(load_mnist("test", tmp_path / "given")) == 3


def test_env_var_pointing_at_real_data_loads_it(mnist_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$SNN_MNIST_DATA set to the real folder gives the real test split."""
    monkeypatch.setenv(DATA_ENV_VAR, str(mnist_dir))
    assert torch.bincount(load_mnist("test").labels).tolist() == TEST_LABEL_COUNTS


def test_no_folder_and_no_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither data_dir nor $SNN_MNIST_DATA: an error naming all three ways to fix it."""
    monkeypatch.delenv(DATA_ENV_VAR, raising=False)
    message = load_error(None)
    assert_clear_message(message, "no MNIST data folder", "--download")


def test_unknown_split_is_a_value_error(tmp_path: Path) -> None:
    """Only 'train' and 'test' exist."""
    with pytest.raises(ValueError, match="'train' or 'test'"):
        load_mnist("validation", tmp_path)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- bad inputs


def test_missing_directory(tmp_path: Path) -> None:
    """A data folder that does not exist is named in the error."""
    absent = tmp_path / "no-such-folder"
    assert_clear_message(load_error(absent), str(absent), "does not exist")


def test_missing_file(tmp_path: Path) -> None:
    """A folder without the labels file names the missing file and both places looked in."""
    write_file(tmp_path / TEST_IMAGES, idx_bytes(IMAGE_MAGIC, synthetic_images()), compress=True)
    message = load_error(tmp_path)
    assert_clear_message(message, "missing", TEST_LABELS, str(tmp_path / "MNIST" / "raw"))


def test_training_split_missing_while_test_split_present(tmp_path: Path) -> None:
    """Having only the t10k files is not enough for the training split."""
    write_test_split(tmp_path)
    assert_clear_message(load_error(tmp_path, "train"), "missing", "train-images-idx3-ubyte")


@pytest.mark.parametrize("compress", [False, True], ids=["uncompressed", "gzip"])
def test_truncated_image_data(tmp_path: Path, compress: bool) -> None:
    """An images file cut short (header intact) is reported as truncated, with the byte counts."""
    payload = idx_bytes(IMAGE_MAGIC, synthetic_images())
    write_test_split(tmp_path, compress=compress)
    path = write_file(tmp_path / TEST_IMAGES, payload[:-100], compress)
    assert_clear_message(load_error(tmp_path), str(path), "truncated", str(6 * 784 - 100))


def test_truncated_header(tmp_path: Path) -> None:
    """A file too short for its own header is reported as truncated."""
    write_test_split(tmp_path, compress=False)
    path = write_file(tmp_path / TEST_LABELS, idx_bytes(LABEL_MAGIC, np.zeros(6, np.uint8))[:6], False)
    assert_clear_message(load_error(tmp_path), str(path), "truncated", "header")


def test_file_shorter_than_magic_number(tmp_path: Path) -> None:
    """A 2-byte file is reported as truncated, not as a wrong magic number."""
    write_test_split(tmp_path, compress=False)
    path = write_file(tmp_path / TEST_IMAGES, b"\x00\x00", False)
    assert_clear_message(load_error(tmp_path), str(path), "truncated")


def test_trailing_bytes(tmp_path: Path) -> None:
    """Extra bytes after the data the header announces are an error too."""
    write_test_split(tmp_path, compress=False)
    path = write_file(tmp_path / TEST_LABELS, idx_bytes(LABEL_MAGIC, np.zeros(6, np.uint8)) + b"xx", False)
    assert_clear_message(load_error(tmp_path), str(path), "trailing bytes")


def test_cut_real_gzip_file(mnist_dir: Path, tmp_path: Path) -> None:
    """The real labels .gz cut in half (an interrupted download) is a clean error naming it."""
    shutil.copy(mnist_dir / f"{TEST_IMAGES}.gz", tmp_path)
    data = (mnist_dir / f"{TEST_LABELS}.gz").read_bytes()
    path = tmp_path / f"{TEST_LABELS}.gz"
    path.write_bytes(data[: len(data) // 2])
    assert_clear_message(load_error(tmp_path), str(path), "unreadable", "truncated")


def test_garbage_bytes_in_gz_file(tmp_path: Path) -> None:
    """A .gz file that is not gzip at all is reported as unreadable/corrupt."""
    write_test_split(tmp_path)
    path = tmp_path / f"{TEST_IMAGES}.gz"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    assert_clear_message(load_error(tmp_path), str(path), "unreadable", "corrupt")


def test_bad_gzip_crc(tmp_path: Path) -> None:
    """A gzip file whose CRC trailer does not match its content is reported (CRC named)."""
    _, path = write_test_split(tmp_path)
    data = bytearray(path.read_bytes())
    data[-8] ^= 0xFF  # first byte of the CRC-32 trailer
    path.write_bytes(bytes(data))
    assert_clear_message(load_error(tmp_path), str(path), "unreadable", "CRC")


def test_corrupted_deflate_stream(tmp_path: Path) -> None:
    """Garbage in the middle of the compressed stream is a clean error, not a zlib traceback."""
    path, _ = write_test_split(tmp_path, synthetic_images(50))
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    path.write_bytes(bytes(data))
    assert_clear_message(load_error(tmp_path), str(path), "unreadable")


@pytest.mark.parametrize("which", ["images", "labels"])
def test_wrong_magic_number(tmp_path: Path, which: str) -> None:
    """Swapped or foreign files: the magic number found and the one expected are named."""
    if which == "images":
        path, _ = write_test_split(tmp_path, image_magic=LABEL_MAGIC)
        fragments = ("magic number 2049", "2051")
    else:
        images = synthetic_images(784)  # a label file whose header claims (784,) images
        _, path = write_test_split(tmp_path, images=images, label_magic=0x00000803)
        fragments = ("magic number 2051", "2049")
    assert_clear_message(load_error(tmp_path), str(path), "malformed", *fragments)


def test_gzip_content_without_gz_suffix(tmp_path: Path) -> None:
    """A gzip-compressed file saved without .gz is reported as a bad IDX file, not misread."""
    write_test_split(tmp_path, compress=False)
    payload = gzip.compress(idx_bytes(LABEL_MAGIC, np.zeros(6, np.uint8)))
    path = write_file(tmp_path / TEST_LABELS, payload, compress=False)
    assert_clear_message(load_error(tmp_path), str(path), "magic number")


def test_label_out_of_range(tmp_path: Path) -> None:
    """A label of 10 or more is named, with the valid range."""
    _, path = write_test_split(tmp_path, labels=np.array([0, 1, 2, 10, 4, 5], dtype=np.uint8))
    assert_clear_message(load_error(tmp_path), str(path), "label 10", "0..9")


def test_image_and_label_counts_differ(tmp_path: Path) -> None:
    """6 images but 5 labels: both files and both counts are named."""
    image_path, label_path = write_test_split(tmp_path, labels=np.arange(5, dtype=np.uint8))
    assert_clear_message(
        load_error(tmp_path), str(image_path), str(label_path), "6 images", "5 labels"
    )


def test_wrong_image_size(tmp_path: Path) -> None:
    """Images that are not 28x28 are refused, with the shape found."""
    images = np.zeros((6, 28, 27), dtype=np.uint8)
    path, _ = write_test_split(tmp_path, images=images)
    assert_clear_message(load_error(tmp_path), str(path), "(28, 27)", "expected (28, 28)")


def test_data_dir_that_is_a_file(tmp_path: Path) -> None:
    """Pointing --data-dir at a file instead of a folder is an error naming that path."""
    path, _ = write_test_split(tmp_path)
    assert_clear_message(load_error(path), str(path), "is not a folder")


# --------------------------------------------------------------------------- --download


class FailingMNIST:
    """Stands in for torchvision.datasets.MNIST on a machine without network."""

    calls: list[dict[str, object]] = []

    def __init__(self, root: str, train: bool = True, download: bool = False, **_: object) -> None:
        FailingMNIST.calls.append({"root": root, "train": train, "download": download})
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: no route to host")


@pytest.fixture
def failing_download(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    """Replace torchvision's MNIST with `FailingMNIST`; returns the list of its calls."""
    import torchvision.datasets

    FailingMNIST.calls = []
    monkeypatch.setattr(torchvision.datasets, "MNIST", FailingMNIST)
    return FailingMNIST.calls


def test_failed_download_is_a_clean_data_error(tmp_path: Path, failing_download: list[dict[str, object]]) -> None:
    """A network failure inside torchvision becomes one MnistDataError naming the folder,
    the cause and the fix, chained to the original exception."""
    with pytest.raises(MnistDataError) as excinfo:
        load_mnist("train", tmp_path, download=True)
    message = str(excinfo.value)
    assert_clear_message(message, "download", str(tmp_path), "no route to host", "internet")
    assert isinstance(excinfo.value.__cause__, RuntimeError)
    assert failing_download == [{"root": str(tmp_path), "train": True, "download": True}]


def test_download_without_folder_uses_dot_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing_download: list[dict[str, object]]
) -> None:
    """download=True with no data_dir and no env var downloads into ./data."""
    monkeypatch.delenv(DATA_ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MnistDataError, match="download"):
        load_mnist("test", download=True)
    assert failing_download == [{"root": "data", "train": False, "download": True}]


def test_successful_download_is_then_read_from_torchvision_layout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After torchvision fills DIR/MNIST/raw, the loader reads the split from there."""
    import torchvision.datasets

    images = synthetic_images(5, seed=8)

    class OfflineMNIST:
        def __init__(self, root: str, train: bool = True, download: bool = False, **_: object) -> None:
            write_test_split(Path(root) / "MNIST" / "raw", images, compress=False)

    monkeypatch.setattr(torchvision.datasets, "MNIST", OfflineMNIST)
    loaded = load_mnist("test", tmp_path, download=True)
    assert torch.equal(loaded.images, torch.from_numpy(images).float() / 255.0)


def test_error_messages_share_the_fix_text() -> None:
    """The fix names the flag, the env var, the four file names and --download."""
    fix = data_module.HOW_TO_FIX
    for fragment in ("--data-dir", DATA_ENV_VAR, "--download", "train-images-idx3-ubyte.gz",
                     "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        assert fragment in fix
