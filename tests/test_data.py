"""MNIST loading: the real data's published facts, the accepted folder layouts, and one
clear `MnistDataError` (file, problem, fix) for every way the files can be wrong.

Bad files are built in `tmp_path`; the shared data folder is only ever read.  The per-user
cache (no data folder given) is tested hermetically: $XDG_CACHE_HOME is a temporary folder
and torchvision downloads from an HTTP server on 127.0.0.1 that serves the shared files (or
from a port where nothing listens), never from the internet.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.server
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

import training.data as data_module
from experiments.cli import main
from training.data import (
    CACHE_FILES,
    DATA_ENV_VAR,
    IMAGE_MAGIC,
    LABEL_MAGIC,
    MnistDataError,
    MnistSplit,
    ensure_mnist_cache,
    load_mnist,
    mnist_cache_dir,
)
from training.errors import SnnMnistError

TRAIN_LABEL_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"
REPO_ROOT = Path(__file__).resolve().parent.parent


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


def test_no_folder_and_no_env_var_offline(cache: Path, offline_mirror: str) -> None:
    """Neither data_dir nor $SNN_MNIST_DATA, the cache empty and no network: an error naming
    the cache it tried, the reason, and the local-folder fixes (flag and variable)."""
    assert_clear_message(load_error(None), str(cache), "downloading it failed", "Connection refused")


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


def test_download_without_folder_uses_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: Path, failing_download: list[dict[str, object]]
) -> None:
    """download=True with no data_dir and no env var downloads beside the cache, never into ./data,
    and a failure leaves nothing behind."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MnistDataError, match="downloading it failed"):
        load_mnist("test", download=True)
    assert len(failing_download) == 1
    root = Path(str(failing_download[0]["root"]))
    assert root.parent == cache.parent and root.name.startswith(".mnist.download-")
    assert not (tmp_path / "data").exists()
    assert files_under(cache.parent) == []


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


# --------------------------------------------------------------------------- the per-user cache


@dataclass
class Mirror:
    """A local MNIST mirror for torchvision: `files` by name (editable while it runs) and
    the path of every request it answered."""

    url: str
    files: dict[str, bytes]
    requests: list[str] = field(default_factory=list)
    stall_on: str | None = None  # send half of this file, then wait for `release` before the rest
    stalled: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))  # +1 per stall
    release: threading.Event = field(default_factory=threading.Event)


@contextlib.contextmanager
def serve(files: dict[str, bytes]) -> Iterator[Mirror]:
    """An HTTP server on 127.0.0.1 (ephemeral port) in a background thread, stopped on exit."""
    mirror = Mirror(url="", files=files)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            mirror.requests.append(self.path)
            body = mirror.files.get(self.path.lstrip("/"))
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            # torchvision GETs each file twice: first a redirect check, marked "Method: HEAD",
            # that reads nothing, then the download itself.
            if self.path.lstrip("/") == mirror.stall_on and self.headers.get("Method") != "HEAD":
                self.wfile.write(body[: len(body) // 2])
                mirror.stalled.release()
                mirror.release.wait(120)
                body = body[len(body) // 2 :]
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # keep the test output clean

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request: object, client_address: object) -> None:
            if not isinstance(sys.exc_info()[1], ConnectionError):  # a client hanging up is normal
                super().handle_error(request, client_address)  # type: ignore[arg-type]

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    mirror.url = f"http://127.0.0.1:{server.server_port}/"
    try:
        yield mirror
    finally:
        mirror.release.set()
        server.shutdown()
        server.server_close()
        thread.join()


def point_torchvision_at(monkeypatch: pytest.MonkeyPatch, url: str, files: dict[str, bytes]) -> None:
    """torchvision's MNIST downloads from `url` only, expecting the MD5s of `files` (the shared
    files are recompressed, so their MD5s are not torchvision's canonical ones)."""
    import torchvision.datasets

    md5s = [(name, hashlib.md5(files.get(name, b"")).hexdigest()) for name in CACHE_FILES]
    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", [url])
    monkeypatch.setattr(torchvision.datasets.MNIST, "resources", md5s)


def dead_port() -> int:
    """A 127.0.0.1 port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def files_under(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file()) if folder.exists() else []


def real_files(mnist_dir: Path) -> dict[str, bytes]:
    return {name: (mnist_dir / name).read_bytes() for name in CACHE_FILES}


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mnist_dir: Path) -> Path:
    """$XDG_CACHE_HOME in tmp_path, $SNN_MNIST_DATA and proxies unset; returns the MNIST cache path.

    (It asks for `mnist_dir` first, so that fixture still sees $SNN_MNIST_DATA.)
    """
    monkeypatch.delenv(DATA_ENV_VAR, raising=False)
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    return tmp_path / "xdg-cache" / "snn-mnist" / "mnist"


@pytest.fixture
def offline_mirror(monkeypatch: pytest.MonkeyPatch, mnist_dir: Path) -> str:
    """torchvision's only mirror is a 127.0.0.1 port where nothing listens: a machine offline."""
    url = f"http://127.0.0.1:{dead_port()}/"
    point_torchvision_at(monkeypatch, url, real_files(mnist_dir))
    return url


@pytest.fixture
def mirror(monkeypatch: pytest.MonkeyPatch, mnist_dir: Path) -> Iterator[Mirror]:
    """torchvision's only mirror is a local server of the real MNIST files."""
    with serve(real_files(mnist_dir)) as running:
        point_torchvision_at(monkeypatch, running.url, running.files)
        yield running


def test_main_job_with_no_data_flag_downloads_into_the_cache_once(
    cache: Path, mirror: Mirror, mnist_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`snn-mnist reproduce --quick` with no data flag downloads MNIST into the cache (one short
    notice, no torchvision progress bars) and succeeds; the cache then holds the four files as
    served, nothing else is left beside it, and a later load makes no request at all."""
    code = main(["reproduce", "--quick", "--out", str(tmp_path / "out"), "--threads", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0, err
    notices = [line for line in err.splitlines() if "downloading MNIST" in line]
    assert notices == [f"snn-mnist: downloading MNIST (about 11 MB) once into {cache}; later runs reuse it"]
    assert "%|" not in err and "Traceback" not in err
    assert {path.lstrip("/") for path in mirror.requests} == set(CACHE_FILES)
    assert files_under(cache.parent) == sorted(cache / name for name in CACHE_FILES)
    for name in CACHE_FILES:
        assert (cache / name).read_bytes() == (mnist_dir / name).read_bytes(), name

    served = len(mirror.requests)
    again = load_mnist("test")
    assert torch.bincount(again.labels).tolist() == TEST_LABEL_COUNTS
    assert len(mirror.requests) == served
    assert "downloading" not in capsys.readouterr().err


def test_complete_cache_needs_no_network(cache: Path, offline_mirror: str, mnist_dir: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """With the four files in the cache, loading works offline and announces nothing."""
    cache.mkdir(parents=True)
    for name in CACHE_FILES:
        shutil.copy(mnist_dir / name, cache)
    assert torch.bincount(load_mnist("test").labels).tolist() == TEST_LABEL_COUNTS
    assert ensure_mnist_cache() == cache
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("server", ["nothing-listens", "404"])
def test_offline_main_job_is_one_clean_error(
    cache: Path, monkeypatch: pytest.MonkeyPatch, mnist_dir: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], server: str,
) -> None:
    """Offline, the main job exits 2 with one `snn-mnist: error:` line (after the download
    notice) naming --data-dir, SNN_MNIST_DATA, the cache path and the reason; no traceback,
    and nothing is left in the cache."""
    with contextlib.ExitStack() as stack:
        if server == "404":
            url = stack.enter_context(serve({})).url
        else:
            url = f"http://127.0.0.1:{dead_port()}/"
        point_torchvision_at(monkeypatch, url, real_files(mnist_dir))
        code = main(["reproduce", "--quick", "--out", str(tmp_path / "out"), "--threads", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    errors = [line for line in lines if line.startswith("snn-mnist: error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    assert all(line.startswith("snn-mnist: downloading MNIST") for line in lines[:-1]), err
    assert_clear_message(errors[0], str(cache), "--data-dir", DATA_ENV_VAR, url,
                         "Connection refused" if server == "nothing-listens" else "404")
    assert files_under(cache.parent) == []


def cut_gzip(data: bytes) -> bytes:
    """The first half of a .gz file: an interrupted transfer."""
    return data[: len(data) // 2]


def recompress(raw: bytes) -> bytes:
    return gzip.compress(raw, compresslevel=1)  # level 1: the 47 MB training images in a second


def truncated_idx(data: bytes) -> bytes:
    """A valid .gz of an IDX file one image short of what its header announces."""
    return recompress(gzip.decompress(data)[:-784])


def wrong_magic(data: bytes) -> bytes:
    """A valid .gz whose IDX header says 'images' (2051)."""
    return recompress(struct.pack(">I", IMAGE_MAGIC) + gzip.decompress(data)[4:])


def first_100(data: bytes) -> bytes:
    """A valid .gz of an IDX file holding only the first 100 examples (header rewritten)."""
    raw = gzip.decompress(data)
    ndim = raw[3]
    header_size = 4 + 4 * ndim
    item = int(np.prod(struct.unpack(f">{ndim}I", raw[4:header_size])[1:], dtype=np.int64))
    header = raw[:4] + struct.pack(">I", 100) + raw[8:header_size]
    return recompress(header + raw[header_size : header_size + 100 * item])


@pytest.mark.parametrize(
    ("name", "damage", "fragments"),
    [
        ("train-images-idx3-ubyte.gz", cut_gzip, ("downloading it failed", "EOFError")),
        ("train-images-idx3-ubyte.gz", truncated_idx, ("failed our checks", "truncated")),
        ("train-labels-idx1-ubyte.gz", wrong_magic, ("failed our checks", "magic number 2051", "2049")),
        ("t10k-images-idx3-ubyte.gz", first_100, ("failed our checks", "disagree")),
        ("t10k-labels-idx1-ubyte.gz", first_100, ("failed our checks", "disagree")),
    ],
    ids=["cut-gzip", "truncated-idx", "wrong-magic", "short-images", "short-labels"],
)
def test_corrupt_download_is_rejected_and_not_cached(
    cache: Path,
    mirror: Mirror,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    damage: Callable[[bytes], bytes],
    fragments: tuple[str, ...],
) -> None:
    """A mirror serving a bad file whose MD5 matches (so torchvision accepts it) is refused by
    our checks: one clear error naming the cache, and nothing moved into it."""
    mirror.files[name] = damage(mirror.files[name])
    point_torchvision_at(monkeypatch, mirror.url, mirror.files)
    assert_clear_message(load_error(None), str(cache), *fragments)
    assert files_under(cache.parent) == []


def test_wrong_example_count_is_rejected(cache: Path, mirror: Mirror, monkeypatch: pytest.MonkeyPatch) -> None:
    """Consistent but short test files (100 images, 100 labels) are not MNIST: refused by count."""
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        mirror.files[name] = first_100(mirror.files[name])
    point_torchvision_at(monkeypatch, mirror.url, mirror.files)
    assert_clear_message(load_error(None), str(cache), "failed our checks", "100 examples", "10,000")
    assert files_under(cache.parent) == []


def test_damaged_cache_is_downloaded_again(cache: Path, mirror: Mirror, mnist_dir: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A cached file cut short (a disk error, a hand edit) is replaced by one new download."""
    cache.mkdir(parents=True)
    for name in CACHE_FILES:
        shutil.copy(mnist_dir / name, cache)
    damaged = cache / f"{TEST_LABELS}.gz"
    damaged.write_bytes(damaged.read_bytes()[:100])
    assert torch.bincount(load_mnist("test").labels).tolist() == TEST_LABEL_COUNTS
    assert damaged.read_bytes() == (mnist_dir / f"{TEST_LABELS}.gz").read_bytes()
    assert "cache is damaged" in capsys.readouterr().err
    assert files_under(cache.parent) == sorted(cache / name for name in CACHE_FILES)


def test_partial_cache_is_completed(cache: Path, mirror: Mirror, mnist_dir: Path) -> None:
    """A cache holding only some files (a killed process between two renames) is filled up."""
    cache.mkdir(parents=True)
    shutil.copy(mnist_dir / f"{TEST_IMAGES}.gz", cache)
    assert torch.bincount(load_mnist("test").labels).tolist() == TEST_LABEL_COUNTS
    assert files_under(cache.parent) == sorted(cache / name for name in CACHE_FILES)


def test_stale_download_leftovers_are_removed_recent_ones_kept(cache: Path, offline_mirror: str) -> None:
    """A temporary download folder from a process killed long ago is deleted by the next download;
    a recent one (maybe another process downloading now) is left alone."""
    cache.parent.mkdir(parents=True)
    old, recent = cache.parent / ".mnist.download-old", cache.parent / ".mnist.download-recent"
    for leftover in (old, recent):
        (leftover / "MNIST" / "raw").mkdir(parents=True)
        (leftover / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").write_bytes(b"partial")
    two_days_ago = (old.stat().st_mtime - 2 * 24 * 3600,) * 2
    os.utime(old, two_days_ago)
    with pytest.raises(MnistDataError):
        load_mnist("test")
    assert not old.exists() and recent.is_dir()
    assert not cache.exists()


def test_unwritable_cache_location_is_a_clean_error(cache: Path, offline_mirror: str) -> None:
    """A cache that cannot be created (here a file is in the way) is named, with the fixes."""
    cache.parent.parent.mkdir(parents=True)
    cache.parent.write_text("not a folder")
    assert_clear_message(load_error(None), str(cache), "cannot create", "XDG_CACHE_HOME")


@pytest.mark.parametrize("xdg", [None, "", "relative/cache"], ids=["unset", "empty", "relative"])
def test_cache_defaults_to_home_dot_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, xdg: str | None
) -> None:
    """Without a usable $XDG_CACHE_HOME (unset, empty, or relative: the XDG spec says to ignore
    it) the cache is ~/.cache/snn-mnist/mnist."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    if xdg is None:
        monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_CACHE_HOME", xdg)
    assert mnist_cache_dir() == tmp_path / "home" / ".cache" / "snn-mnist" / "mnist"


def test_cache_follows_absolute_xdg_cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert mnist_cache_dir() == tmp_path / "xdg" / "snn-mnist" / "mnist"


def test_given_folder_with_missing_files_never_touches_the_cache(
    tmp_path: Path, cache: Path, offline_mirror: str
) -> None:
    """--data-dir without the files is today's error; no download, no cache, the folder unwritten."""
    folder = tmp_path / "given"
    folder.mkdir()
    assert_clear_message(load_error(folder), "missing", TEST_IMAGES)
    assert files_under(folder) == [] and not cache.parent.exists()


DOWNLOAD_SCRIPT = """
import sys
import torchvision.datasets
from training.data import CACHE_FILES, ensure_mnist_cache
torchvision.datasets.MNIST.mirrors = [sys.argv[1]]
torchvision.datasets.MNIST.resources = list(zip(CACHE_FILES, sys.argv[2].split(",")))
ensure_mnist_cache()
"""


def download_in_subprocess(mirror: Mirror) -> subprocess.Popen[str]:
    """Another process filling the same cache ($XDG_CACHE_HOME is inherited) from `mirror`."""
    md5s = ",".join(hashlib.md5(mirror.files[name]).hexdigest() for name in CACHE_FILES)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, "-c", DOWNLOAD_SCRIPT, mirror.url, md5s],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_two_processes_downloading_at_once_both_succeed(cache: Path, mirror: Mirror, mnist_dir: Path) -> None:
    """Two processes filling an empty cache at the same time (both held in mid-download until
    both got there) both succeed, and the cache ends with the four files exactly as served,
    nothing else beside it."""
    mirror.stall_on = "train-labels-idx1-ubyte.gz"
    processes = [download_in_subprocess(mirror), download_in_subprocess(mirror)]
    try:
        for _ in processes:
            assert mirror.stalled.acquire(timeout=120), "a download never reached the stalled file"
        mirror.release.set()
        for process in processes:
            _, err = process.communicate(timeout=300)
            assert process.returncode == 0, err
    finally:
        for process in processes:
            if process.poll() is None:  # a failed assertion above: do not leave it running
                process.kill()
                process.communicate()
    assert files_under(cache.parent) == sorted(cache / name for name in CACHE_FILES)
    for name in CACHE_FILES:
        assert (cache / name).read_bytes() == (mnist_dir / name).read_bytes(), name


def test_killed_download_leaves_no_file_in_the_cache(cache: Path, mirror: Mirror, mnist_dir: Path) -> None:
    """A process killed in mid-download leaves nothing under the cache's names; the next run
    ignores its (recent) leftover folder and downloads the whole cache."""
    name = "train-images-idx3-ubyte.gz"
    mirror.stall_on = name
    process = download_in_subprocess(mirror)
    try:
        assert mirror.stalled.acquire(timeout=120), "the download never reached the stalled file"
        partial = partial_download(cache, name)
    finally:
        process.kill()
        process.communicate(timeout=60)
    assert 0 < partial.stat().st_size < len(mirror.files[name])
    assert files_under(cache) == []

    mirror.stall_on = None
    mirror.release.set()
    assert torch.bincount(load_mnist("test").labels).tolist() == TEST_LABEL_COUNTS
    assert partial.is_file()  # recent: maybe another process's download, so kept
    for cached in CACHE_FILES:
        assert (cache / cached).read_bytes() == (mnist_dir / cached).read_bytes(), cached


def partial_download(cache: Path, name: str, timeout_s: float = 60.0) -> Path:
    """The file `name` being downloaded beside `cache`, once it holds some bytes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [path for path in files_under(cache.parent) if path.name == name and path.stat().st_size > 0]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no partly downloaded {name} appeared beside {cache}")


# --------------------------------------------------------------------------- issue 31, finding 8


def test_test_files_copied_over_the_training_files_are_refused(mnist_dir: Path, tmp_path: Path) -> None:
    """Wrong but consistent data was accepted: training on the test set, silently."""
    folder = tmp_path / "copied"
    folder.mkdir()
    for stem in (TEST_IMAGES, TEST_LABELS):
        shutil.copy(mnist_dir / f"{stem}.gz", folder / f"{stem}.gz")
    shutil.copy(mnist_dir / f"{TEST_IMAGES}.gz", folder / "train-images-idx3-ubyte.gz")
    shutil.copy(mnist_dir / f"{TEST_LABELS}.gz", folder / "train-labels-idx1-ubyte.gz")
    for split in ("train", "test"):
        assert_clear_message(load_error(folder, split), "training and test images are the same", "train-images-idx3-ubyte.gz")


def test_an_uncompressed_file_and_a_different_gz_twin_are_refused(tmp_path: Path) -> None:
    """Side by side, the uncompressed file was used silently though its .gz held other data."""
    image_path, _ = write_test_split(tmp_path, compress=False)
    write_file(tmp_path / TEST_IMAGES, idx_bytes(IMAGE_MAGIC, synthetic_images(seed=1)), compress=True)
    assert_clear_message(load_error(tmp_path), "MNIST files disagree", str(image_path), f"{image_path}.gz")
    write_file(tmp_path / TEST_IMAGES, idx_bytes(IMAGE_MAGIC, synthetic_images(seed=0)), compress=True)
    assert len(load_mnist("test", tmp_path)) == 6  # twins that agree are fine


def test_a_hand_edited_cache_file_is_checked_against_the_published_checksums(
    cache: Path, offline_mirror: str, mnist_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A cache file that is valid IDX but not MNIST's data (one label changed) is found by the
    published checksums and downloaded again (here: offline, so one clean error)."""
    cache.mkdir(parents=True)
    for name in CACHE_FILES:
        shutil.copy(mnist_dir / name, cache)
    labels = bytearray(gzip.decompress((cache / f"{TEST_LABELS}.gz").read_bytes()))
    labels[8] = (labels[8] + 1) % 10
    (cache / f"{TEST_LABELS}.gz").write_bytes(gzip.compress(bytes(labels)))
    assert_clear_message(load_error(None), str(cache), "downloading it failed")
    announced = capsys.readouterr().err
    assert "the MNIST cache is damaged (MNIST file differs from the published MNIST" in announced
    assert f"{TEST_LABELS}.gz" in announced
