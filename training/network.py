"""The network: any number of Linear -> Leaky layers, the study's 784-512-10 among them.

With L layers, W_l, b_l the l-th Linear and Leaky_l the l-th neuron layer (its own options,
beta, threshold and graded factor; `lif_core.modules.Leaky`):

    x            = the image flattened to (B, N_0)
    S^0_t        = x                                 input_coding="current": the static image
                                                     as a constant current at every step (the study)
    S^0_t        ~ Bernoulli(clamp(x, 0, 1))         input_coding="rate": snntorch.spikegen.rate,
                                                     drawn from a seeded torch.Generator
    I^l_t        = W_l S^{l-1}_t + b_l               l = 1..L
    S^l_t, U^l_t = Leaky_l(I^l)_t                    spikes g*S and membranes U' as snn.Leaky returns them
    C^l          = sum_t S^l_t                       spike counts, (B, N_l)
    prediction   = argmax_k C^L[k]                   ties go to the lowest class, as torch.argmax

and the loss, a task term plus an activity penalty on the hidden layers:

    loss="count":     L = CE(C^L, y)          + activity_penalty * mean_{b, hidden n} C^l[b, n]   (the study)
    loss="membrane":  L = sum_t CE(U^L_t, y)  + activity_penalty * (the same)     (snnTorch tutorial 5)

With "current" coding W_1 x + b_1 is computed once: snnTorch recomputes fc1(x) at every
step and gets the same tensor each time, so this is exact.  On the exact path time-varying
inputs go through each Linear one step at a time, as in snnTorch (see `per_step_linear`).

Modules are named fc1, lif1, fc2, lif2, ... and built in that order, as the study's class
and snnTorch's tutorials name and build them, so its state_dict loads into such a snnTorch
class with strict=True and one torch seed gives both the same initial weights;
`training.snntorch_checkpoint` converts to and from nn.Sequential's 0, 1, 2, ... naming.

Three compute paths, the same function (`compute_path` says which one a model runs; `fused=False`
asks for the exact one):
  * exact: layer by layer, each neuron on `leaky_sequence` (the specialised kernels of
    snn.Leaky's defaults where a layer has them): bit-identical to snnTorch;
  * fast (every other network, CPU): the exact path's neurons, with each Linear fed by
    spikes computed by adding the weight columns of the inputs that spiked
    (`lif_core.spike_linear`; one BLAS product over all T*B rows for narrow layers): the
    same sums in another order;
  * fused (two layers, constant current, both neurons with snn.Leaky's default options and
    fixed scalar values, hidden membranes not recorded; CPU): lif1 -> fc2 -> lif2 as one
    Numba kernel per direction (`lif_core.fused`), the same sums in another order, several
    times faster; the output membranes come with it, so either loss runs on it.  This is how
    the study's network and tutorial 5's train by default.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lif_core.backend import Backend, check_backend, choose_backend
from lif_core.fused import fused_supported, lif_linear_lif
from lif_core.modules import Leaky
from lif_core.spike_linear import spike_linear, spike_linear_supported
from lif_core.neuron import LeakyOptions, LIFParameters
from lif_core.surrogate import FastSigmoid, surrogate_from_json, surrogate_to_json
from training.data import INPUT_SIZE, NUM_CLASSES

InputCoding = Literal["current", "rate"]
LossKind = Literal["count", "membrane"]
INPUT_CODINGS: tuple[InputCoding, ...] = ("current", "rate")
LOSSES: tuple[LossKind, ...] = ("count", "membrane")
Values = float | tuple[float, ...]
# the smallest Linear fed by spikes that the fast path computes by adding weight columns
# (`lif_core.spike_linear`): at least this many outputs and weights; below either, one
# BLAS product over all T*B rows is faster (the kernels' fixed costs outweigh the zeros)
SPIKE_LINEAR_MIN_OUTPUTS = 64
SPIKE_LINEAR_MIN_WEIGHTS = 100_000


# --------------------------------------------------------------------------- configuration


def _as_values(value: Any, name: str) -> Values:
    """A scalar (float) or per-neuron values (tuple of floats), all finite."""
    if isinstance(value, Tensor):
        value = value.tolist()
    numbers = value if isinstance(value, (list, tuple)) else [value]
    for number in numbers:
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
            raise ValueError(f"{name} must be a finite number or a list of finite numbers, got {value!r}")
    if isinstance(value, (list, tuple)):
        if not numbers:
            raise ValueError(f"{name} must not be an empty list")
        return tuple(float(number) for number in numbers)
    return float(value)


def _check_bool(value: Any, name: str) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")


@dataclass(frozen=True)
class NeuronConfig:
    """One Leaky layer: beta and threshold (a scalar, or one value per neuron), the graded
    spike factor g, which of the three are learnt, and the maths-changing options.  Defaults
    are snn.Leaky's (beta, which has none there, is tutorial 5's 0.95).  beta is clamped to
    [0, 1] in the forward pass, as snnTorch does; any finite value is accepted."""

    beta: Values = 0.95
    threshold: Values = 1.0
    graded_spikes_factor: float = 1.0
    learn_beta: bool = False
    learn_threshold: bool = False
    learn_graded_spikes_factor: bool = False
    options: LeakyOptions = field(default_factory=LeakyOptions)

    def __post_init__(self) -> None:
        object.__setattr__(self, "beta", _as_values(self.beta, "beta"))
        object.__setattr__(self, "threshold", _as_values(self.threshold, "threshold"))
        graded = _as_values(self.graded_spikes_factor, "graded_spikes_factor")
        if isinstance(graded, tuple) or graded == 0:
            raise ValueError(f"graded_spikes_factor must be one finite non-zero number, got {self.graded_spikes_factor!r}")
        object.__setattr__(self, "graded_spikes_factor", graded)
        for name in ("learn_beta", "learn_threshold", "learn_graded_spikes_factor"):
            _check_bool(getattr(self, name), name)
        if not isinstance(self.options, LeakyOptions):
            raise ValueError(f"options must be a lif_core.neuron.LeakyOptions, got {self.options!r}")

    def check_size(self, neurons: int, layer: int) -> None:
        """Per-neuron beta/threshold must have 1 or `neurons` values."""
        for name in ("beta", "threshold"):
            value = getattr(self, name)
            if isinstance(value, tuple) and len(value) not in (1, neurons):
                raise ValueError(
                    f"layer {layer}: {name} has {len(value)} values, but the layer has {neurons} neurons "
                    f"(give one number, or {neurons} values)"
                )

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict; per-neuron values as lists."""
        return {
            "beta": list(self.beta) if isinstance(self.beta, tuple) else self.beta,
            "threshold": list(self.threshold) if isinstance(self.threshold, tuple) else self.threshold,
            "graded_spikes_factor": self.graded_spikes_factor,
            "learn_beta": self.learn_beta,
            "learn_threshold": self.learn_threshold,
            "learn_graded_spikes_factor": self.learn_graded_spikes_factor,
            "reset_mechanism": self.options.reset_mechanism,
            "reset_delay": self.options.reset_delay,
            "surrogate": surrogate_to_json(self.options.surrogate),
        }

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> NeuronConfig:
        """Inverse of `to_json`; a missing key takes its default (atan(2) for the surrogate)."""
        values = dict(payload)
        options = LeakyOptions(
            values.pop("reset_mechanism", "subtract"),
            values.pop("reset_delay", True),
            surrogate_from_json(values.pop("surrogate", {"name": "atan"})),
        )
        return cls(options=options, **values)

    def describe(self) -> str:
        """'beta 0.9, threshold 1, subtract reset, ... fast_sigmoid(25)'."""
        learnt = [name for name in ("beta", "threshold", "graded_spikes_factor") if getattr(self, f"learn_{name}")]
        surrogate = self.options.surrogate
        shape = "" if surrogate.name in ("heaviside", "disabled") else f"({surrogate.scale:g})"
        return (
            f"beta {_describe_values(self.beta)}{_clamp_note(self.beta)}, threshold {_describe_values(self.threshold)}, "
            f"{self.options.reset_mechanism} reset, reset_delay {self.options.reset_delay}, "
            f"graded {self.graded_spikes_factor:g}, {surrogate.name}{shape}"
            + (f", learnt {'+'.join(learnt)}" if learnt else "")
        )


def _clamp_note(beta: Values) -> str:
    """What the neurons run where a stored beta lies outside [0, 1] (they clamp it), else ''."""
    values = beta if isinstance(beta, tuple) else (beta,)
    outside = [value for value in values if not 0.0 <= value <= 1.0]
    if not outside:
        return ""
    if len(values) == 1:
        return f" (runs as {min(max(values[0], 0.0), 1.0):g}: clamped to [0, 1])"
    return f" ({len(outside)} outside [0, 1], run clamped to it)"


def _describe_values(value: Values) -> str:
    if isinstance(value, tuple):
        return f"per-neuron ({len(value)})" if len(value) > 1 else f"{value[0]:g} (shape (1,))"
    return f"{value:g}"


def _neurons_per_layer(neurons: Any, layers: int) -> tuple[NeuronConfig, ...]:
    """One NeuronConfig per layer: () -> defaults, one -> the same for every layer."""
    if isinstance(neurons, NeuronConfig):
        neurons = (neurons,)
    neurons = tuple(neurons)
    if not all(isinstance(neuron, NeuronConfig) for neuron in neurons):
        raise ValueError("neurons must be NeuronConfig objects")
    if len(neurons) == 0:
        return (NeuronConfig(),) * layers
    if len(neurons) == 1:
        return neurons * layers
    if len(neurons) != layers:
        raise ValueError(f"{len(neurons)} neuron configs for {layers} layers: give 1 or {layers}")
    return neurons


@dataclass(frozen=True)
class NetworkConfig:
    """A feed-forward SNN: layer sizes (N_0 inputs, ..., N_L outputs), one NeuronConfig per
    Leaky layer (or one for all), time steps, input coding, loss and the activity penalty's
    weight (see the module docstring).  Defaults are snnTorch tutorial 5's network;
    `study_network_config()` is the study's."""

    layer_sizes: tuple[int, ...] = (INPUT_SIZE, 1000, NUM_CLASSES)
    neurons: tuple[NeuronConfig, ...] = ()
    num_steps: int = 25
    input_coding: InputCoding = "current"
    loss: LossKind = "count"
    activity_penalty: float = 0.0

    def __post_init__(self) -> None:
        sizes = tuple(self.layer_sizes)
        if len(sizes) < 2 or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in sizes):
            raise ValueError(
                f"layer sizes must be two or more positive integers (inputs, ..., outputs), got {self.layer_sizes!r}"
            )
        object.__setattr__(self, "layer_sizes", sizes)
        neurons = _neurons_per_layer(self.neurons, len(sizes) - 1)
        for layer, (neuron, size) in enumerate(zip(neurons, sizes[1:]), start=1):
            neuron.check_size(size, layer)
        object.__setattr__(self, "neurons", neurons)
        steps = self.num_steps
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise ValueError(f"num_steps must be a positive integer, got {steps!r}")
        if self.input_coding not in INPUT_CODINGS:
            raise ValueError(f"input coding {self.input_coding!r}: choose one of {', '.join(INPUT_CODINGS)}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss {self.loss!r}: choose one of {', '.join(LOSSES)}")
        penalty = self.activity_penalty
        if isinstance(penalty, bool) or not isinstance(penalty, (int, float)) or not (math.isfinite(penalty) and penalty >= 0):
            raise ValueError(f"activity_penalty must be a non-negative finite number, got {penalty!r}")
        object.__setattr__(self, "activity_penalty", float(penalty))

    @property
    def num_layers(self) -> int:
        """L, the number of Linear -> Leaky layers."""
        return len(self.layer_sizes) - 1

    def describe(self) -> str:
        """One line: sizes, steps, input, loss, then each Leaky layer's settings (once when all agree)."""
        sizes = "-".join(str(size) for size in self.layer_sizes)
        penalty = f" + {self.activity_penalty:g} x activity" if self.activity_penalty else ""
        if len(set(self.neurons)) == 1:
            layers = f"every layer: {self.neurons[0].describe()}"
        else:
            layers = "; ".join(f"lif{layer}: {neuron.describe()}" for layer, neuron in enumerate(self.neurons, start=1))
        return f"{sizes}, {self.num_steps} steps, {self.input_coding} input, {self.loss} loss{penalty}; {layers}"

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (json.dumps it); `from_json` reads it back to an equal config."""
        return {
            "layer_sizes": list(self.layer_sizes),
            "neurons": [neuron.to_json() for neuron in self.neurons],
            "num_steps": self.num_steps,
            "input_coding": self.input_coding,
            "loss": self.loss,
            "activity_penalty": self.activity_penalty,
        }

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> NetworkConfig:
        """Inverse of `to_json`; unknown keys raise TypeError naming them."""
        values = dict(payload)
        neurons = tuple(NeuronConfig.from_json(neuron) for neuron in values.pop("neurons", ()))
        return cls(neurons=neurons, **{**values, "layer_sizes": tuple(values.get("layer_sizes", ()))})


def study_network_config() -> NetworkConfig:
    """The study's network: 784-512-10, beta 0.9, threshold 1, snn.Leaky's subtract reset, the
    fast sigmoid (slope 25), 25 steps of constant current, the count loss with an activity
    penalty of 1e-4."""
    neuron = NeuronConfig(beta=0.9, threshold=1.0, options=LeakyOptions(surrogate=FastSigmoid(25.0)))
    return NetworkConfig(
        layer_sizes=(INPUT_SIZE, 512, NUM_CLASSES),
        neurons=(neuron,),
        num_steps=25,
        input_coding="current",
        loss="count",
        activity_penalty=1e-4,
    )


# --------------------------------------------------------------------------- input coding


def rate_code(images: Tensor, num_steps: int, generator: torch.Generator | None) -> Tensor:
    """snntorch.spikegen.rate(images, num_steps) (gain 1, offset 0), drawn from `generator`:

        X = images repeated T times along a new first dimension, (T, B, N)
        S_t ~ Bernoulli(clamp(X_t, 0, 1))

    The same operations as snnTorch (`repeat`, `clamp`, `torch.bernoulli`), so a generator
    seeded with s gives the spikes snnTorch draws after `torch.manual_seed(s)` on the CPU.
    `generator` must be on the images' device."""
    if not isinstance(generator, torch.Generator):
        raise ValueError(
            'input_coding="rate" draws spikes from a seeded generator: pass generator=torch.Generator().manual_seed(s)'
        )
    repeated = images.repeat((num_steps,) + (1,) * images.dim())
    # p = clamp(x, 0, 1)
    probabilities = torch.clamp(repeated, min=0, max=1)
    # S_t ~ Bernoulli(p)
    return torch.bernoulli(probabilities, generator=generator)


class PerStepLinear(torch.autograd.Function):
    """I_t = W S_t + b for each step t of a (T, B, K) signal.

    Forward: one (B, K) product per step, as snnTorch makes it.  One product over all T*B
    rows sums in another order on some shapes (BLAS blocks a T*B-row product differently)
    and breaks bit-identity with snnTorch by an ulp: on this project's CPU, Linear(64, 32)
    and Linear(784, 32) on (20, 6, K) differ.  Backward: one product per gradient over all
    T*B rows, the formulas torch's own addmm backward uses for a (T*B, K) input:

        dL/dS = G W,    dL/dW = G^T S,    dL/db = sum_rows G,    G = dL/dI as (T*B, N)

    instead of T products each, which autograd through T separate steps would run."""

    @staticmethod
    def forward(ctx, signal: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(signal, weight)
        ctx.has_bias = bias is not None
        return torch.stack([F.linear(signal_t, weight, bias) for signal_t in signal])

    @staticmethod
    def backward(ctx, grad_current: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:  # type: ignore[override]
        signal, weight = ctx.saved_tensors
        rows = grad_current.reshape(-1, grad_current.shape[-1])
        needs = ctx.needs_input_grad
        grad_signal = rows.mm(weight).view(signal.shape) if needs[0] else None
        grad_weight = rows.t().mm(signal.reshape(-1, signal.shape[-1])) if needs[1] else None
        grad_bias = rows.sum(0) if ctx.has_bias and needs[2] else None
        return grad_signal, grad_weight, grad_bias


def per_step_linear(linear: nn.Linear, signal: Tensor) -> Tensor:
    """I_t = W S_t + b for every step of a (T, B, K) signal (`PerStepLinear`)."""
    return PerStepLinear.apply(signal, linear.weight, linear.bias)


# --------------------------------------------------------------------------- output and loss


class NetworkOutput:
    """Per layer l = 1..L: spikes g*S^l_t (T, B, N_l), counts C^l (B, N_l) and membranes
    U^l_t (T, B, N_l), the last None unless recorded.

    A layer's spikes may be given as a function that computes them: the fused path keeps only
    the hidden counts, and `leaky_sequence` on the same current gives the same spikes, bit for
    bit (with a gradient, if the forward pass had one), when they are first read."""

    def __init__(
        self,
        spikes: Sequence[Tensor | Callable[[], Tensor]],
        membranes: Sequence[Tensor | None],
        counts: Sequence[Tensor] | None = None,
    ) -> None:
        self._spikes = list(spikes)
        self.membranes = tuple(membranes)
        if counts is None:
            counts = [self.layer_spikes(layer).sum(dim=0) for layer in range(len(self._spikes))]
        self.counts = tuple(counts)

    def layer_spikes(self, layer: int) -> Tensor:
        """Spikes of layer `layer` (0-based: 0 is lif1)."""
        spikes = self._spikes[layer]
        if not isinstance(spikes, Tensor):
            spikes = self._spikes[layer] = spikes()
        return spikes

    @property
    def spikes(self) -> tuple[Tensor, ...]:
        return tuple(self.layer_spikes(layer) for layer in range(len(self._spikes)))

    @property
    def output_spikes(self) -> Tensor:
        """g*S^L_t, (T, B, N_L): snnTorch's spk_rec of the last layer."""
        return self.layer_spikes(len(self._spikes) - 1)

    @property
    def output_membranes(self) -> Tensor | None:
        """U^L_t, (T, B, N_L): snnTorch's mem_rec of the last layer (None unless recorded)."""
        return self.membranes[-1]

    @property
    def output_counts(self) -> Tensor:
        """C^L = sum_t S^L_t, (B, N_L)."""
        return self.counts[-1]

    @property
    def hidden_counts(self) -> Tensor:
        """sum_t S^l_t of every hidden layer, side by side: (B, N_1 + ... + N_{L-1})."""
        return _side_by_side(self.counts[:-1], self.counts[-1])

    @property
    def hidden_spikes(self) -> Tensor:
        """S^l_t of every hidden layer, side by side: (T, B, N_1 + ... + N_{L-1})."""
        hidden = [self.layer_spikes(layer) for layer in range(len(self._spikes) - 1)]
        return _side_by_side(hidden, self.output_spikes)

    @property
    def hidden_membranes(self) -> Tensor | None:
        """U^l_t of every hidden layer, side by side (None unless recorded)."""
        hidden = self.membranes[:-1]
        if not hidden or any(membrane is None for membrane in hidden):
            return None
        return _side_by_side(hidden, hidden[0])  # type: ignore[arg-type]


def _side_by_side(tensors: Sequence[Tensor], like: Tensor) -> Tensor:
    """The tensors concatenated along the neuron (last) dimension; one is returned as it is,
    none as an empty tensor shaped like `like` with no neurons."""
    if not tensors:
        return like.new_zeros((*like.shape[:-1], 0))
    return tensors[0] if len(tensors) == 1 else torch.cat(list(tensors), dim=-1)


class LossTerms(NamedTuple):
    """The loss minimised, its task term (cross-entropy), and the mean hidden spike count."""

    total: Tensor
    cross_entropy: Tensor
    activity: Tensor


def spike_count_loss(output_counts: Tensor, hidden_counts: Tensor, labels: Tensor, activity_penalty: float) -> LossTerms:
    """The study's loss: L = CE(C^L, y) + activity_penalty * mean_{b, n} C^hidden[b, n]."""
    # CE on spike counts used as logits
    cross_entropy = F.cross_entropy(output_counts, labels)
    # mean spikes per hidden neuron per image
    activity = hidden_counts.mean() if hidden_counts.numel() else output_counts.new_zeros(())
    return LossTerms(cross_entropy + activity_penalty * activity, cross_entropy, activity)


def network_loss(output: NetworkOutput, labels: Tensor, config: NetworkConfig) -> LossTerms:
    """loss="count":    L = CE(C^L, y) + activity_penalty * mean hidden count (`spike_count_loss`)
    loss="membrane": L = sum_t CE(U^L_t, y), summed step by step as tutorial 5 does,
                     + activity_penalty * mean hidden count when the penalty is not 0."""
    if config.loss == "count":
        return spike_count_loss(output.output_counts, output.hidden_counts, labels, config.activity_penalty)
    membranes = output.output_membranes
    if membranes is None:
        raise ValueError('loss="membrane" needs the output membranes: run the model with record_membranes=True')
    # L = 0 + CE(U_0, y) + CE(U_1, y) + ...
    cross_entropy = membranes.new_zeros(())
    for membrane in membranes:
        cross_entropy = cross_entropy + F.cross_entropy(membrane, labels)
    hidden = output.hidden_counts
    activity = hidden.mean() if hidden.numel() else cross_entropy.new_zeros(())
    total = cross_entropy + config.activity_penalty * activity if config.activity_penalty else cross_entropy
    return LossTerms(total, cross_entropy, activity)


# --------------------------------------------------------------------------- the network


class FeedForwardSNN(nn.Module):
    """fc1 -> lif1 -> fc2 -> lif2 -> ...: nn.Linear and `lif_core.modules.Leaky` layers.

    backend: where the Leaky layers run, "auto" (the Numba kernels on the CPU, the torch loops
    elsewhere), "numba" or "torch"; fused: take the fast kernels (the fused kernel, or the
    spike-driven Linear) where they apply.  Neither changes the maths (see the module docstring), so neither is part of the config."""

    def __init__(self, config: NetworkConfig | None = None, backend: Backend = "auto", fused: bool = True) -> None:
        super().__init__()
        self.config = config if config is not None else NetworkConfig()
        self.backend: Backend = check_backend(backend)
        _check_bool(fused, "fused")
        self.fused = fused
        sizes = self.config.layer_sizes
        for layer, neuron in enumerate(self.config.neurons, start=1):
            self.add_module(f"fc{layer}", nn.Linear(sizes[layer - 1], sizes[layer]))
            self.add_module(
                f"lif{layer}",
                Leaky(
                    neuron.beta,
                    neuron.threshold,
                    neuron.options.surrogate,
                    reset_mechanism=neuron.options.reset_mechanism,
                    reset_delay=neuron.options.reset_delay,
                    graded_spikes_factor=neuron.graded_spikes_factor,
                    learn_beta=neuron.learn_beta,
                    learn_threshold=neuron.learn_threshold,
                    learn_graded_spikes_factor=neuron.learn_graded_spikes_factor,
                    backend=self.backend,
                ),
            )

    def use_backend(self, backend: Backend) -> FeedForwardSNN:
        """Run every Leaky layer on `backend` from now on; returns the model."""
        self.backend = check_backend(backend)
        for neuron in self.neuron_layers:
            neuron.backend = self.backend
        return self

    @property
    def num_steps(self) -> int:
        """T, the number of time steps."""
        return self.config.num_steps

    @property
    def linears(self) -> list[nn.Linear]:
        """fc1, fc2, ..."""
        return [getattr(self, f"fc{layer}") for layer in range(1, self.config.num_layers + 1)]

    @property
    def neuron_layers(self) -> list[Leaky]:
        """lif1, lif2, ..."""
        return [getattr(self, f"lif{layer}") for layer in range(1, self.config.num_layers + 1)]

    def _fused_neurons(self, device: torch.device) -> tuple[LIFParameters, LIFParameters] | None:
        """Both layers' LIFParameters when the fused kernel computes a forward pass on `device`
        (it keeps the output layer's membranes, not the hidden layer's)."""
        config = self.config
        if not self.fused or config.num_layers != 2 or config.input_coding != "current":
            return None
        fc2 = self.linears[1]
        probe = torch.empty((1, fc2.in_features), dtype=fc2.weight.dtype, device=device)
        if choose_backend(self.backend, probe) != "numba" or fused_supported(probe, fc2.weight) is not None:
            return None
        neurons = [layer.default_parameters(fc2.weight.dtype) for layer in self.neuron_layers]
        if neurons[0] is None or neurons[1] is None:
            return None
        return neurons[0], neurons[1]

    def compute_path(self, device: torch.device | None = None) -> str:
        """The path a forward pass without recorded membranes takes on `device` (the weights'
        by default), with autograd as it is now:

            "fused"  the fused LIF -> Linear -> LIF kernel (`lif_core.fused`)
            "fast"   the Linear layers fed by spikes on the fast kernels (`_time_varying_linear`)
            "exact"  snnTorch's bits throughout"""
        device = device if device is not None else self.linears[0].weight.device
        if self._fused_neurons(device) is not None:
            return "fused"
        probe = torch.empty((1, 1), dtype=self.linears[0].weight.dtype, device=device)
        time_varying = self.config.input_coding == "rate" or self.config.num_layers > 1
        return "fast" if time_varying and self._fast_kernels(probe) else "exact"

    def encode(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """S^0: the flattened images (B, N_0) for "current", rate-coded spikes (T, B, N_0) for "rate"."""
        x = images.reshape(images.shape[0], -1)
        if x.shape[1] != self.config.layer_sizes[0]:
            raise ValueError(
                f"images of shape {tuple(images.shape)} give {x.shape[1]} inputs, "
                f"the network takes {self.config.layer_sizes[0]}"
            )
        if self.config.input_coding == "rate":
            return rate_code(x, self.num_steps, generator)
        return x

    def forward(
        self, images: Tensor, generator: torch.Generator | None = None, record_membranes: bool = False
    ) -> NetworkOutput:
        """images (B, ...) flattened to (B, N_0); `generator` draws the rate-coded input.
        Membranes are recorded for every layer with record_membranes=True, which also runs the
        exact path (snnTorch's bits, to compare with it), and for the output layer whenever
        the loss is "membrane"."""
        signal = self.encode(images, generator)
        if signal.dim() == 2 and not record_membranes:
            # I1 = W1 x + b1, held for T steps
            current = self.linears[0](signal)
            neurons = self._fused_neurons(current.device)
            if neurons is not None:
                return self._fused_forward(current, *neurons)
            return self._layers(current, self.num_steps, record_membranes, first_done=True)
        return self._layers(signal, self.num_steps if signal.dim() == 2 else None, record_membranes)

    def _layers(self, signal: Tensor, held: int | None, record_membranes: bool, first_done: bool = False) -> NetworkOutput:
        """The exact path; `held` = T while the signal is a constant current, else None.
        first_done: `signal` is already fc1's output."""
        spikes, counts, membranes = [], [], []
        last = self.config.num_layers - 1
        for layer, (linear, neuron) in enumerate(zip(self.linears, self.neuron_layers)):
            if layer == 0 and first_done:
                current = signal
            elif held is not None:
                # I^1 = W_1 x + b_1, held for T steps
                current = linear(signal)
            else:
                # I^l_t = W_l S^{l-1}_t + b_l
                current = self._time_varying_linear(linear, signal, exact=record_membranes)
            # S^l_t, U^l_t = Leaky_l(I^l)_t
            keep = record_membranes or (layer == last and self.config.loss == "membrane")
            output = neuron(current, num_steps=held, record_membranes=keep)
            held = None
            spikes.append(output.spikes)
            counts.append(output.counts)
            membranes.append(output.membranes)
            signal = output.spikes
        return NetworkOutput(spikes, membranes, counts)

    def _fast_kernels(self, signal: Tensor) -> bool:
        """Whether this forward pass may take the fast kernels for `signal` (CPU, float32/64,
        fused=True, the numba backend)."""
        return (
            self.fused
            and choose_backend(self.backend, signal) == "numba"
            and spike_linear_supported(signal, self.linears[0].weight) is None
        )

    def _time_varying_linear(self, linear: nn.Linear, signal: Tensor, exact: bool) -> Tensor:
        """I_t = W S_t + b for a (T, B, K) signal.  Exact path (or `exact`): one product per
        step, the bits snnTorch gets (`per_step_linear`).  Fast path: the columns of the inputs
        that spiked, added up (`lif_core.spike_linear`), for layers with at least
        SPIKE_LINEAR_MIN_OUTPUTS outputs and SPIKE_LINEAR_MIN_WEIGHTS weights; one product over
        all T*B rows for smaller ones, where BLAS is faster."""
        if exact or not self._fast_kernels(signal):
            return per_step_linear(linear, signal)
        if linear.out_features >= SPIKE_LINEAR_MIN_OUTPUTS and linear.weight.numel() >= SPIKE_LINEAR_MIN_WEIGHTS:
            return spike_linear(signal, linear.weight, linear.bias)
        return linear(signal)

    def _fused_forward(self, current: Tensor, hidden: LIFParameters, output: LIFParameters) -> NetworkOutput:
        fc2 = self.linears[1]
        fused = lif_linear_lif(current, fc2.weight, fc2.bias, self.num_steps, hidden, output)
        grad_enabled = torch.is_grad_enabled()

        def hidden_spikes() -> Tensor:
            with torch.set_grad_enabled(grad_enabled):
                return self.neuron_layers[0](current, num_steps=self.num_steps, record_membranes=False).spikes

        return NetworkOutput(
            [hidden_spikes, fused.output_spikes],
            [None, fused.output_membranes],
            [fused.hidden_counts, fused.output_counts],
        )

    def loss(self, output: NetworkOutput, labels: Tensor) -> LossTerms:
        """The configured loss (see `network_loss`)."""
        return network_loss(output, labels, self.config)

    @torch.no_grad()
    def predict(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Class with the most output spikes; ties go to the lowest index."""
        return self(images, generator).output_counts.argmax(dim=1)

    def clip_weights(self, bound: float) -> None:
        """Clamp every Linear's weights to [-bound, bound] in place (biases untouched)."""
        with torch.no_grad():
            for linear in self.linears:
                linear.weight.clamp_(-bound, bound)


__all__ = [
    "FeedForwardSNN",
    "LossTerms",
    "NetworkConfig",
    "NetworkOutput",
    "NeuronConfig",
    "network_loss",
    "per_step_linear",
    "rate_code",
    "spike_count_loss",
    "study_network_config",
]
