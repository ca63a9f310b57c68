"""Checkpoints: snnTorch-compatible state_dicts, written atomically, read safely.

A model checkpoint is a plain state_dict with exactly the study's keys:

    fc1.weight (H, 784)  fc1.bias (H,)   lif1.threshold  lif1.graded_spikes_factor
    fc2.weight (10, H)   fc2.bias (10,)  lif1.reset_mechanism_val (int64)  lif1.beta  (same for lif2)

so it loads with `load_state_dict(strict=True)` into our `SupervisedSNN` and into
the study's snnTorch class alike.  Hidden size, beta and threshold are read from
the tensors, so a checkpoint with other values builds the matching model.
Only snnTorch's default neurons are implemented (reset_mechanism="subtract",
graded_spikes_factor=1): a checkpoint with other settings is refused when it
is loaded, with a message naming the layer and the value, not at evaluation.

Files are written to a temporary name in the target folder and renamed into
place (`os.replace` is atomic), so an interrupted write never leaves a torn
file under the final name.  Files are read with `weights_only=True`.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lif_core.modules import SUBTRACT_RESET
from training.errors import SnnMnistError
from training.model import INPUT_SIZE, NUM_CLASSES, ModelConfig, SupervisedSNN


# snnTorch's SpikingNeuron.reset_dict, inverted: reset_mechanism_val -> reset_mechanism.
SNNTORCH_RESET_NAMES = {0: "subtract", 1: "zero", 2: "none"}


class CheckpointError(SnnMnistError):
    """A checkpoint file is missing, unreadable, or does not fit the model."""


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(temp_path) on a temporary file beside `path`, then rename it onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    temp_path = Path(temp_name)
    try:
        write(temp_path)
        os.replace(temp_path, path)
    finally:
        temp_path.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda temp: temp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: Path, payload: Any) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=False) + "\n")


def atomic_torch_save(path: Path, payload: Any) -> None:
    """torch.save via memory, so the bytes depend only on the payload (saving to a path
    would embed the temporary file's random name in the archive)."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write(path, lambda temp: temp.write_bytes(buffer.getvalue()))


def save_model(model: SupervisedSNN, path: Path) -> None:
    """Save the model's state_dict (CPU tensors) atomically."""
    state = {key: value.detach().to("cpu").clone() for key, value in model.state_dict().items()}
    atomic_torch_save(path, state)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """torch.load(path, weights_only=True) with errors that say what is wrong."""
    path = Path(path)
    expected = (
        "Fix: pass the path of a .pt file written by `snn-mnist train` "
        "(supervised_snn_baseline_state_dict.pt) or an snnTorch state_dict."
    )
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder, not a file. {expected}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}. {expected}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes), e.g. from an interrupted copy. {expected}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and weights-only errors come in many types
        detail = (str(error).strip().splitlines() or [""])[0]
        raise CheckpointError(
            f"cannot read checkpoint {path}: {error.__class__.__name__}{': ' + detail if detail else ''}. "
            "It must be a state_dict saved with torch.save (not a whole pickled model, "
            "not a truncated or corrupt file). Fix: re-create it, or save model.state_dict()."
        ) from error
    if not isinstance(payload, Mapping):
        raise CheckpointError(
            f"checkpoint {path} holds a {type(payload).__name__}, not a state_dict. "
            "Fix: save model.state_dict() with torch.save."
        )
    return dict(payload)


def _describe_mismatch(state: Mapping[str, Any], expected: Mapping[str, Tensor]) -> list[str]:
    problems = []
    for key in expected:
        if key not in state:
            problems.append(f"missing key {key!r}")
    for key in state:
        if key not in expected:
            problems.append(f"unexpected key {key!r}")
    for key, want in expected.items():
        have = state.get(key)
        if isinstance(have, Tensor) and tuple(have.shape) != tuple(want.shape):
            problems.append(f"{key}: shape {tuple(have.shape)} but the model needs {tuple(want.shape)}")
        elif key in state and not isinstance(have, Tensor):
            problems.append(f"{key}: a {type(have).__name__}, not a tensor")
    return problems


def usable_beta(beta: float) -> bool:
    """A membrane decay the model accepts: in [0, 1] (NaN is not)."""
    return 0.0 <= beta <= 1.0


def usable_threshold(threshold: float) -> bool:
    """A firing threshold the model accepts: positive and finite."""
    return 0.0 < threshold < math.inf


def config_from_state_dict(state: Mapping[str, Any], base: ModelConfig | None = None) -> ModelConfig:
    """Read hidden size, beta and threshold from the tensors; keep the rest of `base`.

    A beta or threshold the model cannot use is left at `base`'s value here;
    `model_from_state_dict` then reports it, naming the layer."""
    base = base if base is not None else ModelConfig()
    weight = state.get("fc1.weight")
    if not isinstance(weight, Tensor) or weight.dim() != 2:
        keys = ", ".join(sorted(str(key) for key in state)[:12]) + (", ..." if len(state) > 12 else "")
        raise CheckpointError(
            "checkpoint has no 2-D 'fc1.weight'; it is not a state_dict of the 784-H-10 "
            f"SupervisedSNN (keys: {keys or 'none'}). Fix: pass the model file "
            "(supervised_snn_baseline_state_dict.pt, not training_state.pt) or an snnTorch model.state_dict()."
        )
    values: dict[str, Any] = {"hidden_size": int(weight.shape[0])}
    for name, usable in (("beta", usable_beta), ("threshold", usable_threshold)):
        tensor = state.get(f"lif1.{name}")
        if isinstance(tensor, Tensor) and tensor.numel() == 1 and usable(float(tensor)):
            values[name] = float(tensor)
    try:
        return replace(base, **values)
    except ValueError as error:
        raise CheckpointError(
            f"checkpoint fc1.weight has shape {tuple(weight.shape)}, so {error}. "
            "Fix: pass a checkpoint of a trained 784-H-10 network (H >= 1)."
        ) from error


def _unsupported_neuron_settings(state: Mapping[str, Tensor], layer: str) -> list[str]:
    """What `layer`'s (0-dim, correctly typed) LIF buffers in `state` hold that our LIF cannot run."""
    problems = []
    reset = int(state[f"{layer}.reset_mechanism_val"])
    if reset != SUBTRACT_RESET:
        name = SNNTORCH_RESET_NAMES.get(reset)
        found = f'reset_mechanism="{name}"' if name else "an unknown reset mechanism"
        problems.append(f"{layer}: {found} (reset_mechanism_val {reset})")
    graded = float(state[f"{layer}.graded_spikes_factor"])
    if graded != 1.0:
        problems.append(f"{layer}: graded_spikes_factor={graded:g}")
    beta = float(state[f"{layer}.beta"])
    if not usable_beta(beta):
        problems.append(f"{layer}: beta={beta:g}")
    threshold = float(state[f"{layer}.threshold"])
    if not usable_threshold(threshold):
        problems.append(f"{layer}: threshold={threshold:g}")
    return problems


def model_from_state_dict(state: Mapping[str, Any], base: ModelConfig | None = None) -> SupervisedSNN:
    """Build the SupervisedSNN that fits `state` and load it with strict=True."""
    model = SupervisedSNN(config_from_state_dict(state, base))
    problems = _describe_mismatch(state, model.state_dict())
    if problems:
        raise CheckpointError(
            "checkpoint does not fit the 784-H-10 SupervisedSNN: "
            + "; ".join(problems)
            + f". Expected input size {INPUT_SIZE} and {NUM_CLASSES} classes. Fix: pass a state_dict of "
            "this network, with the keys and shapes `snn-mnist train` writes."
        )
    for key, value in model.state_dict().items():
        if state[key].dtype != value.dtype:
            raise CheckpointError(
                f"checkpoint {key} has dtype {state[key].dtype}, the model needs {value.dtype}. "
                "Fix: save the state_dict with snnTorch's and snn-mnist's dtypes (float32 tensors, "
                "int64 reset_mechanism_val), e.g. from model.float().state_dict()."
            )
    problems = [problem for layer in ("lif1", "lif2") for problem in _unsupported_neuron_settings(state, layer)]
    if problems:
        raise CheckpointError(
            "checkpoint uses neuron settings snn-mnist does not implement: " + "; ".join(problems) + ". "
            'snn-mnist implements snnTorch\'s defaults, reset_mechanism="subtract" (reset_mechanism_val 0) and '
            "graded_spikes_factor=1, with beta in [0, 1] and a positive finite threshold. "
            "Fix: re-train, or re-save the snnTorch model, with those settings."
        )
    model.load_state_dict(state, strict=True)
    if not all(torch.isfinite(param).all() for param in model.parameters()):
        raise CheckpointError(
            "checkpoint holds NaN or infinite weights or biases; it cannot be evaluated. Fix: use a checkpoint "
            "from before training diverged (`snn-mnist train` keeps the last good one)."
        )
    return model


def load_model(path: Path, base: ModelConfig | None = None) -> SupervisedSNN:
    """Read a checkpoint file and build the matching model (see `model_from_state_dict`)."""
    try:
        return model_from_state_dict(read_checkpoint(path), base)
    except CheckpointError as error:
        message = str(error)
        raise CheckpointError(message if str(path) in message else f"{path}: {message}") from None
