"""Numba CPU kernels for the whole-sequence LIF layer (`lif_core.sequence`): the fast path.

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

Layout is (T, B, N), C-contiguous.  Work is split over the batch with `prange`
in ROW_BLOCKS contiguous blocks of rows: each block owns whole rows (b, :) for
all t, so no two threads write the same memory and results do not depend on
the thread count.  Every inner loop runs over neurons and is written so that
LLVM vectorises it:
  * no branch inside an inner loop (tests of flags sit outside; a load under a
    condition cannot be vectorised);
  * error_model="numpy", which drops Python's division-by-zero check (its
    branch blocks vectorisation too; every divisor here is at least 1);
  * scratch rows are allocated once per block, not once per row.
Scalars arrive already cast to the arrays' dtype, and no float literal appears
in the arithmetic, so float32 stays float32 (a Python float literal would
silently promote to float64).

Measured on a 2-core laptop-class VM, the forward and backward passes are bound
by memory traffic (a (T, B, N) float32 tensor is 6.5 MB at B 128, N 512, T 25),
not arithmetic.  For that size, recomputing the membranes in the backward pass
instead of storing them was tried and was slower.  For long time-varying inputs
(T 500, B 16, N 4096: 131 MB per tensor) it is faster, and `lif_backward_recompute`
does it when the membranes are not asked for.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from lif_core.surrogate import ArcTan, FastSigmoid, Sigmoid, Surrogate

# The surrogates' own codes (`lif_core.surrogate`), as compile-time constants of the kernels.
FAST_SIGMOID, ARCTAN, SIGMOID = FastSigmoid.code, ArcTan.code, Sigmoid.code

# Rows of the batch are handed out to threads in this many contiguous blocks;
# scratch memory is allocated once per block.  A fixed number, so that nothing
# depends on the thread count.
ROW_BLOCKS = 16


@numba.njit(parallel=True, cache=True, error_model="numpy")
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
    blocks = min(batch, ROW_BLOCKS)
    for block in prange(blocks):
        membrane = np.empty(neurons, dtype=spikes_out.dtype)  # U_{t-1}, then U_t
        for b in range(block * batch // blocks, (block + 1) * batch // blocks):
            for n in range(neurons):
                membrane[n] = zero  # U_{-1} = 0
                counts_out[b, n] = zero
            for t in range(num_steps):
                step = 0 if constant_input else t
                for n in range(neurons):
                    previous = membrane[n]
                    # reset_t = H(U_{t-1} - thr)
                    reset = one if previous - threshold > zero else zero
                    # U_t = beta * U_{t-1} + I_t - reset_t * thr
                    u = beta * previous + current[step, b, n] - reset * threshold
                    membrane[n] = u
                    # S_t = H(U_t - thr);  C = sum_t S_t
                    spike = one if u - threshold > zero else zero
                    spikes_out[t, b, n] = spike
                    counts_out[b, n] += spike
                if store_membranes:
                    for n in range(neurons):
                        membranes_out[t, b, n] = membrane[n]


@numba.njit(parallel=True, cache=True, error_model="numpy")
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
    two = one + one
    blocks = min(batch, ROW_BLOCKS)
    for block in prange(blocks):
        carry = np.empty(neurons, dtype=membranes.dtype)  # g_{t+1}, then g_t
        grad_s = np.empty(neurons, dtype=membranes.dtype)  # dL/dS_t, then dL/dS_t * surrogate'
        for b in range(block * batch // blocks, (block + 1) * batch // blocks):
            for n in range(neurons):
                carry[n] = zero
            if constant_input:
                for n in range(neurons):
                    grad_current_out[0, b, n] = zero
            for t in range(num_steps - 1, -1, -1):
                # dL/dS_t = dL/dS_t|direct + dL/dC
                if has_grad_spikes:
                    for n in range(neurons):
                        grad_s[n] = grad_spikes[t, b, n]
                else:
                    for n in range(neurons):
                        grad_s[n] = zero
                if has_grad_counts:
                    for n in range(neurons):
                        grad_s[n] += grad_counts[b, n]
                # ... * surrogate'(U_t - thr)
                if surrogate_code == FAST_SIGMOID:
                    for n in range(neurons):
                        # 1 / (slope*|x| + 1)^2
                        d = surrogate_scale * abs(membranes[t, b, n] - threshold) + one
                        grad_s[n] = grad_s[n] * (one / (d * d))
                elif surrogate_code == ARCTAN:
                    for n in range(neurons):
                        # (alpha/2) / (1 + (pi/2 * alpha * x)^2)
                        z = half_pi * surrogate_scale * (membranes[t, b, n] - threshold)
                        grad_s[n] = grad_s[n] * (surrogate_scale / two / (one + z * z))
                elif surrogate_code == SIGMOID:
                    for n in range(neurons):
                        # slope * e^(-slope*x) / (e^(-slope*x) + 1)^2
                        e = math.exp(-surrogate_scale * (membranes[t, b, n] - threshold))
                        grad_s[n] = grad_s[n] * (surrogate_scale * e / ((e + one) * (e + one)))
                else:
                    for n in range(neurons):
                        # HEAVISIDE: the true derivative, dH/dx = 0
                        grad_s[n] = zero
                # g_t = dL/dS_t * surrogate'(U_t - thr) + beta * g_{t+1}  (+ dL/dU_t|direct)
                for n in range(neurons):
                    carry[n] = grad_s[n] + beta * carry[n]
                if has_grad_membranes:
                    for n in range(neurons):
                        carry[n] += grad_membranes[t, b, n]
                # dL/dI_t = g_t   (constant input: dL/dI = sum_t g_t)
                if constant_input:
                    for n in range(neurons):
                        grad_current_out[0, b, n] += carry[n]
                else:
                    for n in range(neurons):
                        grad_current_out[t, b, n] = carry[n]


# Neurons per work item of `lif_backward_recompute`.  Each step of an item reads
# and writes CHUNK contiguous floats; 1,024 (4 KB, one page) was fastest of
# 32-1,024 on the Open Neuromorphic workload (T 500, B 16, N 4096): narrower
# chunks touch more pages per byte.  Its (T, CHUNK) scratch (2 MB there) stays
# in the cache hierarchy between the forward and the reverse loop.
RECOMPUTE_CHUNK = 1024


@numba.njit(parallel=True, cache=True, error_model="numpy")
def lif_backward_recompute(
    current,
    grad_spikes,
    has_grad_spikes,
    grad_counts,
    has_grad_counts,
    beta,
    threshold,
    surrogate_code,
    surrogate_scale,
    half_pi,
    grad_current_out,
):
    """Reverse-time BPTT for a time-varying input (T, B, N) without stored membranes.

    For each (row b, chunk of RECOMPUTE_CHUNK neurons) the forward recurrence is run
    again into a cache-resident scratch (the same operations as `lif_forward`, so the
    same membranes, bit for bit), then the reverse loop of `lif_backward` reads it.
    A long sequence then costs one read of the input and one write of dL/dI instead
    of writing, and reading back, a (T, B, N) tensor of membranes.  grad_spikes may
    have any strides (a loss like spikes.sum() hands over a broadcast scalar).
    """
    num_steps, batch, neurons = current.shape
    one = np.ones(1, dtype=current.dtype)[0]
    zero = one - one
    two = one + one
    chunks = (neurons + RECOMPUTE_CHUNK - 1) // RECOMPUTE_CHUNK
    for item in prange(batch * chunks):
        b = item // chunks
        start = (item % chunks) * RECOMPUTE_CHUNK
        stop = min(start + RECOMPUTE_CHUNK, neurons)
        width = stop - start
        membranes = np.empty((num_steps, width), dtype=current.dtype)
        carry = np.empty(width, dtype=current.dtype)
        counts_grad = np.empty(width, dtype=current.dtype)  # dL/dC, added to every dL/dS_t
        for n in range(width):
            counts_grad[n] = grad_counts[b, start + n] if has_grad_counts else zero
        # forward again: U_t = beta * U_{t-1} + I_t - H(U_{t-1} - thr) * thr
        for n in range(width):
            carry[n] = zero  # U_{-1}
        for t in range(num_steps):
            for n in range(width):
                previous = carry[n]
                reset = one if previous - threshold > zero else zero
                u = beta * previous + current[t, b, start + n] - reset * threshold
                carry[n] = u
                membranes[t, n] = u
        # reverse: g_t = dL/dS_t * surrogate'(U_t - thr) + beta * g_{t+1};  dL/dI_t = g_t
        for n in range(width):
            carry[n] = zero
        for t in range(num_steps - 1, -1, -1):
            if surrogate_code == FAST_SIGMOID:
                for n in range(width):
                    grad_s = (grad_spikes[t, b, start + n] if has_grad_spikes else zero) + counts_grad[n]
                    d = surrogate_scale * abs(membranes[t, n] - threshold) + one
                    carry[n] = grad_s * (one / (d * d)) + beta * carry[n]
            elif surrogate_code == ARCTAN:
                for n in range(width):
                    grad_s = (grad_spikes[t, b, start + n] if has_grad_spikes else zero) + counts_grad[n]
                    z = half_pi * surrogate_scale * (membranes[t, n] - threshold)
                    carry[n] = grad_s * (surrogate_scale / two / (one + z * z)) + beta * carry[n]
            elif surrogate_code == SIGMOID:
                for n in range(width):
                    grad_s = (grad_spikes[t, b, start + n] if has_grad_spikes else zero) + counts_grad[n]
                    e = math.exp(-surrogate_scale * (membranes[t, n] - threshold))
                    carry[n] = grad_s * (surrogate_scale * e / ((e + one) * (e + one))) + beta * carry[n]
            else:
                for n in range(width):
                    carry[n] = zero + beta * carry[n]
            for n in range(width):
                grad_current_out[t, b, start + n] = carry[n]


# The same kernels without threads, for layers too small to be worth waking a
# thread pool for (the output layer: B x 10 neurons).  prange runs as range.
lif_forward_serial = numba.njit(cache=True, error_model="numpy")(lif_forward.py_func)
lif_backward_serial = numba.njit(cache=True, error_model="numpy")(lif_backward.py_func)
SERIAL_BELOW = 16_384  # batch * neurons below which the serial kernels run


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
    kernel = lif_forward_serial if counts.size < SERIAL_BELOW else lif_forward
    kernel(
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


def backward_recompute(
    current: np.ndarray,
    grad_spikes: np.ndarray | None,
    grad_counts: np.ndarray | None,
    beta: float,
    threshold: float,
    surrogate: Surrogate,
) -> np.ndarray:
    """dL/dI for a time-varying input from the input itself (`lif_backward_recompute`),
    for losses on spikes and counts (no gradient on membranes: they were not kept)."""
    dtype = current.dtype.type
    grad_current = np.empty_like(current)
    lif_backward_recompute(
        current,
        np.zeros((1, 1, 1), dtype=current.dtype) if grad_spikes is None else grad_spikes,
        grad_spikes is not None,
        np.zeros((1, 1), dtype=current.dtype) if grad_counts is None else grad_counts,
        grad_counts is not None,
        dtype(min(max(beta, 0.0), 1.0)),
        dtype(threshold),
        surrogate.code,
        dtype(surrogate.scale),
        dtype(np.pi / 2),
        grad_current,
    )
    return grad_current


def backward(
    membranes: np.ndarray,
    grad_spikes: np.ndarray | None,
    grad_counts: np.ndarray | None,
    grad_membranes: np.ndarray | None,
    beta: float,
    threshold: float,
    surrogate: Surrogate,
    constant_input: bool,
) -> np.ndarray:
    """Allocate dL/dI and run `lif_backward`; see `lif_core.neuron.reference_backward`."""
    dtype = membranes.dtype.type
    dummy = np.zeros((1, 1, 1), dtype=membranes.dtype)
    out_steps = 1 if constant_input else membranes.shape[0]
    grad_current = np.empty((out_steps, *membranes.shape[1:]), dtype=membranes.dtype)
    kernel = lif_backward_serial if membranes[0].size < SERIAL_BELOW else lif_backward
    kernel(
        membranes,
        dummy if grad_spikes is None else grad_spikes,
        grad_spikes is not None,
        dummy[0] if grad_counts is None else grad_counts,
        grad_counts is not None,
        dummy if grad_membranes is None else grad_membranes,
        grad_membranes is not None,
        dtype(min(max(beta, 0.0), 1.0)),
        dtype(threshold),
        surrogate.code,
        dtype(surrogate.scale),
        dtype(np.pi / 2),
        constant_input,
        grad_current,
    )
    return grad_current[0] if constant_input else grad_current
