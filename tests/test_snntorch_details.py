"""The details that make two LIF implementations disagree, each checked against snnTorch 1.0.0.

docs/05_matching_snntorch.md quotes these behaviours (its table's last column names the
test behind each row); the other rows are covered by tests/test_snntorch_parity.py,
tests/test_lif.py and tests/test_surrogate.py.
"""

from __future__ import annotations

import math

import pytest
import snntorch as snn
import snntorch.functional as SF
import torch
from snntorch import surrogate as snn_surrogate
from torch import Tensor

from experiments.explain import run_snn_layer, zero_reset_sequence
from lif_core import Leaky, LIFParameters, LIFState, StraightHeaviside, SurrogateDisabled, lif_sequence, lif_step
from training.network import spike_count_loss

BETA, THRESHOLD = 0.9, 1.0


def random_current(shape: tuple[int, ...], seed: int, dtype: torch.dtype = torch.float32) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator, dtype=dtype) * 0.8 + 0.4


def test_reset_delay_default_returns_the_pre_reset_membrane() -> None:
    """snn.Leaky's default reset_delay=True returns U_t before its own spike's reset: our
    membranes equal it bit for bit and exceed the threshold whenever a spike is emitted.
    reset_delay=False returns post-reset membranes and a different spike train."""
    current = random_current((25, 6, 8), seed=1)
    ours = lif_sequence(current, LIFParameters(BETA, THRESHOLD), backend="torch")
    spikes, membranes = run_snn_layer(snn.Leaky(beta=BETA), current)
    assert torch.equal(ours.spikes, spikes) and torch.equal(ours.membranes, membranes)
    assert bool((ours.membranes[ours.spikes == 1] > THRESHOLD).all())
    undelayed_spikes, undelayed = run_snn_layer(snn.Leaky(beta=BETA, reset_delay=False), current)
    assert not torch.equal(undelayed, membranes)
    assert not torch.equal(undelayed_spikes, spikes)
    constant = torch.full((25, 1, 1), 0.3)
    assert float(run_snn_layer(snn.Leaky(beta=BETA, reset_delay=False), constant)[1].max()) < THRESHOLD


def test_reset_comes_from_the_membrane_handed_in() -> None:
    """The reset at step t is H(U_{t-1} - thr) of the membrane passed in, spike or not: a
    starting membrane of 1.5 is lowered by thr on the first step, in snnTorch and in lif_step."""
    start = torch.full((2, 3), 1.5)
    current = torch.full((2, 3), 0.3)
    _, theirs = snn.Leaky(beta=BETA)(current, start.clone())
    _, ours = lif_step(current, LIFState(start.clone()), LIFParameters(BETA, THRESHOLD))
    assert torch.equal(ours.membrane, theirs)
    torch.testing.assert_close(theirs, torch.full((2, 3), 0.9 * 1.5 + 0.3 - 1.0))


def test_membrane_exactly_at_threshold_neither_spikes_nor_resets_in_snntorch() -> None:
    """H(0) = 0 in both: U_0 = thr gives no spike and no reset; the same trace as ours."""
    current = torch.full((3, 1, 1), THRESHOLD)
    spikes, membranes = run_snn_layer(snn.Leaky(beta=BETA), current)
    ours = lif_sequence(current, LIFParameters(BETA, THRESHOLD), backend="torch")
    assert spikes.flatten().tolist() == [0.0, 1.0, 1.0]
    assert torch.equal(ours.membranes, membranes) and torch.equal(ours.spikes, spikes)


def test_beta_is_a_float32_buffer_in_snntorch_and_in_our_module() -> None:
    """In float64 runs snnTorch decays by float32(0.9): our Leaky module (float32 buffer too) matches
    it exactly, lif_sequence with LIFParameters(0.9) decays by 0.9 and differs by ~1e-7."""
    current = random_current((30, 2, 3), seed=2, dtype=torch.float64) * 0.5
    _, theirs = run_snn_layer(snn.Leaky(beta=BETA), current)
    assert float(snn.Leaky(beta=BETA).beta) == float(torch.tensor(0.9, dtype=torch.float32))
    module = Leaky(beta=BETA, threshold=THRESHOLD, backend="torch")(current)
    assert torch.equal(module.membranes, theirs)
    functional = lif_sequence(current, LIFParameters(BETA, THRESHOLD), backend="torch")
    difference = float((functional.membranes - theirs).abs().max())
    assert 1e-9 < difference < 1e-5


def test_snntorch_atan_default_alpha_and_real_prefactor() -> None:
    """surrogate.atan() defaults to alpha = 2 and its backward peaks at alpha/2 = 1, not at the
    1/pi its docstring's formula gives; fast_sigmoid() defaults to slope 25."""
    x = torch.zeros(1, requires_grad=True)
    (peak,) = torch.autograd.grad(snn_surrogate.atan()(x).sum(), x)
    assert float(peak) == 1.0
    assert abs(float(peak) - 1 / math.pi) > 0.5
    for alpha in (0.5, 2.0, 8.0):
        x = torch.zeros(1, requires_grad=True)
        (peak,) = torch.autograd.grad(snn_surrogate.atan(alpha=alpha)(x).sum(), x)
        assert float(peak) == alpha / 2
    xs = torch.tensor([0.1, -0.3, 0.7], requires_grad=True)
    (grad,) = torch.autograd.grad(snn_surrogate.fast_sigmoid()(xs).sum(), xs)
    torch.testing.assert_close(grad, 1 / (25 * xs.detach().abs() + 1) ** 2)


def test_init_leaky_is_empty_and_mismatched_membranes_are_silently_zeroed() -> None:
    """init_leaky() returns a tensor with no elements; a membrane whose shape differs from the
    input's (here (1, N) against (B, N)) is replaced by zeros instead of broadcast, while our
    lif_step broadcasts it."""
    empty = snn.Leaky(beta=BETA).init_leaky()
    assert empty.numel() == 0 and empty.shape == (0,)
    current = torch.full((4, 3), 0.2)
    row = torch.full((1, 3), 0.5)
    _, mismatched = snn.Leaky(beta=BETA)(current, row)
    _, fresh = snn.Leaky(beta=BETA)(current, torch.zeros(4, 3))
    assert torch.equal(mismatched, fresh)
    torch.testing.assert_close(mismatched, torch.full((4, 3), 0.2))
    _, ours = lif_step(current, LIFState(row), LIFParameters(BETA, THRESHOLD))
    torch.testing.assert_close(ours.membrane, torch.full((4, 3), 0.9 * 0.5 + 0.2))


def test_snntorch_keeps_its_membrane_between_calls_without_mem() -> None:
    """Called without `mem`, snn.Leaky continues from the membrane it stored last time, also
    across batches; a batch of another size silently starts from zero instead."""
    current = torch.full((4, 3), 0.2)
    layer = snn.Leaky(beta=BETA)
    layer.init_leaky()
    for _ in range(25):
        layer(current)
    _, carried = layer(current)
    assert float(carried[0, 0]) > 0.2 + 1e-3  # not a fresh start
    _, smaller = layer(current[:2])
    torch.testing.assert_close(smaller, torch.full((2, 3), 0.2))  # the shape changed: zeros
    ours = lif_sequence(current, LIFParameters(BETA, THRESHOLD), num_steps=1, backend="torch")
    torch.testing.assert_close(ours.membranes[0], torch.full((4, 3), 0.2))  # ours always starts at 0


def test_surrogate_disable_cuts_the_graph_instead_of_giving_zero() -> None:
    """surrogate_disable=True returns spikes without a graph (requires_grad False), so a loss on
    them cannot even be differentiated; our SurrogateDisabled is the same comparison, and our
    'heaviside' surrogate returns exact zeros instead."""
    layer = snn.Leaky(beta=BETA, surrogate_disable=True)
    x = torch.rand(4, 3, requires_grad=True)
    spikes, membrane = layer(x * 2, layer.init_leaky())
    assert not spikes.requires_grad and membrane.requires_grad
    with pytest.raises(RuntimeError):
        spikes.sum().backward()
    shifted = membrane - THRESHOLD
    ours = SurrogateDisabled().spike(shifted)
    assert torch.equal(ours, spikes) and not ours.requires_grad
    zero = StraightHeaviside().spike(shifted)
    assert torch.equal(zero, spikes) and zero.requires_grad
    assert torch.equal(torch.autograd.grad(zero.sum(), x)[0], torch.zeros_like(x))


def test_zero_reset_reference_matches_snntorch_reset_mechanism_zero() -> None:
    """The docs' zero-reset loop (experiments.explain.zero_reset_sequence) is snn.Leaky's
    reset_mechanism="zero": U_t = beta (1 - H(U_{t-1} - thr)) U_{t-1} + I_t, bit for bit."""
    current = random_current((30, 5, 7), seed=3)
    spikes, membranes = zero_reset_sequence(current, BETA, THRESHOLD)
    theirs_spikes, theirs = run_snn_layer(snn.Leaky(beta=BETA, reset_mechanism="zero"), current)
    assert 0 < spikes.sum() < spikes.numel()
    assert torch.equal(spikes, theirs_spikes) and torch.equal(membranes, theirs)


def test_count_cross_entropy_is_ce_count_loss_not_ce_rate_loss() -> None:
    """Our loss's cross-entropy on spike counts equals snnTorch's ce_count_loss; ce_rate_loss
    (cross-entropy per step, averaged) is another loss: it differs, and for a perfect spike train
    it stays at log(1 + 9/e) with a gradient that keeps pushing, where the count loss is ~0."""
    generator = torch.Generator().manual_seed(4)
    spikes = (torch.rand(25, 64, 10, generator=generator) < 0.3).float()
    labels = torch.randint(0, 10, (64,), generator=generator)
    ours = spike_count_loss(spikes.sum(dim=0), torch.zeros(64, 1), labels, 0.0).cross_entropy
    torch.testing.assert_close(ours, SF.ce_count_loss()(spikes, labels))
    rate = SF.ce_rate_loss()(spikes, labels).squeeze()
    assert abs(float(rate) - float(ours)) > 0.1
    perfect = torch.zeros(25, 1, 10)
    perfect[:, 0, 3] = 1.0
    perfect.requires_grad_()
    rate_perfect = SF.ce_rate_loss()(perfect, torch.tensor([3])).squeeze()
    torch.testing.assert_close(float(rate_perfect.detach()), math.log(1 + 9 / math.e), rtol=1e-6, atol=0.0)
    (grad,) = torch.autograd.grad(rate_perfect, perfect)
    assert float(grad[:, 0, 3].sum()) < -0.5
    count_perfect = spike_count_loss(perfect.sum(dim=0), torch.zeros(1, 1), torch.tensor([3]), 0.0).cross_entropy
    assert float(count_perfect.detach()) < 1e-6
