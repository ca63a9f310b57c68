"""The implementations `snn-mnist bench` times, each written as its users write it.

Two workloads:

  * "mnist": a `training.network.NetworkConfig` network (the study's 784-H-10 and the
    other networks of `benchmarks.harness.NETWORKS`) on real MNIST batches; one training
    step is forward + the network's loss (`FeedForwardSNN.loss` for ours, the same maths
    for the peers) + backward + `torch.optim.Adam` (lr 1e-3, its other defaults, as the
    study uses it) + weight clip to [-1, 1]; inference is a forward pass over 1,000 test
    images in batches of 250, under `torch.no_grad`.
  * "open_neuromorphic": the Open Neuromorphic library benchmark (Lenz et al. 2023):
    input randn(T=500, B=16, N=4096), one LIF layer with or without its Linear(N, N)
    in front, loss out.sum(); forward and backward timed separately.

Each variant is a function returning a `Runner` and is run by `benchmarks.worker`
in a process of its own, so no library's settings or thread pools reach another.
The snnTorch-semantics variants (`Variant.snntorch_maths`: snnTorch, its compiled form,
the plain loop, its compiled form, ours) start from the same weights (ours at seed 0;
rate-coded inputs drawn from seed 0) and must give the same initial loss; a compiled
variant reports the loss of the module it compiles, run before compiling (compiling
there would put a compilation outside the timed calls).  SpikingJelly and Norse have
LIF neurons of their own (time constants set to the same decay, 0.9 per step), so they
run the same amount of work, not the same numbers, and only on the study's network.

The compiled variants wrap the module in `torch.compile(model)` (default mode), as a
user adds it; the loss, backward pass and optimiser stay eager, as in their code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training.network import NetworkConfig, NetworkOutput

BETA = 0.9
THRESHOLD = 1.0
LEARNING_RATE = 1e-3
SLOPE = 25.0


@dataclass(frozen=True)
class Variant:
    """One implementation: what it is, the module it needs (None: torch alone), whether it
    is ours, compiled with torch.compile, computes snnTorch's maths (same initial loss), and
    whether it runs only on the study's network (at any size)."""

    description: str
    module: str | None = None
    ours: bool = False
    compiled: bool = False
    snntorch_maths: bool = True
    study_only: bool = False


MNIST_VARIANTS: dict[str, Variant] = {
    "snntorch": Variant("snnTorch 1.0 as the tutorials write it (fc1 at every step)", "snntorch"),
    "snntorch_hoisted": Variant("snnTorch 1.0, fc1 computed once", "snntorch", study_only=True),
    "snntorch_compiled": Variant("snnTorch 1.0, fc1 computed once, under torch.compile", "snntorch", compiled=True),
    "torch_loop": Variant("plain PyTorch loop, autograd through T steps"),
    "torch_loop_compiled": Variant("plain PyTorch loop under torch.compile", compiled=True),
    "spikingjelly": Variant("SpikingJelly LIFNode, multi-step mode", "spikingjelly", snntorch_maths=False, study_only=True),
    "norse": Variant("Norse LIFBoxCell loop, fc1(x) computed once", "norse", snntorch_maths=False, study_only=True),
    "torch": Variant("ours, torch backend (exact path)", ours=True),
    "numba_exact": Variant("ours, numba backend, exact path", ours=True),
    "numba": Variant("ours, numba backend, the path the network picks (fused where it applies)", ours=True),
}
OPEN_NEUROMORPHIC_VARIANTS: dict[str, Variant] = {
    "snntorch": Variant("snnTorch 1.0 snn.Leaky loop", "snntorch"),
    "torch_loop": Variant("plain PyTorch loop"),
    "spikingjelly": Variant("SpikingJelly LIFNode, multi-step mode", "spikingjelly", snntorch_maths=False),
    "norse": Variant("Norse LIFBoxCell loop", "norse", snntorch_maths=False),
    "numba": Variant("ours, leaky_sequence, numba backend", ours=True),
}


@dataclass
class Runner:
    """What a worker times: `train_step` (mnist) or `forward` + `backward` (open_neuromorphic).
    compute_path: ours' `FeedForwardSNN.compute_path()`."""

    train_step: Callable[[int], None] | None = None
    infer: Callable[[], None] | None = None
    initial_loss: float | None = None
    forward: Callable[[], Any] | None = None
    backward: Callable[[Any], None] | None = None
    compute_path: str | None = None


# --------------------------------------------------------------------------- the plain PyTorch loop


class HeavisideSpike(torch.autograd.Function):
    """H(x) forward, keeping x and the surrogate's scale; each surrogate below is its backward,
    as a PyTorch user writes it."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.scale = scale
        return (x > 0).to(x.dtype)


class FastSigmoidSpike(HeavisideSpike):
    """1 / (slope |x| + 1)^2 backward."""

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad / (ctx.scale * x.abs() + 1.0) ** 2, None


class ArcTanSpike(HeavisideSpike):
    """(alpha / 2) / (1 + (pi/2 alpha x)^2) backward."""

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return ctx.scale / 2 / (1 + (torch.pi / 2 * ctx.scale * x) ** 2) * grad, None


PLAIN_SURROGATES: dict[str, type[torch.autograd.Function]] = {"fast_sigmoid": FastSigmoidSpike, "atan": ArcTanSpike}


def _plain_lif_step(current: Tensor, membrane: Tensor) -> tuple[Tensor, Tensor]:
    """snnTorch's Leaky semantics in plain PyTorch: detached subtract reset from U_{t-1}."""
    reset = (membrane > THRESHOLD).to(membrane.dtype).detach()
    membrane = BETA * membrane + current - reset * THRESHOLD
    return FastSigmoidSpike.apply(membrane - THRESHOLD, SLOPE), membrane


class PlainLoop(nn.Module):
    """Any of the bench's networks in plain PyTorch, snn.Leaky's maths written out:

        reset_t = H(U_{t-1} - thr), detached (snnTorch's reset_delay=True)
        U_t     = clamp(beta, 0, 1) U_{t-1} + I_t - reset_t thr          subtract reset
        U_t     = clamp(beta, 0, 1) ((1 - reset_t) U_{t-1}) + I_t         zero reset
        S_t     = H(U_t - thr), with the surrogate's derivative going back

    beta learnt (a parameter, clamped at every step as snnTorch does) or fixed (one number,
    clamped once), one value or one per neuron; one threshold per layer.  fc1 runs once over its whole input
    (the constant current, or all T steps of rate-coded spikes); forward returns every
    layer's spike counts and the output membranes (T, B, N_L) when the loss needs them."""

    def __init__(self, config: NetworkConfig, state: dict[str, Tensor]) -> None:
        super().__init__()
        self.config = config
        sizes = config.layer_sizes
        self.fcs = nn.ModuleList(nn.Linear(sizes[k], sizes[k + 1]) for k in range(config.num_layers))
        self.betas = nn.ParameterList()
        self.surrogates: list[tuple[type[torch.autograd.Function], float]] = []
        for layer, neuron in enumerate(config.neurons, start=1):
            options = neuron.options
            if options.reset_mechanism not in ("subtract", "zero") or not options.reset_delay or neuron.graded_spikes_factor != 1:
                raise ValueError("the plain loop writes out subtract/zero reset with reset_delay=True and graded spikes 1")
            if options.surrogate.name not in PLAIN_SURROGATES or neuron.learn_threshold or isinstance(neuron.threshold, tuple):
                raise ValueError(f"the plain loop has no {options.surrogate.name} surrogate, learnt or per-neuron threshold")
            self.fcs[layer - 1].load_state_dict({name: state[f"fc{layer}.{name}"] for name in ("weight", "bias")})
            self.betas.append(nn.Parameter(state[f"lif{layer}.beta"].clone(), requires_grad=neuron.learn_beta))
            self.surrogates.append((PLAIN_SURROGATES[options.surrogate.name], options.surrogate.scale))
        self.fixed_betas = [
            None if neuron.learn_beta or isinstance(neuron.beta, tuple) else min(max(neuron.beta, 0.0), 1.0)
            for neuron in config.neurons
        ]
        self.thresholds = [float(neuron.threshold) for neuron in config.neurons]
        self.zero_reset = [neuron.options.reset_mechanism == "zero" for neuron in config.neurons]

    def forward(self, inputs: Tensor) -> tuple[list[Tensor | None], Tensor | None]:
        constant = inputs.dim() == 2
        first = self.fcs[0](inputs)
        batch = inputs.shape[-2]
        sizes = self.config.layer_sizes[1:]
        membranes = [first.new_zeros(batch, size) for size in sizes]
        counting = [counted(self.config, layer) for layer in range(self.config.num_layers)]
        counts: list[Tensor | None] = [first.new_zeros(batch, size) if count else None for size, count in zip(sizes, counting)]
        output_membranes = []
        for step in range(self.config.num_steps):
            current = first if constant else first[step]
            for layer in range(self.config.num_layers):
                if layer > 0:
                    current = self.fcs[layer](spikes)
                threshold, fixed_beta = self.thresholds[layer], self.fixed_betas[layer]
                membrane = membranes[layer]
                reset = (membrane - threshold > 0).to(membrane.dtype).detach()
                beta = fixed_beta if fixed_beta is not None else self.betas[layer].clamp(0, 1)
                if self.zero_reset[layer]:
                    membrane = beta * ((1 - reset) * membrane) + current
                else:
                    membrane = beta * membrane + current - reset * threshold
                surrogate, scale = self.surrogates[layer]
                spikes = surrogate.apply(membrane - threshold, scale)
                membranes[layer] = membrane
                if counting[layer]:
                    counts[layer] = counts[layer] + spikes
            if self.config.loss == "membrane":
                output_membranes.append(membranes[-1])
        return counts, torch.stack(output_membranes) if output_membranes else None


def counted(config: NetworkConfig, layer: int) -> bool:
    """Whether a peer counts layer `layer`'s spikes (0-based): the output layer's always (its
    counts are the prediction), a hidden layer's when the activity penalty uses them."""
    return layer == config.num_layers - 1 or bool(config.activity_penalty)


def written_loss(config: NetworkConfig, counts: list[Tensor | None], output_membranes: Tensor | None, labels: Tensor) -> Tensor:
    """The network's loss as a peer's user writes it (`training.network.network_loss`'s maths):
    CE on the output counts, or tutorial 5's sum over steps of CE on the output membranes;
    + the activity penalty times the mean hidden count when the penalty is not 0."""
    if config.loss == "membrane":
        assert output_membranes is not None
        loss = output_membranes.new_zeros(())
        for membrane in output_membranes:
            loss = loss + F.cross_entropy(membrane, labels)
        if not config.activity_penalty:
            return loss
    else:
        loss = F.cross_entropy(counts[-1], labels)
        if not config.activity_penalty:
            return loss
    hidden = [count for count in counts[:-1] if count is not None]
    return loss + config.activity_penalty * (torch.cat(hidden, dim=-1).mean() if hidden else loss.new_zeros(()))


# --------------------------------------------------------------------------- snnTorch


def snntorch_net(config: NetworkConfig, hoisted: bool) -> nn.Module:
    """snnTorch's tutorial class for `config` (`experiments.snntorch_network.SnnTorchStudyNet`:
    fc1, lif1, fc2, lif2, ... as snn.Leaky) with the tutorials' loop as its forward, which
    returns every counted layer's spike counts (`counted`; torch.stack(spk_rec).sum(0), as
    the study writes it) and the output membranes (T, B, N_L) when the loss needs them.
    hoisted: fc1 runs once over its whole input (the constant current, or all T steps of
    rate-coded spikes) instead of at every step."""
    from experiments.snntorch_network import SnnTorchStudyNet

    class SnnTorchNet(SnnTorchStudyNet):
        def forward(self, inputs: Tensor) -> tuple[list[Tensor | None], Tensor | None]:
            constant = inputs.dim() == 2
            fcs = [getattr(self, f"fc{k}") for k in range(1, self.num_layers + 1)]
            lifs = [getattr(self, f"lif{k}") for k in range(1, self.num_layers + 1)]
            mems = [lif.init_leaky() for lif in lifs]
            counting = [counted(config, layer) for layer in range(self.num_layers)]
            spk_rec: list[list[Tensor]] = [[] for _ in lifs]
            mem_rec = []
            first = fcs[0](inputs) if hoisted else None
            for step in range(config.num_steps):
                signal = inputs if constant else inputs[step]
                for layer, (fc, lif) in enumerate(zip(fcs, lifs)):
                    if layer == 0 and first is not None:
                        current = first if constant else first[step]
                    else:
                        current = fc(signal)
                    signal, mems[layer] = lif(current, mems[layer])
                    if counting[layer]:
                        spk_rec[layer].append(signal)
                if config.loss == "membrane":
                    mem_rec.append(mems[-1])
            counts = [torch.stack(spikes).sum(0) if spikes else None for spikes in spk_rec]
            return counts, torch.stack(mem_rec) if mem_rec else None

    return SnnTorchNet(config)


# --------------------------------------------------------------------------- the mnist workload


def _initial_state(config: NetworkConfig) -> dict[str, Tensor]:
    """The weights (and neuron values) every variant starts from: ours at seed 0."""
    from training.network import FeedForwardSNN

    torch.manual_seed(0)
    model = FeedForwardSNN(config, backend="torch")
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


def _load_linears(model: nn.Module, state: dict[str, Tensor]) -> None:
    with torch.no_grad():
        for key, value in state.items():
            layer, name = key.split(".")
            if layer.startswith("fc"):
                getattr(getattr(model, layer), name).copy_(value)


def _study_peer(name: str, config: NetworkConfig, state: dict[str, Tensor]) -> nn.Module:
    """SpikingJelly's or Norse's form of the study's 784-H-10 network (their own LIF neurons
    at the same decay): forward(x) -> ([hidden counts, output counts], None)."""
    if config.num_layers != 2 or config.input_coding != "current":
        raise ValueError(f"{name} is timed on the study's 784-H-10 network with constant current only")
    hidden, steps = config.layer_sizes[1], config.num_steps
    if name == "spikingjelly":
        from spikingjelly.activation_based import functional, neuron, surrogate

        class Jelly(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.fc1 = nn.Linear(784, hidden)
                # tau 10, no input decay, soft reset: U_t = 0.9 U_{t-1} + I_t, then U -= S thr
                options = dict(tau=10.0, decay_input=False, v_reset=None, detach_reset=True, step_mode="m",
                               surrogate_function=surrogate.Sigmoid())
                self.lif1 = neuron.LIFNode(**options)
                self.fc2 = nn.Linear(hidden, 10)
                self.lif2 = neuron.LIFNode(**options)

            def forward(self, x: Tensor) -> tuple[list[Tensor | None], None]:
                functional.reset_net(self)
                cur1 = self.fc1(x).unsqueeze(0).expand(steps, -1, -1)
                spk1 = self.lif1(cur1)
                spk2 = self.lif2(self.fc2(spk1))
                return [spk1.sum(0), spk2.sum(0)], None

        model: nn.Module = Jelly()
    else:
        from norse.torch import LIFBoxCell, LIFBoxParameters

        class NorseNet(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.fc1 = nn.Linear(784, hidden)
                # dt * tau_mem_inv = 0.1: v <- v + 0.1 (0 - v) + I = 0.9 v + I
                parameters = LIFBoxParameters(tau_mem_inv=torch.tensor(100.0), v_th=torch.tensor(THRESHOLD))
                self.lif1 = LIFBoxCell(parameters)
                self.fc2 = nn.Linear(hidden, 10)
                self.lif2 = LIFBoxCell(parameters)

            def forward(self, x: Tensor) -> tuple[list[Tensor | None], None]:
                cur1 = self.fc1(x)
                state1 = state2 = None
                count1, count2 = torch.zeros_like(cur1), torch.zeros(x.shape[0], 10)
                for _ in range(steps):
                    spk1, state1 = self.lif1(cur1, state1)
                    spk2, state2 = self.lif2(self.fc2(spk1), state2)
                    count1, count2 = count1 + spk1, count2 + spk2
                return [count1, count2], None

        model = NorseNet()
    _load_linears(model, state)
    return model


def _peer_input(config: NetworkConfig, snntorch: bool) -> Callable[[Tensor], Tensor]:
    """What a peer's first Linear sees: the images (constant current), or rate-coded spikes
    (T, B, N) drawn from seed 0, one batch after another: snnTorch's `spikegen.rate` through
    `RateStream(0)`, the plain loop's the same operations on a seeded generator."""
    if config.input_coding != "rate":
        return lambda images: images
    if snntorch:
        from experiments.snntorch_network import RateStream

        stream = RateStream(0)
        return lambda images: stream.rate(images, config.num_steps)
    generator = torch.Generator().manual_seed(0)

    def rate_coded(images: Tensor) -> Tensor:
        # spikegen.rate's operations: repeat T times, clamp to [0, 1], Bernoulli
        return torch.bernoulli(images.repeat(config.num_steps, 1, 1).clamp(0, 1), generator=generator)

    return rate_coded


def mnist_runner(name: str, config: NetworkConfig, batches: list[tuple[Tensor, Tensor]], test_images: Tensor) -> Runner:
    """Build variant `name` for the mnist workload on network `config`; `batches` are (images,
    labels) pairs.  Rate-coded inputs are drawn from seed 0 in every variant (ours from a
    seeded generator, snnTorch's spikegen.rate from `RateStream(0)`), the initial loss's batch
    first."""
    if name not in MNIST_VARIANTS:
        raise ValueError(f"unknown mnist variant {name!r}")
    variant = MNIST_VARIANTS[name]
    state = _initial_state(config)
    compute_path: str | None = None
    run: Callable[[Tensor], Any]  # images -> the network's output, as the variant's users run it
    run_eager: Callable[[Tensor], Any]  # the same before torch.compile: the initial loss (module docstring)
    loss_of: Callable[[Any, Tensor], Tensor]  # (output, labels) -> loss

    if variant.ours:
        from training.network import FeedForwardSNN

        ours = FeedForwardSNN(config, backend="torch" if name == "torch" else "numba", fused=name == "numba")
        ours.load_state_dict(state)
        model: nn.Module = ours
        compute_path = ours.compute_path()
        generator = torch.Generator().manual_seed(0) if config.input_coding == "rate" else None

        def run(images: Tensor) -> NetworkOutput:
            return ours(images, generator)

        def loss_of(output: NetworkOutput, labels: Tensor) -> Tensor:
            return ours.loss(output, labels).total

        run_eager = run

    else:
        if name.startswith("snntorch"):
            model = snntorch_net(config, hoisted=name != "snntorch")
            model.load_state_dict(state)
        elif name.startswith("torch_loop"):
            model = PlainLoop(config, state)
        else:
            model = _study_peer(name, config, state)
        network = torch.compile(model) if variant.compiled else model
        encode = _peer_input(config, snntorch=name.startswith("snntorch"))

        def run(images: Tensor) -> Any:
            return network(encode(images))

        def run_eager(images: Tensor) -> Any:
            return model(encode(images))

        def loss_of(output: Any, labels: Tensor) -> Tensor:
            return written_loss(config, *output, labels)

    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)  # its defaults, as the study
    linears = [module for module in model.modules() if isinstance(module, nn.Linear)]
    images0, labels0 = batches[0]
    with torch.no_grad():
        initial_loss = float(loss_of(run_eager(images0), labels0))

    def train_step(index: int) -> None:
        images, labels = batches[index % len(batches)]
        loss = loss_of(run(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            for layer in linears:
                layer.weight.clamp_(-1.0, 1.0)

    @torch.no_grad()
    def infer() -> None:
        for start in range(0, test_images.shape[0], 250):
            run(test_images[start : start + 250])

    return Runner(train_step=train_step, infer=infer, initial_loss=initial_loss, compute_path=compute_path)


def open_neuromorphic_runner(name: str, with_linear: bool, steps: int, batch: int, neurons: int) -> Runner:
    """The Open Neuromorphic benchmark: input randn(T, B, N), [Linear(N, N) ->] LIF, loss out.sum()."""
    torch.manual_seed(0)
    inputs = torch.randn(steps, batch, neurons)
    if not with_linear:
        inputs.requires_grad_(True)  # LIF alone has no parameters: the gradient goes to the input
    linear = nn.Linear(neurons, neurons) if with_linear else None

    def project(x: Tensor) -> Tensor:
        return linear(x) if linear is not None else x

    run: Callable[[], Tensor]
    if name == "snntorch":
        import snntorch as snn
        from snntorch import surrogate

        lif = snn.Leaky(beta=BETA, spike_grad=surrogate.fast_sigmoid(slope=SLOPE))

        def run() -> Tensor:
            current = project(inputs)
            mem = lif.init_leaky()
            spikes = []
            for current_t in current:  # iterating unbinds once: one cheap backward node
                spk, mem = lif(current_t, mem)
                spikes.append(spk)
            return torch.stack(spikes)

    elif name == "torch_loop":

        def run() -> Tensor:
            current = project(inputs)
            mem = torch.zeros(batch, neurons)
            spikes = []
            for current_t in current:
                spk, mem = _plain_lif_step(current_t, mem)
                spikes.append(spk)
            return torch.stack(spikes)

    elif name == "spikingjelly":
        from spikingjelly.activation_based import functional, neuron, surrogate

        node = neuron.LIFNode(tau=10.0, decay_input=False, v_reset=None, detach_reset=True, step_mode="m",
                              surrogate_function=surrogate.Sigmoid())

        def run() -> Tensor:
            functional.reset_net(node)
            return node(project(inputs))

    elif name == "norse":
        from norse.torch import LIFBoxCell, LIFBoxParameters

        cell = LIFBoxCell(LIFBoxParameters(tau_mem_inv=torch.tensor(100.0), v_th=torch.tensor(THRESHOLD)))

        def run() -> Tensor:
            current = project(inputs)
            state = None
            spikes = []
            for current_t in current:
                spk, state = cell(current_t, state)
                spikes.append(spk)
            return torch.stack(spikes)

    elif name == "numba":
        from lif_core import FastSigmoid, LeakyOptions, leaky_sequence

        # snn.Leaky's defaults but the surrogate: leaky_sequence takes the specialised kernels
        options = LeakyOptions(surrogate=FastSigmoid(SLOPE))

        def run() -> Tensor:
            return leaky_sequence(project(inputs), BETA, THRESHOLD, options, backend="numba", record_membranes=False).spikes

    else:
        raise ValueError(f"unknown open_neuromorphic variant {name!r}")

    def backward(output: Tensor) -> None:
        output.sum().backward()

    return Runner(forward=run, backward=backward)
