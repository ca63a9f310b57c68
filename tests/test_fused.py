"""The fused path (`lif_core.fused`) against the exact path it stands in for.

The exact path (lif1 -> F.linear -> lif2, three autograd steps) is bit-identical to
snnTorch; the fused kernel computes the same function with the output layer's sums
in another order.  These tests hold the two together on real MNIST batches:

  * hidden spikes and counts are bit-identical (the same LIF operations on the same I1;
    the fused kernel returns counts, and the model recomputes the spikes when read);
  * output spikes agree except where an output membrane lies within float32
    rounding of the threshold (measured: no flip in 20 batches of 128 images, at
    initialisation and after 50 training steps; the bound allows 1 in 10,000);
  * every gradient agrees to float32 rounding (measured: max relative error
    <= 1e-5; the bound is 1e-4), for both surrogates and for losses on spikes;
  * results do not depend on the thread count, and repeat bit for bit.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from lif_core.fused import fused_supported, lif_linear_lif
from lif_core.neuron import LIFParameters
from lif_core.surrogate import ArcTan, FastSigmoid, Surrogate
from training.data import MnistSplit
from training.network import FeedForwardSNN, spike_count_loss, study_network_config
from training.presets import network_with


def _models(seed: int, surrogate: str = "fast_sigmoid", scale: float | None = None) -> tuple[FeedForwardSNN, FeedForwardSNN]:
    """The study's network on the exact and on the fused path, holding the same weights."""
    config = network_with(study_network_config(), {"surrogate": surrogate, "surrogate_scale": scale})
    torch.manual_seed(seed)
    exact = FeedForwardSNN(config, fused=False)
    fused = FeedForwardSNN(config, fused=True)
    fused.load_state_dict(exact.state_dict())
    return exact, fused


def _trained_pair(split: MnistSplit, steps: int) -> tuple[FeedForwardSNN, FeedForwardSNN]:
    """Both paths loaded with weights after `steps` exact-path training steps."""
    exact, fused = _models(0)
    optimizer = torch.optim.Adam(exact.parameters(), lr=1e-3)
    for step in range(steps):
        images = split.flat_images[step * 128 : (step + 1) * 128]
        labels = split.labels[step * 128 : (step + 1) * 128]
        output = exact(images)
        loss = spike_count_loss(output.output_counts, output.hidden_counts, labels, 1e-4).total
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        exact.clip_weights(1.0)
    fused.load_state_dict(exact.state_dict())
    return exact, fused


def _relative_error(got: Tensor, want: Tensor) -> float:
    return float((got - want).abs().max() / want.abs().max().clamp_min(1e-30))


def test_paths_are_chosen_as_documented() -> None:
    """The study's network takes the fused kernel on the CPU; the exact path when asked, on
    the torch backend and in float16; any network the fused kernel does not compute takes the
    fast path (spike-driven Linear layers) unless the exact path is asked for."""
    study = study_network_config()
    assert FeedForwardSNN(study).compute_path() == "fused"
    assert FeedForwardSNN(study, fused=False).compute_path() == "exact"
    assert FeedForwardSNN(study, backend="torch").compute_path() == "exact"
    assert FeedForwardSNN(study).double().compute_path() == "fused"
    assert FeedForwardSNN(study).to(torch.float16).compute_path() == "exact"
    for settings in (
        {"surrogate": "sigmoid"},
        {"surrogate": "heaviside"},
        {"hidden_size": 1000, "beta": 0.95, "surrogate": "atan"},
        {"loss": "membrane"},
    ):
        assert FeedForwardSNN(network_with(study, settings)).compute_path() == "fused", settings
    for settings in (
        {"layer_sizes": (784, 256, 128, 10)},
        {"input_coding": "rate"},
        {"reset_mechanism": "zero"},
        {"reset_delay": False},
        {"graded_spikes_factor": 2.0},
        {"learn_beta": True},
        {"per_neuron": "beta"},
    ):
        assert FeedForwardSNN(network_with(study, settings)).compute_path() == "fast", settings
        assert FeedForwardSNN(network_with(study, settings), fused=False).compute_path() == "exact", settings
        assert FeedForwardSNN(network_with(study, settings), backend="torch").compute_path() == "exact", settings
    with torch.no_grad():  # a learnt scalar beta needs no gradient without autograd
        assert FeedForwardSNN(network_with(study, {"learn_beta": True})).compute_path() == "fused"


@pytest.mark.parametrize("steps", [0, 50])
def test_forward_matches_exact_path_on_real_batches(mnist_test: MnistSplit, steps: int) -> None:
    exact, fused = _trained_pair(mnist_test, steps)
    flipped, total = 0, 0
    with torch.no_grad():
        for batch in range(20):
            images = mnist_test.flat_images[6400 + batch * 128 : 6400 + (batch + 1) * 128]
            want, got = exact(images), fused(images)
            assert torch.equal(got.hidden_spikes, want.hidden_spikes)
            assert torch.equal(got.hidden_counts, want.hidden_counts)
            flipped += int((got.output_spikes != want.output_spikes).sum())
            total += want.output_spikes.numel()
    assert flipped <= total // 10_000, f"{flipped} of {total} output spikes differ"


# the sigmoid at slope 5: at snnTorch's 25 its float32 derivative overflows to NaN on the
# hidden layer's low membranes, on both paths alike (lif_core.surrogate.Sigmoid)
@pytest.mark.parametrize(("surrogate", "scale"), [("fast_sigmoid", None), ("atan", None), ("sigmoid", 5.0)])
def test_gradients_match_exact_path(mnist_test: MnistSplit, surrogate: str, scale: float | None) -> None:
    exact, fused = _models(1, surrogate, scale)
    images, labels = mnist_test.flat_images[:128], mnist_test.labels[:128]
    for model in (exact, fused):
        output = model(images)
        spike_count_loss(output.output_counts, output.hidden_counts, labels, 1e-3).total.backward()
    for (name, want), got in zip(exact.named_parameters(), fused.parameters()):
        assert got.grad is not None and want.grad is not None
        assert _relative_error(got.grad, want.grad) < 1e-4, name


def test_gradients_through_spike_outputs_match(mnist_test: MnistSplit) -> None:
    """A loss on the (T, B, .) spike tensors, not only on the counts, with weights per step."""
    exact, fused = _models(2)
    images = mnist_test.flat_images[:64]
    steps = torch.linspace(0.5, 1.5, 25)[:, None, None]
    for model in (exact, fused):
        output = model(images)
        loss = (output.output_spikes * steps).sum() + 0.01 * (output.hidden_spikes * steps).sum()
        loss.backward()
    for (name, want), got in zip(exact.named_parameters(), fused.parameters()):
        assert _relative_error(got.grad, want.grad) < 1e-4, name


def test_membrane_loss_matches_exact_path(mnist_test: MnistSplit) -> None:
    """Tutorial 5's network and loss, sum_t CE(U2_t, y): the fused kernel returns the output
    membranes (within float32 rounding of the exact path's) and folds dL/dU2_t into the
    output layer's BPTT; every gradient agrees to float32 rounding."""
    settings = {"hidden_size": 1000, "beta": 0.95, "surrogate": "atan", "loss": "membrane", "activity_penalty": 0.0}
    config = network_with(study_network_config(), settings)
    torch.manual_seed(5)
    exact, fused = FeedForwardSNN(config, fused=False), FeedForwardSNN(config, fused=True)
    fused.load_state_dict(exact.state_dict())
    assert (exact.compute_path(), fused.compute_path()) == ("exact", "fused")
    images, labels = mnist_test.flat_images[:128], mnist_test.labels[:128]
    outputs = [model(images) for model in (exact, fused)]
    want, got = (output.output_membranes for output in outputs)
    assert want is not None and got is not None and got.shape == want.shape == (25, 128, 10)
    assert _relative_error(got.detach(), want.detach()) < 1e-5
    losses = [model.loss(output, labels).total for model, output in zip((exact, fused), outputs)]
    assert abs(losses[1].item() - losses[0].item()) <= 1e-5 * abs(losses[0].item())
    for loss in losses:
        loss.backward()
    for (name, want_parameter), got_parameter in zip(exact.named_parameters(), fused.parameters()):
        assert _relative_error(got_parameter.grad, want_parameter.grad) < 1e-4, name


def test_function_gradient_matches_exact_composition_float64() -> None:
    """In float64 the closed-form BPTT sum and the recursion agree to ~1e-12."""
    generator = torch.Generator().manual_seed(3)
    current = (torch.rand(8, 40, generator=generator, dtype=torch.float64) * 0.4).requires_grad_(True)
    weight = (torch.randn(5, 40, generator=generator, dtype=torch.float64) * 0.5).requires_grad_(True)
    bias = (torch.randn(5, generator=generator, dtype=torch.float64) * 0.1).requires_grad_(True)
    surrogate: Surrogate = ArcTan(2.0)
    hidden = LIFParameters(beta=0.8, threshold=1.0, surrogate=surrogate)
    output = LIFParameters(beta=0.95, threshold=0.5, surrogate=FastSigmoid(10.0))
    fused = lif_linear_lif(current, weight, bias, 30, hidden, output)
    from lif_core.sequence import lif_sequence

    hidden_out = lif_sequence(current, hidden, num_steps=30, backend="torch")
    output_out = lif_sequence(torch.nn.functional.linear(hidden_out.spikes, weight, bias), output, backend="torch")
    assert torch.equal(fused.hidden_counts, hidden_out.counts)
    assert torch.equal(fused.output_spikes, output_out.spikes)
    assert output_out.membranes is not None
    assert _relative_error(fused.output_membranes.detach(), output_out.membranes.detach()) < 1e-12
    mix = torch.randn(8, 5, generator=generator, dtype=torch.float64)
    along_time = torch.randn(30, 8, 5, generator=generator, dtype=torch.float64)
    fused_loss = (fused.output_counts * mix).sum() + 0.1 * fused.hidden_counts.sum() + (fused.output_membranes * along_time).sum()
    exact_loss = (output_out.counts * mix).sum() + 0.1 * hidden_out.counts.sum() + (output_out.membranes * along_time).sum()
    fused_grads = torch.autograd.grad(fused_loss, (current, weight, bias))
    exact_grads = torch.autograd.grad(exact_loss, (current, weight, bias))
    for got, want in zip(fused_grads, exact_grads):
        assert _relative_error(got, want) < 1e-12


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("beta", "steps"), [(0.9, 25), (0.95, 100), (1.0, 40), (0.0, 5)])
def test_silent_screen_keeps_every_spike(dtype: torch.dtype, beta: float, steps: int) -> None:
    """The forward kernel skips neurons with I1 below `silent_cutoff`; currents packed
    around the exact no-spike boundary I c_{T-1} = thr (a few ulps either side) give
    the same hidden counts as simulating every neuron (the exact path)."""
    from lif_core.fused_kernels import silent_cutoff
    from lif_core.sequence import lif_sequence

    threshold = 1.0
    boundary = threshold / sum(float(torch.tensor(beta, dtype=dtype)) ** k for k in range(steps))
    cutoff = silent_cutoff(steps, beta, threshold, torch.empty(0, dtype=dtype).numpy().dtype.type)
    assert cutoff < boundary
    base = torch.tensor([boundary, cutoff], dtype=dtype)
    ulps = torch.arange(-3000, 3000, 7, dtype=dtype)
    current = torch.cat([torch.nextafter(b.expand(1), torch.tensor(2.0, dtype=dtype)) * (1 + ulps * torch.finfo(dtype).eps) for b in base])
    current = torch.cat([current, -current, torch.tensor([0.0, float("nan"), 5.0], dtype=dtype)]).reshape(1, -1)
    hidden = LIFParameters(beta=beta, threshold=threshold, surrogate=FastSigmoid(25.0))
    weight = torch.ones(3, current.shape[1], dtype=dtype) * 0.01
    fused = lif_linear_lif(current, weight, torch.zeros(3, dtype=dtype), steps, hidden, hidden)
    exact = lif_sequence(current, hidden, num_steps=steps, backend="numba")
    assert torch.equal(fused.hidden_counts, exact.counts)
    assert 0 < int((exact.counts > 0).sum()) < current.shape[1]  # the boundary is inside the test


def test_fused_results_independent_of_thread_count_and_repeatable(mnist_test: MnistSplit, same_bits_for_any_thread_count) -> None:
    _, fused = _models(4)
    images, labels = mnist_test.flat_images[:128], mnist_test.labels[:128]

    def run() -> list[Tensor]:
        fused.zero_grad()
        output = fused(images)
        spike_count_loss(output.output_counts, output.hidden_counts, labels, 1e-4).total.backward()
        return [output.output_counts.detach().clone()] + [p.grad.clone() for p in fused.parameters()]

    same_bits_for_any_thread_count(run)


def test_unsupported_inputs_get_a_reason() -> None:
    weight = torch.zeros(10, 16)
    assert fused_supported(torch.zeros(4, 16), weight) is None
    assert "constant" in str(fused_supported(torch.zeros(3, 4, 16), weight))
    assert "float32 or float64" in str(fused_supported(torch.zeros(4, 16, dtype=torch.float16), weight.half()))
    assert "(K, H=16)" in str(fused_supported(torch.zeros(4, 16), torch.zeros(10, 8)))
    with pytest.raises(ValueError, match="constant"):
        lif_linear_lif(torch.zeros(3, 4, 16), weight, torch.zeros(10), 5, LIFParameters(), LIFParameters())
    with pytest.raises(ValueError, match="num_steps"):
        lif_linear_lif(torch.zeros(4, 16), weight, torch.zeros(10), 0, LIFParameters(), LIFParameters())
