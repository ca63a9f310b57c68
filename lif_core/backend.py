"""Where a neuron runs: the one backend check of lif_core.

    "torch"  the readable loops (`lif_core.neuron`, `lif_core.leaky`), any device and dtype;
    "numba"  the compiled kernels (`lif_core.sequence_kernels`, `lif_core.leaky_kernels`,
             `lif_core.fused_kernels`): CPU tensors, float32 or float64;
    "auto"   numba wherever its kernels can run these tensors, torch elsewhere.

The two give the same forward bits; the choice never changes the maths, only the speed.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

Backend = Literal["torch", "numba", "auto"]
BACKENDS: tuple[Backend, ...] = ("torch", "numba", "auto")
KERNEL_DTYPES = (torch.float32, torch.float64)


def check_backend(backend: str) -> Backend:
    """`backend` itself if it is one of BACKENDS, else a one-line ValueError naming them."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    return backend  # type: ignore[return-value]


def kernel_problem(current: Tensor, **parameters: Tensor | None) -> str | None:
    """None if the Numba kernels can run `current` with these parameter tensors, else why not
    (one line).  A 0-dim parameter is cast to the input's dtype (as torch casts it); a
    per-neuron one of another dtype would promote the arithmetic, which the kernels do not do."""
    if current.device.type != "cpu":
        return f"the numba backend runs on the CPU only, but the tensors are on {current.device}"
    if current.dtype not in KERNEL_DTYPES:
        return f"the numba backend takes float32 or float64 input, got {current.dtype}"
    for name, tensor in parameters.items():
        if tensor is None:
            continue
        if tensor.device.type != "cpu":
            return f"the numba backend runs on the CPU only, but {name} is on {tensor.device}"
        if tensor.dim() > 0 and tensor.dtype != current.dtype:
            return f"the numba backend needs {name} in the input's dtype {current.dtype}, got {tensor.dtype}"
    return None


def choose_backend(backend: str, current: Tensor, **parameters: Tensor | None) -> Literal["torch", "numba"]:
    """"torch" or "numba" for these tensors: "auto" takes numba wherever the kernels run
    (`kernel_problem`), torch elsewhere; "numba" where they cannot run is a one-line
    ValueError saying why."""
    if check_backend(backend) == "torch":
        return "torch"
    problem = kernel_problem(current, **parameters)
    if problem is None:
        return "numba"
    if backend == "numba":
        raise ValueError(f"{problem}; use backend='torch' (or 'auto')")
    return "torch"
