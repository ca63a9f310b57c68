"""Process-level run settings shared by every command: threads, seeds, devices, memory.

These touch process-wide state (torch's and Numba's thread pools, RNG seeds,
glibc's allocator), so the library never calls them on its own: the command
line (`experiments.cli`) and the benchmarks do, once, at start-up.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import random

import numba
import numpy as np
import torch

# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def available_threads() -> int:
    """How many threads Numba may use at most (its pool is sized at import)."""
    return int(numba.config.NUMBA_NUM_THREADS)


def configure_threads(threads: int | None) -> int:
    """Use `threads` threads in torch and in Numba alike (None: all cores Numba sees).

    Results depend on the thread count only through torch's matmul blocking, so a
    given seed and thread count reproduce the same numbers run to run.
    """
    limit = available_threads()
    count = limit if threads is None else threads
    if not isinstance(count, int) or count < 1 or count > limit:
        raise ValueError(
            f"--threads must be an integer from 1 to {limit} (the cores Numba sees), got {threads!r}"
        )
    torch.set_num_threads(count)
    numba.set_num_threads(count)
    return count


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (weight init uses torch's)."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"--seed must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """'cpu', 'cuda', 'cuda:1', or 'auto' (cuda when available); refuses what is not there."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ValueError(f"--device {name!r} is not a device torch knows: {error}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name!r} asked for CUDA, but torch sees no CUDA device; use --device cpu")
    return device


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed large buffers for reuse instead of returning them to the OS.

    A training step allocates a few (T, B, N) float32 tensors of ~6.5 MB.  By
    default glibc hands such blocks back to the kernel when freed, so the next
    step page-faults fresh zeroed pages in again: on a 2-core laptop that doubled
    the step time.  Raising the mmap and trim thresholds keeps them in the heap
    (costing a few hundred MB of resident memory at most).  No-op, returning
    False, where glibc's mallopt is unavailable (macOS, Windows, musl).
    """
    if os.name != "posix":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    trimmed = mallopt(_M_TRIM_THRESHOLD, 512 << 20)
    mapped = mallopt(_M_MMAP_THRESHOLD, 64 << 20)
    return bool(trimmed and mapped)
