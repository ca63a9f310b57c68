"""lif_core.leaky, the neuron, against snnTorch 1.0.0 option by option.

For every combination of reset_mechanism x reset_delay x {scalar, per-neuron} beta and
threshold x {fixed, learnable beta, threshold and graded factor} x graded_spikes_factor
{1, 2} x surrogate {atan, fast_sigmoid, sigmoid}, and on both backends (the readable torch
loops and the Numba kernels of lif_core.leaky_kernels):
  * spikes and membranes are torch.equal to snn.Leaky run step by step (float32);
  * gradients for the input, beta, threshold and graded factor match snnTorch's autograd
    to float32 rounding;
  * in float64 the hand-written BPTT equals autograd through our own step to 1e-10.
Where the options are snn.Leaky's defaults, leaky_sequence takes lif_sequence's specialised
kernels; both paths give the same bits there (the option grid of
test_specialised_and_general_paths_give_the_same_bits).  Hypothesis then searches shapes
(T = 1 included), options and backends at random.
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

from lif_core.leaky import leaky_sequence, leaky_step, leaky_unrolled
from lif_core.modules import Leaky
from lif_core.neuron import LeakyOptions, LeakySequenceOutput, LIFParameters, ResetMechanism
from lif_core.sequence import lif_sequence
from lif_core.surrogate import ArcTan, FastSigmoid, Sigmoid, StraightHeaviside, Surrogate

STEPS, BATCH, NEURONS = 20, 3, 7
BACKENDS = ["torch", "numba"]
RESETS: list[ResetMechanism] = ["subtract", "zero", "none"]
# per-neuron values include the clamp's edges: beta 1.0 and 0.0-by-clamp (-0.2) and 1.3
PER_NEURON_BETA = [0.9, 0.5, 1.0, 1.3, -0.2, 0.95, 0.7]
PER_NEURON_THRESHOLD = [1.0, 0.8, 1.2, 0.5, 1.5, 1.0, 0.9]
SURROGATES: dict[str, tuple[Surrogate, object]] = {
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
        return LeakyOptions(self.reset, self.reset_delay, SURROGATES[self.surrogate][0])

    def graded_factor(self, dtype: torch.dtype) -> Tensor:
        """g as snnTorch stores it (0-dim), learnt with beta and threshold."""
        return torch.tensor(self.graded, dtype=dtype).requires_grad_(self.learn)

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
        learn_graded_spikes_factor=case.learn,
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
    """Bit-identical spikes/membranes; input grads to rtol 1e-5, beta/threshold/graded grads
    (sums over batch and time, with cancellation) to rtol 1e-4, atol 1e-6 of the largest entry."""
    current, spike_weights, membrane_weights = random_inputs(torch.float32)
    theirs_in = current.clone().requires_grad_()
    theirs_spikes, theirs_membranes, layer = run_snntorch(case, theirs_in)
    beta = case.beta(torch.float32).requires_grad_(case.learn)
    threshold = case.threshold(torch.float32).requires_grad_(case.learn)
    graded = case.graded_factor(torch.float32)
    ours_in = current.clone().requires_grad_()
    ours = leaky_sequence(ours_in, beta, threshold, case.options(), backend=backend, graded_spikes_factor=graded)
    assert torch.equal(ours.spikes, theirs_spikes)
    assert torch.equal(ours.membranes, theirs_membranes)
    assert 0 < int((theirs_spikes != 0).sum()) < theirs_spikes.numel()

    their_leaves = [theirs_in] + ([layer.beta, layer.threshold, layer.graded_spikes_factor] if case.learn else [])
    our_leaves = [ours_in] + ([beta, threshold, graded] if case.learn else [])
    theirs_grads = torch.autograd.grad(
        loss_of(theirs_spikes, theirs_membranes, spike_weights, membrane_weights), their_leaves
    )
    ours_grads = torch.autograd.grad(loss_of(ours.spikes, ours.membranes, spike_weights, membrane_weights), our_leaves)
    for name, mine, reference in zip(["input", "beta", "threshold", "graded"], ours_grads, theirs_grads):
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
    for the input, beta, threshold, graded factor and a starting membrane."""
    current, spike_weights, membrane_weights = random_inputs(torch.float64, seed=1)
    start = torch.rand((BATCH, NEURONS), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    grads = []
    for run in (partial(leaky_sequence, backend=backend), leaky_unrolled):
        leaves = [
            current.clone().requires_grad_(),
            case.beta(torch.float64).requires_grad_(case.learn),
            case.threshold(torch.float64).requires_grad_(case.learn),
            case.graded_factor(torch.float64),
            start.clone().requires_grad_(),
        ]
        out = run(leaves[0], leaves[1], leaves[2], case.options(), membrane=leaves[4], graded_spikes_factor=leaves[3])
        wanted = [leaf for leaf in leaves if leaf.requires_grad]
        loss = loss_of(out.spikes, out.membranes, spike_weights, membrane_weights)
        grads.append((out, torch.autograd.grad(loss, wanted)))
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
        options = LeakyOptions(reset, reset_delay, surrogate)
        results = []
        for run in (partial(leaky_sequence, backend=backend), leaky_unrolled):
            leaves = [
                constant.clone().requires_grad_(),
                torch.tensor(PER_NEURON_BETA, dtype=torch.float64, requires_grad=True),
                torch.tensor(0.8, dtype=torch.float64, requires_grad=True),
            ]
            out = run(leaves[0], leaves[1], leaves[2], options, num_steps=steps, graded_spikes_factor=1.5)
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
    (ours,) = torch.autograd.grad(loss_of(ours_out.spikes, ours_out.membranes, spike_weights, membrane_weights), [beta])
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
            spikes, mem = leaky_step(current, start.clone(), 0.8, 1.0, LeakyOptions(reset, delay), 0.3)
            assert torch.equal(spikes, their_spikes) and torch.equal(mem, their_mem), (reset, delay)


def test_the_module_holds_snntorchs_tensors() -> None:
    """lif_core.Leaky built with snn.Leaky's arguments holds tensors equal to snn.Leaky's (same
    names, dtypes, order; Parameters where learnt, buffers otherwise)."""
    beta = torch.tensor(PER_NEURON_BETA)
    ours = Leaky(beta, 0.7, reset_mechanism="zero", reset_delay=False, graded_spikes_factor=2.0,
                 learn_beta=True, learn_graded_spikes_factor=True)
    theirs = snn.Leaky(beta=beta.clone(), threshold=0.7, learn_beta=True, reset_mechanism="zero",
                       reset_delay=False, graded_spikes_factor=2.0, learn_graded_spikes_factor=True)
    assert ours.options == LeakyOptions("zero", False, ArcTan(2.0))
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for key, value in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value) and ours.state_dict()[key].dtype == value.dtype, key
    assert [name for name, _ in ours.named_parameters()] == [name for name, _ in theirs.named_parameters()]


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
        ({"reset_mechanism": "hard"}, "reset_mechanism"),
        ({"surrogate": snn_surrogate.triangular()}, "surrogate"),
        ({"graded_spikes_factor": 0.0}, "graded_spikes_factor"),
        ({"graded_spikes_factor": torch.ones(3)}, "graded_spikes_factor"),
        ({"beta": float("nan")}, "beta"),
        ({"backend": "cuda"}, "unknown backend"),
    ],
)
def test_unsupported_options_raise_a_one_line_error_naming_them(kwargs: dict, named: str) -> None:
    """Every option we do not implement is a ValueError with one line that names it."""
    with pytest.raises(ValueError, match=named) as error:
        Leaky(**{"beta": 0.9, **kwargs})
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

HYPOTHESIS_SURROGATES: dict[str, tuple[Surrogate, object]] = {
    **SURROGATES,
    "heaviside": (StraightHeaviside(), None),
}


class Problem(NamedTuple):
    """One random problem: shapes, options, parameters and inputs (float64 masters)."""

    options: LeakyOptions
    graded: float
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
    options = LeakyOptions(draw(st.sampled_from(RESETS)), draw(st.booleans()), HYPOTHESIS_SURROGATES[surrogate][0])
    graded = draw(st.sampled_from([1.0, 2.0, 0.5, -1.0]))
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
        graded,
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
        graded_spikes_factor=problem.graded,
    )
    wanted = leaves + ([membrane] if membrane is not None else [])
    loss = loss_of(out.spikes, out.membranes, problem.spike_weights.to(dtype), problem.membrane_weights.to(dtype))
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
        graded_spikes_factor=problem.graded,
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


# --------------------------------------------------------------------------- one neuron, two paths


def _general(current: Tensor, params: LIFParameters, num_steps: int | None, backend: str) -> LeakySequenceOutput:
    """leaky_sequence made to take its general loops: a starting membrane (zeros) is given."""
    start = torch.zeros(current.shape if num_steps is not None else current.shape[1:], dtype=current.dtype)
    options = LeakyOptions(surrogate=params.surrogate)
    return leaky_sequence(current, params.beta, params.threshold, options, num_steps, start, backend)  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("constant", [True, False], ids=["constant-BN", "time-varying-TBN"])
@pytest.mark.parametrize("surrogate", [FastSigmoid(25.0), ArcTan(2.0), Sigmoid(5.0), StraightHeaviside()], ids=lambda s: s.name)
@pytest.mark.parametrize("beta,threshold", [(0.9, 1.0), (0.5, 0.3), (1.0, 2.0), (0.0, 0.7), (1.3, 1.0), (-0.2, 0.5)])
def test_specialised_and_general_paths_give_the_same_bits(
    beta: float, threshold: float, surrogate: Surrogate, constant: bool, dtype: torch.dtype, backend: str
) -> None:
    """Over the grid of snn.Leaky's default options (subtract, reset_delay, g = 1, every
    surrogate, beta inside, on and outside [0, 1], both dtypes, both input forms, both
    backends): lif_sequence (the specialised path, which leaky_sequence takes for them) and
    the general loops give the same spikes, membranes and counts, bit for bit, and the same
    input gradient for a loss on spikes and counts: bit for bit on the torch backend and for
    the fast sigmoid and the straight Heaviside on numba (the kernels write the arctan and
    sigmoid derivatives with their constants rounded in another order: to 1e-6 there)."""
    steps, batch, neurons = 25, 8, 33
    generator = torch.Generator().manual_seed(13)
    shape = (batch, neurons) if constant else (steps, batch, neurons)
    # I >= -0.1 thr keeps U - thr where the sigmoid's e^(-slope*x) does not overflow to NaN
    current = (torch.randn(shape, generator=generator, dtype=torch.float64) * threshold + 0.6 * threshold)
    current = current.clamp(min=-0.1 * threshold).to(dtype)
    weights = torch.randn((steps, batch, neurons), generator=generator, dtype=torch.float64).to(dtype)
    params = LIFParameters(beta, threshold, surrogate)
    num_steps = steps if constant else None
    results = []
    for run in (
        lambda x: lif_sequence(x, params, num_steps, backend),  # type: ignore[arg-type]
        lambda x: leaky_sequence(x, beta, threshold, LeakyOptions(surrogate=surrogate), num_steps, backend=backend),  # type: ignore[arg-type]
        lambda x: _general(x, params, num_steps, backend),
    ):
        x = current.clone().requires_grad_()
        out = run(x)
        (grad,) = torch.autograd.grad((out.spikes * weights).sum() + (out.counts**2).sum(), x)
        results.append((out, grad))
    (specialised, grad), *others = results
    assert 0 < specialised.spikes.sum() < specialised.spikes.numel()
    assert bool(torch.isfinite(grad).all())
    for out, other_grad in others:
        assert out.spikes.dtype == dtype
        assert torch.equal(out.spikes, specialised.spikes)
        assert torch.equal(out.membranes, specialised.membranes)
        assert torch.equal(out.counts, specialised.counts)
        if backend == "torch" or surrogate.name in ("fast_sigmoid", "heaviside"):
            assert torch.equal(other_grad, grad)
        else:
            torch.testing.assert_close(other_grad, grad, rtol=1e-6, atol=1e-6 * float(grad.abs().max()))


def test_leaky_sequence_takes_the_specialised_path_exactly_where_the_options_allow() -> None:
    """The dispatch: snn.Leaky's defaults from a zero start go to lif_sequence's kernels (its
    Function in the graph); a learnt value, another reset, reset_delay off, g != 1, a given
    membrane or a per-neuron beta go to the general loops."""
    current = torch.rand(5, 2, 3, requires_grad=True)

    def node(**kwargs: object) -> str:
        options = LeakyOptions(kwargs.pop("reset", "subtract"), kwargs.pop("delay", True))  # type: ignore[arg-type]
        beta = kwargs.pop("beta", 0.9)
        out = leaky_sequence(current, beta, 1.0, options, **kwargs)  # type: ignore[arg-type]
        return type(out.spikes.grad_fn).__name__

    specialised, general = "LIFSequenceFunctionBackward", "LeakySequenceFunctionBackward"
    assert node() == specialised
    assert node(beta=torch.tensor(0.9)) == specialised
    assert node(graded_spikes_factor=torch.tensor(1.0)) == specialised
    assert node(beta=torch.tensor(0.9, requires_grad=True)) == general
    assert node(beta=torch.full((3,), 0.9)) == general
    assert node(reset="zero") == general
    assert node(delay=False) == general
    assert node(graded_spikes_factor=2.0) == general
    assert node(membrane=torch.zeros(2, 3)) == general
    with torch.no_grad():  # a learnt value needs no gradient without autograd
        out = leaky_sequence(current, torch.tensor(0.9, requires_grad=True), 1.0, LeakyOptions())
    assert out.spikes.grad_fn is None
