"""Any `training.network.NetworkConfig` written with snnTorch: the reference we are checked against.

This module builds the snnTorch model a user would write for any Linear -> snn.Leaky stack,
the study's 784-512-10 among them (`snntorch_model(study_network_config())` is the study's
own class and loop), runs it over T steps with the same input coding, and computes its loss,
for `snn-mnist crosscheck`, `snn-mnist bench` and the tests.  Two forms, the two namings
`training.snntorch_checkpoint` reads and writes:

    "study"       the study's / tutorial 5's class with fc1, lif1, fc2, lif2, ... and the
                  tutorial loop, fc1(x) recomputed at every step      (`SnnTorchStudyNet`)
    "sequential"  nn.Sequential(nn.Linear, snn.Leaky(init_hidden=True), ...,
                  snn.Leaky(init_hidden=True, output=True))         (`snntorch_sequential`)

Inputs: "current" hands the flattened image to the first Linear at every step; "rate" draws
`snntorch.spikegen.rate(images, num_steps)`, which uses torch's global generator.
`RateStream(seed)` keeps a private copy of that generator's state, so a stream of draws is
the one `training.network.rate_code` makes from `torch.Generator().manual_seed(seed)`,
whatever else uses the global generator in between (and the caller's global state is left as
it was).

snnTorch is a test-only dependency (`pip install -e ".[test]"`): it is imported inside the
functions, so importing this module needs only torch.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lif_core.surrogate import ArcTan, FastSigmoid, Sigmoid, Surrogate
from training.errors import SnnMnistError
from training.network import NetworkConfig, NetworkOutput, NeuronConfig
from training.snntorch_checkpoint import Naming

MISSING_SNNTORCH = (
    "this command compares against snnTorch, a test-only dependency that is not installed. "
    'Fix: pip install -e ".[test]" (it pins snntorch==1.0.0).'
)


def snntorch_modules() -> Any:
    """`import snntorch` (with spikegen, surrogate and utils loaded), or a one-line SnnMnistError."""
    try:
        import snntorch
        import snntorch.spikegen
        import snntorch.surrogate
        import snntorch.utils
    except ImportError as error:  # pragma: no cover - exercised only without the test extra
        raise SnnMnistError(MISSING_SNNTORCH) from error
    return snntorch


# --------------------------------------------------------------------------- building


def snntorch_spike_grad(surrogate: Surrogate) -> Any:
    """snnTorch's surrogate function for one of ours: atan(alpha), fast_sigmoid(slope), sigmoid(slope).
    The straight Heaviside (zero gradient) has no snnTorch counterpart."""
    snn_surrogate = snntorch_modules().surrogate
    if isinstance(surrogate, ArcTan):
        return snn_surrogate.atan(alpha=surrogate.alpha)
    if isinstance(surrogate, FastSigmoid):
        return snn_surrogate.fast_sigmoid(slope=surrogate.slope)
    if isinstance(surrogate, Sigmoid):
        return snn_surrogate.sigmoid(slope=surrogate.slope)
    raise ValueError(
        f"surrogate {surrogate.name!r} has no snnTorch counterpart. Fix: use atan, fast_sigmoid or sigmoid."
    )


def snntorch_leaky(neuron: NeuronConfig, init_hidden: bool, output: bool) -> Any:
    """snn.Leaky built as a user would for this layer (beta and threshold as tensors: 0-dim, or per neuron)."""
    snn = snntorch_modules()
    options = neuron.options
    return snn.Leaky(
        beta=torch.tensor(neuron.beta),
        threshold=torch.tensor(neuron.threshold),
        spike_grad=snntorch_spike_grad(options.surrogate),
        init_hidden=init_hidden,
        learn_beta=neuron.learn_beta,
        learn_threshold=neuron.learn_threshold,
        reset_mechanism=options.reset_mechanism,
        output=output,
        graded_spikes_factor=neuron.graded_spikes_factor,
        learn_graded_spikes_factor=neuron.learn_graded_spikes_factor,
        reset_delay=options.reset_delay,
    )


def snntorch_sequential(config: NetworkConfig) -> nn.Sequential:
    """nn.Sequential(Linear, Leaky(init_hidden=True), ..., Leaky(init_hidden=True, output=True))."""
    modules: list[nn.Module] = []
    sizes, last = config.layer_sizes, config.num_layers - 1
    for layer, neuron in enumerate(config.neurons):
        modules.append(nn.Linear(sizes[layer], sizes[layer + 1]))
        modules.append(snntorch_leaky(neuron, init_hidden=True, output=layer == last))
    return nn.Sequential(*modules)


class SnnTorchStudyNet(nn.Module):
    """The study's / tutorial 5's class generalised to L layers: fc1, lif1, fc2, lif2, ..."""

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.num_layers = config.num_layers
        sizes = config.layer_sizes
        for layer, neuron in enumerate(config.neurons, start=1):
            setattr(self, f"fc{layer}", nn.Linear(sizes[layer - 1], sizes[layer]))
            setattr(self, f"lif{layer}", snntorch_leaky(neuron, init_hidden=False, output=False))

    def record(self, inputs: Tensor, steps: int, constant: bool) -> tuple[list[Tensor], list[Tensor]]:
        """The tutorial loop (fc1(x) recomputed every step); per layer (T, B, N) spikes and mems."""
        fcs = [getattr(self, f"fc{k}") for k in range(1, self.num_layers + 1)]
        lifs = [getattr(self, f"lif{k}") for k in range(1, self.num_layers + 1)]
        mems = [lif.init_leaky() for lif in lifs]
        spikes: list[list[Tensor]] = [[] for _ in lifs]
        membranes: list[list[Tensor]] = [[] for _ in lifs]
        for step in range(steps):
            signal = inputs if constant else inputs[step]
            for layer, (fc, lif) in enumerate(zip(fcs, lifs)):
                signal, mems[layer] = lif(fc(signal), mems[layer])
                spikes[layer].append(signal)
                membranes[layer].append(mems[layer])
        return [torch.stack(s) for s in spikes], [torch.stack(m) for m in membranes]


def snntorch_model(config: NetworkConfig, naming: Naming = "study") -> nn.Module:
    """The snnTorch model of `config` whose state_dict has the keys of `naming`."""
    return SnnTorchStudyNet(config) if naming == "study" else snntorch_sequential(config)


# --------------------------------------------------------------------------- running


def record_sequential(net: nn.Sequential, inputs: Tensor, steps: int, constant: bool) -> tuple[list[Tensor], list[Tensor]]:
    """Step the nn.Sequential's modules in order (what its forward does), keeping every layer."""
    snn = snntorch_modules()
    snn.utils.reset(net)
    leakies = [module for module in net if isinstance(module, snn.Leaky)]
    spikes: list[list[Tensor]] = [[] for _ in leakies]
    membranes: list[list[Tensor]] = [[] for _ in leakies]
    for step in range(steps):
        signal = inputs if constant else inputs[step]
        layer = 0
        for module in net:
            out = module(signal)
            if isinstance(module, snn.Leaky):
                out, mem = out if isinstance(out, tuple) else (out, module.mem)
                spikes[layer].append(out)
                membranes[layer].append(mem)
                layer += 1
            signal = out
    return [torch.stack(s) for s in spikes], [torch.stack(m) for m in membranes]


class RateStream:
    """`snntorch.spikegen.rate` draws from torch's global generator seeded with `seed`, one
    call after another, on a private copy of that generator's state: the draws
    `training.network.rate_code` makes from `torch.Generator().manual_seed(seed)`."""

    def __init__(self, seed: int) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.state = torch.get_rng_state()

    def rate(self, images: Tensor, num_steps: int) -> Tensor:
        """spikegen.rate(images, num_steps): (T, B, N) spikes, the stream's next draw."""
        spikegen = snntorch_modules().spikegen
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self.state)
            spikes = spikegen.rate(images, num_steps=num_steps)
            self.state = torch.get_rng_state()
        return spikes


def snntorch_inputs(config: NetworkConfig, images: Tensor, stream: RateStream | None) -> Tensor:
    """What the first Linear sees: the flattened images ("current"), or the stream's next
    spikegen.rate draw ("rate")."""
    flat = images.reshape(images.shape[0], -1)
    if config.input_coding != "rate":
        return flat
    if stream is None:
        raise ValueError('input_coding="rate" draws its spikes from a RateStream: pass one')
    return stream.rate(flat, config.num_steps)


def run_snntorch(model: nn.Module, config: NetworkConfig, inputs: Tensor) -> NetworkOutput:
    """Every layer's spikes and membranes, (T, B, N_l), from `snntorch_inputs`' tensor."""
    constant = config.input_coding == "current"
    if isinstance(model, SnnTorchStudyNet):
        spikes, membranes = model.record(inputs, config.num_steps, constant)
    else:
        spikes, membranes = record_sequential(model, inputs, config.num_steps, constant)  # type: ignore[arg-type]
    return NetworkOutput(spikes, membranes)


def run_leaky(current: Tensor, beta: float, threshold: float, spike_grad: Any, num_steps: int | None = None) -> tuple[Tensor, Tensor]:
    """`snn.Leaky(beta, threshold, spike_grad)` over (T, B, N), or (B, N) held for `num_steps`
    steps, called step by step from `init_leaky()`; returns (spikes, membranes), (T, B, N) each."""
    layer = snntorch_modules().Leaky(beta=beta, threshold=threshold, spike_grad=spike_grad)
    steps = current.shape[0] if num_steps is None else num_steps
    mem = layer.init_leaky()
    spikes, membranes = [], []
    for t in range(steps):
        spk, mem = layer(current if num_steps is not None else current[t], mem)
        spikes.append(spk)
        membranes.append(mem)
    return torch.stack(spikes), torch.stack(membranes)


def snntorch_loss(output: NetworkOutput, labels: Tensor, config: NetworkConfig) -> Tensor:
    """The loss as a snnTorch user writes it: tutorial 5's `loss_val = zeros(1); loss_val +=
    CE(mem_rec[step], y)` for "membrane", the study's CE on output counts for "count"; then
    + activity penalty * mean hidden count (the study's `alpha_reg * spk1_rec.sum(0).mean()`)."""
    if config.loss == "membrane":
        loss_val = torch.zeros((1), dtype=torch.float32)
        for step in range(config.num_steps):
            loss_val += F.cross_entropy(output.membranes[-1][step], labels)
        loss = loss_val[0]
        if not config.activity_penalty:
            return loss
    else:
        loss = F.cross_entropy(output.output_spikes.sum(dim=0), labels)
    if len(output.spikes) > 1:
        hidden = torch.cat([s.sum(dim=0) for s in output.spikes[:-1]], dim=-1)
        return loss + config.activity_penalty * hidden.mean()
    return loss + config.activity_penalty * output.output_spikes.new_zeros(())


__all__ = [
    "MISSING_SNNTORCH",
    "RateStream",
    "SnnTorchStudyNet",
    "record_sequential",
    "run_snntorch",
    "run_leaky",
    "snntorch_inputs",
    "snntorch_leaky",
    "snntorch_loss",
    "snntorch_model",
    "snntorch_modules",
    "snntorch_sequential",
    "snntorch_spike_grad",
]
