"""The neuron: snnTorch 1.0.0's `snn.Leaky` with every option that changes the maths.

This module implements the whole family, as plainly as possible, read off snnTorch 1.0.0's
`Leaky.forward` (snntorch/_neurons/leaky.py and neurons.py).  `leaky_sequence` is the one
entry point for a whole sequence: where a call's options are snn.Leaky's defaults (subtract
reset, reset_delay, graded factor 1, fixed scalar beta and threshold, a zero start) it takes
the specialised kernels of `lif_core.sequence` (`lif_sequence`), and the general loops of
this module (or their Numba twins in `lif_core.leaky_kernels`) otherwise; the two give the
same bits where both apply (tests/test_leaky_options.py).

With m = the membrane handed in (U'_{t-1}; 0 at the start), b = clamp(beta, 0, 1),
g = graded_spikes_factor and H the Heaviside step (H(0) = 0), one step is

    R_t  = H(m - thr)                                   detached: no gradient at all
    U_t  = b*m + I_t - R_t*thr                          reset_mechanism="subtract"
    U_t  = b*((1 - R_t)*m) + I_t                        "zero" (the input is kept)
    U_t  = b*m + I_t                                    "none"
    S_t  = H(U_t - thr)                                 surrogate derivative going back
    out_t = g*S_t                                       the spike returned

and the membrane returned (and handed to the next step) is

    U'_t = U_t                                          reset_delay=True (the default)
    D_t  = out_t/g - R_t                                reset_delay=False: D_t is NOT detached
    U'_t = U_t - D_t*thr                                  "subtract"
    U'_t = U_t - D_t*U_t                                  "zero"
    U'_t = U_t                                            "none"

The forward pass is computed with exactly snnTorch's operations in snnTorch's order,
so spikes and membranes are bit-identical to it.  `leaky_sequence` runs the loop as one
`torch.autograd.Function` whose backward is the hand-written BPTT of `leaky_backward`;
`leaky_unrolled` lets autograd differentiate the same steps (the yardstick).

Gradients flow to the input current, to beta (through the clamp: zero where beta <= 0 or
beta >= 1, as torch's clamp backward gives), to the threshold (through the surrogate,
the subtracted R_t*thr, and, with reset_delay=False, the D_t term), to the graded factor g
(dL/dg = sum_t dL/dout_t * S_t; the D_t term's own dependence on g, out_t/g, is S_t
exactly, so it adds nothing) and to the starting membrane.  g is one number (a scalar or a
(1,) tensor): snnTorch broadcasts a per-neuron g, which is not supported here.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from lif_core.backend import Backend, choose_backend
from lif_core.leaky_kernels import numba_leaky_backward, numba_leaky_forward
from lif_core.neuron import LeakyOptions, LeakySequenceOutput, LIFParameters
from lif_core.sequence import lif_sequence
from lif_core.surrogate import heaviside

ParameterLike = float | Tensor


class LeakyStep(NamedTuple):
    """Everything one step computes: R_t, U_t (before a same-step reset), g*S_t and U'_t."""

    reset: Tensor
    pre_reset: Tensor
    spikes: Tensor
    membrane: Tensor


class LeakyGradients(NamedTuple):
    """dL/d(input current), dL/dbeta, dL/dthreshold, dL/d(starting membrane), each shaped
    like the tensor it belongs to (dL/dg is computed by `LeakySequenceFunction` itself)."""

    current: Tensor
    beta: Tensor
    threshold: Tensor
    membrane: Tensor


# --------------------------------------------------------------------------- inputs


def as_parameter(value: ParameterLike, like: Tensor, name: str) -> Tensor:
    """beta or threshold as a tensor: a Python number becomes a 0-dim tensor in the dtype of
    `like` (as snnTorch's 0-dim float32 buffers in float32 runs); a tensor is used as given."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number or a tensor, got {value!r}")
    return torch.tensor(float(value), dtype=like.dtype, device=like.device)


def check_parameter_shape(parameter: Tensor, step_shape: torch.Size, name: str) -> None:
    """beta and threshold are scalars (0-dim or (1,)) or per-neuron (N,), N = last input dim."""
    neurons = step_shape[-1] if len(step_shape) else 1
    if parameter.dim() == 0 or tuple(parameter.shape) in ((1,), (neurons,)):
        return
    raise ValueError(
        f"{name} of shape {tuple(parameter.shape)} is not supported: use a scalar, shape (1,), "
        f"or one value per neuron, shape ({neurons},)"
    )


def check_membrane_shape(membrane: Tensor, step_shape: torch.Size) -> None:
    """The starting membrane must have the shape of one step of input (snnTorch silently
    replaces a mismatched one by zeros; we refuse it)."""
    if membrane.shape != step_shape:
        raise ValueError(
            f"starting membrane of shape {tuple(membrane.shape)} does not match one step of input, "
            f"{tuple(step_shape)}"
        )


def check_graded(graded: ParameterLike) -> None:
    """The graded factor is one number (a float, 0-dim or (1,) tensor), and not 0 (D_t divides by it)."""
    if not isinstance(graded, Tensor):
        if graded == 0:
            raise ValueError("graded_spikes_factor must be non-zero (the same-step reset divides by it), got 0")
        return
    if graded.numel() != 1 or graded.dim() > 1:
        raise ValueError(
            f"graded_spikes_factor of shape {tuple(graded.shape)} is not supported: use one number "
            "(a float, a 0-dim or a (1,) tensor)"
        )


# --------------------------------------------------------------------------- one step


def leaky_step_terms(
    current: Tensor, membrane: Tensor, beta: Tensor, threshold: Tensor, graded: Tensor, options: LeakyOptions
) -> LeakyStep:
    """One step of snn.Leaky (1.0.0), every intermediate kept; autograd-differentiable.

    Each line is the operation snnTorch performs, in its order, so the values are
    bit-identical to `snn.Leaky(...)(current, membrane)`.
    """
    # R_t = H(m - thr), detached (snnTorch's mem_reset: spike_grad(...).clone().detach())
    reset = heaviside(membrane.detach() - threshold.detach())
    # b = clamp(beta, 0, 1)
    decay = beta.clamp(0, 1)
    if options.reset_mechanism == "subtract":
        # U_t = b*m + I_t - R_t*thr
        pre_reset = decay * membrane + current - reset * threshold
    elif options.reset_mechanism == "zero":
        # U_t = b*((1 - R_t)*m) + I_t
        pre_reset = decay * ((1 - reset) * membrane) + current
    else:
        # U_t = b*m + I_t
        pre_reset = decay * membrane + current
    # out_t = g * S_t,  S_t = H(U_t - thr) with the surrogate derivative going back
    spikes = options.surrogate.spike(pre_reset - threshold) * graded
    if options.reset_delay or options.reset_mechanism == "none":
        # U'_t = U_t
        return LeakyStep(reset, pre_reset, spikes, pre_reset)
    # D_t = out_t/g - R_t, not detached
    do_reset = spikes / graded - reset
    if options.reset_mechanism == "subtract":
        # U'_t = U_t - D_t*thr
        post_reset = pre_reset - do_reset * threshold
    else:
        # U'_t = U_t - D_t*U_t
        post_reset = pre_reset - do_reset * pre_reset
    return LeakyStep(reset, pre_reset, spikes, post_reset)


def leaky_step(
    current: Tensor,
    membrane: Tensor,
    beta: ParameterLike,
    threshold: ParameterLike,
    options: LeakyOptions,
    graded_spikes_factor: ParameterLike = 1.0,
) -> tuple[Tensor, Tensor]:
    """One step of snn.Leaky: (out_t = g*S_t, U'_t), as `snn.Leaky(...)(current, membrane)`."""
    step = leaky_step_terms(
        current,
        membrane,
        as_parameter(beta, current, "beta"),
        as_parameter(threshold, current, "threshold"),
        as_parameter(graded_spikes_factor, current, "graded_spikes_factor"),
        options,
    )
    return step.spikes, step.membrane


# --------------------------------------------------------------------------- sequences


class Prepared(NamedTuple):
    """A sequence's values as tensors, its starting membrane and its number of steps."""

    beta: Tensor
    threshold: Tensor
    graded: Tensor
    start: Tensor
    steps: int


def _prepare(
    current: Tensor,
    beta: ParameterLike,
    threshold: ParameterLike,
    graded: ParameterLike,
    num_steps: int | None,
    membrane: Tensor | None,
) -> Prepared:
    """Check shapes and turn beta, threshold, g and the starting membrane into tensors."""
    valid_steps = isinstance(num_steps, int) and not isinstance(num_steps, bool) and num_steps >= 1
    if num_steps is not None and not valid_steps:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
    if num_steps is None and current.dim() < 2:
        raise ValueError(
            f"current of shape {tuple(current.shape)}: give (T, ..., N), or one step with num_steps"
        )
    step_shape = current.shape if num_steps is not None else current.shape[1:]
    steps = num_steps if num_steps is not None else current.shape[0]
    beta_t = as_parameter(beta, current, "beta")
    threshold_t = as_parameter(threshold, current, "threshold")
    check_graded(graded)
    graded_t = as_parameter(graded, current, "graded_spikes_factor")
    check_parameter_shape(beta_t, step_shape, "beta")
    check_parameter_shape(threshold_t, step_shape, "threshold")
    start = current.new_zeros(step_shape) if membrane is None else membrane
    check_membrane_shape(start, step_shape)
    return Prepared(beta_t, threshold_t, graded_t, start, steps)


def leaky_unrolled(
    current: Tensor,
    beta: ParameterLike,
    threshold: ParameterLike,
    options: LeakyOptions,
    num_steps: int | None = None,
    membrane: Tensor | None = None,
    graded_spikes_factor: ParameterLike = 1.0,
) -> LeakySequenceOutput:
    """Run `leaky_step_terms` over time and let autograd differentiate the unrolled loop.

    current: (T, ..., N) time-varying, or one step (..., N) held for `num_steps` steps.
    membrane: the starting membrane (zeros if None).  Slow, obviously correct: the yardstick
    for `leaky_sequence`'s hand-written BPTT.
    """
    values = _prepare(current, beta, threshold, graded_spikes_factor, num_steps, membrane)
    state = values.start
    spikes, membranes = [], []
    for t in range(values.steps):
        current_t = current if num_steps is not None else current[t]
        step = leaky_step_terms(current_t, state, values.beta, values.threshold, values.graded, options)
        state = step.membrane
        spikes.append(step.spikes)
        membranes.append(step.membrane)
    spike_tensor = torch.stack(spikes)
    return LeakySequenceOutput(spike_tensor, torch.stack(membranes), spike_tensor.sum(dim=0))


def leaky_forward(
    current: Tensor,
    beta: Tensor,
    threshold: Tensor,
    graded: Tensor,
    membrane: Tensor,
    options: LeakyOptions,
    steps: int,
    constant_input: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """The forward time loop without a graph: (spikes, membranes U'_t, pre-reset U_t)."""
    with torch.no_grad():
        spikes, membranes, pre_resets = [], [], []
        state = membrane
        for t in range(steps):
            current_t = current if constant_input else current[t]
            step = leaky_step_terms(current_t, state, beta, threshold, graded, options)
            state = step.membrane
            spikes.append(step.spikes)
            membranes.append(step.membrane)
            pre_resets.append(step.pre_reset)
        return torch.stack(spikes), torch.stack(membranes), torch.stack(pre_resets)


def _clamp_mask(beta: Tensor) -> Tensor:
    """d clamp(beta, 0, 1) / d beta: 1 strictly inside (0, 1), 0 elsewhere (torch's clamp
    backward gives 0 at the boundaries too)."""
    return ((beta > 0) & (beta < 1)).to(beta.dtype)


def _reduce_to(grad: Tensor, parameter: Tensor) -> Tensor:
    """Sum a full-shaped gradient over the broadcast dimensions of a scalar/per-neuron parameter."""
    return grad.sum_to_size(parameter.shape).to(parameter.dtype)


def leaky_backward(
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
) -> LeakyGradients:
    """Backpropagation through time for the general snn.Leaky, written out in reverse time.

    With c_t = dL/dU'_t (the direct gradient on the returned membrane plus what step t+1
    sends back to its m), sigma'_t = surrogate'(U_t - thr), m_t = U'_{t-1}:

        dL/dS_t  = g * dL/dout_t  [- c_t*thr  ("subtract")  or  - c_t*U_t  ("zero"),
                                    reset_delay=False only, from D_t]
        dL/dU_t  = c_t * dU'_t/dU_t|direct + dL/dS_t * sigma'_t
                   where dU'_t/dU_t|direct = 1, or 1 - D_t for "zero" with reset_delay=False
        dL/dI_t  = dL/dU_t
        c_{t-1}  = dL/dU_t * b            ("subtract", "none")
                 = dL/dU_t * b * (1 - R_t) ("zero")          (R_t is detached)
        dL/db   += dL/dU_t * m_t,  or dL/dU_t * (1 - R_t) * m_t for "zero"
        dL/dthr += -dL/dS_t * sigma'_t  - dL/dU_t * R_t (subtract)  - c_t * D_t (subtract,
                   reset_delay=False)
        dL/dbeta = clamp'(beta) * sum dL/db over the broadcast dims

    A constant input (the same I at every step) gets dL/dI = sum_t dL/dI_t.
    """
    graded = graded.detach()
    decay = beta.detach().clamp(0, 1)
    thr = threshold.detach()
    zero = torch.zeros_like(membranes[0])  # stands in for a gradient that is None
    same_step = not options.reset_delay and options.reset_mechanism != "none"
    grad_current = torch.empty_like(membranes)
    grad_decay = torch.zeros_like(membranes[0])
    grad_threshold = torch.zeros_like(membranes[0])
    carry = zero  # dL/dm_{t+1} = the part of c_t that comes from step t+1
    for t in reversed(range(membranes.shape[0])):
        incoming = start if t == 0 else membranes[t - 1]  # m_t = U'_{t-1}
        pre_reset = pre_resets[t]
        # R_t = H(m_t - thr)
        reset = heaviside(incoming - thr)
        # sigma'_t = surrogate'(U_t - thr)
        slope = options.surrogate.derivative(pre_reset - thr)
        # c_t = dL/dU'_t|direct + dL/dm_{t+1}
        grad_out = (zero if grad_membranes is None else grad_membranes[t]) + carry
        # dL/dS_t = g * dL/dout_t
        grad_s = graded * (zero if grad_spikes is None else grad_spikes[t])
        grad_u = grad_out
        if same_step:
            # D_t = g*S_t/g - R_t, exactly as the forward computed it
            do_reset = heaviside(pre_reset - thr) * graded / graded - reset
            if options.reset_mechanism == "subtract":
                # U'_t = U_t - D_t*thr:  dL/dS_t -= c_t*thr,  dL/dthr -= c_t*D_t
                grad_s = grad_s - grad_out * thr
                grad_threshold = grad_threshold - grad_out * do_reset
            else:
                # U'_t = U_t - D_t*U_t:  dL/dS_t -= c_t*U_t,  dU'_t/dU_t|direct = 1 - D_t
                grad_s = grad_s - grad_out * pre_reset
                grad_u = grad_out * (1 - do_reset)
        # dL/dU_t = c_t * dU'_t/dU_t|direct + dL/dS_t * sigma'_t
        grad_u = grad_u + grad_s * slope
        # S_t = H(U_t - thr):  dL/dthr -= dL/dS_t * sigma'_t
        grad_threshold = grad_threshold - grad_s * slope
        # dL/dI_t = dL/dU_t
        grad_current[t] = grad_u
        if options.reset_mechanism == "zero":
            # U_t = b*((1 - R_t)*m_t) + I_t
            kept = (1 - reset) * incoming
            grad_decay = grad_decay + grad_u * kept
            carry = grad_u * decay * (1 - reset)
        else:
            # U_t = b*m_t + I_t [- R_t*thr]
            grad_decay = grad_decay + grad_u * incoming
            carry = grad_u * decay
            if options.reset_mechanism == "subtract":
                grad_threshold = grad_threshold - grad_u * reset
    constant_input = len(current_shape) == membranes.dim() - 1
    return LeakyGradients(
        current=grad_current.sum(dim=0) if constant_input else grad_current,
        beta=_reduce_to(grad_decay, beta) * _clamp_mask(beta.detach()).to(beta.dtype),
        threshold=_reduce_to(grad_threshold, threshold),
        membrane=carry,
    )


def numba_gradients(
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
) -> LeakyGradients:
    """`leaky_backward` on the Numba kernels (`lif_core.leaky_kernels`), reduced to the
    parameters' shapes as `leaky_backward` reduces them."""
    current, decay, thr, membrane = numba_leaky_backward(
        current_shape, start, membranes, pre_resets, grad_spikes, grad_membranes, beta, threshold, graded, options
    )
    return LeakyGradients(
        current=current,
        beta=_reduce_to(decay, beta) * _clamp_mask(beta.detach()).to(beta.dtype),
        threshold=_reduce_to(thr, threshold),
        membrane=membrane,
    )


class LeakySequenceFunction(torch.autograd.Function):
    """Forward: the general snn.Leaky time loop (torch or Numba).  Backward: `leaky_backward`
    (or its Numba twin), and dL/dg = sum_t dL/dout_t * S_t."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        current: Tensor,
        beta: Tensor,
        threshold: Tensor,
        graded: Tensor,
        membrane: Tensor,
        options: LeakyOptions,
        steps: int,
        constant_input: bool,
        backend: str,
    ) -> tuple[Tensor, Tensor]:
        run = numba_leaky_forward if backend == "numba" else leaky_forward
        spikes, membranes, pre_resets = run(
            current.detach(),
            beta.detach(),
            threshold.detach(),
            graded.detach(),
            membrane.detach(),
            options,
            steps,
            constant_input,
        )
        saved = (membrane.detach(), membranes, pre_resets, beta.detach(), threshold.detach(), graded.detach())
        ctx.save_for_backward(*saved)
        ctx.options, ctx.current_shape, ctx.backend = options, current.shape, backend
        ctx.set_materialize_grads(False)  # unused outputs arrive as None, not zeros
        return spikes, membranes

    @staticmethod
    def backward(  # type: ignore[override]
        ctx, grad_spikes: Tensor | None, grad_membranes: Tensor | None
    ) -> tuple[Tensor | None, ...]:
        if grad_spikes is None and grad_membranes is None:
            return (None,) * 9
        start, membranes, pre_resets, beta, threshold, graded = ctx.saved_tensors
        run = numba_gradients if ctx.backend == "numba" else leaky_backward
        grads = run(
            ctx.current_shape,
            start,
            membranes,
            pre_resets,
            grad_spikes,
            grad_membranes,
            beta,
            threshold,
            graded,
            ctx.options,
        )
        needs = ctx.needs_input_grad
        grad_graded = None
        if needs[3] and grad_spikes is not None:
            # out_t = g * S_t:  dL/dg = sum_t dL/dout_t * S_t,  S_t = H(U_t - thr)
            fired = heaviside(pre_resets - threshold)
            grad_graded = _reduce_to(grad_spikes * fired, graded)
        return (
            grads.current if needs[0] else None,
            grads.beta if needs[1] else None,
            grads.threshold if needs[2] else None,
            grad_graded,
            grads.membrane if needs[4] else None,
            None,
            None,
            None,
            None,
        )


def default_parameters(
    beta: Tensor, threshold: Tensor, graded: Tensor, options: LeakyOptions, dtype: torch.dtype
) -> LIFParameters | None:
    """The neuron as `LIFParameters` when its options and values are those the specialised
    kernels (`lif_core.sequence`, `lif_core.fused`) compute: snn.Leaky's default options, g = 1,
    and finite scalar beta and threshold that need no gradient (fixed, or autograd off) and
    do not promote a `dtype` input.  None otherwise."""
    if options.reset_mechanism != "subtract" or not options.reset_delay:
        return None
    numbers = []
    for value in (beta, threshold, graded):
        if value.requires_grad and torch.is_grad_enabled():
            return None  # a learnt value needs its gradient
        if value.numel() != 1 or (value.dim() > 0 and value.dtype != dtype):
            return None
        numbers.append(float(value))
    beta_value, threshold_value, graded_value = numbers
    if graded_value != 1.0 or not (math.isfinite(beta_value) and math.isfinite(threshold_value)):
        return None
    return LIFParameters(beta=beta_value, threshold=threshold_value, surrogate=options.surrogate)


def leaky_sequence(
    current: Tensor,
    beta: ParameterLike,
    threshold: ParameterLike,
    options: LeakyOptions,
    num_steps: int | None = None,
    membrane: Tensor | None = None,
    backend: Backend = "auto",
    *,
    graded_spikes_factor: ParameterLike = 1.0,
    record_membranes: bool = True,
) -> LeakySequenceOutput:
    """snn.Leaky over a whole sequence, with hand-written BPTT.

    current:   (T, ..., N) time-varying, or one step (..., N) held for `num_steps` steps.
    beta, threshold: Python numbers (0-dim tensors in the input's dtype) or tensors of shape
               (), (1,) or (N,); a tensor that requires grad receives its gradient.
    graded_spikes_factor: g, one number or a 0-dim / (1,) tensor (which may require grad).
    membrane:  the starting membrane, one step's shape (zeros if None); may require grad.
    backend:   "torch" (readable loops), "numba" (compiled kernels, CPU, float32/float64) or
               "auto" (numba wherever it can run, else torch): `lif_core.backend`.
    record_membranes: False returns membranes=None, and on the specialised path of snn.Leaky's
               defaults lets a time-varying input's backward pass recompute them instead of
               storing them.
    Returns LeakySequenceOutput(spikes g*S_t, membranes U'_t, counts sum_t g*S_t), bit-identical
    to snn.Leaky with the same options run step by step, on either backend.
    """
    values = _prepare(current, beta, threshold, graded_spikes_factor, num_steps, membrane)
    constant_input = num_steps is not None
    concrete = choose_backend(
        backend, current, beta=values.beta, threshold=values.threshold, membrane=values.start
    )
    # snn.Leaky's defaults from a zero start, on (T, B, N) or constant (B, N) input: lif_sequence
    neuron = None
    if membrane is None and current.dim() == (2 if constant_input else 3):
        neuron = default_parameters(values.beta, values.threshold, values.graded, options, current.dtype)
    if neuron is not None:
        return lif_sequence(current, neuron, num_steps, concrete, return_membranes=record_membranes)
    spikes, membranes = LeakySequenceFunction.apply(
        current,
        values.beta,
        values.threshold,
        values.graded,
        values.start,
        options,
        values.steps,
        constant_input,
        concrete,
    )
    return LeakySequenceOutput(spikes, membranes if record_membranes else None, spikes.sum(dim=0))
