"""Shared fixtures: where the real MNIST lives, and the Hypothesis settings.

The MNIST folder comes from $SNN_MNIST_DATA, else `<repo>/../shared/data/mnist`
(where CI puts it), else the per-user cache that every command uses
(`~/.cache/snn-mnist/mnist`, downloaded once on a machine with internet access,
so a newcomer's `pip install -e ".[test]" && python -m pytest` just works).  A
folder that cannot be found or filled fails the tests that need it, with a
message saying how to fix that: MNIST is a required test input, never a reason
to skip.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numba
import pytest
import torch
from hypothesis import HealthCheck, settings

from training.data import DATA_ENV_VAR, MnistDataError, MnistSplit, ensure_mnist_cache, load_mnist

REPO_ROOT = Path(__file__).resolve().parent.parent
FALLBACK_DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "mnist"
MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

# No deadline: the first call of a Numba kernel compiles it (seconds), and the
# machines running the suite are small and shared.
settings.register_profile(
    "snn-mnist",
    deadline=None,
    max_examples=40,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
# HYPOTHESIS_PROFILE=thorough searches much harder (minutes) when changing the kernels.
settings.register_profile("thorough", parent=settings.get_profile("snn-mnist"), max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "snn-mnist"))


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The folder holding the four real MNIST .gz files; fails (never skips) if absent."""
    from_env = os.environ.get(DATA_ENV_VAR, "")
    if from_env:
        folder, source = Path(from_env).expanduser(), f"${DATA_ENV_VAR}"
    elif FALLBACK_DATA_DIR.is_dir():
        folder, source = FALLBACK_DATA_DIR, f"<repo>/../shared/data/mnist (${DATA_ENV_VAR} unset)"
    else:
        try:
            folder = ensure_mnist_cache()
        except MnistDataError as error:
            pytest.fail(
                f"the tests need the real MNIST: ${DATA_ENV_VAR} is unset, there is no "
                f"<repo>/../shared/data/mnist, and the per-user cache could not be filled: {error}",
                pytrace=False,
            )
        source = f"the per-user cache (${DATA_ENV_VAR} unset, no ../shared/data/mnist)"
    if not folder.is_dir():
        pytest.fail(
            f"MNIST folder {folder} (from {source}) does not exist. The tests need the real MNIST: "
            f"set {DATA_ENV_VAR} to a folder with {', '.join(MNIST_FILES)}, "
            "or place them in ../shared/data/mnist beside the repository.",
            pytrace=False,
        )
    missing = [name for name in MNIST_FILES if not (folder / name).is_file()]
    if missing:
        pytest.fail(
            f"MNIST folder {folder} (from {source}) lacks {', '.join(missing)}; "
            f"set {DATA_ENV_VAR} to a folder holding all of {', '.join(MNIST_FILES)}.",
            pytrace=False,
        )
    return folder


@pytest.fixture(scope="session")
def mnist_test(mnist_dir: Path) -> MnistSplit:
    """The real 10,000-image MNIST test split, loaded once per session."""
    return load_mnist("test", mnist_dir)


@pytest.fixture
def same_bits_for_any_thread_count() -> Callable[[Callable[[], Sequence[torch.Tensor]]], None]:
    """check(run): `run` gives the same tensors, bit for bit, on one Numba thread and on all
    of them, and twice in a row (the thread count is restored afterwards)."""

    def check(run: Callable[[], Sequence[torch.Tensor]]) -> None:
        threads = numba.get_num_threads()
        try:
            numba.set_num_threads(1)
            single = run()
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
            first, second = run(), run()
        finally:
            numba.set_num_threads(threads)
        for a, b, c in zip(single, first, second, strict=True):
            assert torch.equal(a, b) and torch.equal(b, c)

    return check
