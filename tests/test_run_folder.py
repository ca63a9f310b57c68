"""One run per output folder (issue 31): the folder lock, the run's identity, and what `train`
refuses in a folder that holds another run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments.cli import main
from experiments.run_folder import LOCK_FILE, OutputFolderBusy, hold_output_folder

REPO_ROOT = Path(__file__).resolve().parent.parent
TINY = ["--hidden", "16", "--train-subset", "256", "--test-subset", "100", "--no-progress", "--threads", "1"]

HOLDER = """
import sys, time
from pathlib import Path
from experiments.run_folder import hold_output_folder
with hold_output_folder(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(120)
"""


def start_holder(folder: Path) -> subprocess.Popen[str]:
    """Another process holding `folder`'s lock (as a running command would), once it says so."""
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True, env=environment, cwd=REPO_ROOT
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("snn-mnist: error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(
    "command",
    [
        ["train", "--epochs", "1", *TINY],
        ["reproduce", "--quick", "--no-progress"],
        ["stdp", "--quick"],
        ["post-train", "x.pt", "--no-progress"],
        ["plasticity-study", "--no-progress"],
        ["explain", "--quick"],
        ["sweep", "--param", "lr=1e-3"],
    ],
    ids=lambda command: command[0],
)
def test_a_second_run_into_a_locked_folder_stops_at_once_naming_the_holder(
    command: list[str], tmp_path: Path, mnist_dir: Path, capsys
) -> None:
    """Finding 2: two runs into one --out mixed their files.  Now the second stops before any
    work, in one line naming the first's pid, and leaves the folder as it was."""
    out = tmp_path / "out"
    holder = start_holder(out)
    try:
        started = time.perf_counter()
        code = main([command[0], "--out", str(out), "--data-dir", str(mnist_dir), *command[1:]])
        line = one_error_line(capsys)
        assert code == 2 and time.perf_counter() - started < 10
        assert f"is in use by process {holder.pid}" in line and "--out" in line and "Fix:" in line
        assert sorted(path.name for path in out.iterdir()) == [LOCK_FILE]
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_goes_with_its_process_however_it_ends(tmp_path: Path) -> None:
    """SIGKILL leaves no lock behind: the OS releases it, and the next run takes the folder."""
    out = tmp_path / "out"
    holder = start_holder(out)
    with pytest.raises(OutputFolderBusy, match=f"process {holder.pid}"):
        with hold_output_folder(out):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with hold_output_folder(out):
        (out / "result.txt").write_text("mine\n")
    assert sorted(path.name for path in out.iterdir()) == ["result.txt"]  # the lock file is removed
    with hold_output_folder(tmp_path / "unused"):
        pass
    assert not (tmp_path / "unused").exists()  # a folder the run created and left empty goes too


@pytest.fixture
def finished_run(tmp_path: Path, mnist_dir: Path, capsys) -> Path:
    """A one-epoch training run's folder."""
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--data-dir", str(mnist_dir), "--epochs", "1", *TINY]) == 0
    capsys.readouterr()
    return out


def test_a_run_records_its_identity_once(finished_run: Path, mnist_dir: Path) -> None:
    identity = json.loads((finished_run / "run.json").read_text())
    assert identity["command"] == "train"
    assert identity["settings"]["network"]["layer_sizes"] == [784, 16, 10]
    assert set(identity["data"]) == {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"}
    assert all(len(checksum) == 64 for checksum in identity["data"].values())
    assert identity["code_version"]
    config = json.loads((finished_run / "experiment_config.json").read_text())
    assert config["data_sha256"] == identity["data"]


def test_a_new_train_over_a_finished_run_refuses_unless_forced(finished_run: Path, mnist_dir: Path, capsys) -> None:
    """Finding 3: a new run overwrote a finished one without a word."""
    before = {path.name: path.read_bytes() for path in finished_run.iterdir()}
    other = ["train", "--out", str(finished_run), "--data-dir", str(mnist_dir), "--epochs", "1", "--seed", "2", *TINY]
    assert main(other) == 2
    line = one_error_line(capsys)
    assert "holds another run (supervised_snn_baseline_state_dict.pt" in line and "--resume" in line and "--force" in line
    assert {path.name: path.read_bytes() for path in finished_run.iterdir()} == before
    assert main([*other, "--force", "--epochs", "0"]) == 2  # --force removes nothing before the checks pass
    assert {path.name: path.read_bytes() for path in finished_run.iterdir()} == before
    capsys.readouterr()
    assert main([*other, "--force"]) == 0
    config = json.loads((finished_run / "experiment_config.json").read_text())
    assert config["training"]["seed"] == 2
    assert json.loads((finished_run / "run.json").read_text())["settings"]["training"]["seed"] == 2


def test_resume_refuses_fewer_epochs_than_done(finished_run: Path, mnist_dir: Path, capsys) -> None:
    """Finding 4: --resume with fewer epochs exited 0 and rewrote the config to the smaller number."""
    (finished_run / "run.json").unlink()  # the same refusal for a run from before run.json
    state = finished_run / "training_state.pt"
    extended = ["train", "--out", str(finished_run), "--data-dir", str(mnist_dir), "--resume", *TINY]
    assert main([*extended, "--epochs", "2"]) == 0
    capsys.readouterr()
    config_before = (finished_run / "experiment_config.json").read_bytes()
    state_before = state.read_bytes()
    assert main([*extended, "--epochs", "1"]) == 2
    line = one_error_line(capsys)
    assert "already completed 2 epochs, more than the 1 asked for" in line and "--epochs 2" in line
    assert (finished_run / "experiment_config.json").read_bytes() == config_before
    assert state.read_bytes() == state_before


def test_resume_refuses_another_data_folder(finished_run: Path, mnist_dir: Path, tmp_path: Path, capsys) -> None:
    """Finding 5: --resume accepted a different data folder, and nothing recorded which data a run used."""
    import gzip

    other = tmp_path / "other_mnist"
    other.mkdir()
    for name in ("train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (other / f"{name}.gz").symlink_to(mnist_dir / f"{name}.gz")
    images = bytearray(gzip.decompress((mnist_dir / "train-images-idx3-ubyte.gz").read_bytes()))
    images[16:16 + 784] = bytes(784)  # the first image blanked
    (other / "train-images-idx3-ubyte").write_bytes(bytes(images))
    assert main(["train", "--out", str(finished_run), "--data-dir", str(other), "--resume", "--epochs", "2", *TINY]) == 2
    line = one_error_line(capsys)
    assert f"--data-dir {other} holds other files than the run" in line and "train-images-idx3-ubyte" in line


def test_resume_and_force_together_are_refused(tmp_path: Path, capsys) -> None:
    assert main(["train", "--out", str(tmp_path), "--resume", "--force", *TINY]) == 2
    assert "--resume and --force" in one_error_line(capsys)


def test_other_commands_record_their_identity_once_when_they_succeed(tmp_path: Path, mnist_dir: Path, capsys) -> None:
    """reproduce, stdp, post-train, sweep and explain record run.json too (here: stdp)."""
    out = tmp_path / "stdp"
    flags = ["--out", str(out), "--data-dir", str(mnist_dir), "--neurons", "10", "--train-images", "20",
             "--assign-images", "20", "--test-images", "20", "--threads", "1"]
    assert main(["stdp", *flags]) == 0
    identity = json.loads((out / "run.json").read_text())
    assert identity["command"] == "stdp" and identity["settings"]["neurons"] == 10
    assert len(identity["data"]) == 4 and identity["code_version"]
    before = (out / "run.json").read_bytes()
    assert main(["stdp", *flags, "--resume"]) == 0
    assert (out / "run.json").read_bytes() == before  # recorded once
    assert main(["stdp", *flags, "--neurons", "0"]) == 2  # a failed run records nothing
    capsys.readouterr()


def test_a_run_from_before_the_data_checksums_still_resumes(finished_run: Path, mnist_dir: Path, capsys) -> None:
    """A run saved without data_sha256 (by the previous version) resumes; nothing to compare."""
    import torch

    state_path = finished_run / "training_state.pt"
    state = torch.load(state_path, weights_only=True)
    del state["settings"]["data_sha256"]
    torch.save(state, state_path)
    (finished_run / "run.json").unlink()
    assert main(["train", "--out", str(finished_run), "--data-dir", str(mnist_dir), "--resume", "--epochs", "2", *TINY]) == 0
    assert "resuming after epoch 1" in capsys.readouterr().out


def test_a_file_system_without_locks_runs_with_a_warning(tmp_path: Path, monkeypatch, capsys) -> None:
    import errno
    import fcntl

    def no_locks(descriptor: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with hold_output_folder(tmp_path / "out") as folder:
        (folder / "x.txt").write_text("x")
    assert "warning: cannot lock --out" in capsys.readouterr().err
    assert (tmp_path / "out" / "x.txt").is_file()


@pytest.mark.parametrize("command", [["stdp", "--quick"], ["reproduce", "--quick", "--no-progress"], ["explain", "--quick"]],
                         ids=lambda command: command[0])
def test_a_command_refuses_a_folder_whose_run_used_other_data(command: list[str], tmp_path: Path, mnist_dir: Path, capsys) -> None:
    """The run.json of a finished run names its data; the next command into that folder with other
    data stops before any work (reproduce would have reused stages trained on the old data)."""
    import argparse

    from experiments.run_folder import check_recorded_data

    out = tmp_path / "out"
    out.mkdir()
    (out / "run.json").write_text(json.dumps({"command": command[0], "data": {"train-images-idx3-ubyte": "0" * 64}}))
    assert main([command[0], "--out", str(out), "--data-dir", str(mnist_dir), *command[1:]]) == 2
    line = one_error_line(capsys)
    assert f"--out {out} holds a run made from other MNIST files than --data-dir {mnist_dir} (train-images-idx3-ubyte" in line
    assert ("--force to rebuild it" in line) == (command[0] == "reproduce")
    assert sorted(path.name for path in out.iterdir()) == ["run.json"]
    forced = argparse.Namespace(data_dir=mnist_dir, force=True)
    assert check_recorded_data(out, forced) is True  # reproduce --force rebuilds, and records the new data


def test_a_run_stopped_before_its_first_epoch_is_replaced_without_force(tmp_path: Path, mnist_dir: Path, capsys) -> None:
    """Nothing of it to lose (no checkpoint, no curves), and --resume has nothing to resume."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text("{}\n")
    (out / "experiment_config.json").write_text("{}\n")
    assert main(["train", "--out", str(out), "--data-dir", str(mnist_dir), "--epochs", "1", *TINY]) == 0
    assert json.loads((out / "run.json").read_text())["command"] == "train"
