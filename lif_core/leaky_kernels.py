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
The option flags are loop-invariant; the backward kernel tests them outside its loops over
neurons, each of which then vectorises.  No float literal appears in the arithmetic (a
Python float would promote float32 to float64).
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
                current_t = current[step, b]
                spikes_t, pre_resets_t = spikes_out[t, b], pre_resets_out[t, b]
                # (one loop per option, the branches outside it, so that each vectorises)
                if reset_code == SUBTRACT:
                    for n in range(neurons):
                        m, thr = membrane[n], threshold[n]
                        # R_t = H(m - thr)
                        reset = one if m - thr > zero else zero
                        # U_t = b*m + I_t - R_t*thr
                        pre_resets_t[n] = decay[n] * m + current_t[n] - reset * thr
                elif reset_code == ZERO:
                    for n in range(neurons):
                        m = membrane[n]
                        reset = one if m - threshold[n] > zero else zero
                        # U_t = b*((1 - R_t)*m) + I_t
                        pre_resets_t[n] = decay[n] * ((one - reset) * m) + current_t[n]
                else:
                    for n in range(neurons):
                        # U_t = b*m + I_t
                        pre_resets_t[n] = decay[n] * membrane[n] + current_t[n]
                for n in range(neurons):
                    # out_t = H(U_t - thr) * g
                    spikes_t[n] = (one if pre_resets_t[n] - threshold[n] > zero else zero) * graded
                if same_step_reset:
                    for n in range(neurons):
                        m, thr, u = membrane[n], threshold[n], pre_resets_t[n]
                        reset = one if m - thr > zero else zero
                        # D_t = out_t/g - R_t
                        do_reset = spikes_t[n] / graded - reset
                        if reset_code == SUBTRACT:
                            # U'_t = U_t - D_t*thr
                            membrane[n] = u - do_reset * thr
                        else:
                            # U'_t = U_t - D_t*U_t
                            membrane[n] = u - do_reset * u
                        membranes_out[t, b, n] = membrane[n]
                else:
                    for n in range(neurons):
                        membrane[n] = pre_resets_t[n]
                        membranes_out[t, b, n] = membrane[n]


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
    dtype = membranes.dtype
    one = np.ones(1, dtype=dtype)[0]
    zero = one - one
    blocks = min(batch, ROW_BLOCKS)
    for block in prange(blocks):
        # per neuron of one row: dL/dm_{t+1}, and the step's terms (one simple loop each,
        # with the option branches outside the loops, so that every loop vectorises)
        carry = np.empty(neurons, dtype=dtype)
        slope = np.empty(neurons, dtype=dtype)
        reset = np.empty(neurons, dtype=dtype)
        grad_out = np.empty(neurons, dtype=dtype)
        grad_s = np.empty(neurons, dtype=dtype)
        grad_u = np.empty(neurons, dtype=dtype)
        # the time sums, written out once per row
        decay_sum = np.empty(neurons, dtype=dtype)
        threshold_sum = np.empty(neurons, dtype=dtype)
        current_sum = np.empty(neurons, dtype=dtype)
        for b in range(block * batch // blocks, (block + 1) * batch // blocks):
            for n in range(neurons):
                carry[n] = zero
                decay_sum[n] = zero
                threshold_sum[n] = zero
                current_sum[n] = zero
            for t in range(num_steps - 1, -1, -1):
                # m_t = U'_{t-1}
                previous = start[b] if t == 0 else membranes[t - 1, b]
                u = pre_resets[t, b]
                # R_t = H(m_t - thr)
                for n in range(neurons):
                    reset[n] = one if previous[n] - threshold[n] > zero else zero
                # sigma'_t = surrogate'(U_t - thr)
                if surrogate_code == ARCTAN:
                    for n in range(neurons):
                        z = surrogate_b * (u[n] - threshold[n])
                        slope[n] = surrogate_a / (one + z * z)
                elif surrogate_code == FAST_SIGMOID:
                    for n in range(neurons):
                        d = surrogate_a * abs(u[n] - threshold[n]) + one
                        slope[n] = one / (d * d)
                elif surrogate_code == SIGMOID:
                    for n in range(neurons):
                        e = math.exp(-surrogate_a * (u[n] - threshold[n]))
                        slope[n] = surrogate_a * e / ((e + one) * (e + one))
                else:
                    for n in range(neurons):
                        slope[n] = zero
                # c_t = dL/dU'_t|direct + dL/dm_{t+1}
                if has_grad_membranes:
                    for n in range(neurons):
                        grad_out[n] = grad_membranes[t, b, n] + carry[n]
                else:
                    for n in range(neurons):
                        grad_out[n] = zero + carry[n]
                # dL/dS_t = g * dL/dout_t
                if has_grad_spikes:
                    for n in range(neurons):
                        grad_s[n] = graded * grad_spikes[t, b, n]
                else:
                    for n in range(neurons):
                        grad_s[n] = graded * zero
                for n in range(neurons):
                    grad_u[n] = grad_out[n]
                if same_step_reset:
                    for n in range(neurons):
                        thr = threshold[n]
                        # D_t = H(U_t - thr)*g/g - R_t
                        do_reset = (one if u[n] - thr > zero else zero) * graded / graded - reset[n]
                        if reset_code == SUBTRACT:
                            # U'_t = U_t - D_t*thr
                            grad_s[n] = grad_s[n] - grad_out[n] * thr
                            threshold_sum[n] -= grad_out[n] * do_reset
                        else:
                            # U'_t = U_t - D_t*U_t
                            grad_s[n] = grad_s[n] - grad_out[n] * u[n]
                            grad_u[n] = grad_out[n] * (one - do_reset)
                for n in range(neurons):
                    # dL/dU_t = c_t * dU'_t/dU_t|direct + dL/dS_t * sigma'_t
                    grad_u[n] = grad_u[n] + grad_s[n] * slope[n]
                    threshold_sum[n] -= grad_s[n] * slope[n]
                # dL/dI_t = dL/dU_t
                if constant_input:
                    for n in range(neurons):
                        current_sum[n] += grad_u[n]
                else:
                    for n in range(neurons):
                        grad_current_out[t, b, n] = grad_u[n]
                if reset_code == ZERO:
                    for n in range(neurons):
                        # U_t = b*((1 - R_t)*m_t) + I_t
                        decay_sum[n] += grad_u[n] * ((one - reset[n]) * previous[n])
                        carry[n] = grad_u[n] * decay[n] * (one - reset[n])
                else:
                    for n in range(neurons):
                        # U_t = b*m_t + I_t [- R_t*thr]
                        decay_sum[n] += grad_u[n] * previous[n]
                        carry[n] = grad_u[n] * decay[n]
                    if reset_code == SUBTRACT:
                        for n in range(neurons):
                            threshold_sum[n] -= grad_u[n] * reset[n]
            for n in range(neurons):
                grad_decay_out[b, n] = decay_sum[n]
                grad_threshold_out[b, n] = threshold_sum[n]
                grad_start_out[b, n] = carry[n]
                if constant_input:
                    grad_current_out[0, b, n] = current_sum[n]


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
