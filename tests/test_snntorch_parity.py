"""Parity with snnTorch 1.0.0: one layer against `snn.Leaky`, and the whole 784-512-10
network on real MNIST against the study's snnTorch model with the same weights."""

from __future__ import annotations

import pytest
import snntorch as snn
import torch
import torch.nn.functional as F
from torch import Tensor

from lif_core import ArcTan, FastSigmoid, Leaky, LIFParameters, lif_sequence
from lif_core.surrogate import Surrogate
from experiments.snntorch_network import SnnTorchStudyNet, run_leaky, snntorch_model, snntorch_spike_grad
from training.data import MnistSplit
from training.network import FeedForwardSNN, study_network_config
from training.presets import network_with

BACKENDS = ["torch", "numba"]
SURROGATES: list[Surrogate] = [FastSigmoid(slope=25.0), ArcTan(alpha=2.0)]
BATCH = 64
NUM_STEPS = 25


def random_current(shape: tuple[int, ...], threshold: float, seed: int) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator) * 0.8 * threshold + 0.4 * threshold


# --------------------------------------------------------------------------- one layer


@pytest.mark.parametrize("surrogate", SURROGATES, ids=lambda s: s.name)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("constant", [True, False], ids=["constant-BN", "time-varying-TBN"])
@pytest.mark.parametrize("beta,threshold", [(0.9, 1.0), (0.95, 0.5), (0.5, 1.5), (0.0, 1.0), (1.0, 1.0), (0.7, 0.1)])
def test_layer_matches_snn_leaky(
    beta: float, threshold: float, constant: bool, backend: str, surrogate: Surrogate
) -> None:
    """`Leaky` gives snn.Leaky's spikes and membranes bit for bit (float32), and the same
    input gradient (to float32 rounding) for a loss on spikes and membranes."""
    steps, batch, neurons = 25, 8, 20
    shape = (batch, neurons) if constant else (steps, batch, neurons)
    current = random_current(shape, threshold, seed=int(beta * 100 + threshold * 10))
    num_steps = steps if constant else None
    generator = torch.Generator().manual_seed(1)
    w_spikes = torch.randn(steps, batch, neurons, generator=generator)
    w_membranes = torch.randn(steps, batch, neurons, generator=generator)

    ours_in = current.clone().requires_grad_()
    layer = Leaky(beta=beta, threshold=threshold, surrogate=surrogate, backend=backend)  # type: ignore[arg-type]
    ours = layer(ours_in, num_steps=num_steps)
    ref_in = current.clone().requires_grad_()
    spikes, membranes = run_leaky(ref_in, beta, threshold, snntorch_spike_grad(surrogate), num_steps)
    assert 0 < spikes.sum() < spikes.numel()
    assert torch.equal(ours.spikes, spikes)
    assert torch.equal(ours.membranes, membranes)

    (ours_grad,) = torch.autograd.grad(
        (ours.spikes * w_spikes).sum() + (ours.membranes * w_membranes).sum(), ours_in
    )
    (ref_grad,) = torch.autograd.grad((spikes * w_spikes).sum() + (membranes * w_membranes).sum(), ref_in)
    torch.testing.assert_close(ours_grad, ref_grad, rtol=1e-5, atol=1e-5)


def test_snntorch_default_surrogate_is_atan_alpha_2() -> None:
    """snn.Leaky(beta=0.9) without spike_grad uses arctan with alpha = 2: its gradients equal
    snnTorch's atan(alpha=2) exactly, and our ArcTan(2) to rounding, and differ from fast sigmoid."""
    current = random_current((25, 8, 16), 1.0, seed=5)

    def snn_grad(spike_grad) -> Tensor:
        x = current.clone().requires_grad_()
        spikes, _ = run_leaky(x, 0.9, 1.0, spike_grad)
        return torch.autograd.grad(spikes.sum(), x)[0]

    default = snn_grad(None)
    assert torch.equal(default, snn_grad(snntorch_spike_grad(ArcTan(2.0))))
    x = current.clone().requires_grad_()
    ours = lif_sequence(x, LIFParameters(0.9, 1.0, ArcTan(alpha=2.0)))
    torch.testing.assert_close(torch.autograd.grad(ours.spikes.sum(), x)[0], default, rtol=1e-5, atol=1e-6)
    fast = snn_grad(snntorch_spike_grad(FastSigmoid(25.0)))
    assert not torch.allclose(default, fast, rtol=1e-2, atol=1e-3)


def test_leaky_state_dict_moves_to_and_from_snn_leaky() -> None:
    """`Leaky` buffers have snn.Leaky's names, order, shapes and dtypes; strict loading works
    both ways and a loaded beta/threshold changes what `Leaky` computes."""
    ours = Leaky(beta=0.8, threshold=0.6)
    theirs = snn.Leaky(beta=0.8, threshold=0.6)
    ours_sd, theirs_sd = ours.state_dict(), theirs.state_dict()
    assert list(ours_sd) == list(theirs_sd)
    for key in ours_sd:
        assert ours_sd[key].dtype == theirs_sd[key].dtype, key
        assert ours_sd[key].shape == theirs_sd[key].shape, key
        assert torch.equal(ours_sd[key], theirs_sd[key]), key
    theirs.load_state_dict(ours_sd, strict=True)
    fresh = Leaky()
    fresh.load_state_dict(snn.Leaky(beta=0.5, threshold=2.0).state_dict(), strict=True)
    assert float(fresh.beta) == 0.5 and float(fresh.threshold) == 2.0
    current = random_current((10, 2, 5), 2.0, seed=3)
    spikes, membranes = run_leaky(current, 0.5, 2.0, None)
    assert torch.equal(fresh(current).membranes, membranes)


def test_a_checkpoint_of_another_reset_is_refused_on_load_not_run_silently() -> None:
    """A state_dict from snn.Leaky(reset_mechanism="zero") is refused by a subtract-reset
    `Leaky` when it is loaded (snnTorch 1.0.0 would load it and keep computing subtract);
    a `Leaky` built with the zero reset loads it and computes what snn.Leaky computes."""
    theirs = snn.Leaky(beta=0.9, reset_mechanism="zero")
    with pytest.raises(RuntimeError, match="reset_mechanism_val is 1"):
        Leaky().load_state_dict(theirs.state_dict(), strict=True)
    layer = Leaky(reset_mechanism="zero")
    layer.load_state_dict(theirs.state_dict(), strict=True)
    current = random_current((12, 3, 4), 1.0, seed=8)
    mem, membranes = theirs.init_leaky(), []
    for current_t in current:
        _, mem = theirs(current_t, mem)
        membranes.append(mem)
    assert torch.equal(layer(current).membranes, torch.stack(membranes))


# --------------------------------------------------------------------------- whole network


def paired_models(surrogate: Surrogate, backend: str) -> tuple[FeedForwardSNN, SnnTorchStudyNet]:
    """Our network and the study's snnTorch class holding the very same weights."""
    config = network_with(study_network_config(), {"surrogate": surrogate.name, "surrogate_scale": surrogate.scale})
    torch.manual_seed(2024)
    ours = FeedForwardSNN(config, backend=backend)  # type: ignore[arg-type]
    study = snntorch_model(config)
    ours_sd, study_sd = ours.state_dict(), study.state_dict()
    assert list(ours_sd) == list(study_sd)
    for key in ours_sd:
        assert ours_sd[key].dtype == study_sd[key].dtype, key
        assert ours_sd[key].shape == study_sd[key].shape, key
    study.load_state_dict(ours_sd, strict=True)
    return ours, study


def test_same_seed_gives_same_initial_weights() -> None:
    """Built under one torch seed, our study network and snnTorch's start from identical weights."""
    torch.manual_seed(11)
    ours = FeedForwardSNN(study_network_config())
    torch.manual_seed(11)
    study = snntorch_model(study_network_config())
    for (name, a), (_, b) in zip(ours.state_dict().items(), study.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("surrogate", SURROGATES, ids=lambda s: s.name)
@pytest.mark.parametrize("backend", BACKENDS)
def test_network_matches_study_snntorch_model_on_mnist(
    mnist_test: MnistSplit, backend: str, surrogate: Surrogate
) -> None:
    """784-512-10, T=25, 64 real test images, same weights: hidden and output spikes are
    identical, membranes agree to 1e-5, and the weight/bias gradients of the spike-count
    cross-entropy agree to rtol 1e-4."""
    images = mnist_test.flat_images[:BATCH]
    labels = mnist_test.labels[:BATCH]
    ours, study = paired_models(surrogate, backend)

    out = ours(images, record_membranes=True)
    (spk1, spk2), (mem1, mem2) = study.record(images, NUM_STEPS, constant=True)
    assert out.output_spikes.shape == (NUM_STEPS, BATCH, 10)
    assert out.hidden_spikes.shape == (NUM_STEPS, BATCH, 512)
    assert out.hidden_spikes.sum() > 0 and out.output_spikes.sum() > 0  # not a silent network
    assert torch.equal(out.hidden_spikes, spk1)
    assert torch.equal(out.output_spikes, spk2)
    torch.testing.assert_close(out.hidden_membranes, mem1, rtol=0.0, atol=1e-5)
    torch.testing.assert_close(out.output_membranes, mem2, rtol=0.0, atol=1e-5)
    assert torch.equal(out.output_counts, spk2.sum(dim=0))

    F.cross_entropy(out.output_counts, labels).backward()
    F.cross_entropy(spk2.sum(dim=0), labels).backward()
    study_params = dict(study.named_parameters())
    for name, param in ours.named_parameters():
        expected = study_params[name].grad
        assert param.grad is not None and expected is not None, name
        assert expected.abs().max() > 0, name
        torch.testing.assert_close(param.grad, expected, rtol=1e-4, atol=1e-7, msg=lambda m: f"{name}: {m}")
