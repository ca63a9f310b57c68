"""General feed-forward spiking networks: any number of Linear -> snn.Leaky layers.

With L layers, W_l, b_l the l-th Linear and Leaky_l the l-th neuron layer (its own
`LeakyOptions`, beta and threshold; `lif_core.leaky.leaky_sequence` with hand-written BPTT,
on the Numba kernels on the CPU and the readable torch loops elsewhere):

    x            = the image flattened to (B, N_0)
    S^0_t        = x                                 input_coding="current": the static image
                                                     as a constant current at every step (the study)
    S^0_t        ~ Bernoulli(clamp(x, 0, 1))         input_coding="rate": snntorch.spikegen.rate,
                                                     drawn from a seeded torch.Generator
    I^l_t        = W_l S^{l-1}_t + b_l               l = 1..L
    S^l_t, U^l_t = Leaky_l(I^l)_t                    spikes g*S and membranes U' as snn.Leaky returns them
    C^l          = sum_t S^l_t                       spike counts, (B, N_l)
    prediction   = argmax_k C^L[k]                   ties go to the lowest class, as torch.argmax

and the two losses:

    loss="count":     L = CE(C^L, y) + activity_penalty * mean_{b, hidden n} C^l[b, n]   (the study)
    loss="membrane":  L = sum_t CE(U^L_t, y)          (snnTorch tutorial 5; prediction still by counts)

With "current" coding W_1 x + b_1 is computed once: snnTorch recomputes fc1(x) at every
step and gets the same tensor each time, so this is exact.  Time-varying inputs go through
each Linear one step at a time, as in snnTorch (see `per_step_linear`).  The state_dict
has the keys of the matching snnTorch `nn.Sequential(nn.Linear, snn.Leaky(init_hidden=True), ...,
snn.Leaky(init_hidden=True, output=True))` -- `0.weight`, `0.bias`, `1.threshold`,
`1.graded_spikes_factor`, `1.reset_mechanism_val`, `1.beta`, `2.weight`, ... -- so it loads
into that model with strict=True; `training.snntorch_checkpoint` converts to and from the
study's `fc1`/`lif1`/... naming.  Modules are built in snnTorch's order (Linear, Leaky,
Linear, ...), so one torch seed gives both the same initial weights.

The study's `training.model.SupervisedSNN` is the instance `study_network_config(...)`
(784-H-10, fast sigmoid, count loss); SupervisedSNN itself, with its fused Numba path, is
unchanged and separate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lif_core.leaky import (
    RESET_MECHANISMS,
    LeakyOptions,
    LeakySequenceOutput,
    LeakySurrogate,
    leaky_sequence,
)
from lif_core.sequence import BACKENDS, Backend
from lif_core.surrogate import Sigmoid, StraightHeaviside, make_surrogate
from training.model import INPUT_SIZE, NUM_CLASSES, ModelConfig

InputCoding = Literal["current", "rate"]
LossKind = Literal["count", "membrane"]
INPUT_CODINGS: tuple[InputCoding, ...] = ("current", "rate")
LOSSES: tuple[LossKind, ...] = ("count", "membrane")
# snnTorch's SpikingNeuron.reset_dict: reset_mechanism -> reset_mechanism_val
RESET_VALUES: dict[str, int] = {name: value for value, name in enumerate(RESET_MECHANISMS)}
Values = float | tuple[float, ...]


# --------------------------------------------------------------------------- surrogates <-> JSON


def surrogate_to_json(surrogate: LeakySurrogate) -> dict[str, Any]:
    """{"name": ..., "scale": ...} (no scale for "heaviside")."""
    if isinstance(surrogate, StraightHeaviside):
        return {"name": surrogate.name}
    return {"name": surrogate.name, "scale": surrogate.scale}


def surrogate_from_json(payload: dict[str, Any]) -> LeakySurrogate:
    """Inverse of `surrogate_to_json`; "sigmoid" as well as `make_surrogate`'s names."""
    name, scale = payload.get("name"), payload.get("scale")
    if name == "sigmoid":
        return Sigmoid() if scale is None else Sigmoid(slope=float(scale))
    return make_surrogate(str(name), scale)


def options_to_json(options: LeakyOptions) -> dict[str, Any]:
    """LeakyOptions as a JSON-ready dict (the surrogate by name and scale)."""
    return {
        "reset_mechanism": options.reset_mechanism,
        "reset_delay": options.reset_delay,
        "graded_spikes_factor": options.graded_spikes_factor,
        "surrogate": surrogate_to_json(options.surrogate),
    }


def options_from_json(payload: dict[str, Any]) -> LeakyOptions:
    """Inverse of `options_to_json`; a missing surrogate is snnTorch's default, atan(2)."""
    values = dict(payload)
    surrogate = surrogate_from_json(values.pop("surrogate", {"name": "atan"}))
    return LeakyOptions(surrogate=surrogate, **values)


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


@dataclass(frozen=True)
class NeuronConfig:
    """One snn.Leaky layer: beta and threshold (a scalar, or one value per neuron), whether
    each is learnt, and the maths-changing options.  Defaults are snn.Leaky's (beta, which
    has none there, is tutorial 5's 0.95).  beta is clamped to [0, 1] in the forward pass,
    as snnTorch does; any finite value is accepted."""

    beta: Values = 0.95
    threshold: Values = 1.0
    learn_beta: bool = False
    learn_threshold: bool = False
    options: LeakyOptions = field(default_factory=LeakyOptions)

    def __post_init__(self) -> None:
        object.__setattr__(self, "beta", _as_values(self.beta, "beta"))
        object.__setattr__(self, "threshold", _as_values(self.threshold, "threshold"))
        for name in ("learn_beta", "learn_threshold"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(  # noqa: TRY004 -- one error type for every refused setting
                    f"{name} must be True or False, got {getattr(self, name)!r}"
                )
        if not isinstance(self.options, LeakyOptions):
            raise ValueError(  # noqa: TRY004 -- one error type for every refused setting
                f"options must be a lif_core.leaky.LeakyOptions, got {self.options!r}"
            )

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
            "learn_beta": self.learn_beta,
            "learn_threshold": self.learn_threshold,
            "options": options_to_json(self.options),
        }

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> NeuronConfig:
        """Inverse of `to_json`."""
        values = dict(payload)
        options = options_from_json(values.pop("options", {}))
        return cls(options=options, **values)


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
    Leaky layer (or one for all), time steps, input coding and loss (see the module docstring)."""

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
        if isinstance(penalty, bool) or not isinstance(penalty, (int, float)) or not math.isfinite(penalty):
            raise ValueError(f"activity_penalty must be a finite number, got {penalty!r}")
        if penalty != 0 and self.loss != "count":
            raise ValueError('activity_penalty applies to loss="count" only; set it to 0 for loss="membrane"')

    @property
    def num_layers(self) -> int:
        """L, the number of Linear -> Leaky layers."""
        return len(self.layer_sizes) - 1

    def describe(self) -> str:
        """One line: sizes, then each Leaky layer's settings."""
        layers = []
        for layer, neuron in enumerate(self.neurons, start=1):
            shape = {name: _describe_values(getattr(neuron, name)) for name in ("beta", "threshold")}
            learnt = [name for name in ("beta", "threshold") if getattr(neuron, f"learn_{name}")]
            options = neuron.options
            layers.append(
                f"lif{layer}(beta {shape['beta']}, threshold {shape['threshold']}, reset {options.reset_mechanism}, "
                f"reset_delay {options.reset_delay}, graded {options.graded_spikes_factor:g}, "
                f"{options.surrogate.name}{', learnt ' + '+'.join(learnt) if learnt else ''})"
            )
        sizes = "-".join(str(size) for size in self.layer_sizes)
        return (
            f"{sizes}, {self.num_steps} steps, {self.input_coding} input, {self.loss} loss; " + "; ".join(layers)
        )

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


def check_backend(backend: str) -> Backend:
    """One of lif_core's backends, else a one-line error naming them."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    return backend  # type: ignore[return-value]


def _describe_values(value: Values) -> str:
    if isinstance(value, tuple):
        return f"per-neuron ({len(value)})" if len(value) > 1 else f"{value[0]:g} (shape (1,))"
    return f"{value:g}"


def study_network_config(config: ModelConfig | None = None, activity_penalty: float = 0.0) -> NetworkConfig:
    """The study's SupervisedSNN as a NetworkConfig: 784-H-10, its beta, threshold and
    surrogate, snnTorch's default reset, constant-current input and the count loss."""
    config = config if config is not None else ModelConfig()
    surrogate = make_surrogate(config.surrogate, config.surrogate_scale)
    neuron = NeuronConfig(beta=config.beta, threshold=config.threshold, options=LeakyOptions(surrogate=surrogate))
    return NetworkConfig(
        layer_sizes=(INPUT_SIZE, config.hidden_size, NUM_CLASSES),
        neurons=(neuron,),
        num_steps=config.num_steps,
        input_coding="current",
        loss="count",
        activity_penalty=activity_penalty,
    )


# --------------------------------------------------------------------------- input coding


def rate_code(images: Tensor, num_steps: int, generator: torch.Generator) -> Tensor:
    """snntorch.spikegen.rate(images, num_steps) (gain 1, offset 0), drawn from `generator`:

        X = images repeated T times along a new first dimension, (T, B, N)
        S_t ~ Bernoulli(clamp(X_t, 0, 1))

    The same operations as snnTorch (`repeat`, `clamp`, `torch.bernoulli`), so a generator
    seeded with s gives the spikes snnTorch draws after `torch.manual_seed(s)` on the CPU.
    `generator` must be on the images' device."""
    if not isinstance(generator, torch.Generator):
        raise ValueError(  # noqa: TRY004 -- a missing generator is a setting, like the others
            'input_coding="rate" draws spikes from a seeded generator: pass generator=torch.Generator().manual_seed(s)'
        )
    repeated = images.repeat((num_steps,) + (1,) * images.dim())
    # p = clamp(x, 0, 1)
    probabilities = torch.clamp(repeated, min=0, max=1)
    # S_t ~ Bernoulli(p)
    return torch.bernoulli(probabilities, generator=generator)


# --------------------------------------------------------------------------- the network


class LeakyLayer(nn.Module):
    """One snn.Leaky layer over a whole sequence, with snn.Leaky's state_dict entries:
    threshold, graded_spikes_factor, reset_mechanism_val, beta (a Parameter when learnt,
    else a buffer; float32, 0-dim for a scalar, (N,) per neuron, exactly as snnTorch stores them)."""

    def __init__(self, neuron: NeuronConfig, backend: Backend = "auto") -> None:
        super().__init__()
        self.options = neuron.options
        self.backend = check_backend(backend)
        threshold = torch.tensor(neuron.threshold, dtype=torch.float32)
        beta = torch.tensor(neuron.beta, dtype=torch.float32)
        # snnTorch's registration order: threshold, graded_spikes_factor, reset_mechanism_val, beta
        self._register("threshold", threshold, neuron.learn_threshold)
        graded = torch.tensor(neuron.options.graded_spikes_factor, dtype=torch.float32)
        self.register_buffer("graded_spikes_factor", graded)
        reset = torch.tensor(RESET_VALUES[neuron.options.reset_mechanism], dtype=torch.int64)
        self.register_buffer("reset_mechanism_val", reset)
        self._register("beta", beta, neuron.learn_beta)

    def _register(self, name: str, value: Tensor, learnt: bool) -> None:
        if learnt:
            self.register_parameter(name, nn.Parameter(value))
        else:
            self.register_buffer(name, value)

    def forward(self, current: Tensor, num_steps: int | None = None) -> LeakySequenceOutput:
        """current (T, B, N), or (B, N) held for `num_steps` steps -> spikes, membranes (T, B, N)."""
        return leaky_sequence(current, self.beta, self.threshold, self.options, num_steps, backend=self.backend)

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any) -> None:
        """Load as usual, then refuse a reset mechanism or graded factor other than the
        layer's options (the options, not the buffers, drive the maths)."""
        super()._load_from_state_dict(state_dict, prefix, *args)
        error_msgs: list[str] = args[-1]
        reset = int(self.reset_mechanism_val)
        if reset != RESET_VALUES[self.options.reset_mechanism]:
            error_msgs.append(
                f"{prefix}reset_mechanism_val is {reset}, but this layer was built with "
                f"reset_mechanism={self.options.reset_mechanism!r}"
            )
        if float(self.graded_spikes_factor) != self.options.graded_spikes_factor:
            error_msgs.append(
                f"{prefix}graded_spikes_factor is {float(self.graded_spikes_factor):g}, but this layer was "
                f"built with {self.options.graded_spikes_factor:g}"
            )


def per_step_linear(linear: nn.Linear, signal: Tensor) -> Tensor:
    """I_t = W S_t + b for each step t of (T, B, K), one (B, K) call per step as snnTorch makes
    it.  One call on the whole (T, B, K) tensor sums in another order on some shapes (BLAS
    blocks a T*B-row product differently) and breaks bit-identity by an ulp: on this
    project's CPU, Linear(64, 32) and Linear(784, 32) on (20, 6, K) differ, while 10-output
    layers such as the study's fc2 agree."""
    return torch.stack([linear(signal_t) for signal_t in signal])


class NetworkOutput(NamedTuple):
    """Per layer (1..L): spikes g*S^l_t and membranes U^l_t, each (T, B, N_l)."""

    spikes: tuple[Tensor, ...]
    membranes: tuple[Tensor, ...]

    @property
    def output_spikes(self) -> Tensor:
        """g*S^L_t, (T, B, N_L): snnTorch's spk_rec of the last layer."""
        return self.spikes[-1]

    @property
    def output_membranes(self) -> Tensor:
        """U^L_t, (T, B, N_L): snnTorch's mem_rec of the last layer (output=True)."""
        return self.membranes[-1]

    @property
    def output_counts(self) -> Tensor:
        """C^L = sum_t S^L_t, (B, N_L)."""
        return self.spikes[-1].sum(dim=0)

    @property
    def hidden_counts(self) -> Tensor:
        """sum_t S^l_t of every hidden layer, side by side: (B, N_1 + ... + N_{L-1})."""
        counts = [spikes.sum(dim=0) for spikes in self.spikes[:-1]]
        if not counts:
            return self.spikes[-1].new_zeros((self.spikes[-1].shape[1], 0))
        return counts[0] if len(counts) == 1 else torch.cat(counts, dim=-1)


class NetworkLoss(NamedTuple):
    """The loss minimised, its cross-entropy term, and the mean hidden spike count."""

    total: Tensor
    cross_entropy: Tensor
    activity: Tensor


class FeedForwardSNN(nn.Module):
    """Linear -> Leaky -> ... -> Linear -> Leaky, named "0", "1", ... as in nn.Sequential.

    backend: where the Leaky layers run (`lif_core.leaky.leaky_sequence`): "auto" (the Numba
    kernels on the CPU, the torch loops elsewhere), "numba" or "torch".  It does not change
    the maths (forward bit-identical), so it is not part of the config; `use_backend` sets it."""

    def __init__(self, config: NetworkConfig | None = None, backend: Backend = "auto") -> None:
        super().__init__()
        self.config = config if config is not None else NetworkConfig()
        sizes = self.config.layer_sizes
        for layer, neuron in enumerate(self.config.neurons):
            self.add_module(str(2 * layer), nn.Linear(sizes[layer], sizes[layer + 1]))
            self.add_module(str(2 * layer + 1), LeakyLayer(neuron, backend))

    def use_backend(self, backend: Backend) -> FeedForwardSNN:
        """Run every Leaky layer on `backend` from now on; returns the model."""
        for neuron in self.neuron_layers:
            neuron.backend = check_backend(backend)
        return self

    @property
    def num_steps(self) -> int:
        """T, the number of time steps."""
        return self.config.num_steps

    @property
    def linears(self) -> list[nn.Linear]:
        """The Linear modules, layer 1 first."""
        return [module for module in self.children() if isinstance(module, nn.Linear)]

    @property
    def neuron_layers(self) -> list[LeakyLayer]:
        """The Leaky modules, layer 1 first."""
        return [module for module in self.children() if isinstance(module, LeakyLayer)]

    def encode(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """S^0: the flattened images (B, N_0) for "current", rate-coded spikes (T, B, N_0) for "rate"."""
        x = images.reshape(images.shape[0], -1)
        if x.shape[1] != self.config.layer_sizes[0]:
            raise ValueError(
                f"images of shape {tuple(images.shape)} give {x.shape[1]} inputs, "
                f"the network takes {self.config.layer_sizes[0]}"
            )
        if self.config.input_coding == "rate":
            return rate_code(x, self.num_steps, generator)  # type: ignore[arg-type]  # checked there
        return x

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> NetworkOutput:
        """images (B, ...) flattened to (B, N_0); `generator` draws the rate-coded input."""
        signal = self.encode(images, generator)
        held = self.num_steps if signal.dim() == 2 else None  # a constant current for the first layer
        spikes, membranes = [], []
        for linear, neuron in zip(self.linears, self.neuron_layers):
            # I^l_t = W_l S^{l-1}_t + b_l
            current = linear(signal) if held is not None else per_step_linear(linear, signal)
            # S^l_t, U^l_t = Leaky_l(I^l)_t
            output = neuron(current, num_steps=held)
            held = None
            spikes.append(output.spikes)
            membranes.append(output.membranes)
            signal = output.spikes
        return NetworkOutput(tuple(spikes), tuple(membranes))

    def loss(self, output: NetworkOutput, labels: Tensor) -> NetworkLoss:
        """The configured loss (see `network_loss`)."""
        return network_loss(output, labels, self.config)

    @torch.no_grad()
    def predict(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Class with the most output spikes; ties go to the lowest index."""
        return self(images, generator).output_counts.argmax(dim=1)


def network_loss(output: NetworkOutput, labels: Tensor, config: NetworkConfig) -> NetworkLoss:
    """loss="count":    L = CE(C^L, y) + activity_penalty * mean_{b, hidden n} C^l[b, n]
    loss="membrane": L = sum_t CE(U^L_t, y), summed step by step as tutorial 5 does.
    `activity` (the mean hidden count; 0 without hidden layers) is returned for both."""
    hidden = output.hidden_counts
    activity = hidden.mean() if hidden.numel() else output.output_counts.new_zeros(())
    if config.loss == "membrane":
        # L = 0 + CE(U_0, y) + CE(U_1, y) + ...
        total = output.output_membranes.new_zeros(())
        for membrane in output.output_membranes:
            total = total + F.cross_entropy(membrane, labels)
        return NetworkLoss(total, total, activity)
    # CE on spike counts used as logits, + alpha * mean hidden spikes per neuron per image
    cross_entropy = F.cross_entropy(output.output_counts, labels)
    return NetworkLoss(cross_entropy + config.activity_penalty * activity, cross_entropy, activity)


__all__ = [
    "FeedForwardSNN",
    "LeakyLayer",
    "NetworkConfig",
    "NetworkLoss",
    "NetworkOutput",
    "NeuronConfig",
    "network_loss",
    "rate_code",
    "study_network_config",
    "surrogate_from_json",
    "surrogate_to_json",
]
