"""Numba CPU kernels for the whole-sequence LIF layer: the fast path.

Same maths, same floating-point operations in the same order as the torch
reference in `lif_core.neuron` (`reference_forward`, `reference_backward`), so
spikes and membranes are bit-identical to it (and to snnTorch) in float32:

    forward, per neuron, t = 0 .. T-1, U_{-1} = 0:
        reset_t = H(U_{t-1} - thr)
        U_t     = beta * U_{t-1} + I_t - reset_t * thr
        S_t     = H(U_t - thr)
        C       = sum_t S_t                     (spike counts, for count-based losses)

    backward, t = T-1 .. 0, g_T = 0:
        dL/dS_t  = dL/dS_t|direct + dL/dC       (C depends on every S_t with weight 1)
        g_t      = dL/dS_t * surrogate'(U_t - thr) + dL/dU_t|direct + beta * g_{t+1}
        dL/dI_t  = g_t          (constant input: dL/dI = sum_t g_t)

Layout is (T, B, N), C-contiguous.  Work is split over the batch with `prange`:
each thread owns whole rows (b, :) for all t, so no two threads write the same
memory and results do not depend on the thread count.  The inner loop runs over
neurons and vectorises.  Scalars arrive already cast to the arrays' dtype, and
no float literal appears in the arithmetic, so float32 stays float32 (a Python
float literal would silently promote to float64).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

FAST_SIGMOID = 0
ARCTAN = 1
HEAVISIDE = 2
SURROGATE_CODES = {"fast_sigmoid": FAST_SIGMOID, "atan": ARCTAN, "heaviside": HEAVISIDE}


@numba.njit(parallel=True, cache=True)
def lif_forward(
    current,
    constant_input,
    num_steps,
    beta,
    threshold,
    spikes_out,
    store_membranes,
    membranes_out,
    counts_out,
):
    """Fill spikes_out, (T, B, N), counts_out, (B, N), and, when store_membranes,
    membranes_out, (T, B, N), from current (T, B, N) or, when constant_input,
    (1, B, N) read at every step."""
    batch, neurons = spikes_out.shape[1], spikes_out.shape[2]
    one = np.ones(1, dtype=spikes_out.dtype)[0]
    zero = one - one
    for b in prange(batch):
        membrane = np.zeros(neurons, dtype=spikes_out.dtype)  # U_{t-1}
        count = np.zeros(neurons, dtype=spikes_out.dtype)  # sum_t S_t
        for t in range(num_steps):
            row = current[0 if constant_input else t, b]
            for n in range(neurons):
                previous = membrane[n]
                # reset_t = H(U_{t-1} - thr)
                reset = one if previous - threshold > zero else zero
                # U_t = beta * U_{t-1} + I_t - reset_t * thr
                u = beta * previous + row[n] - reset * threshold
                membrane[n] = u
                if store_membranes:
                    membranes_out[t, b, n] = u
                # S_t = H(U_t - thr)
                spike = one if u - threshold > zero else zero
                spikes_out[t, b, n] = spike
                count[n] += spike
        counts_out[b, :] = count


@numba.njit(inline="always")
def _surrogate_derivative(x, code, scale, one, half_pi):
    if code == FAST_SIGMOID:
        # 1 / (slope*|x| + 1)^2
        d = scale * abs(x) + one
        return one / (d * d)
    if code == HEAVISIDE:
        # dH/dx = 0: the true derivative, no surrogate
        return one - one
    # (alpha/2) / (1 + (pi/2 * alpha * x)^2)
    z = half_pi * scale * x
    return scale / (one + one) / (one + z * z)


@numba.njit(parallel=True, cache=True)
def lif_backward(
    membranes,
    grad_spikes,
    has_grad_spikes,
    grad_counts,
    has_grad_counts,
    grad_membranes,
    has_grad_membranes,
    beta,
    threshold,
    surrogate_code,
    surrogate_scale,
    half_pi,
    constant_input,
    grad_current_out,
):
    """Reverse-time BPTT into grad_current_out: (T, B, N), or (1, B, N) for a constant input.

    grad_spikes (T, B, N), grad_counts (B, N) and grad_membranes (T, B, N) may be
    dummies when the matching has_grad_* is False.
    """
    num_steps, batch, neurons = membranes.shape
    one = np.ones(1, dtype=membranes.dtype)[0]
    zero = one - one
    for b in prange(batch):
        carry = np.zeros(neurons, dtype=membranes.dtype)  # g_{t+1}
        total = np.zeros(neurons, dtype=membranes.dtype)  # sum_t g_t (constant input)
        for t in range(num_steps - 1, -1, -1):
            for n in range(neurons):
                g = beta * carry[n]
                if has_grad_spikes or has_grad_counts:
                    grad_s = grad_spikes[t, b, n] if has_grad_spikes else zero
                    if has_grad_counts:
                        grad_s += grad_counts[b, n]
                    x = membranes[t, b, n] - threshold
                    g += grad_s * _surrogate_derivative(
                        x, surrogate_code, surrogate_scale, one, half_pi
                    )
                if has_grad_membranes:
                    g += grad_membranes[t, b, n]
                carry[n] = g
                total[n] += g
            if not constant_input:
                grad_current_out[t, b, :] = carry
        if constant_input:
            grad_current_out[0, b, :] = total


def forward(
    current: np.ndarray, num_steps: int, beta: float, threshold: float, store_membranes: bool = True
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Allocate outputs and run `lif_forward`; returns (spikes, membranes, counts),
    membranes None unless store_membranes.  `beta` is clamped to [0, 1] here."""
    dtype = current.dtype.type
    constant_input = current.ndim == 2
    step_shape = current.shape if constant_input else current.shape[1:]
    spikes = np.empty((num_steps, *step_shape), dtype=current.dtype)
    membranes = np.empty_like(spikes) if store_membranes else np.empty((1, 1, 1), dtype=current.dtype)
    counts = np.empty(step_shape, dtype=current.dtype)
    lif_forward(
        current[None] if constant_input else current,
        constant_input,
        num_steps,
        dtype(min(max(beta, 0.0), 1.0)),
        dtype(threshold),
        spikes,
        store_membranes,
        membranes,
        counts,
    )
    return spikes, membranes if store_membranes else None, counts


def backward(
    membranes: np.ndarray,
    grad_spikes: np.ndarray | None,
    grad_counts: np.ndarray | None,
    grad_membranes: np.ndarray | None,
    beta: float,
    threshold: float,
    surrogate_name: str,
    surrogate_scale: float,
    constant_input: bool,
) -> np.ndarray:
    """Allocate dL/dI and run `lif_backward`; see `lif_core.neuron.reference_backward`."""
    dtype = membranes.dtype.type
    dummy = np.zeros((1, 1, 1), dtype=membranes.dtype)
    dummy_counts = dummy[0]
    out_steps = 1 if constant_input else membranes.shape[0]
    grad_current = np.empty((out_steps, *membranes.shape[1:]), dtype=membranes.dtype)
    lif_backward(
        membranes,
        dummy if grad_spikes is None else grad_spikes,
        grad_spikes is not None,
        dummy_counts if grad_counts is None else grad_counts,
        grad_counts is not None,
        dummy if grad_membranes is None else grad_membranes,
        grad_membranes is not None,
        dtype(min(max(beta, 0.0), 1.0)),
        dtype(threshold),
        SURROGATE_CODES[surrogate_name],
        dtype(surrogate_scale),
        dtype(np.pi / 2),
        constant_input,
        grad_current,
    )
    return grad_current[0] if constant_input else grad_current
