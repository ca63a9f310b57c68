"""Numba CPU kernels for the general snn.Leaky (`lif_core.leaky`): the same loops, compiled.

`lif_core.leaky` is the readable reference: `leaky_step_terms` for the forward step and
`leaky_backward` for the reverse-time BPTT.  These kernels perform the same floating-point
operations in the same order per neuron, so spikes and membranes are bit-identical to the
reference (and to snnTorch); gradients agree to rounding (sums over time and batch run in
another order).  With m = U'_{t-1}, b = clamp(beta, 0, 1), g = graded_spikes_factor:

    forward, per neuron, t = 0 .. T-1, m = the starting membrane at t = 0:
        R_t  = H(m - thr)
        U_t  = b*m + I_t - R_t*thr  |  b*((1 - R_t)*m) + I_t  |  b*m + I_t     (subtract|zero|none)
        out_t = H(U_t - thr) * g
        U'_t = U_t, or with reset_delay=False  D_t = out_t/g - R_t  and
               U'_t = U_t - D_t*thr  |  U_t - D_t*U_t                         (subtract|zero)

    backward, t = T-1 .. 0: see `lif_core.leaky.leaky_backward`, line by line.

Layout: every tensor is (T, B, N) (constant input (1, B, N)), beta and threshold arrive as
(N,) arrays (a scalar broadcast), the starting membrane as (B, N).  Work is split over the
batch in ROW_BLOCKS contiguous blocks (as in `lif_core.sequence_kernels`), so every row is
computed by one thread in one fixed order: the bits do not depend on the thread count.
The option flags are loop-invariant; LLVM hoists them out of the inner loops.  No float
literal appears in the arithmetic (a Python float would promote float32 to float64).
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
import torch
from numba import prange
from torch import Tensor

from lif_core.neuron import RESET_MECHANISMS, LeakyOptions
from lif_core.sequence_kernels import ARCTAN, FAST_SIGMOID, ROW_BLOCKS, SIGMOID
from lif_core.surrogate import ArcTan, Surrogate

# snnTorch's reset numbering (`lif_core.neuron.RESET_MECHANISMS`), as the kernels' constants
SUBTRACT, ZERO = RESET_MECHANISMS.index("subtract"), RESET_MECHANISMS.index("zero")


@numba.njit(parallel=True, cache=True, error_model="numpy")
def leaky_forward_kernel(
    current,
    constant_input,
    num_steps,
    start,
    decay,
    threshold,
    reset_code,
    same_step_reset,
    graded,
    spikes_out,
    membranes_out,
    pre_resets_out,
):
    """Fill spikes_out (g*S_t), membranes_out (U'_t) and pre_resets_out (U_t), all (T, B, N).
    pre_resets_out may be membranes_out itself when there is no same-step reset."""
    batch, neurons = start.shape
    one = np.ones(1, dtype=spikes_out.dtype)[0]
    zero = one - one
    blocks = min(batch, ROW_BLOCKS)
    for block in prange(blocks):
        membrane = np.empty(neurons, dtype=spikes_out.dtype)  # m = U'_{t-1}
        for b in range(block * batch // blocks, (block + 1) * batch // blocks):
            for n in range(neurons):
                membrane[n] = start[b, n]
            for t in range(num_steps):
                step = 0 if constant_input else t
                for n in range(neurons):
                    m = membrane[n]
                    thr = threshold[n]
                    # R_t = H(m - thr)
                    reset = one if m - thr > zero else zero
                    if reset_code == SUBTRACT:
                        # U_t = b*m + I_t - R_t*thr
                        u = decay[n] * m + current[step, b, n] - reset * thr
                    elif reset_code == ZERO:
                        # U_t = b*((1 - R_t)*m) + I_t
                        u = decay[n] * ((one - reset) * m) + current[step, b, n]
                    else:
                        # U_t = b*m + I_t
                        u = decay[n] * m + current[step, b, n]
                    # out_t = H(U_t - thr) * g
                    spike = (one if u - thr > zero else zero) * graded
                    spikes_out[t, b, n] = spike
                    pre_resets_out[t, b, n] = u
                    if same_step_reset:
                        # D_t = out_t/g - R_t
                        do_reset = spike / graded - reset
                        if reset_code == SUBTRACT:
                            # U'_t = U_t - D_t*thr
                            u = u - do_reset * thr
                        else:
                            # U'_t = U_t - D_t*U_t
                            u = u - do_reset * u
                    membrane[n] = u
                    membranes_out[t, b, n] = u


@numba.njit(parallel=True, cache=True, error_model="numpy")
def leaky_backward_kernel(
    start,
    membranes,
    pre_resets,
    grad_spikes,
    has_grad_spikes,
    grad_membranes,
    has_grad_membranes,
    decay,
    threshold,
    reset_code,
    same_step_reset,
    graded,
    surrogate_code,
    surrogate_a,
    surrogate_b,
    constant_input,
    grad_current_out,
    grad_decay_out,
    grad_threshold_out,
    grad_start_out,
):
    """Reverse-time BPTT of the general snn.Leaky, per neuron (see `leaky_backward`).

    Writes dL/dI (T, B, N), or (1, B, N) summed over time for a constant input, and per
    (b, n) the time sums dL/db, dL/dthr and dL/d(starting membrane), (B, N) each; the
    caller reduces the first two to beta's and the threshold's shape.  grad_spikes and
    grad_membranes are dummies when the matching has_grad_* is False.

    Surrogate derivative sigma'(x), x = U_t - thr, by surrogate_code:
        ARCTAN        a / (1 + (b*x)^2)            a = alpha/2, b = pi/2*alpha
        FAST_SIGMOID  1 / (a*|x| + 1)^2            a = slope
        SIGMOID       a*e^(-a*x) / (e^(-a*x) + 1)^2  a = slope
        otherwise     0              (StraightHeaviside: the true derivative)
    """
    num_steps, batch, neurons = membranes.shape
    one = np.ones(1, dtype=membranes.dtype)[0]
    zero = one - one
    blocks = min(batch, ROW_BLOCKS)
    for block in prange(blocks):
        carry = np.empty(neurons, dtype=membranes.dtype)  # dL/dm_{t+1}
        for b in range(block * batch // blocks, (block + 1) * batch // blocks):
            for n in range(neurons):
                carry[n] = zero
                grad_decay_out[b, n] = zero
                grad_threshold_out[b, n] = zero
                if constant_input:
                    grad_current_out[0, b, n] = zero
            for t in range(num_steps - 1, -1, -1):
                for n in range(neurons):
                    thr = threshold[n]
                    # m_t = U'_{t-1}
                    m = start[b, n] if t == 0 else membranes[t - 1, b, n]
                    u = pre_resets[t, b, n]
                    x = u - thr
                    # R_t = H(m_t - thr)
                    reset = one if m - thr > zero else zero
                    # sigma'_t = surrogate'(U_t - thr)
                    if surrogate_code == ARCTAN:
                        z = surrogate_b * x
                        slope = surrogate_a / (one + z * z)
                    elif surrogate_code == FAST_SIGMOID:
                        d = surrogate_a * abs(x) + one
                        slope = one / (d * d)
                    elif surrogate_code == SIGMOID:
                        e = math.exp(-surrogate_a * x)
                        slope = surrogate_a * e / ((e + one) * (e + one))
                    else:
                        slope = zero
                    # c_t = dL/dU'_t|direct + dL/dm_{t+1}
                    grad_out = (grad_membranes[t, b, n] if has_grad_membranes else zero) + carry[n]
                    # dL/dS_t = g * dL/dout_t
                    grad_s = graded * (grad_spikes[t, b, n] if has_grad_spikes else zero)
                    grad_u = grad_out
                    if same_step_reset:
                        # D_t = H(U_t - thr)*g/g - R_t
                        do_reset = (one if x > zero else zero) * graded / graded - reset
                        if reset_code == SUBTRACT:
                            # U'_t = U_t - D_t*thr
                            grad_s = grad_s - grad_out * thr
                            grad_threshold_out[b, n] -= grad_out * do_reset
                        else:
                            # U'_t = U_t - D_t*U_t
                            grad_s = grad_s - grad_out * u
                            grad_u = grad_out * (one - do_reset)
                    # dL/dU_t = c_t * dU'_t/dU_t|direct + dL/dS_t * sigma'_t
                    grad_u = grad_u + grad_s * slope
                    grad_threshold_out[b, n] -= grad_s * slope
                    # dL/dI_t = dL/dU_t
                    if constant_input:
                        grad_current_out[0, b, n] += grad_u
                    else:
                        grad_current_out[t, b, n] = grad_u
                    if reset_code == ZERO:
                        # U_t = b*((1 - R_t)*m_t) + I_t
                        grad_decay_out[b, n] += grad_u * ((one - reset) * m)
                        carry[n] = grad_u * decay[n] * (one - reset)
                    else:
                        # U_t = b*m_t + I_t [- R_t*thr]
                        grad_decay_out[b, n] += grad_u * m
                        carry[n] = grad_u * decay[n]
                        if reset_code == SUBTRACT:
                            grad_threshold_out[b, n] -= grad_u * reset
            for n in range(neurons):
                grad_start_out[b, n] = carry[n]


# ----------------------------------------------------------------------------- torch side


def _per_neuron(value: Tensor, neurons: int, dtype: torch.dtype) -> np.ndarray:
    """A scalar or per-neuron parameter as a contiguous (N,) array in the kernels' dtype."""
    return np.ascontiguousarray(value.detach().to(dtype).expand(neurons).numpy())


def _rows(tensor: Tensor, steps: int, rows: int, neurons: int) -> np.ndarray:
    """(steps, ..., N) as a C-contiguous (steps, B, N) array (a view where possible)."""
    return np.ascontiguousarray(tensor.detach().reshape(steps, rows, neurons).numpy())


def _surrogate_constants(surrogate: Surrogate, dtype: type) -> tuple[int, Any, Any]:
    """(code, a, b) for `leaky_backward_kernel`; a and b already in the kernels' dtype."""
    if isinstance(surrogate, ArcTan):
        return surrogate.code, dtype(surrogate.alpha / 2), dtype(math.pi / 2 * surrogate.alpha)
    return surrogate.code, dtype(surrogate.scale), dtype(0)


def numba_leaky_forward(
    current: Tensor,
    beta: Tensor,
    threshold: Tensor,
    graded: Tensor,
    membrane: Tensor,
    options: LeakyOptions,
    steps: int,
    constant_input: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """The forward time loop on the kernels: (spikes, membranes U'_t, pre-reset U_t), each
    (T, *step_shape); the last is the membranes tensor itself when there is no same-step reset."""
    step_shape = membrane.shape
    neurons = step_shape[-1] if len(step_shape) else 1
    rows = membrane.numel() // neurons if neurons else 0
    dtype = current.dtype
    np_dtype = torch.empty((), dtype=dtype).numpy().dtype.type
    same_step = not options.reset_delay and options.reset_mechanism != "none"
    spikes = np.empty((steps, rows, neurons), dtype=np_dtype)
    membranes = np.empty_like(spikes)
    pre_resets = np.empty_like(spikes) if same_step else membranes
    if spikes.size:
        leaky_forward_kernel(
            _rows(current, 1 if constant_input else steps, rows, neurons),
            constant_input,
            steps,
            _rows(membrane, 1, rows, neurons)[0],
            _per_neuron(beta.clamp(0, 1), neurons, dtype),  # b = clamp(beta, 0, 1), then cast
            _per_neuron(threshold, neurons, dtype),
            options.reset_code,
            same_step,
            np_dtype(float(graded)),
            spikes,
            membranes,
            pre_resets,
        )
    shape = (steps, *step_shape)
    spikes_t, membranes_t = torch.from_numpy(spikes).reshape(shape), torch.from_numpy(membranes).reshape(shape)
    return spikes_t, membranes_t, torch.from_numpy(pre_resets).reshape(shape) if same_step else membranes_t


def numba_leaky_backward(
    current_shape: torch.Size,
    start: Tensor,
    membranes: Tensor,
    pre_resets: Tensor,
    grad_spikes: Tensor | None,
    grad_membranes: Tensor | None,
    beta: Tensor,
    threshold: Tensor,
    graded: Tensor,
    options: LeakyOptions,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """BPTT on the kernels: (dL/dI, dL/db summed over time (B, ...), dL/dthr likewise,
    dL/d(starting membrane)), all unreduced; `lif_core.leaky` reduces and applies the clamp."""
    steps, step_shape = membranes.shape[0], membranes.shape[1:]
    neurons = step_shape[-1] if len(step_shape) else 1
    rows = start.numel() // neurons if neurons else 0
    dtype = membranes.dtype
    np_dtype = torch.empty((), dtype=dtype).numpy().dtype.type
    constant_input = len(current_shape) == membranes.dim() - 1
    same_step = not options.reset_delay and options.reset_mechanism != "none"
    dummy = np.zeros((1, 1, 1), dtype=np_dtype)
    grad_current = np.empty((1 if constant_input else steps, rows, neurons), dtype=np_dtype)
    grad_decay = np.empty((rows, neurons), dtype=np_dtype)
    grad_threshold = np.empty_like(grad_decay)
    grad_start = np.empty_like(grad_decay)
    code, surrogate_a, surrogate_b = _surrogate_constants(options.surrogate, np_dtype)
    if grad_current.size:
        leaky_backward_kernel(
            _rows(start, 1, rows, neurons)[0],
            _rows(membranes, steps, rows, neurons),
            _rows(pre_resets, steps, rows, neurons),
            dummy if grad_spikes is None else _rows(grad_spikes.to(dtype), steps, rows, neurons),
            grad_spikes is not None,
            dummy if grad_membranes is None else _rows(grad_membranes.to(dtype), steps, rows, neurons),
            grad_membranes is not None,
            _per_neuron(beta.clamp(0, 1), neurons, dtype),
            _per_neuron(threshold, neurons, dtype),
            options.reset_code,
            same_step,
            np_dtype(float(graded)),
            code,
            surrogate_a,
            surrogate_b,
            constant_input,
            grad_current,
            grad_decay,
            grad_threshold,
            grad_start,
        )
    return (
        torch.from_numpy(grad_current).reshape(current_shape),
        torch.from_numpy(grad_decay).reshape(step_shape),
        torch.from_numpy(grad_threshold).reshape(step_shape),
        torch.from_numpy(grad_start).reshape(step_shape),
    )
