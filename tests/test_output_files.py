"""Issue 31's smaller findings: file modes follow the umask, a killed writer's temporary files
are cleaned up by the next run, a full disk names the file, unknown devices are one line, and
evaluate says which beta it runs."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from experiments.cli import main
from experiments.run_folder import hold_output_folder
from experiments.stdp_cmd import _write_json
from training.checkpoint import atomic_torch_save, atomic_write, atomic_write_text
from training.network import FeedForwardSNN, study_network_config
from training.presets import network_with

TINY = ["--hidden", "16", "--train-subset", "256", "--test-subset", "100", "--no-progress", "--threads", "1"]


@pytest.fixture
def umask() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask, expected", [(0o002, 0o664), (0o022, 0o644), (0o077, 0o600)])
def test_written_files_follow_the_umask(mask: int, expected: int, umask: None, tmp_path: Path) -> None:
    """Finding 9: every output file was 0600 whatever the umask, so a group could not read a
    shared results folder."""
    os.umask(mask)
    atomic_write_text(tmp_path / "a.txt", "x\n")
    atomic_torch_save(tmp_path / "b.pt", {"x": torch.zeros(1)})
    _write_json(tmp_path / "c.json", {"x": 1})  # stdp's own writer
    assert [mode(tmp_path / name) for name in ("a.txt", "b.pt", "c.json")] == [expected] * 3


def test_a_killed_writers_temporary_files_are_removed_by_the_next_run(tmp_path: Path, mnist_dir: Path, capsys) -> None:
    """A SIGKILL during a write left a hidden .tmp file that nothing removed."""
    out = tmp_path / "out"
    (out / "seed_0").mkdir(parents=True)
    leftovers = [out / ".training_state.pt.k2j3h4.tmp", out / "seed_0" / ".curves.json.x8y7z6.tmp"]
    for leftover in leftovers:
        leftover.write_bytes(b"half a file")
    kept = [out / "notes.tmp", out / "seed_0" / "model.pt"]
    for path in kept:
        path.write_bytes(b"mine")
    assert main(["train", "--out", str(out), "--data-dir", str(mnist_dir), "--epochs", "0", *TINY]) == 2
    assert "--epochs must be a positive integer" in capsys.readouterr().err
    assert not any(path.exists() for path in leftovers)
    assert all(path.read_bytes() == b"mine" for path in kept)
    with hold_output_folder(out):
        pass


def test_a_full_disk_names_the_file_being_written(tmp_path: Path, monkeypatch, capsys) -> None:
    """Disk-full errors named no path."""
    import experiments.train_cmd

    target = tmp_path / "out" / "training_curves.json"

    def full(temp: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as raised:
        atomic_write(target, full)
    assert raised.value.filename == str(target) and raised.value.errno == errno.ENOSPC
    assert not list(target.parent.iterdir())  # no temporary file left either

    def handler(args: object) -> int:
        atomic_write(target, full)
        return 0

    monkeypatch.setattr(experiments.train_cmd, "run_train", handler)
    assert main(["train", "--out", str(tmp_path / "out")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"No space left on device: {target}" in lines[0] and "Fix:" in lines[0]


@pytest.mark.parametrize("device", ["mps", "xpu", "meta", "hpu:0", "nonsense"])
def test_unknown_devices_are_one_line(device: str, tmp_path: Path, mnist_dir: Path, capsys) -> None:
    """--device mps, xpu and meta ended in tracebacks."""
    code = main(["train", "--out", str(tmp_path / "out"), "--data-dir", str(mnist_dir), "--epochs", "1", "--device", device, *TINY])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith(f"snn-mnist: error: --device {device!r}") and "Fix: use --device cpu" in lines[0]


def test_evaluate_says_which_beta_it_runs(tmp_path: Path, mnist_dir: Path, capsys) -> None:
    """evaluate printed "beta 1.5" for a checkpoint it runs with beta clamped to 1."""
    torch.manual_seed(0)
    state = FeedForwardSNN(network_with(study_network_config(), {"hidden_size": 16})).state_dict()
    state["lif1.beta"] = torch.tensor(1.5)
    checkpoint = tmp_path / "beta.pt"
    torch.save(state, checkpoint)
    assert main(["evaluate", str(checkpoint), "--data-dir", str(mnist_dir), "--test-subset", "50", "--no-progress", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "lif1: beta 1.5 (runs as 1: clamped to [0, 1])" in out


def test_a_random_bytes_checkpoint_gets_no_unsafe_advice(tmp_path: Path, capsys) -> None:
    """The error passed on torch's advice to reload with weights_only=False (unsafe, and useless)."""
    checkpoint = tmp_path / "random.pt"
    checkpoint.write_bytes(bytes(range(256)) * 8)
    assert main(["evaluate", str(checkpoint)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"cannot read checkpoint {checkpoint}" in lines[0]
    assert "weights_only" not in lines[0] and "Fix:" in lines[0]


@pytest.mark.parametrize("command", ["train", "stdp", "explain", "reproduce"])
def test_an_empty_out_is_refused_not_read_as_the_current_folder(command: str, tmp_path: Path, monkeypatch, capsys) -> None:
    """--out '' wrote into the current directory."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main([command, "--out", ""])
    assert exited.value.code == 2
    assert "argument --out: an empty folder name would write into the current folder" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
