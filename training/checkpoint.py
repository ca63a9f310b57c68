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


TEMPORARY_SUFFIX = ".tmp"  # temporary files are named .<final name>.<random>.tmp


def default_file_mode() -> int:
    """The mode a plainly created file gets: 0o666 less the process's umask.  (mkstemp makes its
    files 0o600 whatever the umask; a shared results folder needs the group's bits.)  The umask
    is read from /proc where it is, so as not to change process-wide state to learn it."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(temp_path) on a temporary file beside `path`, then rename it onto `path`.
    The file gets the umask's mode; a failed write (a full disk) names `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX, dir=path.parent)
    os.close(handle)
    temp_path = Path(temp_name)
    try:
        write(temp_path)
        os.chmod(temp_path, default_file_mode())
        os.replace(temp_path, path)
    except OSError as error:
        if error.filename is None or str(error.filename) == str(temp_path):
            # the temporary name means nothing to the user: name the file being written
            raise OSError(error.errno, error.strerror or str(error), str(path)) from error
        raise
    finally:
        temp_path.unlink(missing_ok=True)


def remove_stale_temporary_files(folder: Path) -> list[Path]:
    """Delete the temporary files (.<name>.<random>.tmp) that a killed writer left under `folder`;
    only safe while no other process writes there (hold the folder's lock).  Returns them."""
    removed = []
    for leftover in Path(folder).rglob(f".*{TEMPORARY_SUFFIX}"):
        if leftover.is_file() and not leftover.is_symlink():
            try:
                leftover.unlink()
            except OSError:
                continue
            removed.append(leftover)
    return removed


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
        if "weights_only" in str(error):
            # torch's advice, to load with weights_only=False, would run arbitrary code (and not help)
            detail = "not a file torch.load reads as plain tensors"
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
