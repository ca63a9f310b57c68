"""The LIF core: known trace, hand-written BPTT vs autograd, torch vs Numba, snnTorch, errors.

`unrolled_sequence` (autograd through `lif_step` over time) is the yardstick for
the whole-sequence Function's hand-written backward; `snn.Leaky` (snnTorch 1.0.0)
is the yardstick for the forward dynamics.
"""

from __future__ import annotations

from typing import Literal

import hypothesis.extra.numpy as hnp
import numba
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor

from lif_core import (
    ArcTan,
    FastSigmoid,
    Leaky,
    LIFParameters,
    Sigmoid,
    StraightHeaviside,
    choose_backend,
    initial_state,
    lif_sequence,
    lif_step,
    unrolled_sequence,
)
from lif_core.surrogate import Surrogate
from experiments.snntorch_network import run_leaky

BACKENDS = ["torch", "numba"]
SURROGATES: list[Surrogate] = [FastSigmoid(slope=25.0), ArcTan(alpha=2.0), Sigmoid(slope=5.0)]
LossKind = Literal["spikes", "membranes", "counts", "cross_entropy", "all"]
LOSS_KINDS: list[LossKind] = ["spikes", "membranes", "counts", "cross_entropy", "all"]


# --------------------------------------------------------------------------- helpers


def float32_recursion(current: float, beta: float, threshold: float, steps: int) -> tuple[list[float], list[float]]:
    """The LIF recursion in NumPy float32, written independently of the library:
    reset = H(U_{t-1} - thr); U_t = beta U_{t-1} + I - reset thr; S_t = H(U_t - thr)."""
    b, thr, i = np.float32(beta), np.float32(threshold), np.float32(current)
    u = np.float32(0.0)
    membranes, spikes = [], []
    for _ in range(steps):
        reset = np.float32(1.0) if u > thr else np.float32(0.0)
        u = np.float32(np.float32(b * u + i) - np.float32(reset * thr))
        membranes.append(float(u))
        spikes.append(1.0 if u > thr else 0.0)
    return membranes, spikes


def weighted_loss(
    kind: LossKind, spikes: Tensor, membranes: Tensor, counts: Tensor, weights: dict[str, Tensor]
) -> Tensor:
    """A scalar loss through the chosen outputs; counts enter linearly or via cross-entropy."""
    terms = {
        "spikes": lambda: (spikes * weights["spikes"]).sum(),
        "membranes": lambda: (membranes * weights["membranes"]).sum(),
        "counts": lambda: (counts * weights["counts"]).sum(),
        "cross_entropy": lambda: F.cross_entropy(counts, weights["labels"]),
    }
    if kind == "all":
        return sum(term() for term in terms.values())  # type: ignore[return-value]
    return terms[kind]()


def random_weights(steps: int, batch: int, neurons: int, dtype: torch.dtype, seed: int) -> dict[str, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "spikes": torch.randn(steps, batch, neurons, generator=generator, dtype=dtype),
        "membranes": torch.randn(steps, batch, neurons, generator=generator, dtype=dtype),
        "counts": torch.randn(batch, neurons, generator=generator, dtype=dtype),
        "labels": torch.randint(0, neurons, (batch,), generator=generator),
    }


def gradients_both_ways(
    current: Tensor,
    params: LIFParameters,
    num_steps: int | None,
    backend: str,
    kind: LossKind,
    weights: dict[str, Tensor],
) -> tuple[Tensor, Tensor, Tensor]:
    """(dL/dI from `lif_sequence`, dL/dI from autograd through `unrolled_sequence`, spikes)."""
    ours_in = current.clone().requires_grad_()
    out = lif_sequence(ours_in, params, num_steps=num_steps, backend=backend)  # type: ignore[arg-type]
    (ours,) = torch.autograd.grad(
        weighted_loss(kind, out.spikes, out.membranes, out.counts, weights), ours_in
    )
    ref_in = current.clone().requires_grad_()
    spikes, membranes = unrolled_sequence(ref_in, params, num_steps=num_steps)
    (ref,) = torch.autograd.grad(
        weighted_loss(kind, spikes, membranes, spikes.sum(dim=0), weights), ref_in
    )
    return ours, ref, out.spikes


# --------------------------------------------------------------------------- known trace

TRACE_MEMBRANES_ROUNDED = [0.3, 0.57, 0.813, 1.0317, 0.22853]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("constant", [True, False], ids=["constant-BN", "time-varying-TBN"])
def test_known_trace_constant_input(backend: str, constant: bool) -> None:
    """I = 0.3, beta 0.9, thr 1, 10 steps: U = 0.3, 0.57, 0.813, 1.0317, 0.22853, ...;
    spikes exactly at steps 3 and 8; the reset lands one step after the spike."""
    steps = 10
    expected_membranes, expected_spikes = float32_recursion(0.3, 0.9, 1.0, steps)
    assert [i for i, s in enumerate(expected_spikes) if s] == [3, 8]  # the recursion itself
    current = torch.full((1, 1), 0.3) if constant else torch.full((steps, 1, 1), 0.3)
    out = lif_sequence(
        current, LIFParameters(0.9, 1.0), num_steps=steps if constant else None, backend=backend  # type: ignore[arg-type]
    )
    assert out.spikes.shape == out.membranes.shape == (steps, 1, 1)
    assert out.spikes.dtype == out.membranes.dtype == out.counts.dtype == torch.float32
    membranes = out.membranes.flatten()
    torch.testing.assert_close(membranes, torch.tensor(expected_membranes), rtol=0.0, atol=1e-6)
    torch.testing.assert_close(
        membranes[:5], torch.tensor(TRACE_MEMBRANES_ROUNDED), rtol=0.0, atol=1e-6
    )
    assert out.spikes.flatten().nonzero().flatten().tolist() == [3, 8]
    assert out.counts.flatten().tolist() == [2.0]


def test_known_trace_through_lif_step_and_module() -> None:
    """`lif_step`, `unrolled_sequence` and the `Leaky` module reproduce the same trace."""
    expected_membranes, expected_spikes = float32_recursion(0.3, 0.9, 1.0, 10)
    params = LIFParameters(0.9, 1.0)
    current = torch.full((1, 1), 0.3)
    state = initial_state(current)
    stepped_membranes, stepped_spikes = [], []
    for _ in range(10):
        spikes, state = lif_step(current, state, params)
        stepped_membranes.append(state.membrane.item())
        stepped_spikes.append(spikes.item())
    assert stepped_spikes == expected_spikes
    np.testing.assert_allclose(stepped_membranes, expected_membranes, rtol=0, atol=1e-6)
    spikes, membranes = unrolled_sequence(current, params, num_steps=10)
    assert spikes.flatten().tolist() == expected_spikes
    module_out = Leaky(beta=0.9, threshold=1.0, surrogate=FastSigmoid())(current, num_steps=10)
    assert torch.equal(module_out.spikes, spikes)
    assert torch.equal(module_out.membranes, membranes)


@pytest.mark.parametrize("backend", BACKENDS)
def test_membrane_exactly_at_threshold_does_not_spike(backend: str) -> None:
    """U_0 = I = thr gives no spike (H(0) = 0) and so no reset; U_1 = beta thr + thr spikes."""
    out = lif_sequence(torch.full((1, 1), 0.5), LIFParameters(0.5, 0.5), num_steps=3, backend=backend)  # type: ignore[arg-type]
    assert out.membranes.flatten().tolist() == [0.5, 0.75, 0.375]
    assert out.spikes.flatten().tolist() == [0.0, 1.0, 0.0]


# --------------------------------------------------------------------------- BPTT gradients


@pytest.mark.parametrize("kind", LOSS_KINDS)
@pytest.mark.parametrize("surrogate", SURROGATES, ids=lambda s: s.name)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("constant", [True, False], ids=["constant-BN", "time-varying-TBN"])
def test_bptt_gradient_equals_autograd_through_unrolled_loop(
    constant: bool, backend: str, surrogate: Surrogate, kind: LossKind
) -> None:
    """The hand-written backward equals autograd through `unrolled_sequence` to 1e-10 (float64)."""
    steps, batch, neurons = 9, 4, 6
    generator = torch.Generator().manual_seed(7)
    shape = (batch, neurons) if constant else (steps, batch, neurons)
    current = torch.rand(shape, generator=generator, dtype=torch.float64) * 1.2 - 0.1
    params = LIFParameters(beta=0.85, threshold=0.8, surrogate=surrogate)
    weights = random_weights(steps, batch, neurons, torch.float64, seed=11)
    ours, ref, spikes = gradients_both_ways(
        current, params, steps if constant else None, backend, kind, weights
    )
    assert 0 < spikes.sum() < spikes.numel()  # the loop really spikes and resets
    assert ours.shape == current.shape and ours.dtype == torch.float64
    assert ours.abs().max() > 0
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)


# --------------------------------------------------------------------------- torch vs numba


@pytest.mark.parametrize("constant", [True, False], ids=["constant-BN", "time-varying-TBN"])
@pytest.mark.parametrize("beta,threshold", [(0.9, 1.0), (0.5, 0.3), (1.0, 2.0), (0.0, 0.7)])
def test_torch_and_numba_backends_identical_float32(constant: bool, beta: float, threshold: float) -> None:
    """Spikes, membranes and counts are bit-identical across backends in float32."""
    steps, batch, neurons = 25, 16, 64
    generator = torch.Generator().manual_seed(3)
    shape = (batch, neurons) if constant else (steps, batch, neurons)
    current = torch.randn(shape, generator=generator) * threshold + 0.5 * threshold
    params = LIFParameters(beta=beta, threshold=threshold)
    num_steps = steps if constant else None
    a = lif_sequence(current, params, num_steps=num_steps, backend="torch")
    b = lif_sequence(current, params, num_steps=num_steps, backend="numba")
    assert 0 < a.spikes.sum() < a.spikes.numel()
    assert torch.equal(a.spikes, b.spikes)
    assert torch.equal(a.membranes, b.membranes)
    assert torch.equal(a.counts, b.counts)
    assert torch.equal(a.counts, a.spikes.sum(dim=0))


@pytest.mark.parametrize("surrogate", SURROGATES, ids=lambda s: s.name)
@pytest.mark.parametrize("constant", [True, False], ids=["constant-BN", "time-varying-TBN"])
def test_torch_and_numba_gradients_agree_float32(surrogate: Surrogate, constant: bool) -> None:
    """float32 gradients of the two backends agree to float32 rounding."""
    steps, batch, neurons = 25, 8, 32
    generator = torch.Generator().manual_seed(5)
    shape = (batch, neurons) if constant else (steps, batch, neurons)
    current = torch.rand(shape, generator=generator) * 1.5 - 0.2
    params = LIFParameters(beta=0.9, threshold=1.0, surrogate=surrogate)
    weights = random_weights(steps, batch, neurons, torch.float32, seed=2)
    grads = []
    for backend in BACKENDS:
        ours, _, _ = gradients_both_ways(current, params, steps if constant else None, backend, "all", weights)
        grads.append(ours)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-6)


def test_numba_accepts_non_contiguous_input() -> None:
    """A transposed (non-contiguous) current gives the same result as its contiguous copy."""
    current = torch.randn(6, 5, 4).transpose(1, 2)  # (T, B, N) = (6, 4, 5), not contiguous
    assert not current.is_contiguous()
    a = lif_sequence(current, LIFParameters(), backend="numba")
    b = lif_sequence(current.contiguous(), LIFParameters(), backend="torch")
    assert torch.equal(a.membranes, b.membranes)


def test_numba_result_independent_of_thread_count() -> None:
    """The prange split over the batch does not change any bit of the output or gradient."""
    current = torch.rand(12, 9, 17) * 1.4
    weights = random_weights(12, 9, 17, torch.float32, seed=4)
    before = numba.get_num_threads()
    results = []
    try:
        for threads in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(threads)
            x = current.clone().requires_grad_()
            out = lif_sequence(x, LIFParameters(), backend="numba")
            (grad,) = torch.autograd.grad(
                weighted_loss("all", out.spikes, out.membranes, out.counts, weights), x
            )
            results.append((out.membranes, grad))
    finally:
        numba.set_num_threads(before)
    for membranes, grad in results[1:]:
        assert torch.equal(membranes, results[0][0])
        assert torch.equal(grad, results[0][1])


# --------------------------------------------------------------------------- beta clamping


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("beta,clamped", [(1.7, 1.0), (-0.5, 0.0), (3.0, 1.0), (-2.0, 0.0)])
def test_out_of_range_beta_is_clamped_like_snntorch(backend: str, beta: float, clamped: float) -> None:
    """beta outside [0, 1] behaves exactly as clamp(beta, 0, 1), forward and backward, as snn.Leaky."""
    current = torch.rand(8, 3, 4, dtype=torch.float64) * 1.2
    weights = random_weights(8, 3, 4, torch.float64, seed=9)
    outside = LIFParameters(beta=beta, threshold=1.0)
    inside = LIFParameters(beta=clamped, threshold=1.0)
    assert outside.clamped_beta == clamped
    a = lif_sequence(current, outside, backend=backend)  # type: ignore[arg-type]
    b = lif_sequence(current, inside, backend=backend)  # type: ignore[arg-type]
    assert torch.equal(a.membranes, b.membranes)
    ga, _, _ = gradients_both_ways(current, outside, None, backend, "all", weights)
    gb, _, _ = gradients_both_ways(current, inside, None, backend, "all", weights)
    assert torch.equal(ga, gb)
    spikes, membranes = run_leaky(current.float(), beta, 1.0, None)
    c = lif_sequence(current.float(), outside, backend=backend)  # type: ignore[arg-type]
    assert torch.equal(c.spikes, spikes)
    assert torch.equal(c.membranes, membranes)


# --------------------------------------------------------------------------- properties

betas = st.one_of(
    st.sampled_from([0.0, 1.0, 0.9, 0.5]),
    st.floats(0.0, 1.0),
    st.floats(-1.5, 2.5),  # out of range: clamped, as snnTorch does
)
thresholds = st.one_of(st.sampled_from([1.0, 0.5, 2.0]), st.floats(0.05, 3.0))


@st.composite
def lif_problems(draw: st.DrawFn, dtype: type[np.floating]) -> tuple[Tensor, int | None, float, float]:
    """(current, num_steps, beta, threshold): a (T, B, N) current, or (B, N) with num_steps."""
    steps = draw(st.integers(1, 10))
    batch = draw(st.integers(1, 4))
    neurons = draw(st.integers(1, 6))
    constant = draw(st.booleans())
    threshold = draw(thresholds)
    width = 32 if dtype == np.float32 else 64
    if width == 32:  # bounds and the exact-threshold element must be float32 numbers
        threshold = float(np.float32(threshold))
    shape = (batch, neurons) if constant else (steps, batch, neurons)
    elements = st.one_of(
        st.floats(-1.0, float(np.dtype(dtype).type(3.0 * threshold)), width=width),
        st.just(threshold),  # membrane exactly at threshold from rest
        st.just(0.0),
    )
    array = draw(hnp.arrays(dtype, shape, elements=elements))
    return torch.from_numpy(array.copy()), (steps if constant else None), draw(betas), threshold


@given(problem=lif_problems(np.float32))
def test_property_backends_and_snntorch_agree_float32(
    problem: tuple[Tensor, int | None, float, float],
) -> None:
    """For any shape (T >= 1), beta (also 0, 1 and out of range) and threshold > 0, the torch
    and Numba backends, `unrolled_sequence` and snn.Leaky give identical spikes and membranes."""
    current, num_steps, beta, threshold = problem
    params = LIFParameters(beta=beta, threshold=threshold)
    a = lif_sequence(current, params, num_steps=num_steps, backend="torch")
    b = lif_sequence(current, params, num_steps=num_steps, backend="numba")
    spikes, membranes = run_leaky(current, beta, threshold, None, num_steps=num_steps)
    unrolled_spikes, unrolled_membranes = unrolled_sequence(current, params, num_steps=num_steps)
    for out in (a, b):
        assert torch.equal(out.spikes, spikes)
        assert torch.equal(out.membranes, membranes)
        assert torch.equal(out.counts, spikes.sum(dim=0))
    assert torch.equal(unrolled_spikes, spikes)
    assert torch.equal(unrolled_membranes, membranes)


@given(
    problem=lif_problems(np.float64),
    surrogate=st.one_of(
        st.floats(0.5, 50.0).map(FastSigmoid), st.floats(0.25, 8.0).map(ArcTan)
    ),
    backend=st.sampled_from(BACKENDS),
    kind=st.sampled_from(LOSS_KINDS),
    seed=st.integers(0, 2**16),
)
def test_property_bptt_gradient_equals_autograd(
    problem: tuple[Tensor, int | None, float, float],
    surrogate: Surrogate,
    backend: str,
    kind: LossKind,
    seed: int,
) -> None:
    """For any shape, beta, threshold, surrogate, backend and loss, the hand-written BPTT
    gradient equals autograd through the unrolled loop (float64, 1e-10)."""
    current, num_steps, beta, threshold = problem
    steps = current.shape[0] if num_steps is None else num_steps
    batch, neurons = current.shape[-2:]
    params = LIFParameters(beta=beta, threshold=threshold, surrogate=surrogate)
    weights = random_weights(steps, batch, neurons, torch.float64, seed)
    ours, ref, _ = gradients_both_ways(current, params, num_steps, backend, kind, weights)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4, 5), ()])
def test_lif_sequence_rejects_bad_shapes(shape: tuple[int, ...]) -> None:
    """Only (T, B, N) and (B, N) currents are accepted."""
    with pytest.raises(ValueError, match=r"\(T, B, N\) or \(B, N\)"):
        lif_sequence(torch.zeros(shape), LIFParameters(), num_steps=3)


def test_lif_sequence_rejects_num_steps_mismatch() -> None:
    """num_steps that disagrees with T of a (T, B, N) current is an error; an equal one is fine."""
    current = torch.zeros(4, 2, 3)
    with pytest.raises(ValueError, match="disagrees"):
        lif_sequence(current, LIFParameters(), num_steps=5)
    assert lif_sequence(current, LIFParameters(), num_steps=4).spikes.shape == (4, 2, 3)


def test_lif_sequence_requires_num_steps_for_constant_input() -> None:
    """A (B, N) current without num_steps is an error that says to pass num_steps."""
    with pytest.raises(ValueError, match="needs num_steps"):
        lif_sequence(torch.zeros(2, 3), LIFParameters())


@pytest.mark.parametrize("current,num_steps", [(torch.zeros(2, 3), 0), (torch.zeros(2, 3), -1), (torch.zeros(0, 2, 3), None)])
def test_lif_sequence_rejects_non_positive_steps(current: Tensor, num_steps: int | None) -> None:
    """Zero or negative steps (also T = 0) are errors."""
    with pytest.raises(ValueError, match="positive"):
        lif_sequence(current, LIFParameters(), num_steps=num_steps)


def test_lif_sequence_rejects_integer_current() -> None:
    """An integer current is a TypeError, not a silent cast."""
    with pytest.raises(TypeError, match="floating-point"):
        lif_sequence(torch.zeros(3, 2, 2, dtype=torch.int64), LIFParameters())


def test_lif_sequence_rejects_unknown_backend() -> None:
    """An unknown backend name is a ValueError listing the valid ones."""
    with pytest.raises(ValueError, match="unknown backend 'cuda'"):
        lif_sequence(torch.zeros(3, 2, 2), LIFParameters(), backend="cuda")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown backend"):
        Leaky(backend="fast")  # type: ignore[arg-type]


def test_choose_backend_rules() -> None:
    """auto -> numba where the kernels run (CPU, float32/float64), torch elsewhere; numba
    where they cannot is refused with the reason (no GPU needed: the meta device stands in)."""
    cpu, meta = torch.zeros(2, 3), torch.zeros(2, 3, device="meta")
    assert choose_backend("auto", cpu) == "numba"
    assert choose_backend("auto", cpu.double()) == "numba"
    assert choose_backend("auto", meta) == "torch"
    assert choose_backend("auto", cpu.half()) == "torch"
    assert choose_backend("torch", cpu) == "torch"
    assert choose_backend("torch", meta) == "torch"
    assert choose_backend("numba", cpu) == "numba"
    with pytest.raises(ValueError, match="CPU only.*meta"):
        choose_backend("numba", meta)
    with pytest.raises(ValueError, match="float32 or float64"):
        choose_backend("numba", cpu.half())
    with pytest.raises(ValueError, match="beta in the input's dtype"):
        choose_backend("numba", cpu, beta=torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="unknown backend"):
        choose_backend("gpu", cpu)


@pytest.mark.parametrize("field,value", [("beta", float("nan")), ("beta", float("inf")), ("threshold", float("nan")), ("threshold", float("-inf"))])
def test_lif_parameters_reject_non_finite(field: str, value: float) -> None:
    """Non-finite beta or threshold is refused when the parameters are built."""
    with pytest.raises(ValueError, match=field):
        LIFParameters(**{field: value})


@pytest.mark.parametrize("surrogate", [FastSigmoid(25.0), ArcTan(2.0), StraightHeaviside()], ids=lambda s: s.name)
def test_time_varying_backward_recomputes_membranes_bit_for_bit(surrogate: Surrogate) -> None:
    """Without return_membranes, a time-varying numba layer keeps only its input and
    recomputes the membranes in the backward pass: the gradient is the same bits as with
    stored membranes and as the torch reference, for losses on spikes (also a broadcast
    one, spikes.sum()) and on counts."""
    params = LIFParameters(beta=0.9, threshold=1.0, surrogate=surrogate)
    generator = torch.Generator().manual_seed(5)
    current = (torch.randn(40, 6, 1500, generator=generator) * 0.8).requires_grad_(True)
    weights = torch.randn(40, 6, 1500, generator=generator)

    def gradient(backend: str, keep_membranes: bool) -> Tensor:
        out = lif_sequence(current, params, backend=backend, return_membranes=keep_membranes)
        loss = (out.spikes * weights).sum() + out.spikes.sum() + 0.3 * (out.counts * weights[0]).sum()
        return torch.autograd.grad(loss, current)[0]

    recomputed = gradient("numba", keep_membranes=False)
    assert torch.equal(recomputed, gradient("numba", keep_membranes=True))
    assert torch.equal(recomputed, gradient("torch", keep_membranes=True))
