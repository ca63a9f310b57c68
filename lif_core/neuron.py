"""The leaky integrate-and-fire neuron: parameters, state, and pure step functions.

The records every part of lif_core shares: `LeakyOptions` (the options of snn.Leaky that
change the maths, besides its values beta, threshold and graded_spikes_factor),
`RESET_MECHANISMS` (snnTorch's reset numbering, the one table of it) and
`LeakySequenceOutput` (what a whole sequence returns).  Then the default neuron:

Discrete-time LIF with reset by subtraction, exactly as snnTorch 1.0.0's
`snn.Leaky` with its defaults (reset_mechanism="subtract", reset_delay=True):

    reset_t = H(U_{t-1} - thr)                    from the *previous* membrane, detached
    U_t     = clamp(beta, 0, 1) * U_{t-1} + I_t - reset_t * thr
    S_t     = H(U_t - thr)                        surrogate gradient in the backward pass

with U_{-1} = 0.  The membrane returned for step t is U_t, *before* the reset
that its own spike causes; that reset is applied one step later (reset_delay).
Since reset_t = H(U_{t-1} - thr) = S_{t-1}, a spike at step t-1 lowers U_t by thr.

beta is the per-step decay factor of the membrane, beta = exp(-dt / tau_mem);
beta = 0.9 with dt = 1 ms is tau_mem ~ 9.5 ms.

This module holds its readable reference: `lif_step` (one step, autograd
through the surrogate Function) and `reference_forward` / `reference_backward`
(the whole sequence, with the BPTT loop written out).  `lif_core.sequence` wraps
the latter, and the Numba kernels in `lif_core.sequence_kernels`, in one
`torch.autograd.Function`; `lif_core.leaky.leaky_sequence` takes that path whenever
a neuron's options are these defaults.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from lif_core.surrogate import SURROGATES, ArcTan, FastSigmoid, Surrogate, heaviside

ResetMechanism = Literal["subtract", "zero", "none"]
# snnTorch's reset_dict: a mechanism's position is its reset_mechanism_val in a state_dict,
# and the code the Numba kernels take.
RESET_MECHANISMS: tuple[ResetMechanism, ...] = ("subtract", "zero", "none")


@dataclass(frozen=True)
class LeakyOptions:
    """The options of snn.Leaky that change the maths, besides its values (beta, threshold,
    graded_spikes_factor, which may be tensors and may be learnt).

    reset_mechanism:  "subtract" (default), "zero" or "none".
    reset_delay:      True (default): the returned membrane is U_t before its own spike's
                      reset, which happens one step later; False: reset in the same step.
    surrogate:        dS/dU in the backward pass; snnTorch's default is atan(alpha=2).
    """

    reset_mechanism: ResetMechanism = "subtract"
    reset_delay: bool = True
    surrogate: Surrogate = field(default_factory=ArcTan)

    def __post_init__(self) -> None:
        if self.reset_mechanism not in RESET_MECHANISMS:
            raise ValueError(
                f"reset_mechanism {self.reset_mechanism!r} is not supported: choose one of "
                f"{', '.join(RESET_MECHANISMS)}"
            )
        if not isinstance(self.reset_delay, bool):
            raise ValueError(f"reset_delay must be True or False, got {self.reset_delay!r}")
        if not isinstance(self.surrogate, tuple(SURROGATES.values())):
            raise ValueError(
                f"surrogate {self.surrogate!r} is not supported: use lif_core's "
                + ", ".join(cls.__name__ for cls in SURROGATES.values())
            )

    @property
    def reset_code(self) -> int:
        """snnTorch's reset_mechanism_val for this reset, which the kernels take too."""
        return RESET_MECHANISMS.index(self.reset_mechanism)


class LeakySequenceOutput(NamedTuple):
    """What a whole sequence returns: the spikes g*S_t and the membranes U'_t, each
    (T, *step_shape), and the spike counts C = sum_t S_t (times g), (*step_shape).
    membranes is None when not asked for.  All three are differentiable; a loss on the
    counts should use `counts` rather than `spikes.sum(0)`, which on the default neuron's
    kernels costs a (T, B, N) gradient tensor in the backward pass."""

    spikes: Tensor
    membranes: Tensor | None
    counts: Tensor


@dataclass(frozen=True)
class LIFParameters:
    """Constants of one LIF population.

    beta:      membrane decay per step; clamped to [0, 1] where it is used, as snnTorch does.
    threshold: firing threshold thr (also the amount subtracted on reset).
    surrogate: the pseudo-derivative used for dS/dU in the backward pass.
    """

    beta: float = 0.9
    threshold: float = 1.0
    surrogate: Surrogate = field(default_factory=FastSigmoid)

    def __post_init__(self) -> None:
        if not math.isfinite(self.beta):
            raise ValueError(f"beta must be a finite number, got {self.beta!r}")
        if not math.isfinite(self.threshold):
            raise ValueError(f"threshold must be a finite number, got {self.threshold!r}")

    @property
    def clamped_beta(self) -> float:
        """clamp(beta, 0, 1): the decay actually applied (snnTorch clamps silently too)."""
        return min(max(float(self.beta), 0.0), 1.0)


class LIFState(NamedTuple):
    """State carried from one step to the next: the membrane U_{t-1} (before its reset)."""

    membrane: Tensor


def initial_state(like: Tensor) -> LIFState:
    """U_{-1} = 0, shaped and typed like one step of input current."""
    return LIFState(membrane=torch.zeros_like(like))


def _scalar(value: float, like: Tensor) -> Tensor:
    """A 0-dim tensor in the dtype/device of `like`: float32 arithmetic stays float32,
    exactly as with snnTorch's 0-dim `beta` and `threshold` buffers."""
    return torch.tensor(value, dtype=like.dtype, device=like.device)


def lif_step(current: Tensor, state: LIFState, params: LIFParameters) -> tuple[Tensor, LIFState]:
    """Advance one time step; returns (spikes S_t, new state holding U_t).

    Differentiable through `params.surrogate`; the reset is a comparison and so
    carries no gradient (the "detached reset").
    """
    beta = _scalar(params.clamped_beta, current)
    threshold = _scalar(params.threshold, current)
    # reset_t = H(U_{t-1} - thr), no gradient
    reset = heaviside(state.membrane.detach() - threshold)
    # U_t = beta * U_{t-1} + I_t - reset_t * thr
    membrane = beta * state.membrane + current - reset * threshold
    # S_t = H(U_t - thr), surrogate derivative going back
    spikes = params.surrogate.spike(membrane - threshold)
    return spikes, LIFState(membrane)


def unrolled_sequence(
    current: Tensor, params: LIFParameters, num_steps: int | None = None
) -> tuple[Tensor, Tensor]:
    """Run `lif_step` over time and let autograd differentiate the unrolled loop.

    `current` is (T, B, N) for a time-varying input, or (B, N) with `num_steps`
    for a constant one.  Returns (spikes, membranes), both (T, B, N).  Slow but
    obviously correct: the yardstick for the hand-written BPTT below.
    """
    steps = current.shape[0] if num_steps is None else num_steps
    first = current[0] if num_steps is None else current
    state = initial_state(first)
    spikes, membranes = [], []
    for t in range(steps):
        current_t = current if num_steps is not None else current[t]
        spikes_t, state = lif_step(current_t, state, params)
        spikes.append(spikes_t)
        membranes.append(state.membrane)
    return torch.stack(spikes), torch.stack(membranes)


def reference_forward(
    current: Tensor, beta: float, threshold: float, num_steps: int, store_membranes: bool = True
) -> tuple[Tensor, Tensor | None, Tensor]:
    """Whole-sequence forward pass, no autograd; the torch backend of `lif_sequence`.

    current: (T, B, N) time-varying, or (B, N) held constant for `num_steps` steps.
    Returns spikes and membranes, (T, B, N) each (membranes None unless
    store_membranes), and the spike counts C = sum_t S_t, (B, N), all in the
    dtype of `current`.
    """
    constant = current.dim() == 2
    step_shape = current.shape if constant else current.shape[1:]
    beta_t = _scalar(min(max(beta, 0.0), 1.0), current)
    threshold_t = _scalar(threshold, current)
    spikes = current.new_empty((num_steps, *step_shape))
    membranes = current.new_empty((num_steps, *step_shape)) if store_membranes else None
    membrane = current.new_zeros(step_shape)  # U_{-1} = 0
    for t in range(num_steps):
        current_t = current if constant else current[t]
        # reset_t = H(U_{t-1} - thr)
        reset = heaviside(membrane - threshold_t)
        # U_t = beta * U_{t-1} + I_t - reset_t * thr
        membrane = beta_t * membrane + current_t - reset * threshold_t
        # S_t = H(U_t - thr)
        spikes[t] = heaviside(membrane - threshold_t)
        if membranes is not None:
            membranes[t] = membrane
    # C = sum_t S_t
    counts = spikes.sum(dim=0)
    return spikes, membranes, counts


def reference_backward(
    membranes: Tensor,
    grad_spikes: Tensor | None,
    grad_counts: Tensor | None,
    grad_membranes: Tensor | None,
    beta: float,
    threshold: float,
    surrogate: Surrogate,
    constant_input: bool,
) -> Tensor:
    """Backpropagation through time for the LIF sequence, written out in reverse time.

    The only path from U_t to later steps that carries gradient is the leak
    beta * U_t inside U_{t+1} (the reset depends on U_t only through the
    detached H, so it contributes nothing).  The counts C = sum_t S_t pass their
    gradient to every step.  With g_t = dL/dU_t (total):

        dL/dS_t = dL/dS_t|direct + dL/dC
        g_t = dL/dS_t * surrogate'(U_t - thr) + dL/dU_t|direct + beta * g_{t+1},   g_T = 0
        dL/dI_t = g_t                     (U_t depends on I_t with weight 1)

    For a constant input I (the same I at every step) dL/dI = sum_t g_t.
    Returns dL/dI with the shape of the forward input.
    """
    beta_t = _scalar(min(max(beta, 0.0), 1.0), membranes)
    none = torch.zeros_like(membranes[0])  # stands in for a gradient that is None
    grad_current = torch.empty_like(membranes)
    carry = torch.zeros_like(membranes[0])  # g_{t+1}
    for t in reversed(range(membranes.shape[0])):
        # dL/dS_t = dL/dS_t|direct + dL/dC
        grad_s = (none if grad_spikes is None else grad_spikes[t]) + (
            none if grad_counts is None else grad_counts
        )
        direct = none if grad_membranes is None else grad_membranes[t]
        # g_t = dL/dS_t * surrogate'(U_t - thr) + dL/dU_t|direct + beta * g_{t+1}
        grad_u = grad_s * surrogate.derivative(membranes[t] - threshold) + direct + beta_t * carry
        grad_current[t] = grad_u
        carry = grad_u
    return grad_current.sum(dim=0) if constant_input else grad_current
