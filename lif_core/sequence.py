"""The whole-sequence LIF layer as one `torch.autograd.Function`.

Instead of letting autograd record T small steps (and their T surrogate
Functions), the forward pass runs the whole time loop without a graph and saves
only the membranes U_0..U_{T-1} (or, for a time-varying input on numba whose
membranes are not asked for, only the input, from which the backward pass
recomputes them); the backward pass is the hand-written BPTT recursion (see
`lif_core.neuron.reference_backward`):

    g_t = dL/dS_t * surrogate'(U_t - thr) + dL/dU_t|direct + beta * g_{t+1}
    dL/dI_t = g_t

Two input forms:
  * time-varying current, shape (T, B, N);
  * constant current, shape (B, N), held for `num_steps` steps. A static image
    drives layer 1 with the same current W x + b at every step, so the
    projection is computed once instead of T times; since every I_t is that one
    tensor, its gradient is the sum over time, dL/dI = sum_t g_t.  This is exact,
    not an approximation: it is the chain rule for a tensor used T times.

Two backends behind the one interface, bit-identical in forward:
  * "torch": the readable loop in `lif_core.neuron`, any device;
  * "numba": the kernels in `lif_core.sequence_kernels`, CPU only, the fast path.
  * "auto" picks numba where its kernels can run the tensors, torch otherwise
    (`lif_core.backend`).

This is the specialised path of the one neuron, `lif_core.leaky.leaky_sequence`, which
takes it whenever a layer's options are snnTorch's defaults (subtract reset, reset_delay,
graded factor 1) and its beta and threshold fixed scalars; tests/test_leaky_options.py holds
the two paths to the same bits.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lif_core import sequence_kernels
from lif_core.backend import Backend, choose_backend
from lif_core.neuron import LIFParameters, LeakySequenceOutput, reference_backward, reference_forward
from lif_core.surrogate import Surrogate


def run_forward(
    current: Tensor, num_steps: int, beta: float, threshold: float, backend: str, store_membranes: bool
) -> tuple[Tensor, Tensor | None, Tensor]:
    """The forward time loop on the chosen backend, outside autograd."""
    if backend == "numba":
        spikes, membranes, counts = sequence_kernels.forward(
            current.detach().contiguous().numpy(), num_steps, beta, threshold, store_membranes
        )
        return (
            torch.from_numpy(spikes),
            None if membranes is None else torch.from_numpy(membranes),
            torch.from_numpy(counts),
        )
    return reference_forward(current.detach(), beta, threshold, num_steps, store_membranes)


class LIFSequenceFunction(torch.autograd.Function):
    """Forward: the LIF time loop.  Backward: reverse-time BPTT with the detached reset."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        current: Tensor,
        num_steps: int,
        beta: float,
        threshold: float,
        surrogate: Surrogate,
        backend: str,
        keep_membranes: bool = True,
    ) -> tuple[Tensor, Tensor, Tensor]:
        constant_input = current.dim() == 2
        # A time-varying input on numba, membranes not asked for: keep the input and
        # recompute the membranes in the backward pass (`lif_backward_recompute`).
        ctx.recompute = backend == "numba" and not constant_input and not keep_membranes
        spikes, membranes, counts = run_forward(current, num_steps, beta, threshold, backend, not ctx.recompute)
        if ctx.recompute:
            ctx.save_for_backward(current.detach().contiguous())
            membranes = spikes.new_empty((0,))  # not kept; lif_sequence returns None
        else:
            assert membranes is not None
            ctx.save_for_backward(membranes)
        ctx.constant_input = constant_input
        ctx.beta, ctx.threshold, ctx.surrogate, ctx.backend = beta, threshold, surrogate, backend
        ctx.set_materialize_grads(False)  # unused outputs arrive as None, not zeros
        return spikes, membranes, counts

    @staticmethod
    def backward(  # type: ignore[override]
        ctx, grad_spikes: Tensor | None, grad_membranes: Tensor | None, grad_counts: Tensor | None
    ) -> tuple[Tensor | None, None, None, None, None, None, None]:
        (saved,) = ctx.saved_tensors  # the membranes, or the input when ctx.recompute
        if grad_spikes is None and grad_membranes is None and grad_counts is None:
            return None, None, None, None, None, None, None

        def as_array(grad: Tensor | None):
            if grad is None:
                return None
            if all(stride == 0 for stride in grad.stride()):
                return grad.numpy()  # a broadcast scalar (e.g. from spikes.sum()): no copy
            return grad.contiguous().numpy()

        if ctx.recompute:
            grad_current = sequence_kernels.backward_recompute(
                saved.numpy(),
                as_array(grad_spikes),
                as_array(grad_counts),
                ctx.beta,
                ctx.threshold,
                ctx.surrogate,
            )
            return torch.from_numpy(grad_current), None, None, None, None, None, None
        if ctx.backend == "numba":
            grad_current = torch.from_numpy(
                sequence_kernels.backward(
                    saved.numpy(),
                    as_array(grad_spikes),
                    as_array(grad_counts),
                    as_array(grad_membranes),
                    ctx.beta,
                    ctx.threshold,
                    ctx.surrogate,
                    ctx.constant_input,
                )
            )
        else:
            grad_current = reference_backward(
                saved,
                grad_spikes,
                grad_counts,
                grad_membranes,
                ctx.beta,
                ctx.threshold,
                ctx.surrogate,
                ctx.constant_input,
            )
        return grad_current, None, None, None, None, None, None


def sequence_length(current: Tensor, num_steps: int | None) -> int:
    """Check a LIF input and return its number of time steps T.

    current: (T, B, N) time-varying (num_steps None or T), or (B, N) constant
    (num_steps required), floating point."""
    if current.dim() == 3:
        if num_steps is not None and num_steps != current.shape[0]:
            raise ValueError(
                f"num_steps={num_steps} disagrees with the time dimension of the "
                f"(T, B, N) current, T={current.shape[0]}; drop num_steps or pass a (B, N) current"
            )
        steps = current.shape[0]
    elif current.dim() == 2:
        if num_steps is None:
            raise ValueError(
                "a (B, N) current is a constant input and needs num_steps; "
                "pass num_steps=T, or a (T, B, N) current for a time-varying input"
            )
        steps = num_steps
    else:
        raise ValueError(
            f"current must be (T, B, N) or (B, N), got shape {tuple(current.shape)}"
        )
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"num_steps must be a positive integer, got {steps!r}")
    if not current.is_floating_point():
        raise TypeError(f"current must be a floating-point tensor, got {current.dtype}")
    return steps


def lif_sequence(
    current: Tensor,
    params: LIFParameters,
    num_steps: int | None = None,
    backend: Backend = "auto",
    return_membranes: bool = True,
) -> LeakySequenceOutput:
    """Simulate a LIF population over time, differentiably.

    current:   (T, B, N) time-varying, or (B, N) constant with `num_steps` given.
    params:    beta, threshold, surrogate (see `LIFParameters`).
    backend:   "torch", "numba" or "auto" (numba where its kernels run: `lif_core.backend`).
    return_membranes: False returns membranes=None; without autograd they are
               then never stored, which saves writing a (T, B, N) tensor.
    Returns LeakySequenceOutput(spikes, membranes, counts): (T, B, N), (T, B, N) and
    (B, N), in the dtype of `current`.
    """
    steps = sequence_length(current, num_steps)
    concrete = choose_backend(backend, current)
    beta, threshold = float(params.beta), float(params.threshold)
    if not (torch.is_grad_enabled() and current.requires_grad):
        spikes, membranes, counts = run_forward(current, int(steps), beta, threshold, concrete, return_membranes)
    else:
        spikes, membranes, counts = LIFSequenceFunction.apply(
            current, int(steps), beta, threshold, params.surrogate, concrete, return_membranes
        )
    return LeakySequenceOutput(spikes, membranes if return_membranes else None, counts)
