"""Finding 6 of issue 31: sizes too large for the machine were killed (exit 137) with no word.
Now the memory a run needs is estimated from its sizes and refused, before anything is
allocated, in one line giving the estimate and the memory available."""

from __future__ import annotations

from pathlib import Path

import pytest

import experiments.cli
from experiments.cli import main
from experiments.stdp_cmd import estimate_stdp_bytes
from training.network import study_network_config
from training.runtime import available_memory_bytes
from training.train import TrainConfig, estimate_training_bytes

GIB = 1 << 30


@pytest.fixture
def nothing_allocated(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a command gets as far as reading MNIST or building a network."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("allocated before the size check")

    for target in ("experiments.train_cmd.load_splits", "experiments.train_cmd.train", "experiments.stdp_cmd.load_mnist"):
        monkeypatch.setattr(target, refuse)


@pytest.mark.parametrize(
    "command, available, expected",
    [
        (["train", "--steps", "1000000"], None, "--steps 1000000"),
        (["train", "--hidden", "2000000"], 6 * GIB, "--hidden/--layers 784-2000000-10"),
        (["stdp", "--neurons", "1000000"], 8 * GIB, "--neurons 1000000"),
    ],
    ids=["steps", "hidden", "stdp-neurons"],
)
def test_sizes_too_large_are_refused_before_allocating(
    command: list[str], available: int | None, expected: str, nothing_allocated: None,
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys,
) -> None:
    if available is not None:
        monkeypatch.setattr(experiments.cli, "available_memory_bytes", lambda: available)
    code = main([*command, "--out", str(tmp_path / "out"), "--threads", "1"])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "would need about" in lines[0] and expected in lines[0] and "available here" in lines[0] and "Fix:" in lines[0]
    if available is not None:
        assert f"the {available / GIB:.1f} GiB available here" in lines[0]


def test_the_estimates_of_ordinary_runs_are_modest_and_grow_with_the_sizes() -> None:
    study = estimate_training_bytes(study_network_config(), TrainConfig())
    assert study < 2 * GIB
    wide = estimate_training_bytes(study_network_config().__class__(layer_sizes=(784, 2_000_000, 10)), TrainConfig())
    assert wide > 25 * GIB  # weights, gradients and Adam's moments alone: 4 x 784 x 2e6 x 4 bytes
    assert estimate_stdp_bytes(100) < 1 * GIB and estimate_stdp_bytes(1_000_000) > 8 * GIB


def test_available_memory_is_known_on_linux() -> None:
    available = available_memory_bytes()
    assert available is not None and available > 0
