"""Claims of the guide (docs/) about code, ours and snnTorch's, each as a test that fails
when the claim stops being true.  The numbers the guide quotes are checked by
tests/test_docs.py; these tests check the statements around them."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from experiments.explain import run_snn_layer, unclamped_spike_times
from lif_core import ArcTan, FastSigmoid, LIFParameters, lif_sequence, sequence_kernels

DOCS = Path(__file__).resolve().parent.parent / "docs"


def committed_values() -> dict:
    return json.loads((DOCS / "numbers.json").read_text(encoding="utf-8"))["values"]


# --------------------------------------------------------------------------- 01


def test_subtract_reset_carries_a_negative_residue_and_fires_irregularly() -> None:
    """Figure 1's caption: after the spike at step 3, beta * U_3 - thr is negative; the
    subtract reset fires at intervals of 5 and 4 steps, the zero reset every 4."""
    from experiments.explain import zero_reset_sequence

    params = LIFParameters(beta=0.9, threshold=1.0)
    constant = torch.full((30, 1, 1), 0.3, dtype=torch.float64)
    out = lif_sequence(constant, params)
    times = out.spikes.flatten().nonzero().flatten().tolist()
    assert times[0] == 3
    residue = 0.9 * out.membranes[3].item() - 1.0
    assert residue < 0 and out.membranes[4].item() < 0.3
    assert set(np.diff(times).tolist()) == {4, 5}
    zero_spikes, _ = zero_reset_sequence(constant, 0.9, 1.0)
    assert set(np.diff(zero_spikes.flatten().nonzero().flatten().tolist()).tolist()) == {4}


# --------------------------------------------------------------------------- 03 / 06


def test_adam_steps_do_not_change_when_every_gradient_is_scaled_by_a_constant() -> None:
    """Chapters 3 and 6: a taller peak or a larger area at the same width multiplies the
    gradients by a constant, and Adam's steps stay (almost) the same."""
    generator = torch.Generator().manual_seed(0)
    gradients = [torch.randn(50, generator=generator) * 1e-2 for _ in range(20)]
    final = []
    for scale in (1.0, 16.0):
        weight = torch.zeros(50, requires_grad=True)
        optimiser = torch.optim.Adam([weight], lr=1e-3)
        for gradient in gradients:
            weight.grad = gradient * scale
            optimiser.step()
        final.append(weight.detach().clone())
    torch.testing.assert_close(final[0], final[1], rtol=1e-3, atol=1e-7)
    assert final[0].abs().max() > 1e-3  # the weights did move


# --------------------------------------------------------------------------- 04


def test_spytorch_zero_reset_leaves_the_factor_beta_times_one_minus_spike() -> None:
    """Chapter 4: SpyTorch's update `new_mem = (beta*mem + syn)*(1.0-rst)` with
    `rst = out.detach()` passes dU_t/dU_{t-1} = beta (1 - S_{t-1})."""
    beta = 0.9
    for start, spiked in ((1.2, 1.0), (0.7, 0.0)):
        mem = torch.tensor(start, dtype=torch.float64, requires_grad=True)
        syn = torch.tensor(0.1, dtype=torch.float64)
        out = FastSigmoid(25.0).spike(mem - 1.0)
        rst = out.detach()
        new_mem = (beta * mem + syn) * (1.0 - rst)
        (factor,) = torch.autograd.grad(new_mem, mem)
        assert factor.item() == pytest.approx(beta * (1 - spiked), abs=1e-15)


def test_torch_and_numba_backward_differ_only_in_summation_order() -> None:
    """Chapter 4: the two backward passes are bit-identical for a time-varying input and a
    loss on spikes and counts only (fast sigmoid, and arctan with alpha/2 a power of two);
    a loss on the membranes (the direct term is added in another order), a constant input
    (sum(dim=0) against a running sum) or arctan with alpha/2 not a power of two (torch's
    scalar / tensor is reciprocal(tensor) * scalar) makes them differ in the last bits."""
    generator = torch.Generator().manual_seed(0)
    weights = {
        "spikes": torch.randn(25, 64, 128, generator=generator),
        "counts": torch.randn(64, 128, generator=generator),
        "membranes": torch.randn(25, 64, 128, generator=generator),
    }
    time_varying = torch.rand(25, 64, 128, generator=generator) * 1.5 - 0.2
    constant = torch.rand(64, 128, generator=generator) * 1.5 - 0.2

    def gradients(surrogate, current, use_membranes: bool) -> list[torch.Tensor]:
        params = LIFParameters(0.9, 1.0, surrogate)
        grads = []
        for backend in ("torch", "numba"):
            x = current.clone().requires_grad_()
            out = lif_sequence(x, params, num_steps=25 if current.dim() == 2 else None, backend=backend)
            loss = (out.spikes * weights["spikes"]).sum() + (out.counts * weights["counts"]).sum()
            if use_membranes:
                loss = loss + (out.membranes * weights["membranes"]).sum()
            grads.append(torch.autograd.grad(loss, x)[0])
        return grads

    for surrogate in (FastSigmoid(25.0), ArcTan(2.0), ArcTan(8.0)):
        a, b = gradients(surrogate, time_varying, use_membranes=False)
        assert torch.equal(a, b), surrogate
    for surrogate, current, use_membranes in (
        (FastSigmoid(25.0), time_varying, True),
        (FastSigmoid(25.0), constant, False),
        (ArcTan(3.0), time_varying, False),
    ):
        a, b = gradients(surrogate, current, use_membranes)
        assert not torch.equal(a, b), (surrogate, current.dim(), use_membranes)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)
    # the arctan difference is torch's scalar division, not the constants
    x = torch.rand(10_000, generator=generator) + 0.5
    assert torch.equal(1.5 / x, x.reciprocal() * 1.5) and not torch.equal(1.5 / x, torch.full_like(x, 1.5) / x)


# --------------------------------------------------------------------------- 05


def test_snntorch_reset_delay_false_sends_the_gradient_through_the_reset() -> None:
    """Chapters 4 and 5: snnTorch's default (reset_delay=True) detaches the reset; with
    reset_delay=False the un-detached spike enters the same-step reset, so the returned
    membrane depends on U_t with 1 - thr * g(U_t - thr), and the input gradient differs."""
    snn = pytest.importorskip("snntorch")
    from snntorch import surrogate as snn_surrogate

    def grad_of_first_membrane(delay: bool) -> float:
        x = torch.full((1, 1, 1), 1.02, requires_grad=True)
        layer = snn.Leaky(beta=0.9, spike_grad=snn_surrogate.fast_sigmoid(25), reset_delay=delay)
        _, mem = run_snn_layer(layer, x)
        return torch.autograd.grad(mem[0].sum(), x)[0].item()

    g_x = 1 / (25 * abs(1.02 - 1.0) + 1) ** 2
    assert grad_of_first_membrane(True) == 1.0
    assert grad_of_first_membrane(False) == pytest.approx(1 - g_x, abs=1e-5)

    # over a whole sequence: the default equals our layer's gradient, reset_delay=False does not
    generator = torch.Generator().manual_seed(1)
    current = torch.rand(25, 8, 16, generator=generator) * 0.8 + 0.1
    grads = {}
    for delay in (True, False):
        x = current.clone().requires_grad_()
        layer = snn.Leaky(beta=0.9, spike_grad=snn_surrogate.fast_sigmoid(25), reset_delay=delay)
        spikes, _ = run_snn_layer(layer, x)
        assert 0 < spikes.sum() < spikes.numel()
        grads[delay] = torch.autograd.grad(spikes.sum(), x)[0]
    ours = current.clone().requires_grad_()
    out = lif_sequence(ours, LIFParameters(0.9, 1.0, FastSigmoid(25.0)), backend="torch")
    (grad_ours,) = torch.autograd.grad(out.spikes.sum(), ours)
    torch.testing.assert_close(grad_ours, grads[True], rtol=1e-5, atol=1e-6)
    assert (grads[False] - grads[True]).norm() > 0.05 * grads[True].norm()


def test_unclamped_beta_neuron_spikes_at_step_5_and_the_5667_is_the_threshold_free_sum() -> None:
    """Chapter 5: with beta 1.5 and I 0.05 an unclamped neuron (our kernel's loop, without
    the clamp of its wrapper) first spikes at step 5; 5.667 after 10 steps is the sum
    I (beta^T - 1) / (beta - 1) without threshold or reset, not a membrane it returns."""
    beta, current, threshold, steps = 1.5, 0.05, 1.0, 10
    assert unclamped_spike_times(beta, current, threshold, steps)[0] == 5
    # the kernel's loop, run by hand: the same first spike
    membrane, first = 0.0, None
    for t in range(steps):
        membrane = beta * membrane + current - (threshold if membrane > threshold else 0.0)
        if first is None and membrane > threshold:
            first = t
    assert first == 5
    threshold_free = current * (beta**steps - 1) / (beta - 1)
    assert round(threshold_free, 3) == 5.667
    spikes, membranes = np.empty((steps, 1, 1)), np.empty((steps, 1, 1))
    sequence_kernels.lif_forward(
        np.full((1, 1, 1), current), True, steps, beta, threshold, spikes, True, membranes, np.empty((1, 1))
    )
    assert membranes.max() < threshold_free / 2  # no membrane of the neuron comes near it
    # clamped (snnTorch, LIFParameters): beta = 1, a ramp that never reaches the threshold
    clamped = lif_sequence(torch.full((steps, 1, 1), current, dtype=torch.float64), LIFParameters(beta, threshold))
    assert clamped.spikes.sum() == 0 and clamped.membranes[-1].item() == pytest.approx(0.5)
    values = committed_values()
    assert values["snn_clamp_unclamped_first_spike"] == 5
    assert math.isclose(values["snn_clamp_unclamped_last"], threshold_free, rel_tol=1e-12)


# --------------------------------------------------------------------------- plasticity.md, stdp.md


@pytest.mark.parametrize("page", ["plasticity.md", "stdp.md"])
def test_component_pages_speak_of_the_model_and_the_code(page: str) -> None:
    """No first person, no recollection, no reference to how the page was written."""
    text = (DOCS / page).read_text(encoding="utf-8")
    for pattern in (r"\bI\b(?! ?[=_(])", r"\bmy\b", r"\bas I recall\b", r"from memory", r"other agents",
                    r"\bthe issue\b", r"\bWe\b", r"\bwe\b", r"\(\?\)"):
        found = re.findall(rf".{{0,30}}{pattern}.{{0,30}}", text)
        assert not found, f"{page}: {found[:3]}"
