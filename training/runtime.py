"""Process-level run settings shared by every command: threads, seeds, devices, memory.

These touch process-wide state (torch's and Numba's thread pools, RNG seeds,
glibc's allocator), so the library never calls them on its own: the command
line (`experiments.cli`) and the benchmarks do, once, at start-up.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import random
from pathlib import Path
from typing import Any

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


# Environment variables that choose which float kernels torch and MKL run, and so
# the last bits of every float32 matrix product (see `machine_description`).
MATH_PATH_VARIABLES = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS")


def _cpuinfo_fields(path: Path = Path("/proc/cpuinfo")) -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ({} where there is none)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        name, _, value = line.partition(":")
        fields.setdefault(name.strip(), value.strip())
    return fields


def machine_description() -> dict[str, Any]:
    """What a float result's last bits depend on besides the code and the seed.

    A training run amplifies those bits, so trained numbers are named with the machine
    they were measured on: the CPU model, the instruction set torch's kernels use, the
    core count, and any environment variable that forces another kernel path."""
    fields = _cpuinfo_fields()
    model = fields.get("model name") or platform.processor() or platform.machine()
    if fields.get("cpu family") and fields.get("model"):
        model = f"{model} (family {fields['cpu family']}, model {fields['model']})"
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "architecture": platform.machine(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "math_path_variables": {name: os.environ[name] for name in MATH_PATH_VARIABLES if name in os.environ},
    }


def describe_machine(description: dict[str, Any] | None = None) -> str:
    """One line naming the machine, e.g. 'AMD EPYC (family 25, model 17), 2 cores, torch CPU
    kernels AVX512'."""
    machine = description if description is not None else machine_description()
    line = f"{machine['cpu']}, {machine['cores']} cores, torch CPU kernels {machine['torch_cpu_capability']}"
    forced = machine.get("math_path_variables") or {}
    if forced:
        line += " with " + " ".join(f"{name}={value}" for name, value in sorted(forced.items()))
    return line


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
        detail = (str(error).strip().splitlines() or [""])[0]
        raise ValueError(f"--device {name!r} is not a device torch knows ({detail}). Fix: use --device cpu, cuda, cuda:N or auto") from None
    if device.type not in ("cpu", "cuda"):
        # torch knows mps, xpu, meta, ...; the kernels and the trainer here run on the CPU and CUDA only
        raise ValueError(
            f"--device {name!r}: snn-mnist runs on the CPU or a CUDA GPU, not on {device.type}. "
            "Fix: use --device cpu, cuda, cuda:N or auto"
        )
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name!r} asked for CUDA, but torch sees no CUDA device. Fix: use --device cpu")
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


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_memory_bytes() -> int | None:
    """Memory this process may still allocate: the smaller of the kernel's MemAvailable and what
    its cgroup's limit leaves (v2 memory.max - memory.current, or v1's limit - usage); None
    where neither is known (not Linux)."""
    candidates: list[int] = []
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemAvailable:"):
                candidates.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    cgroup = Path("/sys/fs/cgroup")
    for limit_file, usage_file in (("memory.max", "memory.current"), ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        limit, usage = _read_int(cgroup / limit_file), _read_int(cgroup / usage_file)
        if limit is not None and usage is not None and limit < 1 << 60:  # v1 says "no limit" with a huge number
            candidates.append(max(limit - usage, 0))
    return min(candidates) if candidates else None


def format_bytes(count: float) -> str:
    """1.5 GiB, 300 MiB, ... (binary units)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if count < 1024 or unit == "PiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")
