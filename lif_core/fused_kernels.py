"""Numba kernels for the fused path: LIF1 -> Linear(H, K) -> LIF2 over a whole
sequence, one image at a time, forward and BPTT.

The exact path runs three steps with (T, B, H) tensors between them: the LIF1
kernel writes S1, a GEMM computes I2_t = W2 S1_t + b2, the LIF2 kernel runs;
backward, a GEMM gives dL/dS1 = g2 W2, the LIF1 backward reads the stored
membranes U1, and another GEMM gives dW2 = g2^T S1.  Here one image's whole
simulation stays in cache instead: its state is an H-vector, its hidden layer
is recomputed rather than stored, and no (T, B, H) tensor is read back.

Forward, per image b (U_{-1} = 0; the same recurrence as `lif_core.sequence_kernels`):

    U1_t = beta1 U1_{t-1} + I1 - H(U1_{t-1} - thr1) thr1         (I1 = W1 x + b1, constant)
    S1_t = H(U1_t - thr1)
    I2_t = W2 S1_t + b2                                          (K dot products of length H)
    U2_t = beta2 U2_{t-1} + I2_t - H(U2_{t-1} - thr2) thr2,   S2_t = H(U2_t - thr2)

Backward, per image, from dL/dC2, dL/dC1 (spike counts) and, when given, dL/dS2_t
and dL/dU2_t (a loss on the output membranes, such as tutorial 5's sum_t CE(U2_t, y));
the reset is detached, as in the exact path:

    (the forward pass keeps U2, T x K per image: small)
    pass 1: recompute the spike trains S1_t of the hidden neurons that spike at all
    pass 2, reverse time, the output layer:
        g2_t = (dL/dC2 + dL/dS2_t) sur'(U2_t - thr2) + dL/dU2_t + beta2 g2_{t+1},   g2_T = 0
        dL/db2 = sum_t g2_t
    pass 3, forward in time again: recompute U1_t and S1_t, and
        dL/dS1_t = dL/dC1 + W2^T g2_t
        a_t      = dL/dS1_t sur'(U1_t - thr1)
        dL/dW2  += g2_t S1_t^T
        dL/dI1   = sum_t g1_t = sum_t c_t a_t,    c_t = 1 + beta1 + ... + beta1^t

The last line is the hidden layer's BPTT recursion g1_t = a_t + beta1 g1_{t+1}
summed in closed form: g1_t = sum_{k>=t} beta1^(k-t) a_k, so sum_t g1_t =
sum_k a_k sum_{t<=k} beta1^(k-t) = sum_k c_k a_k.  It runs forward in time, so
the hidden membranes never need to be stored: pass 3 recomputes them with the
same operations as pass 1, bit for bit.

What differs from the exact path is only the order of float additions: the K dot
products (vectorised, so LLVM may reassociate them and use FMA: `fastmath=
{"reassoc", "contract"}` in `dot` alone) stand in for MKL's GEMM, and dL/dI1 is summed as c_t a_t instead of by the recursion.
Spikes therefore agree with the exact path except where a membrane lies within
float32 rounding of the threshold; `tests/test_fused.py` measures how often.

Most hidden neurons never spike, and which ones can be told from I1 alone.  With a
constant input I and U_{-1} = 0, a neuron that has not spiked has no reset, so
U_t = I (1 + beta1 + ... + beta1^t) = I c_t: for I > 0 it rises monotonically, and
its largest value in T steps is I c_{T-1}.  If I c_{T-1} lies below the threshold by
more than the float rounding of T steps (`silent_cutoff`), the neuron never spikes:
its count is 0 and its spike train all zeros.  The forward pass simulates only the
other neurons; the counts, spikes and everything after them are the same bits.

Work is split over images in FUSED_BLOCKS fixed blocks (as in
`lif_core.sequence_kernels`), each with its own dW2 and db2 accumulators, summed in
block order at the end: results do not depend on the thread count.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from lif_core.sequence_kernels import ARCTAN, FAST_SIGMOID, SIGMOID
from lif_core.surrogate import Surrogate

FUSED_BLOCKS = 16
_OPTIONS = dict(parallel=True, cache=True, error_model="numpy")


@numba.njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
def dot(weights, spikes, count):
    """sum_{j < count} weights[j] spikes[j], in whatever order LLVM vectorises it.

    The one place that allows fast-math, and only reassociation and FMA, so that the
    K dot products of the output layer run as vectors: their last bits depend on the
    CPU's vector width, like MKL's GEMM on the exact path.  A separate function, so
    that the flags stay on its own instructions and never reach the LIF updates."""
    total = weights[0] - weights[0]
    for j in range(count):
        total += weights[j] * spikes[j]
    return total


@numba.njit(inline="always")
def lif_step_exact(membrane, current, spikes, beta, threshold):
    """One LIF step over a vector of neurons, in place, with exactly the operations
    of `lif_core.sequence_kernels.lif_forward` (no fast-math: the same bits):

        U_t = beta U_{t-1} + I - H(U_{t-1} - thr) thr,    S_t = H(U_t - thr)
    """
    one = np.ones(1, dtype=membrane.dtype)[0]
    zero = one - one
    for n in range(membrane.shape[0]):
        previous = membrane[n]
        reset = one if previous - threshold > zero else zero
        u = beta * previous + current[n] - reset * threshold
        membrane[n] = u
        spikes[n] = one if u - threshold > zero else zero


@numba.njit(inline="always")
def active_neurons(counts, indices):
    """Write the indices n with counts[n] > 0 into indices[:m]; return m."""
    m = 0
    for n in range(counts.shape[0]):
        if counts[n] > 0:
            indices[m] = n
            m += 1
    return m


@numba.njit(inline="always")
def active_trains(current, active, m, num_steps, beta, threshold, membrane, spikes, trains):
    """The m active neurons' spike trains, trains[t, j] = S1_t[active_j], recomputed
    with `lif_step_exact`: the same spikes."""
    zero = current[0] - current[0]
    inputs = spikes[m : 2 * m]
    for j in range(m):
        membrane[j] = zero
        inputs[j] = current[active[j]]
    for t in range(num_steps):
        lif_step_exact(membrane[:m], inputs, trains[t, :m], beta, threshold)


@numba.njit(inline="always")
def active_columns(weight, active, m, active_weight):
    """W2's columns for the m active neurons: active_weight[k, j] = W2[k, active_j]."""
    for k in range(weight.shape[0]):
        for j in range(m):
            active_weight[k, j] = weight[k, active[j]]


@numba.njit(inline="always")
def output_currents(active_weight, trains, m, num_steps, bias, currents):
    """I2_t[k] = sum_{j < m} W2[k, active_j] S1_t[active_j] + b2[k], into currents (T, K)."""
    for t in range(num_steps):
        for k in range(bias.shape[0]):
            currents[t, k] = dot(active_weight[k], trains[t], m) + bias[k]


@numba.njit(**_OPTIONS)
def fused_forward(
    hidden_current,  # (B, H) I1
    weight,  # (K, H) W2
    bias,  # (K,) b2
    num_steps,
    beta1,
    threshold1,
    beta2,
    threshold2,
    cutoff,  # `silent_cutoff`: hidden neurons with I1 < cutoff never spike
    hidden_counts_out,  # (B, H)
    output_spikes_out,  # (T, B, K)
    output_counts_out,  # (B, K)
    output_membranes_out,  # (T, B, K): U2, kept for the backward pass (small)
):
    batch, hidden = hidden_current.shape
    classes = weight.shape[0]
    dtype = hidden_current.dtype
    one = np.ones(1, dtype=dtype)[0]
    zero = one - one
    blocks = min(batch, FUSED_BLOCKS)
    for block in prange(blocks):
        membrane1 = np.empty(hidden, dtype=dtype)
        spikes1 = np.empty(2 * hidden, dtype=dtype)
        candidates = np.empty(hidden, dtype=np.int64)
        counts = np.empty(hidden, dtype=dtype)
        active = np.empty(hidden, dtype=np.int64)
        trains = np.empty((num_steps, hidden), dtype=dtype)
        active_weight = np.empty((classes, hidden), dtype=dtype)
        currents2 = np.empty((num_steps, classes), dtype=dtype)
        membrane2 = np.empty(classes, dtype=dtype)
        spikes2 = np.empty(classes, dtype=dtype)
        for b in range(block * batch // blocks, (block + 1) * batch // blocks):
            # The hidden layer: only the neurons that may spike (I1 >= cutoff) are
            # simulated; the others' counts are 0 (see `silent_cutoff`).
            current = hidden_current[b]
            counts1 = hidden_counts_out[b]
            mc = 0
            for n in range(hidden):
                counts1[n] = zero
                if current[n] >= cutoff:
                    candidates[mc] = n
                    mc += 1
            # their spike trains S1_t over all T steps and counts C1 = sum_t S1_t
            # (S1 itself is not written out: a (T, B, H) tensor costs more to store
            # than to recompute)
            active_trains(current, candidates, mc, num_steps, beta1, threshold1, membrane1, spikes1, trains)
            for j in range(mc):
                counts[j] = zero
            for t in range(num_steps):
                for j in range(mc):
                    counts[j] += trains[t, j]
            # Only the m neurons that spiked at all feed the output layer: compact
            # their trains in place (in index order, as `active_neurons` gives them;
            # rarely needed: a candidate nearly always spikes).
            m = 0
            for j in range(mc):
                if counts[j] > zero:
                    counts1[candidates[j]] = counts[j]
                    active[m] = candidates[j]
                    if m != j:
                        for t in range(num_steps):
                            trains[t, m] = trains[t, j]
                    m += 1
            active_columns(weight, active, m, active_weight)
            # I2_t = W2 S1_t + b2, then the output layer over all T steps
            output_currents(active_weight, trains, m, num_steps, bias, currents2)
            for k in range(classes):
                membrane2[k] = zero
                output_counts_out[b, k] = zero
            for t in range(num_steps):
                lif_step_exact(membrane2, currents2[t], spikes2, beta2, threshold2)
                for k in range(classes):
                    output_spikes_out[t, b, k] = spikes2[k]
                    output_counts_out[b, k] += spikes2[k]
                    output_membranes_out[t, b, k] = membrane2[k]


@numba.njit(**_OPTIONS)
def fused_backward(
    hidden_current,  # (B, H) I1
    hidden_counts,  # (B, H) C1 from the forward pass
    output_membranes,  # (T, B, K) U2 from the forward pass
    weight,  # (K, H) W2
    bias,  # (K,) b2
    num_steps,
    beta1,
    threshold1,
    beta2,
    threshold2,
    surrogate1_code,
    surrogate1_scale,
    surrogate2_code,
    surrogate2_scale,
    half_pi,
    grad_output_counts,  # (B, K)
    grad_output_spikes,  # (T, B, K), or a dummy
    has_grad_output_spikes,
    grad_output_membranes,  # (T, B, K), or a dummy
    has_grad_output_membranes,
    grad_hidden_counts,  # (B, H), or a dummy
    has_grad_hidden_counts,
    grad_hidden_current_out,  # (B, H)
    grad_weight_blocks,  # (blocks, K, H) scratch, summed by the caller
    grad_bias_blocks,  # (blocks, K)
):
    batch, hidden = hidden_current.shape
    classes = weight.shape[0]
    dtype = hidden_current.dtype
    one = np.ones(1, dtype=dtype)[0]
    zero = one - one
    two = one + one
    # c_t = 1 + beta1 + ... + beta1^t
    partial_sums = np.empty(num_steps, dtype=dtype)
    running, power = zero, one
    for t in range(num_steps):
        running += power
        partial_sums[t] = running
        power *= beta1
    blocks = min(batch, FUSED_BLOCKS)
    for block in prange(blocks):
        membrane1 = np.empty(hidden, dtype=dtype)
        spikes1 = np.empty(2 * hidden, dtype=dtype)
        grad_s1 = np.empty(hidden, dtype=dtype)
        grad_i1 = np.empty(hidden, dtype=dtype)
        active = np.empty(hidden, dtype=np.int64)
        trains = np.empty((num_steps, hidden), dtype=dtype)
        output_grads = np.empty((num_steps, classes), dtype=dtype)  # g2_t
        grad_active = np.empty((classes, hidden), dtype=dtype)  # dL/dW2[:, active_j]
        grad_w = grad_weight_blocks[block]
        grad_b = grad_bias_blocks[block]
        for k in range(classes):
            grad_b[k] = zero
            for n in range(hidden):
                grad_w[k, n] = zero
        for b in range(block * batch // blocks, (block + 1) * batch // blocks):
            # pass 1: the spike trains of the m hidden neurons that spiked (U2 was kept)
            m = active_neurons(hidden_counts[b], active)
            active_trains(hidden_current[b], active, m, num_steps, beta1, threshold1, membrane1, spikes1, trains)
            # pass 2, reverse time: g2_t = dL/dS2_t sur'(U2_t - thr2) + dL/dU2_t + beta2 g2_{t+1}
            for k in range(classes):
                carry = zero
                for t in range(num_steps - 1, -1, -1):
                    grad_s2 = grad_output_counts[b, k]
                    if has_grad_output_spikes:
                        grad_s2 += grad_output_spikes[t, b, k]
                    x = output_membranes[t, b, k] - threshold2
                    if surrogate2_code == FAST_SIGMOID:
                        d = surrogate2_scale * abs(x) + one
                        slope = one / (d * d)
                    elif surrogate2_code == ARCTAN:
                        z = half_pi * surrogate2_scale * x
                        slope = surrogate2_scale / two / (one + z * z)
                    elif surrogate2_code == SIGMOID:
                        e = math.exp(-surrogate2_scale * x)
                        slope = surrogate2_scale * e / ((e + one) * (e + one))
                    else:
                        slope = zero
                    if has_grad_output_membranes:
                        carry = grad_s2 * slope + grad_output_membranes[t, b, k] + beta2 * carry
                    else:
                        carry = grad_s2 * slope + beta2 * carry
                    output_grads[t, k] = carry
                    # dL/db2 = sum_t g2_t
                    grad_b[k] += carry
            # dL/dW2 += sum_t g2_t S1_t^T, over the m neurons that spike at all
            for k in range(classes):
                for j in range(m):
                    grad_active[k, j] = zero
            for t in range(num_steps):
                for k in range(classes):
                    g = output_grads[t, k]
                    for j in range(m):
                        grad_active[k, j] += g * trains[t, j]
            for k in range(classes):
                for j in range(m):
                    grad_w[k, active[j]] += grad_active[k, j]
            # pass 3, forward in time: the hidden layer's gradient
            for n in range(hidden):
                membrane1[n] = zero
                grad_i1[n] = zero
            for t in range(num_steps):
                lif_step_exact(membrane1, hidden_current[b], spikes1, beta1, threshold1)
                # dL/dS1_t = dL/dC1 + W2^T g2_t
                if has_grad_hidden_counts:
                    for n in range(hidden):
                        grad_s1[n] = grad_hidden_counts[b, n]
                else:
                    for n in range(hidden):
                        grad_s1[n] = zero
                # (four rows of W2 per sweep over the H neurons, added in the order k = 0, 1, ...)
                full = classes - classes % 4
                for k in range(0, full, 4):
                    g0, g1 = output_grads[t, k], output_grads[t, k + 1]
                    g2, g3 = output_grads[t, k + 2], output_grads[t, k + 3]
                    for n in range(hidden):
                        grad_s1[n] = (
                            grad_s1[n] + weight[k, n] * g0 + weight[k + 1, n] * g1
                            + weight[k + 2, n] * g2 + weight[k + 3, n] * g3
                        )
                for k in range(full, classes):
                    g = output_grads[t, k]
                    for n in range(hidden):
                        grad_s1[n] += weight[k, n] * g
                # dL/dI1 += c_t dL/dS1_t sur'(U1_t - thr1)
                c = partial_sums[t]
                if surrogate1_code == FAST_SIGMOID:
                    for n in range(hidden):
                        d = surrogate1_scale * abs(membrane1[n] - threshold1) + one
                        grad_i1[n] += c * grad_s1[n] / (d * d)
                elif surrogate1_code == ARCTAN:
                    for n in range(hidden):
                        z = half_pi * surrogate1_scale * (membrane1[n] - threshold1)
                        grad_i1[n] += c * grad_s1[n] * (surrogate1_scale / two) / (one + z * z)
                elif surrogate1_code == SIGMOID:
                    for n in range(hidden):
                        e = math.exp(-surrogate1_scale * (membrane1[n] - threshold1))
                        grad_i1[n] += c * grad_s1[n] * (surrogate1_scale * e) / ((e + one) * (e + one))
            for n in range(hidden):
                grad_hidden_current_out[b, n] = grad_i1[n]


def silent_cutoff(num_steps: int, beta: float, threshold: float, dtype: type) -> float:
    """A current below which a hidden neuron provably never spikes in num_steps.

    Without a reset, U_t = I c_t with c_t = 1 + beta + ... + beta^t, largest at
    t = T - 1; the T float steps that compute it carry a relative error below
    2 T eps, so I < thr (1 - 4 (T + 1) eps) / c_{T-1} keeps every U_t < thr.
    -inf (screen nothing) for a non-positive threshold."""
    if not threshold > 0:
        return float("-inf")
    total = sum(float(dtype(beta)) ** k for k in range(num_steps))
    return threshold * (1.0 - 4.0 * (num_steps + 1) * float(np.finfo(dtype).eps)) / total


def _clamped(beta: float) -> float:
    return min(max(beta, 0.0), 1.0)


def forward(
    hidden_current: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    num_steps: int,
    beta1: float,
    threshold1: float,
    beta2: float,
    threshold2: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Run `fused_forward`; returns (hidden_counts (B, H), output_spikes (T, B, K),
    output_counts (B, K), output_membranes (T, B, K)).  Betas are clamped to [0, 1]."""
    dtype = hidden_current.dtype.type
    batch, hidden = hidden_current.shape
    classes = weight.shape[0]
    hidden_counts = np.empty((batch, hidden), dtype=hidden_current.dtype)
    output_spikes = np.empty((num_steps, batch, classes), dtype=hidden_current.dtype)
    output_counts = np.empty((batch, classes), dtype=hidden_current.dtype)
    output_membranes = np.empty((num_steps, batch, classes), dtype=hidden_current.dtype)
    fused_forward(
        hidden_current,
        weight,
        bias,
        num_steps,
        dtype(_clamped(beta1)),
        dtype(threshold1),
        dtype(_clamped(beta2)),
        dtype(threshold2),
        dtype(silent_cutoff(num_steps, _clamped(beta1), threshold1, dtype)),
        hidden_counts,
        output_spikes,
        output_counts,
        output_membranes,
    )
    return hidden_counts, output_spikes, output_counts, output_membranes


def backward(
    hidden_current: np.ndarray,
    hidden_counts: np.ndarray,
    output_membranes: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    num_steps: int,
    beta1: float,
    threshold1: float,
    beta2: float,
    threshold2: float,
    surrogate1: Surrogate,
    surrogate2: Surrogate,
    grad_output_counts: np.ndarray | None,
    grad_output_spikes: np.ndarray | None,
    grad_hidden_counts: np.ndarray | None,
    grad_output_membranes: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run `fused_backward`; returns (dL/dI1 (B, H), dL/dW2 (K, H), dL/db2 (K,)).
    `hidden_counts` (C1, naming the neurons that spiked) and `output_membranes` (U2)
    are the forward pass's;
    surrogate1 and surrogate2 are the hidden and the output layer's."""
    dtype = hidden_current.dtype.type
    batch, hidden = hidden_current.shape
    classes = weight.shape[0]
    dummy = np.zeros((1, 1, 1), dtype=hidden_current.dtype)
    grad_current = np.empty((batch, hidden), dtype=hidden_current.dtype)
    blocks = min(batch, FUSED_BLOCKS)
    grad_weight_blocks = np.empty((blocks, classes, hidden), dtype=hidden_current.dtype)
    grad_bias_blocks = np.empty((blocks, classes), dtype=hidden_current.dtype)
    fused_backward(
        hidden_current,
        hidden_counts,
        output_membranes,
        weight,
        bias,
        num_steps,
        dtype(_clamped(beta1)),
        dtype(threshold1),
        dtype(_clamped(beta2)),
        dtype(threshold2),
        surrogate1.code,
        dtype(surrogate1.scale),
        surrogate2.code,
        dtype(surrogate2.scale),
        dtype(np.pi / 2),
        np.zeros((batch, classes), dtype=hidden_current.dtype) if grad_output_counts is None else grad_output_counts,
        dummy if grad_output_spikes is None else grad_output_spikes,
        grad_output_spikes is not None,
        dummy if grad_output_membranes is None else grad_output_membranes,
        grad_output_membranes is not None,
        dummy[0] if grad_hidden_counts is None else grad_hidden_counts,
        grad_hidden_counts is not None,
        grad_current,
        grad_weight_blocks,
        grad_bias_blocks,
    )
    # blocks summed in a fixed order: the same bits for any thread count
    return grad_current, grad_weight_blocks.sum(axis=0), grad_bias_blocks.sum(axis=0)
