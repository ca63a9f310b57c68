"""Named recipes, and the flat settings in which presets, the command line and sweeps speak.

A network or training setting has one flat name (`NETWORK_SETTINGS`, and the fields of
`TrainConfig`): `hidden_size=1000`, `beta=0.95`, `surrogate="atan"`, `learning_rate=5e-4`.
`network_with(config, settings)` applies network settings to a NetworkConfig (every layer's
neuron alike, or the layers named); `preset_configs(name, network=..., training=...)` is the
preset's (NetworkConfig, TrainConfig) with given settings on top.

"study" is the study's recipe: `study_network_config()` and `TrainConfig()`.  "tuned" was
chosen by `snn-mnist sweep` on a validation split carved from the 60,000 training images
(never on the test set); docs/tuning.md has the search that picked it and its measured test
accuracy over seeds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from lif_core.neuron import LeakyOptions
from lif_core.surrogate import make_surrogate
from training.network import NetworkConfig, study_network_config
from training.train import TrainConfig

# Network settings by their flat names: the network's own fields, and each neuron's (applied to
# every layer; a learn_* setting may instead name the layers, 1-based, that learn it).
NETWORK_FIELDS = ("layer_sizes", "hidden_size", "num_steps", "input_coding", "loss", "activity_penalty")
NEURON_FIELDS = (
    "beta",
    "threshold",
    "graded_spikes_factor",
    "reset_mechanism",
    "reset_delay",
    "surrogate",
    "surrogate_scale",
    "learn_beta",
    "learn_threshold",
    "learn_graded_spikes_factor",
    "per_neuron",
)
NETWORK_SETTINGS = frozenset(NETWORK_FIELDS + NEURON_FIELDS)
TRAINING_SETTINGS = frozenset(f.name for f in fields(TrainConfig))
LEARNT = ("learn_beta", "learn_threshold", "learn_graded_spikes_factor")
PER_NEURON = ("beta", "threshold")  # the values that may be one per neuron


@dataclass(frozen=True)
class Preset:
    description: str
    network: dict[str, Any] = field(default_factory=dict)  # network settings that differ from the study's
    training: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields that differ from its defaults


PRESETS: dict[str, Preset] = {
    "study": Preset("the study's recipe: Adam 1e-3 constant, 10 epochs, fast sigmoid slope 25"),
    "tuned": Preset(
        "cosine decay from Adam 1e-3 over 30 epochs, fast sigmoid slope 2, training images moved by up to 1 pixel; "
        "chosen on validation by snn-mnist sweep (docs/tuning.md)",
        network={"surrogate": "fast_sigmoid", "surrogate_scale": 2.0},
        training={"epochs": 30, "learning_rate": 1e-3, "lr_schedule": "cosine", "augment_shift": 1},
    ),
}


def _layers_learning(value: Any, name: str, layers: int) -> list[bool]:
    """A learn_* setting as one bool per layer: True/False for every layer, or the 1-based
    numbers of the layers that learn (a list, or "1,3")."""
    if isinstance(value, bool):
        return [value] * layers
    words = value.split(",") if isinstance(value, str) else list(value)
    try:
        chosen = {int(word) for word in words}
    except (TypeError, ValueError):
        chosen = set()
    if not chosen or not all(1 <= layer <= layers for layer in chosen):
        raise ValueError(
            f"{name} {value!r}: the network has {layers} layer{'s' if layers > 1 else ''}. "
            f"Fix: give True (every layer) or layer numbers from 1 to {layers}"
        )
    return [layer in chosen for layer in range(1, layers + 1)]


def _with_sizes(config: NetworkConfig, sizes: tuple[int, ...]) -> NetworkConfig:
    """`config` with other layer sizes; its neurons carry over when they agree (or when the
    number of layers stays)."""
    layers = len(sizes) - 1
    if layers == config.num_layers:
        return replace(config, layer_sizes=sizes)
    if len(set(config.neurons)) != 1:
        raise ValueError(
            f"{layers} layers, but the network's {config.num_layers} layers have different neuron settings: "
            "give settings that apply to every layer"
        )
    neuron = config.neurons[0]
    # per-neuron values belong to the old sizes
    neuron = replace(
        neuron,
        beta=neuron.beta if not isinstance(neuron.beta, tuple) else neuron.beta[0],
        threshold=neuron.threshold if not isinstance(neuron.threshold, tuple) else neuron.threshold[0],
    )
    return replace(config, layer_sizes=sizes, neurons=(neuron,))


def _per_neuron(value: Any) -> tuple[str, ...]:
    """per_neuron: the names of the values that are one per neuron ("beta", "threshold"), given
    as a list or as "beta,threshold"; an empty list for none."""
    names = tuple(word.strip() for word in (value.split(",") if isinstance(value, str) else value) if word.strip())
    unknown = [name for name in names if name not in PER_NEURON]
    if unknown:
        raise ValueError(
            f"per_neuron {value!r}: {', '.join(unknown)} cannot be per neuron. Fix: choose from {', '.join(PER_NEURON)}"
        )
    return names


def network_with(config: NetworkConfig, settings: Mapping[str, Any]) -> NetworkConfig:
    """`config` with the given network settings (values None are skipped).

    layer_sizes (784, ..., 10) and hidden_size (784-H-10 networks only) set the sizes; beta,
    threshold, graded_spikes_factor, reset_mechanism, reset_delay, surrogate (a name) and
    surrogate_scale set every layer's neuron (surrogate_scale alone keeps the surrogate; a new
    surrogate without a scale takes its default shape); learn_* are True / False or layer
    numbers; per_neuron names the values ("beta", "threshold") that become one per neuron, each
    starting at the layer's value (the others become one number again); num_steps, input_coding,
    loss and activity_penalty are the network's.  A bad value raises ValueError naming the setting."""
    given = {name: value for name, value in settings.items() if value is not None}
    unknown = sorted(set(given) - NETWORK_SETTINGS)
    if unknown:
        raise ValueError(f"unknown network setting(s) {', '.join(unknown)}; known: {', '.join(sorted(NETWORK_SETTINGS))}")
    if "layer_sizes" in given:
        config = _with_sizes(config, tuple(int(size) for size in given["layer_sizes"]))
    if "hidden_size" in given:
        if config.num_layers != 2:
            raise ValueError(
                f"hidden_size sets the one hidden layer of a 784-H-10 network; this one has sizes "
                f"{'-'.join(map(str, config.layer_sizes))}: give layer_sizes instead"
            )
        config = replace(config, layer_sizes=(config.layer_sizes[0], int(given["hidden_size"]), config.layer_sizes[-1]))
    neurons = list(config.neurons)
    for layer, neuron in enumerate(neurons):
        values: dict[str, Any] = {
            name: given[name] for name in ("beta", "threshold", "graded_spikes_factor") if name in given
        }
        for name in LEARNT:
            if name in given:
                values[name] = _layers_learning(given[name], name, len(neurons))[layer]
        if "per_neuron" in given:
            chosen = _per_neuron(given["per_neuron"])
            size = config.layer_sizes[layer + 1]
            for name in PER_NEURON:
                value = values.get(name, getattr(neuron, name))
                first = value[0] if isinstance(value, tuple) else value
                per_neuron = isinstance(value, tuple) and len(value) == size
                values[name] = (value if per_neuron else (first,) * size) if name in chosen else first
        options = neuron.options
        if "surrogate" in given or "surrogate_scale" in given:
            name = given.get("surrogate", options.surrogate.name)
            keep_scale = name == options.surrogate.name and name not in ("heaviside", "disabled")
            scale = given.get("surrogate_scale", options.surrogate.scale if keep_scale else None)
            options = replace(options, surrogate=make_surrogate(name, scale))
        if "reset_mechanism" in given or "reset_delay" in given:
            options = LeakyOptions(
                given.get("reset_mechanism", options.reset_mechanism),
                given.get("reset_delay", options.reset_delay),
                options.surrogate,
            )
        neurons[layer] = replace(neuron, options=options, **values)
    network = {name: given[name] for name in ("num_steps", "input_coding", "loss", "activity_penalty") if name in given}
    return replace(config, neurons=tuple(neurons), **network)


def preset_configs(
    name: str, network: Mapping[str, Any] | None = None, training: Mapping[str, Any] | None = None
) -> tuple[NetworkConfig, TrainConfig]:
    """The preset's (NetworkConfig, TrainConfig), with the given settings (values not None) on top."""
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {name!r}")
    preset = PRESETS[name]
    # a given surrogate other than the preset's takes its own default scale (`network_with`)
    config = network_with(network_with(study_network_config(), preset.network), network or {})
    training_settings = {**preset.training, **{key: value for key, value in (training or {}).items() if value is not None}}
    unknown = sorted(set(training_settings) - TRAINING_SETTINGS)
    if unknown:
        raise ValueError(
            f"unknown training setting(s) {', '.join(unknown)}; known: {', '.join(sorted(TRAINING_SETTINGS))}"
        )
    return config, replace(TrainConfig(), **training_settings)


__all__ = [
    "LEARNT",
    "NETWORK_SETTINGS",
    "PRESETS",
    "Preset",
    "TRAINING_SETTINGS",
    "network_with",
    "preset_configs",
]
