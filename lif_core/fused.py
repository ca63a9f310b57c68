"""The fused path: LIF(H) -> Linear(H, K) -> LIF(K) as one `torch.autograd.Function`.

The exact path is three autograd nodes,

    S1 = lif_sequence(I1, num_steps=T)          (T, B, H)
    I2 = F.linear(S1, W2, b2)                   (T, B, K)
    S2 = lif_sequence(I2)                       (T, B, K)

which is the reference: the same bits as snnTorch.  `lif_linear_lif` computes the
same function in one Numba kernel per direction (`lif_core.fused_kernels`), an
image at a time: nothing of size (T, B, H) is stored for the backward pass (only
I1, W2, b2, the hidden spike counts and the output membranes), the hidden layer
is recomputed, and
W2's products run over the hidden neurons that spiked at all.  It returns
dL/dI1, dL/dW2 and dL/db2 directly, so the layer before it (fc1) receives its
gradient as usual and computes dW1 = dL/dI1^T x in one GEMM.

What is and is not the same as the exact path:
  * hidden spike counts: bit-identical (the same LIF operations on the same I1);
  * output currents: the same sum in another order (hidden neurons in index order
    instead of MKL's blocking), so an output membrane can differ in its last bit,
    and an output spike flips where a membrane lies within that rounding of the
    threshold; `tests/test_fused.py` holds the two paths together;
  * gradients: the same chain rule; the hidden layer's BPTT sum is taken in closed
    form (see `lif_core.fused_kernels`), so they agree to float32 rounding.

Constant input only (the static image held for T steps), CPU tensors, the detached
subtract reset of `lif_core.sequence`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from lif_core import fused_kernels
from lif_core.neuron import LIFParameters


class FusedOutput(NamedTuple):
    """Hidden spike counts (B, H); output spikes (T, B, K), counts (B, K) and membranes
    U2_t (T, B, K), the last as the exact path records them (for a loss on membranes).

    The hidden spikes themselves are not returned: a (T, B, H) float tensor costs more
    to write than to recompute, so a caller that needs them runs
    `lif_sequence(hidden_current, hidden, num_steps)`, which gives the same bits."""

    hidden_counts: Tensor
    output_spikes: Tensor
    output_counts: Tensor
    output_membranes: Tensor


def _array(tensor: Tensor | None) -> np.ndarray | None:
    return None if tensor is None else tensor.detach().contiguous().numpy()


def _forward(
    current: Tensor, weight: Tensor, bias: Tensor, num_steps: int, hidden: LIFParameters, output: LIFParameters
) -> FusedOutput:
    """Both layers' forward kernel on contiguous, detached tensors."""
    arrays = fused_kernels.forward(
        current.numpy(),
        weight.numpy(),
        bias.numpy(),
        num_steps,
        float(hidden.beta),
        float(hidden.threshold),
        float(output.beta),
        float(output.threshold),
    )
    return FusedOutput(*(torch.from_numpy(array) for array in arrays))


class LIFLinearLIFFunction(torch.autograd.Function):
    """Forward: both layers' time loops in one kernel.  Backward: BPTT through both."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        hidden_current: Tensor,
        weight: Tensor,
        bias: Tensor,
        num_steps: int,
        hidden: LIFParameters,
        output: LIFParameters,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        current, weight, bias = (tensor.detach().contiguous() for tensor in (hidden_current, weight, bias))
        hidden_counts, output_spikes, output_counts, output_membranes = _forward(
            current, weight, bias, num_steps, hidden, output
        )
        ctx.save_for_backward(current, weight, bias, hidden_counts, output_membranes)
        ctx.num_steps, ctx.hidden, ctx.output = num_steps, hidden, output
        ctx.set_materialize_grads(False)  # unused outputs arrive as None, not zeros
        return hidden_counts, output_spikes, output_counts, output_membranes

    @staticmethod
    def backward(  # type: ignore[override]
        ctx,
        grad_hidden_counts: Tensor | None,
        grad_output_spikes: Tensor | None,
        grad_output_counts: Tensor | None,
        grad_output_membranes: Tensor | None,
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None, None, None, None]:
        current, weight, bias, hidden_counts, output_membranes = ctx.saved_tensors
        hidden, output = ctx.hidden, ctx.output
        grad_current, grad_weight, grad_bias = fused_kernels.backward(
            current.numpy(),
            hidden_counts.numpy(),
            output_membranes.numpy(),
            weight.numpy(),
            bias.numpy(),
            ctx.num_steps,
            float(hidden.beta),
            float(hidden.threshold),
            float(output.beta),
            float(output.threshold),
            hidden.surrogate,
            output.surrogate,
            _array(grad_output_counts),
            _array(grad_output_spikes),
            _array(grad_hidden_counts),
            _array(grad_output_membranes),
        )
        return (
            torch.from_numpy(grad_current),
            torch.from_numpy(grad_weight),
            torch.from_numpy(grad_bias),
            None,
            None,
            None,
        )


def fused_supported(hidden_current: Tensor, weight: Tensor) -> str | None:
    """None when `lif_linear_lif` can run these tensors, else the reason it cannot."""
    if hidden_current.dim() != 2:
        return f"the fused path takes a constant (B, H) input current, got shape {tuple(hidden_current.shape)}"
    if hidden_current.device.type != "cpu" or weight.device.type != "cpu":
        return "the fused path runs on the CPU only"
    if hidden_current.dtype not in (torch.float32, torch.float64) or weight.dtype != hidden_current.dtype:
        return f"the fused path takes float32 or float64 tensors of one dtype, got {hidden_current.dtype} and {weight.dtype}"
    if weight.dim() != 2 or weight.shape[1] != hidden_current.shape[1]:
        return f"weight must be (K, H={hidden_current.shape[1]}), got {tuple(weight.shape)}"
    return None


def lif_linear_lif(
    hidden_current: Tensor,
    weight: Tensor,
    bias: Tensor,
    num_steps: int,
    hidden: LIFParameters,
    output: LIFParameters,
) -> FusedOutput:
    """S1 = LIF(I1) for T steps, I2_t = W2 S1_t + b2, S2 = LIF(I2), differentiably.

    hidden_current: (B, H) constant input I1; weight (K, H) and bias (K,) are W2, b2.
    Returns FusedOutput(hidden_counts, output_spikes, output_counts, output_membranes).
    """
    problem = fused_supported(hidden_current, weight)
    if problem is not None:
        raise ValueError(problem)
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
    if not (torch.is_grad_enabled() and any(t.requires_grad for t in (hidden_current, weight, bias))):
        tensors = (tensor.detach().contiguous() for tensor in (hidden_current, weight, bias))
        return _forward(*tensors, num_steps, hidden, output)
    return FusedOutput(*LIFLinearLIFFunction.apply(hidden_current, weight, bias, num_steps, hidden, output))
