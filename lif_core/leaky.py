"""The general `snn.Leaky`: every option of snnTorch 1.0.0 that changes the maths, readable.

`lif_core.neuron` and `lif_core.sequence` implement one neuron, snn.Leaky with its
defaults, as fast as possible.  This module implements the whole family, as plainly as
possible, read off snnTorch 1.0.0's `Leaky.forward` (snntorch/_neurons/leaky.py and
neurons.py).  With m = the membrane handed in (U'_{t-1}; 0 at the start), b = clamp(beta,
0, 1), g = graded_spikes_factor and H the Heaviside step (H(0) = 0), one step is

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
beta >= 1, as torch's clamp backward gives) and to the threshold (through the surrogate,
the subtracted R_t*thr, and, with reset_delay=False, the D_t term), and to the starting
membrane.  graded_spikes_factor is a constant here (learn_graded_spikes_factor is refused).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor

from lif_core.leaky_kernels import kernel_can_run, numba_leaky_backward, numba_leaky_forward
from lif_core.sequence import BACKENDS, Backend
from lif_core.surrogate import (
    ArcTan,
    FastSigmoid,
    Sigmoid,
    StraightHeaviside,
    heaviside,
)

ResetMechanism = Literal["subtract", "zero", "none"]
RESET_MECHANISMS: tuple[ResetMechanism, ...] = ("subtract", "zero", "none")
LeakySurrogate = ArcTan | FastSigmoid | Sigmoid | StraightHeaviside
LEAKY_SURROGATES: tuple[type, ...] = (ArcTan, FastSigmoid, Sigmoid, StraightHeaviside)
ParameterLike = float | Tensor


@dataclass(frozen=True)
class LeakyOptions:
    """The options of snn.Leaky that change the maths, other than beta and threshold.

    reset_mechanism:      "subtract" (default), "zero" or "none".
    reset_delay:          True (default): the returned membrane is U_t before its own spike's
                          reset, which happens one step later; False: reset in the same step.
    graded_spikes_factor: the returned spike is g*S_t (default 1.0); a constant, not learnt.
    surrogate:            dS/dU in the backward pass; snnTorch's default is atan(alpha=2).
    """

    reset_mechanism: ResetMechanism = "subtract"
    reset_delay: bool = True
    graded_spikes_factor: float = 1.0
    surrogate: LeakySurrogate = field(default_factory=ArcTan)

    def __post_init__(self) -> None:
        if self.reset_mechanism not in RESET_MECHANISMS:
            raise ValueError(
                f"reset_mechanism {self.reset_mechanism!r} is not supported: choose one of "
                f"{', '.join(RESET_MECHANISMS)}"
            )
        if not isinstance(self.reset_delay, bool):
            raise ValueError(  # noqa: TRY004 -- one error type for every refused option
                f"reset_delay must be True or False, got {self.reset_delay!r}"
            )
        factor = self.graded_spikes_factor
        is_number = isinstance(factor, (int, float)) and not isinstance(factor, bool)
        if not is_number or not math.isfinite(factor) or factor == 0:
            raise ValueError(
                f"graded_spikes_factor must be a finite non-zero number (a float; tensors and "
                f"learn_graded_spikes_factor are not supported), got {factor!r}"
            )
        if not isinstance(self.surrogate, LEAKY_SURROGATES):
            raise ValueError(  # noqa: TRY004 -- one error type for every refused option
                f"surrogate {self.surrogate!r} is not supported: use lif_core's ArcTan, FastSigmoid, "
                "Sigmoid or StraightHeaviside"
            )


class LeakyStep(NamedTuple):
    """Everything one step computes: R_t, U_t (before a same-step reset), g*S_t and U'_t."""

    reset: Tensor
    pre_reset: Tensor
    spikes: Tensor
    membrane: Tensor


class LeakySequenceOutput(NamedTuple):
    """Returned spikes g*S_t and membranes U'_t, each (T, *step_shape)."""

    spikes: Tensor
    membranes: Tensor


class LeakyGradients(NamedTuple):
    """dL/d(input current), dL/dbeta, dL/dthreshold, dL/d(starting membrane), each shaped
    like the tensor it belongs to."""

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


def snntorch_leaky_options(
    beta: ParameterLike,
    threshold: ParameterLike = 1.0,
    spike_grad: LeakySurrogate | None = None,
    surrogate_disable: bool = False,
    inhibition: bool = False,
    learn_beta: bool = False,
    learn_threshold: bool = False,
    reset_mechanism: str = "subtract",
    state_quant: Any = False,
    graded_spikes_factor: float = 1.0,
    learn_graded_spikes_factor: bool = False,
    reset_delay: bool = True,
) -> tuple[LeakyOptions, Tensor, Tensor]:
    """snn.Leaky's maths-changing constructor arguments -> (options, beta, threshold).

    beta and threshold become tensors as snnTorch makes them (`torch.as_tensor`, so a Python
    float is float32), with requires_grad set by learn_beta / learn_threshold; `spike_grad`
    is one of our surrogate objects (None: ArcTan(2), snnTorch's default).  The calling
    conventions init_hidden and output do not change the maths and are not taken here.
    Options we do not implement raise a one-line ValueError naming them.
    """
    unsupported = {
        "surrogate_disable=True": bool(surrogate_disable),
        "inhibition=True": bool(inhibition),
        "state_quant": state_quant is not False and state_quant is not None,
        "learn_graded_spikes_factor=True": bool(learn_graded_spikes_factor),
    }
    for option, given in unsupported.items():
        if given:
            raise ValueError(
                f"snn.Leaky option {option} is not supported by lif_core.leaky; supported: "
                "reset_mechanism, reset_delay, beta/threshold (scalar or per-neuron, learnable), "
                "graded_spikes_factor (fixed), spike_grad atan/fast_sigmoid/sigmoid"
            )
    surrogate = ArcTan() if spike_grad is None else spike_grad
    options = LeakyOptions(
        reset_mechanism,  # type: ignore[arg-type]  # validated by LeakyOptions
        reset_delay,
        float(graded_spikes_factor),
        surrogate,
    )
    beta_tensor = torch.as_tensor(beta).detach().clone().requires_grad_(learn_beta)
    threshold_tensor = torch.as_tensor(threshold).detach().clone().requires_grad_(learn_threshold)
    return options, beta_tensor, threshold_tensor


# --------------------------------------------------------------------------- one step


def leaky_step_terms(
    current: Tensor, membrane: Tensor, beta: Tensor, threshold: Tensor, options: LeakyOptions
) -> LeakyStep:
    """One step of snn.Leaky (1.0.0), every intermediate kept; autograd-differentiable.

    Each line is the operation snnTorch performs, in its order, so the values are
    bit-identical to `snn.Leaky(...)(current, membrane)`.
    """
    graded = torch.tensor(options.graded_spikes_factor, dtype=current.dtype, device=current.device)
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
) -> tuple[Tensor, Tensor]:
    """One step of snn.Leaky: (out_t = g*S_t, U'_t), as `snn.Leaky(...)(current, membrane)`."""
    step = leaky_step_terms(
        current,
        membrane,
        as_parameter(beta, current, "beta"),
        as_parameter(threshold, current, "threshold"),
        options,
    )
    return step.spikes, step.membrane


# --------------------------------------------------------------------------- sequences


def _prepare(
    current: Tensor,
    beta: ParameterLike,
    threshold: ParameterLike,
    num_steps: int | None,
    membrane: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor, int]:
    """Check shapes and turn beta, threshold and the starting membrane into tensors."""
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
    check_parameter_shape(beta_t, step_shape, "beta")
    check_parameter_shape(threshold_t, step_shape, "threshold")
    start = current.new_zeros(step_shape) if membrane is None else membrane
    check_membrane_shape(start, step_shape)
    return beta_t, threshold_t, start, steps


def leaky_unrolled(
    current: Tensor,
    beta: ParameterLike,
    threshold: ParameterLike,
    options: LeakyOptions,
    num_steps: int | None = None,
    membrane: Tensor | None = None,
) -> LeakySequenceOutput:
    """Run `leaky_step_terms` over time and let autograd differentiate the unrolled loop.

    current: (T, ..., N) time-varying, or one step (..., N) held for `num_steps` steps.
    membrane: the starting membrane (zeros if None).  Slow, obviously correct: the yardstick
    for `leaky_sequence`'s hand-written BPTT.
    """
    beta_t, threshold_t, state, steps = _prepare(current, beta, threshold, num_steps, membrane)
    spikes, membranes = [], []
    for t in range(steps):
        current_t = current if num_steps is not None else current[t]
        step = leaky_step_terms(current_t, state, beta_t, threshold_t, options)
        state = step.membrane
        spikes.append(step.spikes)
        membranes.append(step.membrane)
    return LeakySequenceOutput(torch.stack(spikes), torch.stack(membranes))


def leaky_forward(
    current: Tensor,
    beta: Tensor,
    threshold: Tensor,
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
            step = leaky_step_terms(current_t, state, beta, threshold, options)
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
    graded = torch.tensor(options.graded_spikes_factor, dtype=membranes.dtype, device=membranes.device)
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
    options: LeakyOptions,
) -> LeakyGradients:
    """`leaky_backward` on the Numba kernels (`lif_core.leaky_kernels`), reduced to the
    parameters' shapes as `leaky_backward` reduces them."""
    current, decay, thr, membrane = numba_leaky_backward(
        current_shape, start, membranes, pre_resets, grad_spikes, grad_membranes, beta, threshold, options
    )
    return LeakyGradients(
        current=current,
        beta=_reduce_to(decay, beta) * _clamp_mask(beta.detach()).to(beta.dtype),
        threshold=_reduce_to(thr, threshold),
        membrane=membrane,
    )


def choose_backend(backend: str, current: Tensor, beta: Tensor, threshold: Tensor, membrane: Tensor) -> str:
    """"torch" or "numba" for these tensors: "auto" takes numba wherever its kernels run
    (CPU, float32/float64, per-neuron parameters in the input's dtype), torch elsewhere;
    "numba" where they cannot run is a one-line error saying why."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if backend == "torch":
        return backend
    reason = kernel_can_run(current, beta, threshold, membrane)
    if reason is None:
        return "numba"
    if backend == "numba":
        raise ValueError(f"{reason}; use backend='torch' (or 'auto')")
    return "torch"


class LeakySequenceFunction(torch.autograd.Function):
    """Forward: the general snn.Leaky time loop (torch or Numba).  Backward: `leaky_backward`
    (or its Numba twin)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        current: Tensor,
        beta: Tensor,
        threshold: Tensor,
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
            membrane.detach(),
            options,
            steps,
            constant_input,
        )
        ctx.save_for_backward(membrane.detach(), membranes, pre_resets, beta.detach(), threshold.detach())
        ctx.options, ctx.current_shape, ctx.backend = options, current.shape, backend
        ctx.set_materialize_grads(False)  # unused outputs arrive as None, not zeros
        return spikes, membranes

    @staticmethod
    def backward(  # type: ignore[override]
        ctx, grad_spikes: Tensor | None, grad_membranes: Tensor | None
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None, Tensor | None, None, None, None, None]:
        if grad_spikes is None and grad_membranes is None:
            return None, None, None, None, None, None, None, None
        start, membranes, pre_resets, beta, threshold = ctx.saved_tensors
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
            ctx.options,
        )
        needs = ctx.needs_input_grad
        return (
            grads.current if needs[0] else None,
            grads.beta if needs[1] else None,
            grads.threshold if needs[2] else None,
            grads.membrane if needs[3] else None,
            None,
            None,
            None,
            None,
        )


def leaky_sequence(
    current: Tensor,
    beta: ParameterLike,
    threshold: ParameterLike,
    options: LeakyOptions,
    num_steps: int | None = None,
    membrane: Tensor | None = None,
    backend: Backend = "auto",
) -> LeakySequenceOutput:
    """The general snn.Leaky over a whole sequence, with hand-written BPTT.

    current:   (T, ..., N) time-varying, or one step (..., N) held for `num_steps` steps.
    beta, threshold: Python numbers (0-dim tensors in the input's dtype) or tensors of shape
               (), (1,) or (N,); a tensor that requires grad receives its gradient.
    membrane:  the starting membrane, one step's shape (zeros if None); may require grad.
    backend:   "torch" (the readable loops of this module), "numba" (`lif_core.leaky_kernels`,
               CPU, float32/float64) or "auto" (numba wherever it can run, else torch).
    Returns the spikes g*S_t and membranes U'_t, (T, ..., N) each, bit-identical to
    snn.Leaky with the same options run step by step, on either backend.
    """
    beta_t, threshold_t, start, steps = _prepare(current, beta, threshold, num_steps, membrane)
    concrete = choose_backend(backend, current, beta_t, threshold_t, start)
    spikes, membranes = LeakySequenceFunction.apply(
        current, beta_t, threshold_t, start, options, steps, num_steps is not None, concrete
    )
    return LeakySequenceOutput(spikes, membranes)
