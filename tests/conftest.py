"""Shared fixtures. MNIST comes from $SNN_MNIST_DATA, else ../shared/data/mnist beside the
repository (where CI puts it). A missing folder fails the tests that need it: it is
never a reason to skip."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
FALLBACK_DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "mnist"


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    folder = Path(os.environ.get("SNN_MNIST_DATA") or FALLBACK_DATA_DIR)
    if not folder.is_dir():
        pytest.fail(
            f"MNIST folder {folder} not found: set SNN_MNIST_DATA to a folder with the four "
            "IDX files (CI uses ../shared/data/mnist beside the repository)"
        )
    return folder
