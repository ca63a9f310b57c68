"""The implementations `snn-mnist bench` times, each written as its users write it.

Two workloads:

  * "mnist": the study's 784-H-10 LIF network on real MNIST batches; one training
    step is forward + loss (CE on output spike counts + activity penalty) +
    backward + `torch.optim.Adam` (its defaults, as the study uses it) + weight clip;
    inference is a forward pass over 1,000 test images in batches of 250.
  * "open_neuromorphic": the Open Neuromorphic library benchmark (Lenz et al. 2023):
    input randn(T=500, B=16, N=4096), one LIF layer with or without its Linear(N, N)
    in front, loss out.sum(); forward and backward timed separately.

Each variant is a function returning a `Runner` and is run by `benchmarks.worker`
in a process of its own, so no library's settings or thread pools reach another.
The snnTorch-semantics variants (snntorch, snntorch_hoisted, torch_loop, ours) start
from the same weights and must give the same initial loss; SpikingJelly and Norse
have LIF neurons of their own (time constants set to the same decay, 0.9 per step),
so they run the same amount of work, not the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

BETA = 0.9
THRESHOLD = 1.0
ALPHA_REG = 1e-4
LEARNING_RATE = 1e-3
SLOPE = 25.0

# variant -> (what it is, the module it needs, is it ours)
MNIST_VARIANTS: dict[str, tuple[str, str | None, bool]] = {
    "snntorch": ("snnTorch 1.0, the study's loop (fc1(x) at every step)", "snntorch", False),
    "snntorch_hoisted": ("snnTorch 1.0, fc1(x) computed once", "snntorch", False),
    "torch_loop": ("plain PyTorch loop, autograd through T steps", None, False),
    "spikingjelly": ("SpikingJelly LIFNode, multi-step mode", "spikingjelly", False),
    "norse": ("Norse LIFBoxCell loop, fc1(x) computed once", "norse", False),
    "torch": ("ours, torch backend (exact path)", None, True),
    "numba_exact": ("ours, numba backend, exact path", None, True),
    "numba": ("ours, numba backend, fused path (the default)", None, True),
}
OPEN_NEUROMORPHIC_VARIANTS: dict[str, tuple[str, str | None, bool]] = {
    "snntorch": ("snnTorch 1.0 snn.Leaky loop", "snntorch", False),
    "torch_loop": ("plain PyTorch loop", None, False),
    "spikingjelly": ("SpikingJelly LIFNode, multi-step mode", "spikingjelly", False),
    "norse": ("Norse LIFBoxCell loop", "norse", False),
    "numba": ("ours, leaky_sequence, numba backend", None, True),
}


@dataclass(frozen=True)
class MnistSize:
    batch: int = 128
    hidden: int = 512
    steps: int = 25


@dataclass
class Runner:
    """What a worker times: `train_step` (mnist) or `forward` + `backward` (open_neuromorphic)."""

    train_step: Callable[[int], None] | None = None
    infer: Callable[[], None] | None = None
    initial_loss: float | None = None
    forward: Callable[[], Any] | None = None
    backward: Callable[[Any], None] | None = None


class FastSigmoidSpike(torch.autograd.Function):
    """H(x) forward, 1 / (25|x| + 1)^2 backward: the surrogate a PyTorch user writes."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad / (SLOPE * x.abs() + 1.0) ** 2


def _plain_lif_step(current: Tensor, membrane: Tensor) -> tuple[Tensor, Tensor]:
    """snnTorch's Leaky semantics in plain PyTorch: detached subtract reset from U_{t-1}."""
    reset = (membrane > THRESHOLD).to(membrane.dtype).detach()
    membrane = BETA * membrane + current - reset * THRESHOLD
    return FastSigmoidSpike.apply(membrane - THRESHOLD), membrane


def _study_loss(output_counts: Tensor, hidden_counts: Tensor, labels: Tensor) -> Tensor:
    return nn.functional.cross_entropy(output_counts, labels) + ALPHA_REG * hidden_counts.mean()


def _initial_state(size: MnistSize) -> dict[str, Tensor]:
    """The weights every variant starts from: ours at seed 0 (fc1 and fc2 only)."""
    torch.manual_seed(0)
    layers = nn.ModuleDict({"fc1": nn.Linear(784, size.hidden), "fc2": nn.Linear(size.hidden, 10)})
    return {key: value.detach().clone() for key, value in layers.state_dict().items()}


def _load_linears(model: nn.Module, state: dict[str, Tensor]) -> None:
    with torch.no_grad():
        for key, value in state.items():
            layer, name = key.split(".")
            getattr(getattr(model, layer), name).copy_(value)


def mnist_runner(name: str, size: MnistSize, batches: list[tuple[Tensor, Tensor]], test_images: Tensor) -> Runner:
    """Build variant `name` for the mnist workload; `batches` are (images, labels) pairs."""
    state = _initial_state(size)
    steps = size.steps
    forward: Callable[[Tensor], tuple[Tensor, Tensor]]  # images -> (output counts, hidden counts)

    if name in ("snntorch", "snntorch_hoisted"):
        import snntorch as snn
        from snntorch import surrogate

        class Net(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.fc1 = nn.Linear(784, size.hidden)
                self.lif1 = snn.Leaky(beta=BETA, spike_grad=surrogate.fast_sigmoid(slope=SLOPE))
                self.fc2 = nn.Linear(size.hidden, 10)
                self.lif2 = snn.Leaky(beta=BETA, spike_grad=surrogate.fast_sigmoid(slope=SLOPE))

            def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
                mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
                spk1_rec, spk2_rec = [], []
                cur1 = self.fc1(x)
                for _ in range(steps):
                    if name == "snntorch":
                        cur1 = self.fc1(x)  # as the study writes it
                    spk1, mem1 = self.lif1(cur1, mem1)
                    spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
                    spk1_rec.append(spk1)
                    spk2_rec.append(spk2)
                return torch.stack(spk2_rec).sum(0), torch.stack(spk1_rec).sum(0)

        model: nn.Module = Net()
        _load_linears(model, state)
        forward = model
    elif name == "torch_loop":

        class Plain(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.fc1 = nn.Linear(784, size.hidden)
                self.fc2 = nn.Linear(size.hidden, 10)

            def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
                cur1 = self.fc1(x)
                mem1 = torch.zeros_like(cur1)
                mem2 = torch.zeros(x.shape[0], 10)
                count1, count2 = torch.zeros_like(cur1), torch.zeros(x.shape[0], 10)
                for _ in range(steps):
                    spk1, mem1 = _plain_lif_step(cur1, mem1)
                    spk2, mem2 = _plain_lif_step(self.fc2(spk1), mem2)
                    count1, count2 = count1 + spk1, count2 + spk2
                return count2, count1

        model = Plain()
        _load_linears(model, state)
        forward = model
    elif name == "spikingjelly":
        from spikingjelly.activation_based import functional, neuron, surrogate

        class Jelly(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.fc1 = nn.Linear(784, size.hidden)
                # tau 10, no input decay, soft reset: U_t = 0.9 U_{t-1} + I_t, then U -= S thr
                options = dict(tau=10.0, decay_input=False, v_reset=None, detach_reset=True, step_mode="m",
                               surrogate_function=surrogate.Sigmoid())
                self.lif1 = neuron.LIFNode(**options)
                self.fc2 = nn.Linear(size.hidden, 10)
                self.lif2 = neuron.LIFNode(**options)

            def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
                functional.reset_net(self)
                cur1 = self.fc1(x).unsqueeze(0).expand(steps, -1, -1)
                spk1 = self.lif1(cur1)
                spk2 = self.lif2(self.fc2(spk1))
                return spk2.sum(0), spk1.sum(0)

        model = Jelly()
        _load_linears(model, state)
        forward = model
    elif name == "norse":
        from norse.torch import LIFBoxCell, LIFBoxParameters

        class NorseNet(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.fc1 = nn.Linear(784, size.hidden)
                # dt * tau_mem_inv = 0.1: v <- v + 0.1 (0 - v) + I = 0.9 v + I
                parameters = LIFBoxParameters(tau_mem_inv=torch.tensor(100.0), v_th=torch.tensor(THRESHOLD))
                self.lif1 = LIFBoxCell(parameters)
                self.fc2 = nn.Linear(size.hidden, 10)
                self.lif2 = LIFBoxCell(parameters)

            def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
                cur1 = self.fc1(x)
                state1 = state2 = None
                count1, count2 = torch.zeros_like(cur1), torch.zeros(x.shape[0], 10)
                for _ in range(steps):
                    spk1, state1 = self.lif1(cur1, state1)
                    spk2, state2 = self.lif2(self.fc2(spk1), state2)
                    count1, count2 = count1 + spk1, count2 + spk2
                return count2, count1

        model = NorseNet()
        _load_linears(model, state)
        forward = model
    elif name in ("torch", "numba", "numba_exact"):
        from training.network import FeedForwardSNN, study_network_config
        from training.presets import network_with

        backend = "torch" if name == "torch" else "numba"
        config = network_with(study_network_config(), {"hidden_size": size.hidden, "num_steps": steps})
        ours = FeedForwardSNN(config, backend=backend, fused=name == "numba")
        _load_linears(ours, state)
        model = ours

        def forward(x: Tensor) -> tuple[Tensor, Tensor]:
            output = ours(x)
            return output.output_counts, output.hidden_counts

    else:
        raise ValueError(f"unknown mnist variant {name!r}")

    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)  # its defaults, as the study
    linears = [module for module in model.modules() if isinstance(module, nn.Linear)]
    images0, labels0 = batches[0]
    with torch.no_grad():
        initial_loss = float(_study_loss(*forward(images0), labels0))

    def train_step(index: int) -> None:
        images, labels = batches[index % len(batches)]
        output_counts, hidden_counts = forward(images)
        loss = _study_loss(output_counts, hidden_counts, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            for layer in linears:
                layer.weight.clamp_(-1.0, 1.0)

    @torch.no_grad()
    def infer() -> None:
        for start in range(0, test_images.shape[0], 250):
            forward(test_images[start : start + 250])

    return Runner(train_step=train_step, infer=infer, initial_loss=initial_loss)


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
