"""training.network (any Linear -> Leaky stack) and training.snntorch_checkpoint against
snnTorch 1.0.0 models running the same weights.

Architectures (all 784 inputs, real MNIST test images, small hidden layers):
  * "study-subtract": 784-32-10 in the study's fc1/lif1/fc2/lif2 naming, snnTorch defaults,
    constant-current input, count loss with an activity penalty;
  * "study-zero": the same with reset_mechanism="zero" and learnt beta;
  * "sequential-3": nn.Sequential 784-64-32-10, per-neuron learnt beta, learnt (per-neuron
    and scalar) thresholds, reset_delay=False, graded factor 2 (learnt in one layer), mixed
    resets, membrane loss;
  * "rate": nn.Sequential 784-32-10 with rate-coded input (spikegen.rate), fast sigmoid,
    membrane loss with an activity penalty.
For each: every layer's spikes and membranes torch.equal to snnTorch's, the loss equal,
every parameter's gradient to float32 rounding (rtol 1e-4); checkpoints both ways; the
one-line errors of bad checkpoints; rate coding's statistics and seeding; JSON round trips.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import snntorch as snn
import torch
from snntorch import spikegen, utils
from torch import Tensor, nn

from experiments.snntorch_network import (
    RateStream,
    run_snntorch,
    snntorch_inputs,
    snntorch_loss,
    snntorch_model,
    snntorch_sequential,
)
from dataclasses import replace

from lif_core.neuron import LeakyOptions
from lif_core.surrogate import FastSigmoid, Sigmoid, StraightHeaviside
from training.checkpoint import CheckpointError, atomic_torch_save, save_model
from training.data import MnistSplit
from training.errors import SnnMnistError
from training.network import (
    FeedForwardSNN,
    NetworkConfig,
    NetworkOutput,
    NeuronConfig,
    network_loss,
    rate_code,
    spike_count_loss,
    study_network_config,
)
from training.presets import network_with
from training.snntorch_checkpoint import (
    Naming,
    load_network,
    network_from_state_dict,
    rename_modules,
    save_snntorch_checkpoint,
    snntorch_state_dict,
)

BATCH, STEPS, SEED = 6, 20, 3


def per_neuron(count: int, low: float, high: float, seed: int) -> tuple[float, ...]:
    """`count` float32-representable values in [low, high)."""
    generator = torch.Generator().manual_seed(seed)
    return tuple((torch.rand(count, generator=generator) * (high - low) + low).tolist())


class Architecture(NamedTuple):
    name: str
    config: NetworkConfig
    naming: Naming


def architectures() -> list[Architecture]:
    sequential_neurons = (
        NeuronConfig(
            beta=per_neuron(64, 0.5, 1.1, 1),  # some above 1: clamped, zero gradient there
            threshold=per_neuron(64, 0.4, 0.9, 2),
            graded_spikes_factor=2.0,
            learn_beta=True,
            learn_threshold=True,
            options=LeakyOptions("zero", reset_delay=False),
        ),
        NeuronConfig(
            beta=per_neuron(32, 0.6, 0.95, 3),
            threshold=1.0,
            graded_spikes_factor=2.0,
            learn_beta=True,
            learn_threshold=True,
            learn_graded_spikes_factor=True,
            options=LeakyOptions("subtract", reset_delay=False),
        ),
        NeuronConfig(beta=0.9, threshold=1.0, options=LeakyOptions("subtract", reset_delay=False)),
    )
    return [
        Architecture(
            "study-subtract",
            NetworkConfig((784, 32, 10), (NeuronConfig(beta=0.9),), STEPS, "current", "count", 0.01),
            "study",
        ),
        Architecture(
            "study-zero",
            NetworkConfig(
                (784, 32, 10), (NeuronConfig(beta=0.85, learn_beta=True, options=LeakyOptions("zero")),), STEPS
            ),
            "study",
        ),
        Architecture("sequential-3", NetworkConfig((784, 64, 32, 10), sequential_neurons, STEPS, loss="membrane"), "sequential"),
        Architecture(
            "rate",
            NetworkConfig(
                (784, 32, 10),
                (NeuronConfig(beta=0.8, threshold=0.5, options=LeakyOptions(surrogate=FastSigmoid(25.0))),),
                STEPS,
                input_coding="rate",
                loss="membrane",
                activity_penalty=0.01,
            ),
            "sequential",
        ),
    ]


ARCHITECTURES = architectures()


# --------------------------------------------------------------------------- the snnTorch side
# (the models themselves are experiments.snntorch_network's, shared with `snn-mnist crosscheck`)


def their_model(arch: Architecture) -> nn.Module:
    return snntorch_model(arch.config, arch.naming)


def their_inputs(config: NetworkConfig, images: Tensor, seed: int) -> Tensor:
    """The images, or spikegen.rate's draw after torch.manual_seed(seed)."""
    return snntorch_inputs(config, images, RateStream(seed) if config.input_coding == "rate" else None)


def run_theirs(model: nn.Module, config: NetworkConfig, images: Tensor, seed: int = SEED) -> NetworkOutput:
    return run_snntorch(model, config, their_inputs(config, images, seed))


def run_ours(model: FeedForwardSNN, images: Tensor, seed: int = SEED) -> NetworkOutput:
    return model(images, generator=torch.Generator().manual_seed(seed), record_membranes=True)


def twin_models(arch: Architecture) -> tuple[FeedForwardSNN, nn.Module]:
    """Ours and snnTorch's, built from the same torch seed: the same initial weights."""
    torch.manual_seed(0)
    ours = FeedForwardSNN(arch.config)
    torch.manual_seed(0)
    theirs = their_model(arch)
    return ours, theirs


def assert_same_outputs(ours: NetworkOutput, theirs: NetworkOutput) -> None:
    assert len(ours.spikes) == len(theirs.spikes)
    for layer, (a, b, c, d) in enumerate(zip(ours.spikes, theirs.spikes, ours.membranes, theirs.membranes), 1):
        assert torch.equal(a, b), f"layer {layer} spikes"
        assert torch.equal(c, d), f"layer {layer} membranes"
    assert torch.equal(ours.output_counts, theirs.output_counts)


def same_neurons(found: NetworkConfig, built: NetworkConfig) -> bool:
    """The same float32 beta and threshold (values and shapes), reset mechanism and graded
    factor per layer: what a state_dict holds (learn_*, reset_delay and surrogate it does not)."""
    for a, b in zip(found.neurons, built.neurons, strict=True):
        for name in ("beta", "threshold", "graded_spikes_factor"):
            if not torch.equal(torch.tensor(getattr(a, name)), torch.tensor(getattr(b, name))):
                return False
        if a.options.reset_mechanism != b.options.reset_mechanism:
            return False
    return True


@pytest.fixture(scope="module")
def batch(mnist_test: MnistSplit) -> tuple[Tensor, Tensor]:
    return mnist_test.flat_images[:BATCH].clone(), mnist_test.labels[:BATCH].clone()


# --------------------------------------------------------------------------- forward, loss, gradients


@pytest.mark.parametrize("arch", ARCHITECTURES, ids=lambda arch: arch.name)
def test_forward_loss_and_gradients_match_snntorch(arch: Architecture, batch: tuple[Tensor, Tensor]) -> None:
    images, labels = batch
    ours, theirs = twin_models(arch)
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()))
    our_out, their_out = run_ours(ours, images), run_theirs(theirs, arch.config, images)
    assert_same_outputs(our_out, their_out)
    for spikes in our_out.spikes:  # the comparison means something: neurons both fire and stay silent
        assert 0 < int((spikes != 0).sum()) < spikes.numel()
    our_loss, reference = ours.loss(our_out, labels).total, snntorch_loss(their_out, labels, arch.config)
    assert torch.equal(our_loss, reference)
    our_loss.backward()
    reference.backward()
    our_params, their_params = dict(ours.named_parameters()), dict(theirs.named_parameters())
    names = dict(zip(snntorch_state_dict(ours, "study"), snntorch_state_dict(ours, arch.naming)))
    assert sorted(names[key] for key in our_params) == sorted(their_params)
    for key, parameter in our_params.items():
        expected = their_params[names[key]].grad
        assert parameter.grad is not None and expected is not None, key
        assert bool(torch.isfinite(expected).all()) and float(expected.abs().max()) > 0, key
        torch.testing.assert_close(
            parameter.grad, expected, rtol=1e-4, atol=1e-6 * float(expected.abs().max()), msg=lambda m, k=key: f"{k}: {m}"
        )


def test_sequential_forward_as_tutorials_call_it(batch: tuple[Tensor, Tensor]) -> None:
    """`spk, mem = net(x)` per step (tutorial 7 style, output=True) gives our output layer."""
    arch = next(arch for arch in ARCHITECTURES if arch.name == "sequential-3")
    ours, theirs = twin_models(arch)
    images = batch[0]
    utils.reset(theirs)
    steps = [theirs(images) for _ in range(arch.config.num_steps)]
    our_out = run_ours(ours, images)
    assert torch.equal(torch.stack([spk for spk, _ in steps]), our_out.output_spikes)
    assert torch.equal(torch.stack([mem for _, mem in steps]), our_out.output_membranes)


def test_the_studys_network_is_one_config_and_its_checkpoint_reads_back(batch: tuple[Tensor, Tensor], tmp_path: Path) -> None:
    """The study's network is FeedForwardSNN(study_network_config()): its checkpoint as
    `snn-mnist train` writes it reads back as "study" naming with the same sizes, values and
    options, and runs the same spikes, membranes, counts and study loss, fused or exact."""
    images, labels = batch
    config = network_with(study_network_config(), {"hidden_size": 24, "num_steps": STEPS, "activity_penalty": 0.01})
    torch.manual_seed(1)
    study = FeedForwardSNN(config, fused=False)
    save_model(study, tmp_path / "model.pt")
    loaded = load_network(tmp_path / "model.pt", config)
    assert loaded.naming == "study" and loaded.model.config.layer_sizes == config.layer_sizes
    assert same_neurons(loaded.model.config, config)
    assert loaded.model.compute_path() == "fused" and study.compute_path() == "exact"
    study_out, our_out = study(images, record_membranes=True), loaded.model(images, record_membranes=True)
    assert torch.equal(study_out.hidden_spikes, our_out.spikes[0])
    assert torch.equal(study_out.output_membranes, our_out.output_membranes)
    assert torch.equal(study_out.output_counts, loaded.model(images).output_counts)
    study_loss = spike_count_loss(study_out.output_counts, study_out.hidden_counts, labels, 0.01)
    assert torch.equal(study_loss.total, network_loss(our_out, labels, config).total)


# --------------------------------------------------------------------------- rate coding


def test_rate_code_probabilities_seeding_and_snntorch_equality() -> None:
    probabilities = torch.tensor([[0.0, 0.1, 0.5, 0.9, 1.0, -0.3, 1.7]])
    draws = rate_code(probabilities, 4000, torch.Generator().manual_seed(5))
    assert draws.shape == (4000, 1, 7) and set(draws.unique().tolist()) <= {0.0, 1.0}
    p = probabilities.clamp(0, 1)
    sigma = (p * (1 - p) / 4000).sqrt()
    assert bool(((draws.mean(dim=0) - p).abs() <= 5 * sigma + 1e-12).all())
    again = rate_code(probabilities, 4000, torch.Generator().manual_seed(5))
    assert torch.equal(draws, again)
    assert not torch.equal(draws, rate_code(probabilities, 4000, torch.Generator().manual_seed(6)))
    images = torch.rand(3, 784, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(11)
    expected = spikegen.rate(images, num_steps=STEPS)
    assert torch.equal(rate_code(images, STEPS, torch.Generator().manual_seed(11)), expected)
    with pytest.raises(ValueError, match="generator"):
        FeedForwardSNN(NetworkConfig((784, 4, 2), input_coding="rate"))(images)


# --------------------------------------------------------------------------- checkpoints both ways


@pytest.mark.parametrize("arch", ARCHITECTURES, ids=lambda arch: arch.name)
def test_ours_to_snntorch_loads_strictly_and_runs_the_same(
    arch: Architecture, batch: tuple[Tensor, Tensor], tmp_path: Path
) -> None:
    torch.manual_seed(7)
    ours = FeedForwardSNN(arch.config)
    path = tmp_path / "ours.pt"
    save_snntorch_checkpoint(ours, path, arch.naming)
    theirs = their_model(arch)
    theirs.load_state_dict(torch.load(path, weights_only=True), strict=True)
    assert_same_outputs(run_ours(ours, batch[0]), run_theirs(theirs, arch.config, batch[0]))


@pytest.mark.parametrize("arch", ARCHITECTURES, ids=lambda arch: arch.name)
def test_snntorch_to_ours_detects_the_architecture_and_runs_the_same(
    arch: Architecture, batch: tuple[Tensor, Tensor], tmp_path: Path
) -> None:
    torch.manual_seed(8)
    theirs = their_model(arch)
    path = tmp_path / "theirs.pt"
    torch.save(theirs.state_dict(), path)
    neurons = arch.config.neurons
    # the base gives what a state_dict does not hold; its values and reset are overwritten
    base = replace(
        arch.config,
        neurons=tuple(replace(neuron, beta=0.123, threshold=0.456, graded_spikes_factor=3.0) for neuron in neurons),
    )
    loaded = load_network(path, base)
    assert loaded.naming == arch.naming
    detected = loaded.model.config
    assert detected.layer_sizes == arch.config.layer_sizes
    assert same_neurons(detected, arch.config)
    for found, built in zip(detected.neurons, neurons):  # and what the base gave
        assert (found.options, found.learn_beta, found.learn_threshold, found.learn_graded_spikes_factor) == (
            built.options,
            built.learn_beta,
            built.learn_threshold,
            built.learn_graded_spikes_factor,
        )
    assert [p.shape for p in loaded.model.parameters()] == [p.shape for p in theirs.parameters()]
    assert_same_outputs(run_ours(loaded.model, batch[0]), run_theirs(theirs, arch.config, batch[0]))
    assert "per-neuron (64)" in detected.describe() or arch.name != "sequential-3"


def test_config_json_round_trip() -> None:
    for arch in ARCHITECTURES:
        text = json.dumps(arch.config.to_json())
        assert NetworkConfig.from_json(json.loads(text)) == arch.config
    odd = NetworkConfig(
        (5, 3, 2),
        (
            NeuronConfig(options=LeakyOptions("none", surrogate=Sigmoid(10.0))),
            NeuronConfig(beta=(0.5,), options=LeakyOptions(surrogate=StraightHeaviside())),
        ),
        num_steps=1,
    )
    assert NetworkConfig.from_json(json.loads(json.dumps(odd.to_json()))) == odd


@pytest.mark.parametrize(
    "kwargs, named",
    [
        ({"layer_sizes": (784,)}, "two or more"),
        ({"layer_sizes": (4, 3), "neurons": (NeuronConfig(beta=(0.5, 0.5)),)}, "beta has 2 values"),
        ({"num_steps": 0}, "num_steps"),
        ({"input_coding": "latency"}, "input coding"),
        ({"loss": "mse"}, "loss"),
        ({"activity_penalty": -0.1}, "activity_penalty"),
        ({"neurons": (NeuronConfig(), NeuronConfig(), NeuronConfig())}, "3 neuron configs"),
    ],
)
def test_bad_configs_raise(kwargs: dict, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        NetworkConfig(**kwargs)


@pytest.mark.parametrize("kwargs", [{"graded_spikes_factor": 0.0}, {"beta": float("nan")}, {"learn_beta": 1}])
def test_bad_neuron_configs_raise(kwargs: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        NeuronConfig(**kwargs)


# --------------------------------------------------------------------------- bad checkpoints


def good_state() -> dict[str, Tensor]:
    torch.manual_seed(0)
    return dict(snntorch_sequential(NetworkConfig((784, 8, 10))).state_dict())


def _without(state: dict[str, Tensor], key: str) -> dict[str, Tensor]:
    return {k: v for k, v in state.items() if k != key}


BAD_STATES: list[tuple[str, Callable[[dict[str, Tensor]], Any], str]] = [
    ("no-beta", lambda s: _without(s, "1.beta"), "missing 'beta'"),
    ("synaptic", lambda s: {**s, "1.alpha": torch.tensor(0.5)}, "snn.Synaptic"),
    ("no-bias", lambda s: _without(s, "0.bias"), "bias=False"),
    ("reset-7", lambda s: {**s, "3.reset_mechanism_val": torch.tensor(7)}, "3.reset_mechanism_val"),
    ("beta-shape", lambda s: {**s, "1.beta": torch.full((3,), 0.9)}, "1.beta has shape (3,)"),
    ("float64", lambda s: {**s, "0.weight": s["0.weight"].double()}, "torch.float64"),
    ("nan", lambda s: {**s, "2.bias": torch.full((10,), float("nan"))}, "NaN"),
    ("chain", lambda s: {**s, "2.weight": torch.zeros(10, 9)}, "takes 9 inputs"),
    ("graded-0", lambda s: {**s, "1.graded_spikes_factor": torch.tensor(0.0)}, "graded_spikes_factor"),
    ("flatten-first", lambda s: {f"{int(k[0]) + 1}{k[1:]}": v for k, v in s.items()}, "nn.Flatten"),
    ("prefixed", lambda s: {f"module.{k}": v for k, v in s.items()}, "model.module.state_dict()"),
    ("optimizer", lambda s: {"state": {}, "param_groups": []}, "neither 'fc1.weight'"),
    ("not-a-dict", lambda s: [s["0.weight"]], "not a state_dict"),
]


@pytest.mark.parametrize("name, corrupt, named", BAD_STATES, ids=[case[0] for case in BAD_STATES])
def test_bad_checkpoints_get_one_line_errors(name: str, corrupt: Callable, named: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.pt"
    atomic_torch_save(path, corrupt(good_state()))
    with pytest.raises(CheckpointError) as caught:
        load_network(path)
    message = str(caught.value)
    assert isinstance(caught.value, SnnMnistError)
    assert named in message and "Fix:" in message and "\n" not in message and str(path) in message


def test_a_good_state_loads_and_a_mismatched_layer_is_refused() -> None:
    state = good_state()
    assert network_from_state_dict(state).model.config.layer_sizes == (784, 8, 10)
    three = NetworkConfig((784, 8, 8, 10), (NeuronConfig(), NeuronConfig(beta=0.5), NeuronConfig()))
    with pytest.raises(CheckpointError, match="the checkpoint has 2 layers, and the settings give 3 different ones"):
        network_from_state_dict(state, three)
    model = FeedForwardSNN(NetworkConfig((784, 8, 10)))
    ours = rename_modules(state, "sequential", "study", 2)
    with pytest.raises(RuntimeError, match="reset_mechanism_val is 1"):
        model.load_state_dict({**ours, "lif1.reset_mechanism_val": torch.tensor(1)})


def test_study_checkpoint_from_snn_mnist_train_loads(tmp_path: Path) -> None:
    torch.manual_seed(2)
    study = FeedForwardSNN(network_with(study_network_config(), {"hidden_size": 12}), backend="torch", fused=False)
    save_model(study, tmp_path / "model.pt")
    loaded = load_network(tmp_path / "model.pt", study_network_config())
    assert loaded.naming == "study" and loaded.model.config.layer_sizes == (784, 12, 10)
    assert list(snntorch_state_dict(loaded.model, "study")) == list(study.state_dict())
    assert [(key, value.dtype) for key, value in study.state_dict().items()] == [
        ("fc1.weight", torch.float32), ("fc1.bias", torch.float32), ("lif1.threshold", torch.float32),
        ("lif1.graded_spikes_factor", torch.float32), ("lif1.reset_mechanism_val", torch.int64),
        ("lif1.beta", torch.float32), ("fc2.weight", torch.float32), ("fc2.bias", torch.float32),
        ("lif2.threshold", torch.float32), ("lif2.graded_spikes_factor", torch.float32),
        ("lif2.reset_mechanism_val", torch.int64), ("lif2.beta", torch.float32),
    ]


def test_snntorch_keeps_its_constructors_reset_after_loading_a_checkpoint() -> None:
    """Why a saved checkpoint must go into a Leaky built with the same reset_mechanism:
    snnTorch 1.0.0 loads reset_mechanism_val=1 into a "subtract" Leaky strictly and silently,
    and keeps running subtract (its state function is chosen in the constructor)."""

    def membranes(layer: snn.Leaky, current: Tensor) -> Tensor:
        mem, out = layer.init_leaky(), []
        for current_t in current:
            _, mem = layer(current_t, mem)
            out.append(mem)
        return torch.stack(out)

    current = torch.rand(STEPS, 3, 5, generator=torch.Generator().manual_seed(0))
    subtract, zero = snn.Leaky(beta=0.9), snn.Leaky(beta=0.9, reset_mechanism="zero")
    loaded = snn.Leaky(beta=0.9)
    loaded.load_state_dict(zero.state_dict(), strict=True)
    assert int(loaded.reset_mechanism_val) == 1
    assert torch.equal(membranes(loaded, current), membranes(subtract, current))
    assert not torch.equal(membranes(loaded, current), membranes(zero, current))
