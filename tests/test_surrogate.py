"""Surrogate spike functions: Heaviside forward, closed-form backward, snnTorch's numbers."""

from __future__ import annotations

import math

import pytest
import torch
from snntorch import surrogate as snn_surrogate

from lif_core import (
    ArcTan,
    FastSigmoid,
    LIFParameters,
    Sigmoid,
    StraightHeaviside,
    SurrogateDisabled,
    initial_state,
    lif_sequence,
    lif_step,
    make_surrogate,
    unrolled_sequence,
)
from lif_core.surrogate import Surrogate

SLOPES = [0.5, 1.0, 5.0, 25.0, 100.0]
ALPHAS = [0.5, 1.0, 2.0, 3.7, 10.0]
THRESHOLDS = [0.25, 1.0, 2.5]


def fast_sigmoid_closed_form(x: float, slope: float) -> float:
    """dS/dU = 1 / (slope*|U - thr| + 1)^2, written independently of the library."""
    return 1.0 / (slope * abs(x) + 1.0) ** 2


def atan_closed_form(x: float, alpha: float) -> float:
    """dS/dU = (alpha/2) / (1 + (pi/2 * alpha * (U - thr))^2), written independently."""
    return (alpha / 2.0) / (1.0 + (math.pi / 2.0 * alpha * x) ** 2)


def all_surrogates() -> list[tuple[Surrogate, float]]:
    """(surrogate, scale) pairs covering both kinds and several shape parameters."""
    return [(FastSigmoid(slope=s), s) for s in SLOPES] + [(ArcTan(alpha=a), a) for a in ALPHAS]


def closed_form(surrogate: Surrogate, x: float) -> float:
    if isinstance(surrogate, FastSigmoid):
        return fast_sigmoid_closed_form(x, surrogate.slope)
    return atan_closed_form(x, surrogate.alpha)


def probe_points() -> torch.Tensor:
    """Shifted membranes U - thr: zero, tiny, moderate and large, both signs (float64)."""
    pts = [0.0, 1e-12, -1e-12, 1e-3, -1e-3, 0.04, -0.04, 0.3, -0.3, 1.0, -1.0, 7.5, -7.5, 1e6]
    return torch.tensor(pts, dtype=torch.float64)


@pytest.mark.parametrize("surrogate", [s for s, _ in all_surrogates()], ids=str)
def test_backward_equals_closed_form_derivative(surrogate: Surrogate) -> None:
    """The autograd backward of `.spike` is exactly the closed-form dS/dU (float64), times dL/dS."""
    x = probe_points().requires_grad_()
    upstream = torch.linspace(-2.0, 3.0, x.numel(), dtype=torch.float64)
    (grad,) = torch.autograd.grad(surrogate.spike(x), x, grad_outputs=upstream)
    expected = torch.tensor(
        [closed_form(surrogate, float(v)) * float(g) for v, g in zip(x.detach(), upstream)],
        dtype=torch.float64,
    )
    assert grad.dtype == torch.float64
    torch.testing.assert_close(grad, expected, rtol=1e-14, atol=0.0)


@pytest.mark.parametrize("surrogate", [s for s, _ in all_surrogates()], ids=str)
def test_derivative_method_matches_backward(surrogate: Surrogate) -> None:
    """`.derivative(x)` (used by the BPTT loop) equals the backward of `.spike` at x."""
    x = probe_points().requires_grad_()
    (grad,) = torch.autograd.grad(surrogate.spike(x).sum(), x)
    torch.testing.assert_close(surrogate.derivative(x.detach()), grad, rtol=1e-15, atol=0.0)


def test_derivative_peaks() -> None:
    """Peak values at U = thr: 1 for fast sigmoid (any slope), alpha/2 for arctan (not 1/pi)."""
    zero = torch.zeros(1, dtype=torch.float64)
    for slope in SLOPES:
        assert FastSigmoid(slope=slope).derivative(zero).item() == 1.0
    for alpha in ALPHAS:
        assert ArcTan(alpha=alpha).derivative(zero).item() == alpha / 2


@pytest.mark.parametrize("surrogate", [s for s, _ in all_surrogates()], ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_is_heaviside_zero_at_threshold(surrogate: Surrogate, dtype: torch.dtype) -> None:
    """S = H(U - thr): 1 strictly above threshold, 0 at and below it; dtype kept."""
    tiny = torch.finfo(dtype).tiny
    x = torch.tensor([-1e6, -1.0, -tiny, -0.0, 0.0, tiny, 1e-7, 1.0, 1e6], dtype=dtype)
    spikes = surrogate.spike(x)
    assert spikes.dtype == dtype
    assert spikes.tolist() == [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("threshold", THRESHOLDS)
@pytest.mark.parametrize("surrogate", [s for s, _ in all_surrogates()], ids=str)
def test_lif_step_spike_gradient_is_surrogate_at_threshold_offset(
    surrogate: Surrogate, threshold: float
) -> None:
    """Through one `lif_step` from rest, U_0 = I, so dS_0/dI is the closed form at I - thr."""
    current = torch.tensor(
        [threshold - 1.0, threshold - 0.01, threshold, threshold + 0.02, threshold + 2.0],
        dtype=torch.float64,
        requires_grad=True,
    )
    params = LIFParameters(beta=0.9, threshold=threshold, surrogate=surrogate)
    spikes, state = lif_step(current, initial_state(current), params)
    (grad,) = torch.autograd.grad(spikes.sum(), current)
    shifted = (current.detach() - threshold).tolist()
    expected = torch.tensor([closed_form(surrogate, v) for v in shifted], dtype=torch.float64)
    torch.testing.assert_close(grad, expected, rtol=1e-13, atol=0.0)
    assert spikes.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]  # at U == thr: no spike
    assert torch.equal(state.membrane, current.detach())


def snntorch_spike_function(surrogate: Surrogate):
    if isinstance(surrogate, FastSigmoid):
        return snn_surrogate.fast_sigmoid(slope=surrogate.slope)
    return snn_surrogate.atan(alpha=surrogate.alpha)


@pytest.mark.parametrize("surrogate", [s for s, _ in all_surrogates()], ids=str)
def test_spike_matches_snntorch_forward_and_backward(surrogate: Surrogate) -> None:
    """Our `.spike` and snnTorch's FastSigmoid/ATan agree bit for bit in float32, both ways."""
    generator = torch.Generator().manual_seed(1234)
    x = torch.randn(4096, generator=generator) * 0.5
    x[:3] = torch.tensor([0.0, -0.0, 1e-8])
    upstream = torch.randn(4096, generator=generator)
    ours_in = x.clone().requires_grad_()
    theirs_in = x.clone().requires_grad_()
    ours = surrogate.spike(ours_in)
    theirs = snntorch_spike_function(surrogate)(theirs_in)
    assert torch.equal(ours, theirs)
    (ours_grad,) = torch.autograd.grad(ours, ours_in, grad_outputs=upstream)
    (theirs_grad,) = torch.autograd.grad(theirs, theirs_in, grad_outputs=upstream)
    assert torch.equal(ours_grad, theirs_grad)


def test_make_surrogate_defaults_and_scales() -> None:
    """Names map to the right class; no scale gives slope 25 / alpha 2; a scale is used as given."""
    assert make_surrogate("fast_sigmoid") == FastSigmoid(slope=25.0)
    assert make_surrogate("atan") == ArcTan(alpha=2.0)
    assert make_surrogate("fast_sigmoid", 10) == FastSigmoid(slope=10.0)
    assert make_surrogate("atan", 0.5) == ArcTan(alpha=0.5)
    assert make_surrogate("atan", 3).scale == 3.0
    assert make_surrogate("sigmoid") == Sigmoid(slope=25.0) and make_surrogate("sigmoid", 5).scale == 5.0
    assert FastSigmoid().name == "fast_sigmoid" and ArcTan().name == "atan" and Sigmoid().name == "sigmoid"


@pytest.mark.parametrize("name", ["relu", "ATAN", "fast-sigmoid", "", "step"])
def test_make_surrogate_rejects_unknown_names(name: str) -> None:
    """An unknown name is a ValueError that lists the valid names."""
    with pytest.raises(ValueError, match="fast_sigmoid, atan, heaviside, sigmoid, disabled"):
        make_surrogate(name)


@pytest.mark.parametrize("name", ["fast_sigmoid", "atan", "sigmoid"])
@pytest.mark.parametrize("scale", [0, 0.0, -1.0, -25, float("nan"), float("inf"), float("-inf")])
def test_make_surrogate_rejects_non_positive_or_non_finite_scales(name: str, scale: float) -> None:
    """slope/alpha must be positive and finite; anything else is a ValueError naming it."""
    with pytest.raises(ValueError, match="positive finite"):
        make_surrogate(name, scale)


def test_surrogates_reject_bad_scales_directly() -> None:
    """The dataclasses validate on construction too, not only through `make_surrogate`."""
    with pytest.raises(ValueError, match="slope"):
        FastSigmoid(slope=0.0)
    with pytest.raises(ValueError, match="alpha"):
        ArcTan(alpha=-2.0)


# --------------------------------------------------------------------------- the true (zero) gradient


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_straight_heaviside_is_the_step_forward_and_zero_backward(dtype: torch.dtype) -> None:
    """StraightHeaviside: the same step forward as the surrogates, dS/dU = 0 backward,
    everywhere including at threshold, and no NaN from an infinite upstream gradient."""
    surrogate = StraightHeaviside()
    x = torch.tensor([-1e6, -1.0, -0.0, 0.0, 1e-7, 0.3, 1e6], dtype=dtype, requires_grad=True)
    spikes = surrogate.spike(x)
    assert spikes.dtype == dtype
    assert torch.equal(spikes, FastSigmoid().spike(x.detach()))
    upstream = torch.tensor([1.0, -2.0, 3.0, float("inf"), 5.0, -6.0, 7.0], dtype=dtype)
    (grad,) = torch.autograd.grad(spikes, x, grad_outputs=upstream)
    assert torch.equal(grad, torch.zeros_like(x))
    assert torch.equal(surrogate.derivative(x.detach()), torch.zeros_like(x))


@pytest.mark.parametrize("name, cls", [("heaviside", StraightHeaviside), ("disabled", SurrogateDisabled)])
def test_make_surrogate_heaviside_and_disabled_take_no_scale(name: str, cls: type) -> None:
    """'heaviside' builds StraightHeaviside, 'disabled' SurrogateDisabled (snnTorch's
    surrogate_disable); a scale for either is an error, not silently ignored."""
    assert make_surrogate(name) == cls() and type(make_surrogate(name)) is cls
    assert cls().name == name
    with pytest.raises(ValueError, match="no shape parameter"):
        make_surrogate(name, 2.0)


def test_surrogate_disabled_cuts_the_graph_where_straight_heaviside_keeps_it() -> None:
    """SurrogateDisabled's step is a plain comparison, float32 and without an autograd node,
    as snnTorch's; StraightHeaviside gives the same spikes with a zero gradient."""
    x = torch.tensor([-1.0, -0.0, 0.0, 1e-7, 0.3], dtype=torch.float64, requires_grad=True)
    disabled = SurrogateDisabled().spike(x)
    assert disabled.dtype == torch.float32 and not disabled.requires_grad
    assert disabled.tolist() == StraightHeaviside().spike(x).tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]
    assert torch.equal(SurrogateDisabled().derivative(x.detach()), torch.zeros_like(x))


@pytest.mark.parametrize("backend", ["torch", "numba"])
@pytest.mark.parametrize("constant", [True, False], ids=["constant-BN", "time-varying-TBN"])
def test_straight_heaviside_gives_zero_gradient_through_the_lif_layer(backend: str, constant: bool) -> None:
    """Through the whole-sequence layer (both backends) a loss on spikes or counts has exactly
    zero gradient; a loss on membranes still gets the leak path, equal to the unrolled autograd."""
    steps, batch, neurons = 12, 3, 5
    generator = torch.Generator().manual_seed(8)
    shape = (batch, neurons) if constant else (steps, batch, neurons)
    current = torch.rand(shape, generator=generator, dtype=torch.float64) * 1.5
    params = LIFParameters(beta=0.9, threshold=1.0, surrogate=StraightHeaviside())
    num_steps = steps if constant else None
    x = current.clone().requires_grad_()
    out = lif_sequence(x, params, num_steps=num_steps, backend=backend)  # type: ignore[arg-type]
    assert 0 < out.spikes.sum() < out.spikes.numel()
    (grad,) = torch.autograd.grad(out.spikes.sum() + out.counts.pow(2).sum(), x)
    assert torch.equal(grad, torch.zeros_like(x))
    weights = torch.randn(steps, batch, neurons, generator=generator, dtype=torch.float64)
    x = current.clone().requires_grad_()
    out = lif_sequence(x, params, num_steps=num_steps, backend=backend)  # type: ignore[arg-type]
    (ours,) = torch.autograd.grad((out.membranes * weights).sum() + out.spikes.sum(), x)
    y = current.clone().requires_grad_()
    spikes, membranes = unrolled_sequence(y, params, num_steps=num_steps)
    (ref,) = torch.autograd.grad((membranes * weights).sum() + spikes.sum(), y)
    assert ours.abs().max() > 0
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
