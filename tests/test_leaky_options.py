"""lif_core.leaky, the general snn.Leaky, against snnTorch 1.0.0 option by option.

For every combination of reset_mechanism x reset_delay x {scalar, per-neuron} beta and
threshold x {fixed, learnable} x graded_spikes_factor {1, 2} x surrogate {atan,
fast_sigmoid, sigmoid}, and on both backends (the readable torch loops and the Numba
kernels of lif_core.leaky_kernels):
  * spikes and membranes are torch.equal to snn.Leaky run step by step (float32);
  * gradients for the input, beta and threshold match snnTorch's autograd to float32
    rounding;
  * in float64 the hand-written BPTT equals autograd through our own step to 1e-10.
Hypothesis then searches shapes (T = 1 included), options and backends at random.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import pytest
import snntorch as snn
import torch
from hypothesis import given
from hypothesis import strategies as st
from snntorch import surrogate as snn_surrogate
from torch import Tensor

from lif_core.leaky import (
    LeakyOptions,
    LeakySequenceOutput,
    LeakySurrogate,
    ResetMechanism,
    leaky_sequence,
    leaky_step,
    leaky_unrolled,
    snntorch_leaky_options,
)
from lif_core.surrogate import ArcTan, FastSigmoid, Sigmoid, StraightHeaviside

STEPS, BATCH, NEURONS = 20, 3, 7
BACKENDS = ["torch", "numba"]
RESETS: list[ResetMechanism] = ["subtract", "zero", "none"]
# per-neuron values include the clamp's edges: beta 1.0 and 0.0-by-clamp (-0.2) and 1.3
PER_NEURON_BETA = [0.9, 0.5, 1.0, 1.3, -0.2, 0.95, 0.7]
PER_NEURON_THRESHOLD = [1.0, 0.8, 1.2, 0.5, 1.5, 1.0, 0.9]
SURROGATES: dict[str, tuple[LeakySurrogate, object]] = {
    "atan": (ArcTan(2.0), snn_surrogate.atan(alpha=2.0)),
    "fast_sigmoid": (FastSigmoid(25.0), snn_surrogate.fast_sigmoid(slope=25)),
    "sigmoid": (Sigmoid(25.0), snn_surrogate.sigmoid(slope=25)),
}


class Case(NamedTuple):
    """One combination of options."""

    reset: ResetMechanism
    reset_delay: bool
    beta_shape: str  # "scalar" | "per-neuron"
    threshold_shape: str
    learn: bool
    graded: float
    surrogate: str

    def options(self) -> LeakyOptions:
        return LeakyOptions(self.reset, self.reset_delay, self.graded, SURROGATES[self.surrogate][0])

    def beta(self, dtype: torch.dtype) -> Tensor:
        return torch.tensor(0.9 if self.beta_shape == "scalar" else PER_NEURON_BETA, dtype=dtype)

    def threshold(self, dtype: torch.dtype) -> Tensor:
        return torch.tensor(1.0 if self.threshold_shape == "scalar" else PER_NEURON_THRESHOLD, dtype=dtype)


CASES = [
    Case(*values)
    for values in itertools.product(
        RESETS,
        [True, False],
        ["scalar", "per-neuron"],
        ["scalar", "per-neuron"],
        [False, True],
        [1.0, 2.0],
        list(SURROGATES),
    )
]


def case_id(case: Case) -> str:
    delay = "delay" if case.reset_delay else "nodelay"
    learn = "learn" if case.learn else "fixed"
    shapes = f"b{case.beta_shape}-t{case.threshold_shape}"
    return f"{case.reset}-{delay}-{shapes}-{learn}-g{case.graded:g}-{case.surrogate}"


def random_inputs(dtype: torch.dtype, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Input current (T, B, N) and two loss weights.  The current is clamped at -1 so the
    membrane never falls 3.55 below threshold, where snnTorch's sigmoid surrogate (and ours,
    which copies it) overflows to NaN in float32; see test_sigmoid_overflow_is_copied."""
    generator = torch.Generator().manual_seed(seed)
    shape = (STEPS, BATCH, NEURONS)
    current = (torch.randn(shape, generator=generator) * 0.8 + 0.4).clamp(min=-1.0)
    spike_weights = torch.randn(shape, generator=generator)
    membrane_weights = torch.randn(shape, generator=generator)
    return current.to(dtype), spike_weights.to(dtype), membrane_weights.to(dtype)


def run_snntorch(case: Case, current: Tensor) -> tuple[Tensor, Tensor, snn.Leaky]:
    """snn.Leaky with the case's options, stepped as the study's loop does."""
    layer = snn.Leaky(
        beta=case.beta(torch.float32),
        threshold=case.threshold(torch.float32),
        spike_grad=SURROGATES[case.surrogate][1],
        learn_beta=case.learn,
        learn_threshold=case.learn,
        reset_mechanism=case.reset,
        graded_spikes_factor=case.graded,
        reset_delay=case.reset_delay,
    )
    mem = layer.init_leaky()
    spikes, membranes = [], []
    for current_t in current:
        spk, mem = layer(current_t, mem)
        spikes.append(spk)
        membranes.append(mem)
    return torch.stack(spikes), torch.stack(membranes), layer


def loss_of(spikes: Tensor, membranes: Tensor, spike_weights: Tensor, membrane_weights: Tensor) -> Tensor:
    """A loss touching every spike and every membrane with its own weight."""
    return (spikes * spike_weights).sum() + (membranes * membrane_weights).sum()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_forward_and_gradients_match_snntorch_float32(case: Case, backend: str) -> None:
    """Bit-identical spikes/membranes; input grads to rtol 1e-5, beta/threshold grads (sums
    over batch and time, with cancellation) to rtol 1e-4, atol 1e-6 of the largest entry."""
    current, spike_weights, membrane_weights = random_inputs(torch.float32)
    theirs_in = current.clone().requires_grad_()
    theirs_spikes, theirs_membranes, layer = run_snntorch(case, theirs_in)
    beta = case.beta(torch.float32).requires_grad_(case.learn)
    threshold = case.threshold(torch.float32).requires_grad_(case.learn)
    ours_in = current.clone().requires_grad_()
    ours = leaky_sequence(ours_in, beta, threshold, case.options(), backend=backend)
    assert torch.equal(ours.spikes, theirs_spikes)
    assert torch.equal(ours.membranes, theirs_membranes)
    assert 0 < int((theirs_spikes != 0).sum()) < theirs_spikes.numel()

    their_leaves = [theirs_in] + ([layer.beta, layer.threshold] if case.learn else [])
    our_leaves = [ours_in] + ([beta, threshold] if case.learn else [])
    theirs_grads = torch.autograd.grad(
        loss_of(theirs_spikes, theirs_membranes, spike_weights, membrane_weights), their_leaves
    )
    ours_grads = torch.autograd.grad(loss_of(*ours, spike_weights, membrane_weights), our_leaves)
    for name, mine, reference in zip(["input", "beta", "threshold"], ours_grads, theirs_grads):
        assert bool(torch.isfinite(reference).all()), name
        rtol = 1e-5 if name == "input" else 1e-4
        atol = 1e-6 * float(reference.abs().max())
        torch.testing.assert_close(
            mine, reference, rtol=rtol, atol=atol, msg=lambda m, name=name: f"{name}: {m}"
        )


SELF_CASES = [case for case in CASES if case.graded == 2.0 or case.surrogate == "atan"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", SELF_CASES, ids=case_id)
def test_handwritten_bptt_equals_autograd_through_our_step_float64(case: Case, backend: str) -> None:
    """float64: leaky_sequence's backward equals autograd through leaky_unrolled to 1e-10,
    for the input, beta, threshold and a starting membrane."""
    current, spike_weights, membrane_weights = random_inputs(torch.float64, seed=1)
    start = torch.rand((BATCH, NEURONS), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    grads = []
    for run in (partial(leaky_sequence, backend=backend), leaky_unrolled):
        leaves = [
            current.clone().requires_grad_(),
            case.beta(torch.float64).requires_grad_(case.learn),
            case.threshold(torch.float64).requires_grad_(case.learn),
            start.clone().requires_grad_(),
        ]
        out = run(leaves[0], leaves[1], leaves[2], case.options(), membrane=leaves[3])
        wanted = [leaf for leaf in leaves if leaf.requires_grad]
        grads.append((out, torch.autograd.grad(loss_of(*out, spike_weights, membrane_weights), wanted)))
    (ours, ours_grads), (reference, reference_grads) = grads
    assert torch.equal(ours.spikes, reference.spikes) and torch.equal(ours.membranes, reference.membranes)
    for mine, expected in zip(ours_grads, reference_grads):
        torch.testing.assert_close(mine, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("reset_delay", [True, False])
def test_constant_input_straight_heaviside_and_one_step_float64(
    reset: ResetMechanism, reset_delay: bool, backend: str
) -> None:
    """A constant (B, N) input held for num_steps (its gradient is the sum over time), T = 1,
    and the zero-gradient StraightHeaviside: hand-written BPTT equals autograd (1e-10)."""
    generator = torch.Generator().manual_seed(3)
    constant = torch.rand((BATCH, NEURONS), generator=generator, dtype=torch.float64) * 1.5
    for surrogate, steps in ((ArcTan(), 15), (StraightHeaviside(), 15), (FastSigmoid(), 1)):
        options = LeakyOptions(reset, reset_delay, 1.5, surrogate)
        results = []
        for run in (partial(leaky_sequence, backend=backend), leaky_unrolled):
            leaves = [
                constant.clone().requires_grad_(),
                torch.tensor(PER_NEURON_BETA, dtype=torch.float64, requires_grad=True),
                torch.tensor(0.8, dtype=torch.float64, requires_grad=True),
            ]
            out = run(leaves[0], leaves[1], leaves[2], options, num_steps=steps)
            loss = out.spikes.sum() + (out.membranes**2).sum()
            results.append((out, torch.autograd.grad(loss, leaves)))
        (ours, ours_grads), (reference, reference_grads) = results
        assert ours.spikes.shape == (steps, BATCH, NEURONS)
        assert torch.equal(ours.membranes, reference.membranes)
        for mine, expected in zip(ours_grads, reference_grads):
            torch.testing.assert_close(mine, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("beta_value", [1.0, 1.2, 0.0, -0.3, 0.6])
def test_scalar_beta_gradient_is_zero_where_the_clamp_is_active(beta_value: float, backend: str) -> None:
    """A learnable scalar beta outside (0, 1), or exactly on its edge, gets exactly zero
    gradient in snnTorch (torch's clamp backward) and in ours; inside it gets the same one."""
    case = Case("subtract", True, "scalar", "scalar", True, 1.0, "atan")
    current, spike_weights, membrane_weights = random_inputs(torch.float32, seed=4)
    layer = snn.Leaky(beta=beta_value, learn_beta=True)
    mem, spikes, membranes = layer.init_leaky(), [], []
    for current_t in current:
        spk, mem = layer(current_t, mem)
        spikes.append(spk)
        membranes.append(mem)
    (theirs,) = torch.autograd.grad(
        loss_of(torch.stack(spikes), torch.stack(membranes), spike_weights, membrane_weights), [layer.beta]
    )
    beta = torch.tensor(beta_value, requires_grad=True)
    ours_out = leaky_sequence(current, beta, 1.0, case.options(), backend=backend)
    (ours,) = torch.autograd.grad(loss_of(*ours_out, spike_weights, membrane_weights), [beta])
    assert torch.equal(ours_out.membranes, torch.stack(membranes))
    if 0.0 < beta_value < 1.0:
        assert float(theirs) != 0.0
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=0.0)
    else:
        assert float(theirs) == 0.0 and float(ours) == 0.0


def test_leaky_step_matches_one_snntorch_call_from_a_given_membrane() -> None:
    """leaky_step from a membrane above threshold, reset_delay=False and "zero": one call of
    snn.Leaky, bit for bit (the reset comes from the membrane handed in)."""
    start = torch.tensor([[1.5, 0.2, 2.5, -0.4]])
    current = torch.tensor([[0.3, 0.9, -0.2, 1.7]])
    for reset in RESETS:
        for delay in (True, False):
            layer = snn.Leaky(beta=0.8, reset_mechanism=reset, reset_delay=delay, graded_spikes_factor=0.3)
            their_spikes, their_mem = layer(current, start.clone())
            options = LeakyOptions(reset, delay, 0.3)
            spikes, mem = leaky_step(current, start.clone(), 0.8, 1.0, options)
            assert torch.equal(spikes, their_spikes) and torch.equal(mem, their_mem), (reset, delay)


def test_snntorch_leaky_options_builds_the_same_neuron() -> None:
    """snnTorch-style constructor arguments give options and tensors equal to snn.Leaky's."""
    beta = torch.tensor(PER_NEURON_BETA)
    options, our_beta, our_threshold = snntorch_leaky_options(
        beta,
        threshold=0.7,
        learn_beta=True,
        reset_mechanism="zero",
        reset_delay=False,
        graded_spikes_factor=2.0,
    )
    assert options == LeakyOptions("zero", False, 2.0, ArcTan(2.0))
    assert our_beta.requires_grad and not our_threshold.requires_grad
    layer = snn.Leaky(
        beta=beta.clone(), threshold=0.7, learn_beta=True, reset_mechanism="zero", reset_delay=False
    )
    assert torch.equal(our_beta, layer.beta) and torch.equal(our_threshold, layer.threshold)
    assert our_threshold.dtype == layer.threshold.dtype == torch.float32


# --------------------------------------------------------------------------- surrogates and errors


def test_sigmoid_surrogate_is_snntorch_sigmoid_bit_for_bit() -> None:
    """Sigmoid(25).spike equals snnTorch's surrogate.sigmoid(slope=25) forward and backward;
    `.derivative` is its closed form and peaks at slope/4."""
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(4096, generator=generator) * 0.5
    x[:3] = torch.tensor([0.0, -0.0, 1e-8])
    upstream = torch.randn(4096, generator=generator)
    ours_in, theirs_in = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours, theirs = Sigmoid(25.0).spike(ours_in), snn_surrogate.sigmoid(slope=25)(theirs_in)
    assert torch.equal(ours, theirs)
    (ours_grad,) = torch.autograd.grad(ours, ours_in, grad_outputs=upstream)
    (theirs_grad,) = torch.autograd.grad(theirs, theirs_in, grad_outputs=upstream)
    assert torch.equal(ours_grad, theirs_grad)
    probe = torch.tensor([0.0, 0.1, -0.3], dtype=torch.float64)
    expected = 25 * torch.exp(-25 * probe) / (1 + torch.exp(-25 * probe)) ** 2
    torch.testing.assert_close(Sigmoid(25.0).derivative(probe), expected, rtol=1e-14, atol=0.0)
    assert float(Sigmoid(25.0).derivative(torch.zeros(1))) == 25 / 4


def test_sigmoid_overflow_is_copied() -> None:
    """snnTorch's sigmoid backward overflows in float32: 0 (not tiny) below x = -1.78, NaN
    below -3.55.  Ours is the same, NaN for NaN; float64 is finite there."""
    x = torch.tensor([-1.0, -2.0, -3.0, -3.6, -5.0])
    theirs_in, ours_in = x.clone().requires_grad_(), x.clone().requires_grad_()
    (theirs,) = torch.autograd.grad(snn_surrogate.sigmoid()(theirs_in).sum(), theirs_in)
    (ours,) = torch.autograd.grad(Sigmoid().spike(ours_in).sum(), ours_in)
    assert torch.equal(theirs.isnan(), torch.tensor([False, False, False, True, True]))
    assert float(theirs[1]) == 0.0 and float(theirs[2]) == 0.0
    torch.testing.assert_close(ours, theirs, rtol=0.0, atol=0.0, equal_nan=True)
    assert bool(torch.isfinite(Sigmoid().derivative(x.detach().double())).all())


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"inhibition": True}, "inhibition"),
        ({"state_quant": object()}, "state_quant"),
        ({"surrogate_disable": True}, "surrogate_disable"),
        ({"learn_graded_spikes_factor": True}, "learn_graded_spikes_factor"),
        ({"reset_mechanism": "hard"}, "reset_mechanism"),
        ({"spike_grad": snn_surrogate.triangular()}, "surrogate"),
        ({"graded_spikes_factor": 0.0}, "graded_spikes_factor"),
    ],
)
def test_unsupported_options_raise_a_one_line_error_naming_them(kwargs: dict, named: str) -> None:
    """Every option we do not implement is a ValueError with one line that names it."""
    with pytest.raises(ValueError, match=named) as error:
        snntorch_leaky_options(0.9, **kwargs)
    assert "\n" not in str(error.value)


def test_bad_shapes_raise() -> None:
    """beta/threshold must be scalar, (1,) or (N,); the starting membrane one step's shape."""
    current = torch.zeros(STEPS, BATCH, NEURONS)
    with pytest.raises(ValueError, match="beta of shape"):
        leaky_sequence(current, torch.full((BATCH, NEURONS), 0.9), 1.0, LeakyOptions())
    with pytest.raises(ValueError, match="threshold of shape"):
        leaky_sequence(current, 0.9, torch.ones(NEURONS + 1), LeakyOptions())
    with pytest.raises(ValueError, match="starting membrane"):
        leaky_sequence(current, 0.9, 1.0, LeakyOptions(), membrane=torch.zeros(1, NEURONS))
    with pytest.raises(ValueError, match="num_steps"):
        leaky_sequence(current[0], 0.9, 1.0, LeakyOptions(), num_steps=0)


def test_backend_choice_and_refusals() -> None:
    """"auto" runs the kernels where they can run and the torch loops elsewhere (a per-neuron
    beta in another dtype); an explicit backend="numba" there, or an unknown backend, is a
    one-line ValueError saying why."""
    current = random_inputs(torch.float32)[0]
    beta64 = torch.tensor(PER_NEURON_BETA, dtype=torch.float64)
    auto = leaky_sequence(current, beta64, 1.0, LeakyOptions(), backend="auto")
    reference = leaky_unrolled(current, beta64, 1.0, LeakyOptions())
    assert auto.membranes.dtype == torch.float64 and torch.equal(auto.membranes, reference.membranes)
    for backend, named in (("numba", "beta in the input's dtype"), ("cuda", "unknown backend")):
        with pytest.raises(ValueError, match=named) as error:
            leaky_sequence(current, beta64, 1.0, LeakyOptions(), backend=backend)
        assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="float32 or float64"):
        leaky_sequence(current.half(), 0.9, 1.0, LeakyOptions(), backend="numba")


# --------------------------------------------------------------------------- properties

HYPOTHESIS_SURROGATES: dict[str, tuple[LeakySurrogate, object]] = {
    **SURROGATES,
    "heaviside": (StraightHeaviside(), None),
}


class Problem(NamedTuple):
    """One random problem: shapes, options, parameters and inputs (float64 masters)."""

    options: LeakyOptions
    surrogate: str
    constant: bool
    steps: int
    current: Tensor  # (T, *step_shape), or step_shape when constant
    beta: Tensor
    threshold: Tensor
    start: Tensor
    spike_weights: Tensor
    membrane_weights: Tensor


@st.composite
def leaky_problems(draw: st.DrawFn) -> Problem:
    """T in 1..8 (T = 1 included), zero to two leading batch dims, 1..6 neurons; every
    reset, reset_delay, surrogate, graded factor (negative too), scalar or per-neuron beta
    (inside and outside [0, 1]) and threshold, constant or time-varying input."""
    steps = draw(st.integers(1, 8))
    step_shape = (*draw(st.lists(st.integers(1, 3), max_size=2)), draw(st.integers(1, 6)))
    neurons = step_shape[-1]
    constant = draw(st.booleans())
    surrogate = draw(st.sampled_from(sorted(HYPOTHESIS_SURROGATES)))
    options = LeakyOptions(
        draw(st.sampled_from(RESETS)),
        draw(st.booleans()),
        draw(st.sampled_from([1.0, 2.0, 0.5, -1.0])),
        HYPOTHESIS_SURROGATES[surrogate][0],
    )
    beta_values = st.floats(-0.2, 1.2, allow_nan=False)
    beta_shape = draw(st.sampled_from([(), (1,), (neurons,)]))
    threshold_shape = draw(st.sampled_from([(), (1,), (neurons,)]))
    count = max(1, math.prod(beta_shape))
    beta = torch.tensor(draw(st.lists(beta_values, min_size=count, max_size=count)), dtype=torch.float64)
    threshold = torch.rand(threshold_shape, generator=torch.Generator().manual_seed(draw(st.integers(0, 999)))) + 0.5
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    input_shape = step_shape if constant else (steps, *step_shape)
    # I >= -0.2 keeps U - thr above -3.55, where float32 sigmoid overflows (see above)
    current = torch.rand(input_shape, generator=generator, dtype=torch.float64) * 1.7 - 0.2
    return Problem(
        options,
        surrogate,
        constant,
        steps,
        current,
        beta.reshape(beta_shape),
        threshold.double(),
        torch.rand(step_shape, generator=generator, dtype=torch.float64) * 1.5,
        torch.randn((steps, *step_shape), generator=generator, dtype=torch.float64),
        torch.randn((steps, *step_shape), generator=generator, dtype=torch.float64),
    )


def _gradients(run: Callable, problem: Problem, dtype: torch.dtype, start: bool) -> tuple[LeakySequenceOutput, tuple]:
    leaves = [
        problem.current.to(dtype).requires_grad_(),
        problem.beta.to(dtype).requires_grad_(),
        problem.threshold.to(dtype).requires_grad_(),
    ]
    membrane = problem.start.to(dtype).requires_grad_() if start else None
    out = run(
        leaves[0],
        leaves[1],
        leaves[2],
        problem.options,
        num_steps=problem.steps if problem.constant else None,
        membrane=membrane,
    )
    wanted = leaves + ([membrane] if membrane is not None else [])
    loss = loss_of(*out, problem.spike_weights.to(dtype), problem.membrane_weights.to(dtype))
    return out, torch.autograd.grad(loss, wanted)


@given(problem=leaky_problems(), backend=st.sampled_from(BACKENDS))
def test_property_handwritten_bptt_equals_unrolled_autograd_float64(problem: Problem, backend: str) -> None:
    """Any shape and options, either backend: forward torch.equal to the unrolled steps,
    gradients (input, beta, threshold, starting membrane) equal to autograd to 1e-10."""
    ours, ours_grads = _gradients(partial(leaky_sequence, backend=backend), problem, torch.float64, start=True)
    reference, reference_grads = _gradients(leaky_unrolled, problem, torch.float64, start=True)
    assert torch.equal(ours.spikes, reference.spikes) and torch.equal(ours.membranes, reference.membranes)
    for mine, expected in zip(ours_grads, reference_grads):
        torch.testing.assert_close(mine, expected, rtol=1e-10, atol=1e-10)


@given(problem=leaky_problems(), backend=st.sampled_from(BACKENDS))
def test_property_matches_snntorch_float32(problem: Problem, backend: str) -> None:
    """Any shape and options, either backend, float32 from a zero membrane: spikes and
    membranes torch.equal to snn.Leaky stepped T times; gradients to rtol 1e-4 (atol 1e-5
    of the largest entry: sums over batch and time cancel)."""
    if problem.surrogate == "heaviside":
        return  # snnTorch has no zero-gradient surrogate to compare with (float64 test covers it)
    layer = snn.Leaky(
        beta=problem.beta.float().clone(),
        threshold=problem.threshold.float().clone(),
        spike_grad=HYPOTHESIS_SURROGATES[problem.surrogate][1],
        learn_beta=True,
        learn_threshold=True,
        reset_mechanism=problem.options.reset_mechanism,
        graded_spikes_factor=problem.options.graded_spikes_factor,
        reset_delay=problem.options.reset_delay,
    )
    current = problem.current.float().requires_grad_()
    mem, spikes, membranes = layer.init_leaky(), [], []
    for t in range(problem.steps):
        spk, mem = layer(current if problem.constant else current[t], mem)
        spikes.append(spk)
        membranes.append(mem)
    theirs_spikes, theirs_membranes = torch.stack(spikes), torch.stack(membranes)
    loss = loss_of(theirs_spikes, theirs_membranes, problem.spike_weights.float(), problem.membrane_weights.float())
    theirs_grads = torch.autograd.grad(loss, [current, layer.beta, layer.threshold])
    ours, ours_grads = _gradients(partial(leaky_sequence, backend=backend), problem, torch.float32, start=False)
    assert torch.equal(ours.spikes, theirs_spikes) and torch.equal(ours.membranes, theirs_membranes)
    for mine, reference in zip(ours_grads, theirs_grads):
        atol = 1e-5 * float(reference.abs().max())
        torch.testing.assert_close(mine, reference.reshape(mine.shape), rtol=1e-4, atol=atol)
