"""A Linear layer fed by spikes: add up the weight columns of the inputs that spiked.

For a (T, B, K) signal S of spikes (rate-coded images, a hidden layer's output) the
currents of the next layer are, row by row (r = one step of one image, T * B rows),

    I_r = W S_r + b = b + sum_{i : S_r[i] != 0} S_r[i] W[:, i]

Spikes are mostly zeros (an MNIST image rate-codes to ~13 % ones, a hidden layer
often fewer), so summing the columns of the inputs that spiked does a fraction of the
dense product's work.  The weight gradient is the same sum seen from the other side,

    dL/dW[:, i] = sum_{r : S_r[i] != 0} S_r[i] G_r,        G_r = dL/dI_r

and dL/db = sum_r G_r, dL/dS = G W (a dense product: the surrogate gradient reaches
every input, spiking or not).

The reference is `training.network.per_step_linear` (T products of torch's Linear, the
bits snnTorch gets).  These kernels add the same terms in another order (input by input
instead of BLAS's blocking), so currents and gradients agree with it to float32 rounding;
`tests/test_spike_linear.py` holds them together.  Every row of the forward pass, and
every input's column of dL/dW, is summed by one thread in a fixed order: the results do
not depend on the thread count.  Any values work (graded spikes, dense inputs); zeros
are what make it fast.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from numba import prange
from torch import Tensor

_OPTIONS = dict(parallel=True, cache=True, error_model="numpy")


@numba.njit(**_OPTIONS)
def nonzeros_by_row(signal):
    """signal (R, K) in compressed rows: (starts (R + 1,), inputs (nnz,), values (nnz,)), the
    nonzero signal[r, i] of row r at starts[r]:starts[r + 1], in increasing i."""
    rows, inputs = signal.shape
    counts = np.zeros(rows + 1, dtype=np.int64)
    for r in prange(rows):
        count = 0
        for i in range(inputs):
            count += signal[r, i] != 0
        counts[r + 1] = count
    starts = np.cumsum(counts)
    index = np.empty(starts[rows], dtype=np.int64)
    values = np.empty(starts[rows], dtype=signal.dtype)
    for r in prange(rows):
        k = starts[r]
        for i in range(inputs):
            if signal[r, i] != 0:
                index[k] = i
                values[k] = signal[r, i]
                k += 1
    return starts, index, values


@numba.njit(cache=True, error_model="numpy")
def by_input(starts, index, values, inputs):
    """The same nonzeros grouped by input (compressed columns): (starts (K + 1,), rows
    (nnz,), values (nnz,)), the rows of input i in increasing order."""
    counts = np.zeros(inputs + 1, dtype=np.int64)
    for k in range(index.shape[0]):
        counts[index[k] + 1] += 1
    column_starts = np.cumsum(counts)
    fill = column_starts[:-1].copy()
    rows_of = np.empty(index.shape[0], dtype=np.int64)
    values_of = np.empty(index.shape[0], dtype=values.dtype)
    for r in range(starts.shape[0] - 1):
        for k in range(starts[r], starts[r + 1]):
            position = fill[index[k]]
            rows_of[position] = r
            values_of[position] = values[k]
            fill[index[k]] = position + 1
    return column_starts, rows_of, values_of


@numba.njit(**_OPTIONS)
def spike_linear_forward(starts, index, values, weight_t, bias, currents_out):
    """I_r = b + sum_k values[k] W^T[index[k]] over row r's nonzeros (`nonzeros_by_row`).

    weight_t = W^T (K, N) contiguous, bias (N,), currents_out (R, N).  The row's sum stays
    in a local N-vector; each added row of W^T is read whole (vectorised)."""
    rows = currents_out.shape[0]
    for r in prange(rows):
        current = bias.copy()
        for k in range(starts[r], starts[r + 1]):
            s = values[k]
            i = index[k]
            for n in range(current.shape[0]):
                current[n] += s * weight_t[i, n]
        currents_out[r] = current


@numba.njit(**_OPTIONS)
def spike_linear_grad_weight(column_starts, rows_of, values_of, grad_currents, grad_weight_t_out):
    """dL/dW^T[i] = sum_k values_of[k] G[rows_of[k]] over input i's nonzeros (`by_input`).

    grad_currents G (R, N), grad_weight_t_out (K, N)."""
    inputs = grad_weight_t_out.shape[0]
    outputs = grad_currents.shape[1]
    for i in prange(inputs):
        total = np.zeros(outputs, dtype=grad_currents.dtype)
        for k in range(column_starts[i], column_starts[i + 1]):
            s = values_of[k]
            r = rows_of[k]
            for n in range(outputs):
                total[n] += s * grad_currents[r, n]
        grad_weight_t_out[i] = total


def spike_linear_supported(signal: Tensor, weight: Tensor) -> str | None:
    """None when `spike_linear` runs these tensors, else the reason it cannot."""
    if signal.device.type != "cpu" or weight.device.type != "cpu":
        return "the spike-driven Linear runs on the CPU only"
    if signal.dtype not in (torch.float32, torch.float64) or weight.dtype != signal.dtype:
        return f"the spike-driven Linear takes float32 or float64 tensors of one dtype, got {signal.dtype} and {weight.dtype}"
    return None


class SpikeLinearFunction(torch.autograd.Function):
    """I = W S + b over every row of S (..., K), by columns of the inputs that spiked."""

    @staticmethod
    def forward(ctx, signal: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:  # type: ignore[override]
        rows = signal.detach().reshape(-1, signal.shape[-1]).contiguous()
        weight_t = weight.detach().t().contiguous()
        bias_values = bias.detach().contiguous() if bias is not None else weight.new_zeros(weight.shape[0])
        nonzeros = nonzeros_by_row(rows.numpy())
        currents = torch.empty((rows.shape[0], weight.shape[0]), dtype=signal.dtype)
        spike_linear_forward(*nonzeros, weight_t.numpy(), bias_values.numpy(), currents.numpy())
        ctx.save_for_backward(weight)
        ctx.nonzeros, ctx.has_bias, ctx.signal_shape = nonzeros, bias is not None, signal.shape
        return currents.view(*signal.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, grad_currents: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:  # type: ignore[override]
        (weight,) = ctx.saved_tensors
        grads = grad_currents.reshape(-1, grad_currents.shape[-1]).contiguous()
        needs = ctx.needs_input_grad
        # dL/dS = G W
        grad_signal = grads.mm(weight).view(ctx.signal_shape) if needs[0] else None
        grad_weight = None
        if needs[1]:
            # dL/dW[:, i] = sum_{r : S_r[i] != 0} S_r[i] G_r
            grad_weight_t = np.empty((weight.shape[1], weight.shape[0]), dtype=grads.numpy().dtype)
            by_columns = by_input(*ctx.nonzeros, weight.shape[1])
            spike_linear_grad_weight(*by_columns, grads.numpy(), grad_weight_t)
            grad_weight = torch.from_numpy(grad_weight_t).t()
        # dL/db = sum_r G_r
        grad_bias = grads.sum(0) if ctx.has_bias and needs[2] else None
        return grad_signal, grad_weight, grad_bias


def spike_linear(signal: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """F.linear(signal, weight, bias) for a signal of spikes (..., K): the columns of W of the
    inputs that spiked, added up (see the module docstring); differentiable."""
    problem = spike_linear_supported(signal, weight)
    if problem is not None:
        raise ValueError(problem)
    if signal.shape[-1] != weight.shape[1]:
        raise ValueError(f"signal has {signal.shape[-1]} inputs, the weight takes {weight.shape[1]}")
    return SpikeLinearFunction.apply(signal, weight, bias)
