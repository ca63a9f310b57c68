"""The fast path's spike-driven Linear (`lif_core.spike_linear`) against its reference,
`training.network.per_step_linear` (T BLAS products: snnTorch's bits), and the fast path of
whole networks against the exact path.

The kernels add the same terms in another order, so:
  * currents and the three gradients agree to float32 rounding (relative 1e-5 of the
    largest value), for binary, graded and dense signals, in float32 and float64;
  * results do not depend on the thread count and repeat bit for bit;
  * a whole network on the fast path gives the exact path's spikes except where a membrane
    lies within rounding of the threshold: counted and bounded below.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from lif_core.spike_linear import spike_linear, spike_linear_supported
from training.data import MnistSplit
from training.network import FeedForwardSNN, per_step_linear, study_network_config
from training.presets import network_with


def _relative_error(got: Tensor, want: Tensor) -> float:
    return float((got - want).abs().max() / want.abs().max().clamp_min(1e-30))


def _signal(kind: str, shape: tuple[int, ...], dtype: torch.dtype, generator: torch.Generator) -> Tensor:
    uniform = torch.rand(shape, generator=generator, dtype=dtype)
    if kind == "binary":
        return (uniform < 0.13).to(dtype)
    if kind == "graded":
        return (uniform < 0.2).to(dtype) * 2.5
    return torch.randn(shape, generator=generator, dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["binary", "graded", "dense"])
@pytest.mark.parametrize(("inputs", "outputs", "bias"), [(784, 300, True), (64, 10, False), (1, 5, True)])
def test_matches_per_step_linear(dtype: torch.dtype, kind: str, inputs: int, outputs: int, bias: bool) -> None:
    generator = torch.Generator().manual_seed(inputs + outputs)
    linear = nn.Linear(inputs, outputs, bias=bias).to(dtype)
    signal = _signal(kind, (7, 9, inputs), dtype, generator).requires_grad_(True)
    grad = torch.randn(7, 9, outputs, generator=generator, dtype=dtype)
    results = []
    for run in (lambda s: per_step_linear(linear, s), lambda s: spike_linear(s, linear.weight, linear.bias)):
        linear.zero_grad()
        signal.grad = None
        current = run(signal)
        current.backward(grad)
        gradients = [signal.grad, linear.weight.grad] + ([linear.bias.grad] if bias else [])
        results.append([current.detach()] + [g.clone() for g in gradients])
    tolerance = 1e-5 if dtype == torch.float32 else 1e-12
    for got, want in zip(results[1], results[0]):
        assert got.shape == want.shape
        assert _relative_error(got, want) < tolerance


def test_independent_of_thread_count_and_repeatable(same_bits_for_any_thread_count) -> None:
    generator = torch.Generator().manual_seed(0)
    linear = nn.Linear(200, 100)
    signal = _signal("binary", (25, 64, 200), torch.float32, generator)
    grad = torch.randn(25, 64, 100, generator=generator)

    def run() -> list[Tensor]:
        linear.zero_grad()
        current = spike_linear(signal, linear.weight, linear.bias)
        current.backward(grad)
        return [current.detach(), linear.weight.grad.clone(), linear.bias.grad.clone()]

    same_bits_for_any_thread_count(run)


def test_refuses_what_it_cannot_run() -> None:
    weight = torch.zeros(3, 4)
    assert spike_linear_supported(torch.zeros(2, 4), weight) is None
    assert "float32 or float64" in str(spike_linear_supported(torch.zeros(2, 4, dtype=torch.float16), weight))
    with pytest.raises(ValueError, match="5 inputs, the weight takes 4"):
        spike_linear(torch.zeros(2, 5), weight)


NETWORKS = {
    "rate": {"layer_sizes": (784, 1000, 10), "beta": 0.95, "learn_beta": True, "reset_mechanism": "zero",
             "surrogate": "atan", "input_coding": "rate", "loss": "membrane", "activity_penalty": 0.0},
    "three": {"layer_sizes": (784, 256, 128, 10), "beta": 0.9, "per_neuron": ("beta",), "learn_beta": True,
              "activity_penalty": 0.0},
}


@pytest.mark.parametrize("name", list(NETWORKS))
def test_fast_path_of_a_network_matches_exact_path(mnist_test: MnistSplit, name: str) -> None:
    """Rate-coded and 3-layer networks on real images: the fast path's output spikes and
    membranes (for the membrane loss) agree with the exact path's, at most 1 output spike in
    10,000 differs (measured: none), and every gradient agrees to 1e-4 relative."""
    config = network_with(study_network_config(), NETWORKS[name])
    torch.manual_seed(1)
    exact, fast = FeedForwardSNN(config, fused=False), FeedForwardSNN(config)
    fast.load_state_dict(exact.state_dict())
    assert (exact.compute_path(), fast.compute_path()) == ("exact", "fast")
    images, labels = mnist_test.flat_images[:128], mnist_test.labels[:128]
    outputs = []
    for model in (exact, fast):
        output = model(images, torch.Generator().manual_seed(7))
        model.loss(output, labels).total.backward()
        outputs.append(output)
    want, got = (output.output_spikes for output in outputs)
    flipped = int((got != want).sum())
    assert flipped <= want.numel() // 10_000, f"{flipped} of {want.numel()} output spikes differ"
    if config.loss == "membrane":
        want, got = (output.output_membranes for output in outputs)
        assert got is not None and want is not None
        assert _relative_error(got.detach(), want.detach()) < 1e-5
    for (parameter, want), got in zip(exact.named_parameters(), fast.parameters()):
        assert got.grad is not None and want.grad is not None
        assert _relative_error(got.grad, want.grad) < 1e-4, parameter
