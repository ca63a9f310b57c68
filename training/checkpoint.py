"""Checkpoint files: written atomically, read safely.

Files are written to a temporary name in the target folder and renamed into
place (`os.replace` is atomic), so an interrupted write never leaves a torn
file under the final name.  Files are read with `weights_only=True`.  What a
model checkpoint holds, and how it becomes a network again, is
`training.snntorch_checkpoint`'s (the one reader).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from training.errors import SnnMnistError


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


def save_model(model: nn.Module, path: Path) -> None:
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
