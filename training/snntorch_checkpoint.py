"""The one checkpoint reader: snnTorch state_dicts to `FeedForwardSNN` and back.

Two namings are read and written:

    "study"       the study's class and snnTorch tutorial 5's, and FeedForwardSNN's own keys:
                      fc1.weight (N_1, N_0)  fc1.bias (N_1,)  lif1.threshold  lif1.graded_spikes_factor
                      lif1.reset_mechanism_val (int64)  lif1.beta  fc2.* lif2.* ...
                  (fcK / lifK for K = 1..L; the study's 784-512-10 is L = 2)
    "sequential"  nn.Sequential(nn.Linear, snn.Leaky(init_hidden=True), ..., snn.Leaky(init_hidden=True,
                  output=True)), snnTorch's README and tutorials 6-7: 0.weight 0.bias 1.threshold
                  1.graded_spikes_factor 1.reset_mechanism_val 1.beta 2.weight ...

Read from the tensors: the number of layers and their sizes (the weight shapes, which must
chain), each layer's reset mechanism (reset_mechanism_val, snnTorch's numbering,
`lif_core.neuron.RESET_MECHANISMS`), beta and threshold (0-dim or (1,): one value; (N,): per
neuron) and graded_spikes_factor.  A state_dict does not hold the rest, so it comes from a
`base` NetworkConfig: num_steps, the input coding, the loss and its activity penalty, and
per layer reset_delay, the surrogate and which values are learnt (a Parameter and a buffer
look the same in a state_dict).

Saving writes the same keys, shapes and dtypes snnTorch's model has, so the matching snnTorch
model loads the file with strict=True.  "Matching" includes the constructor's
reset_mechanism: snn.Leaky picks its state function when it is built, and load_state_dict
overwrites reset_mechanism_val without changing it (snnTorch 1.0.0), so a "zero"-reset
checkpoint loaded into a Leaky built with the default "subtract" loads silently and runs
subtract.

Every bad or unsupported checkpoint raises `CheckpointError` (the command line prints it as
one line) naming the problem and the fix.  Files are read with torch.load(weights_only=True).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor

from lif_core.backend import Backend
from lif_core.neuron import RESET_MECHANISMS, LeakyOptions
from training.checkpoint import CheckpointError, atomic_torch_save, read_checkpoint
from training.network import FeedForwardSNN, NetworkConfig, NeuronConfig, Values

Naming = Literal["study", "sequential"]
NAMINGS: tuple[Naming, ...] = ("study", "sequential")
LINEAR_KEYS = ("weight", "bias")
NEURON_KEYS = ("threshold", "graded_spikes_factor", "reset_mechanism_val", "beta")
# keys of other snnTorch neurons, to name them when one turns up where a Leaky should be
OTHER_NEURON_KEYS = {"alpha": "snn.Synaptic or snn.Alpha", "V": "snn.RLeaky or snn.RSynaptic", "R": "snn.Lapicque"}
SUPPORTED = (
    "Supported: nn.Linear (with bias) -> snn.Leaky stacks, named 0.weight, 1.beta, ... (nn.Sequential) "
    "or fc1.weight, lif1.beta, ... (the study's class)"
)


class LoadedNetwork(NamedTuple):
    """A model built from a snnTorch state_dict, and the naming its keys had."""

    model: FeedForwardSNN
    naming: Naming


# --------------------------------------------------------------------------- key names


def module_names(naming: Naming, num_layers: int) -> list[tuple[str, str]]:
    """(Linear, Leaky) module names of each layer: ("0", "1"), ("2", "3"), ... or ("fc1", "lif1"), ..."""
    if naming == "study":
        return [(f"fc{layer}", f"lif{layer}") for layer in range(1, num_layers + 1)]
    return [(str(2 * layer), str(2 * layer + 1)) for layer in range(num_layers)]


def detect_naming(state: Mapping[str, Any]) -> Naming:
    """"study" if there is an fc1.* key, "sequential" if a key starts with a module index
    ("0.weight", ...); else an error.  A nested or prefixed key ("module.0.weight") is refused first."""
    for key in state:
        if len(str(key).split(".")) > 2:
            raise CheckpointError(
                f"checkpoint key {key!r} is not '<module>.<tensor>' (e.g. '0.weight', 'fc1.weight'): "
                f"a nested or prefixed model. {SUPPORTED}. Fix: save the inner model's state_dict "
                "(e.g. model.module.state_dict() for DataParallel)."
            )
    if any(str(key).startswith("fc1.") for key in state):
        return "study"
    if any(str(key).split(".")[0].isdigit() for key in state):
        return "sequential"
    raise CheckpointError(
        f"checkpoint has neither 'fc1.weight' (the study's naming) nor '0.weight' (an nn.Sequential) "
        f"(keys: {_some_keys(state)}). {SUPPORTED}. Fix: save the inner model's state_dict "
        "(not a wrapper's, not a training state with optimiser entries)."
    )


def _some_keys(state: Mapping[str, Any]) -> str:
    keys = sorted(str(key) for key in state)
    return (", ".join(keys[:8]) + (", ..." if len(keys) > 8 else "")) or "none"


def group_by_module(state: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """{"fc1": {"weight": ..., "bias": ...}, ...}: keys must be '<module>.<tensor>'."""
    modules: dict[str, dict[str, Any]] = {}
    for key, value in state.items():
        parts = str(key).split(".")
        if len(parts) != 2:
            raise CheckpointError(
                f"checkpoint key {key!r} is not '<module>.<tensor>' (e.g. '0.weight', 'fc1.weight'). "
                f"{SUPPORTED}. Fix: save model.state_dict() of such a model, nothing else in the file."
            )
        modules.setdefault(parts[0], {})[parts[1]] = value
    return modules


def count_layers(modules: Mapping[str, Any], naming: Naming) -> int:
    """L, checking that the modules are exactly those of L Linear -> Leaky layers."""
    if naming == "study":
        found = {name for name in modules if re.fullmatch(r"(fc|lif)[1-9][0-9]*", name)}
        layers = sum(1 for name in found if name.startswith("fc"))
    else:
        found = {name for name in modules if re.fullmatch(r"0|[1-9][0-9]*", name)}
        layers = (max((int(name) for name in found), default=-1) + 2) // 2
    expected = {name for pair in module_names(naming, layers) for name in pair}
    if set(modules) != expected or layers == 0:
        extra = sorted(set(modules) - expected)
        missing = sorted(expected - set(modules), key=lambda name: (len(name), name))
        detail = "; ".join(
            part
            for part in (
                f"missing module(s) {', '.join(missing)}" if missing else "",
                f"unexpected module(s) {', '.join(extra)}" if extra else "",
            )
            if part
        )
        raise CheckpointError(
            f"checkpoint is not a stack of Linear -> Leaky layers ({naming} naming): {detail}. {SUPPORTED}; "
            "stateless modules such as nn.Flatten or nn.Dropout between them shift the indices and are "
            "not supported. Fix: save a model of exactly that form."
        )
    return layers


# --------------------------------------------------------------------------- reading layers


def _check_keys(tensors: Mapping[str, Any], expected: tuple[str, ...], module: str, kind: str) -> None:
    """The module holds exactly `expected`, all tensors."""
    missing = [key for key in expected if key not in tensors]
    extra = [key for key in tensors if key not in expected]
    if not missing and not extra:
        for key, value in tensors.items():
            if not isinstance(value, Tensor):
                raise CheckpointError(
                    f"checkpoint {module}.{key} is a {type(value).__name__}, not a tensor. "
                    "Fix: save model.state_dict() with torch.save."
                )
        return
    if kind == "nn.Linear" and missing == ["bias"] and not extra:
        problem = "has no bias: nn.Linear(bias=False) is not supported yet"
    else:
        others = [OTHER_NEURON_KEYS[key] for key in extra if key in OTHER_NEURON_KEYS]
        hint = f" (it looks like {others[0]})" if others else ""
        problem = (
            f"is not an {kind}{hint}: "
            + ", ".join(part for part in (_listed("missing", missing), _listed("unexpected", extra)) if part)
        )
    raise CheckpointError(f"checkpoint module {module!r} {problem}. {SUPPORTED}. Fix: save a model of that form.")


def _listed(what: str, keys: list[str]) -> str:
    return f"{what} {', '.join(repr(key) for key in keys)}" if keys else ""


def _float32(tensor: Tensor, key: str) -> None:
    if tensor.dtype != torch.float32:
        raise CheckpointError(
            f"checkpoint {key} has dtype {tensor.dtype}, the model needs torch.float32. "
            "Fix: save model.float().state_dict()."
        )
    if not bool(torch.isfinite(tensor).all()):
        raise CheckpointError(
            f"checkpoint {key} holds NaN or infinite values; it cannot be evaluated. "
            "Fix: use a checkpoint from before training diverged."
        )


def read_linear(tensors: Mapping[str, Tensor], module: str, inputs: int | None) -> tuple[int, int]:
    """(inputs, outputs) of a Linear: weight (out, in), bias (out,); `inputs` = the previous
    layer's outputs, which must match."""
    _check_keys(tensors, LINEAR_KEYS, module, "nn.Linear")
    weight, bias = tensors["weight"], tensors["bias"]
    if weight.dim() != 2 or tuple(bias.shape) != (weight.shape[0],) or weight.numel() == 0:
        raise CheckpointError(
            f"checkpoint {module}.weight {tuple(weight.shape)} and {module}.bias {tuple(bias.shape)} are not "
            "an nn.Linear's (weight (out, in), bias (out,)). Fix: pass an unmodified model.state_dict()."
        )
    if inputs is not None and weight.shape[1] != inputs:
        raise CheckpointError(
            f"checkpoint {module}.weight takes {weight.shape[1]} inputs, but the layer before it has {inputs} "
            "neurons. Fix: pass the state_dict of one feed-forward model, layers in order."
        )
    _float32(weight, f"{module}.weight")
    _float32(bias, f"{module}.bias")
    return int(weight.shape[1]), int(weight.shape[0])


def _parameter_values(tensor: Tensor, key: str, neurons: int) -> Values:
    """A 0-dim tensor -> float; (1,) or (N,) -> tuple of floats."""
    _float32(tensor, key)
    if tensor.dim() == 0:
        return float(tensor)
    if tuple(tensor.shape) in ((1,), (neurons,)):
        return tuple(float(value) for value in tensor.tolist())
    raise CheckpointError(
        f"checkpoint {key} has shape {tuple(tensor.shape)}; snn.Leaky's is () or (1,) (one value) or "
        f"({neurons},) (one per neuron). Fix: pass an unmodified model.state_dict()."
    )


def read_reset(tensor: Tensor, key: str) -> str:
    """reset_mechanism_val 0 / 1 / 2 -> "subtract" / "zero" / "none"."""
    is_integer = not tensor.dtype.is_floating_point and not tensor.dtype.is_complex
    value = int(tensor) if tensor.numel() == 1 and is_integer else None
    if value is None or not 0 <= value < len(RESET_MECHANISMS):
        shown = tensor.tolist() if tensor.numel() <= 4 else f"a {tuple(tensor.shape)} tensor"
        raise CheckpointError(
            f"checkpoint {key} is {shown} ({tensor.dtype}); snnTorch stores 0 (subtract), 1 (zero) or "
            "2 (none) as one int64. Fix: pass an unmodified snn.Leaky state_dict."
        )
    return RESET_MECHANISMS[value]


def read_graded(tensor: Tensor, key: str) -> float:
    """graded_spikes_factor: one finite non-zero number."""
    value = float(tensor) if tensor.numel() == 1 and not tensor.dtype.is_complex else math.nan
    if not math.isfinite(value) or value == 0:
        raise CheckpointError(
            f"checkpoint {key} is {tensor.tolist() if tensor.numel() <= 4 else tuple(tensor.shape)}; "
            "snn-mnist supports one finite non-zero graded_spikes_factor per layer. "
            "Fix: re-save the snnTorch model with a scalar graded_spikes_factor."
        )
    return value


def read_neuron(tensors: Mapping[str, Tensor], module: str, neurons: int, base: NeuronConfig) -> NeuronConfig:
    """An snn.Leaky's buffers -> NeuronConfig; what they do not hold comes from `base`."""
    _check_keys(tensors, NEURON_KEYS, module, "snn.Leaky")
    reset = read_reset(tensors["reset_mechanism_val"], f"{module}.reset_mechanism_val")
    graded = read_graded(tensors["graded_spikes_factor"], f"{module}.graded_spikes_factor")
    beta = _parameter_values(tensors["beta"], f"{module}.beta", neurons)
    threshold = _parameter_values(tensors["threshold"], f"{module}.threshold", neurons)
    try:
        options = LeakyOptions(reset, base.options.reset_delay, base.options.surrogate)  # type: ignore[arg-type]
        return replace(base, beta=beta, threshold=threshold, graded_spikes_factor=graded, options=options)
    except ValueError as error:
        raise CheckpointError(f"layer {module!r}: {error}. Fix: change that setting.") from error


# --------------------------------------------------------------------------- loading


def state_dict_layers(state: Mapping[str, Any]) -> tuple[tuple[int, ...], Naming]:
    """The layer sizes (N_0, ..., N_L) a snnTorch state_dict describes, and its naming; the
    structure (keys, shapes, dtypes, finite values of the Linears) is checked on the way."""
    naming = detect_naming(state)
    modules = group_by_module(state)
    sizes: list[int] = []
    for linear, _ in module_names(naming, count_layers(modules, naming)):
        inputs, outputs = read_linear(modules[linear], linear, sizes[-1] if sizes else None)
        sizes = sizes or [inputs]
        sizes.append(outputs)
    return tuple(sizes), naming


def _base_neurons(base: NetworkConfig, layers: int) -> tuple[NeuronConfig, ...]:
    """One base NeuronConfig per layer of the checkpoint: base's own when it has that many
    layers, else its one neuron for every layer."""
    if base.num_layers == layers:
        return base.neurons
    if len(set(base.neurons)) == 1:
        return (base.neurons[0],) * layers
    raise CheckpointError(
        f"the checkpoint has {layers} layers, and the settings give {base.num_layers} different ones. "
        "Fix: give settings for every layer of the checkpoint, or the same settings for all."
    )


def network_config_from_state_dict(state: Mapping[str, Any], base: NetworkConfig | None = None) -> tuple[NetworkConfig, Naming]:
    """The NetworkConfig a snnTorch state_dict describes, and its naming.  Sizes, reset
    mechanisms and values come from the tensors; everything else from `base` (snnTorch
    tutorial 5's `NetworkConfig()` when None)."""
    base = base if base is not None else NetworkConfig()
    sizes, naming = state_dict_layers(state)
    modules = group_by_module(state)
    bases = _base_neurons(base, len(sizes) - 1)
    neurons = tuple(
        read_neuron(modules[neuron], neuron, outputs, layer_base)
        for (_, neuron), outputs, layer_base in zip(module_names(naming, len(sizes) - 1), sizes[1:], bases)
    )
    try:
        config = replace(base, layer_sizes=sizes, neurons=neurons)
    except ValueError as error:
        raise CheckpointError(f"cannot build the network: {error}. Fix: change that setting.") from error
    return config, naming


def rename_modules(state: Mapping[str, Tensor], source: Naming, target: Naming, num_layers: int) -> dict[str, Tensor]:
    """The same tensors with `target`'s module names (fc1 <-> 0, lif1 <-> 1, ...)."""
    if source == target:
        return dict(state)
    renames = {
        old: new
        for old_pair, new_pair in zip(module_names(source, num_layers), module_names(target, num_layers))
        for old, new in zip(old_pair, new_pair)
    }
    return {f"{renames[key.split('.')[0]]}.{key.split('.')[1]}": value for key, value in state.items()}


def network_from_state_dict(
    state: Mapping[str, Any], base: NetworkConfig | None = None, backend: Backend = "auto", fused: bool = True
) -> LoadedNetwork:
    """Build the FeedForwardSNN a snnTorch state_dict describes (`network_config_from_state_dict`)
    and load it with strict=True."""
    config, naming = network_config_from_state_dict(state, base)
    model = FeedForwardSNN(config, backend=backend, fused=fused)
    model.load_state_dict(rename_modules(state, naming, "study", config.num_layers), strict=True)
    return LoadedNetwork(model, naming)


def load_network(
    path: Path, base: NetworkConfig | None = None, backend: Backend = "auto", fused: bool = True
) -> LoadedNetwork:
    """Read a state_dict file (weights_only=True), ours or snnTorch's, and build the matching network."""
    try:
        return network_from_state_dict(read_checkpoint(path), base, backend, fused)
    except CheckpointError as error:
        message = str(error)
        raise CheckpointError(message if str(path) in message else f"{path}: {message}") from None


# --------------------------------------------------------------------------- saving


def snntorch_state_dict(model: FeedForwardSNN, naming: Naming = "study") -> dict[str, Tensor]:
    """The model's state_dict as CPU tensors, with the keys of the snnTorch model of `naming`."""
    if naming not in NAMINGS:
        raise ValueError(f"naming {naming!r}: choose one of {', '.join(NAMINGS)}")
    ours = {key: value.detach().to("cpu").clone() for key, value in model.state_dict().items()}
    return rename_modules(ours, "study", naming, model.config.num_layers)


def save_snntorch_checkpoint(model: FeedForwardSNN, path: Path, naming: Naming = "study") -> None:
    """Write `snntorch_state_dict(model, naming)` atomically; the matching snnTorch model
    (built with the same reset_mechanism) loads it with strict=True."""
    atomic_torch_save(Path(path), snntorch_state_dict(model, naming))
