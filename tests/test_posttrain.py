"""The post-training loop and the post-train / plasticity-study commands, on small subsets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from experiments.cli import main
from plasticity.posttrain import (
    PostTrainConfig,
    check_post_trainable,
    eta_factor,
    load_post_trainable,
    post_train,
    trajectory_key,
    weight_drift,
)
from training.checkpoint import save_model
from training.data import MnistSplit, load_mnist
from training.network import FeedForwardSNN, study_network_config
from training.presets import network_with
from training.snntorch_checkpoint import load_network
from training.train import TrainConfig, train


@pytest.fixture(scope="module")
def splits(mnist_dir: Path) -> tuple[MnistSplit, MnistSplit]:
    return load_mnist("train", mnist_dir).subset(640), load_mnist("test", mnist_dir).subset(300)


@pytest.fixture(scope="module")
def trained(splits, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("baseline")
    train(splits[0], splits[1], study_network_config(), TrainConfig(epochs=2), out, progress=False, log=lambda m: None)
    return out / "supervised_snn_baseline_state_dict.pt"


def load_study_network(path: Path) -> FeedForwardSNN:
    """A checkpoint as the study's network (what the commands post-train)."""
    return load_network(path, study_network_config()).model


def quiet(model: FeedForwardSNN, splits, **config) -> object:
    return post_train(model, splits[0], splits[1], PostTrainConfig(**config), progress=False, log=lambda m: None)


def test_trajectory_has_one_accuracy_per_epoch_plus_the_start(trained: Path, splits) -> None:
    model = load_study_network(trained)
    biases = [model.fc1.bias.clone(), model.fc2.bias.clone()]
    result = quiet(model, splits, eta=1e-3, epochs=2)
    assert len(result.test_accuracy) == 3
    assert torch.equal(model.fc1.bias, biases[0]) and torch.equal(model.fc2.bias, biases[1])
    assert result.drift["fc1"].relative_change > 0 and result.drift["fc2"].relative_change > 0
    assert model.fc1.weight.abs().max() <= 1.0 and model.fc2.weight.abs().max() <= 1.0


def test_eta_zero_leaves_weights_and_accuracy_unchanged(trained: Path, splits) -> None:
    model = load_study_network(trained)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    result = quiet(model, splits, eta=0.0, epochs=1)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert result.test_accuracy[0] == result.test_accuracy[1]
    assert result.drift["fc1"].relative_change == 0.0


def test_frozen_readout_stays_frozen(trained: Path, splits) -> None:
    model = load_study_network(trained)
    readout = model.fc2.weight.clone()
    result = quiet(model, splits, eta=1e-3, epochs=1, plastic_layers=("fc1",))
    assert torch.equal(model.fc2.weight, readout)
    assert result.drift["fc2"].relative_change == 0.0 and result.drift["fc1"].relative_change > 0


def test_post_training_is_deterministic(trained: Path, splits) -> None:
    first, second = load_study_network(trained), load_study_network(trained)
    quiet(first, splits, rule="covariance_meta", eta=1e-3, epochs=1)
    quiet(second, splits, rule="covariance_meta", eta=1e-3, epochs=1)
    assert torch.equal(first.fc1.weight, second.fc1.weight) and torch.equal(first.fc2.weight, second.fc2.weight)


def test_weight_drift_definitions() -> None:
    import numpy as np

    trained = np.array([[3.0, 4.0]], dtype=np.float32)
    drift = weight_drift(np.array([[3.0, 1.0]], dtype=np.float32), trained)
    assert drift.relative_change == pytest.approx(3.0 / 5.0)
    assert weight_drift(np.array([[1.0, -0.5]], dtype=np.float32), trained).fraction_at_clip == 0.5


def test_trajectory_keys_follow_the_study() -> None:
    assert trajectory_key("covariance", 1e-5) == "gentle_lr_eta_1e-5"
    assert trajectory_key("covariance", 1e-4) == "strong_lr_eta_1e-4"
    assert trajectory_key("covariance", 1e-3) == "covariance_eta_0.001"
    assert trajectory_key("covariance_norm", 1e-5) == "covariance_norm_eta_1e-05"
    assert trajectory_key("covariance", 1e-5, ("fc1",)) == "covariance_fc1_only_eta_1e-05"


def test_post_train_command_writes_checkpoint_and_merges_trajectories(trained: Path, mnist_dir: Path, tmp_path: Path, capsys) -> None:
    common = ["--data-dir", str(mnist_dir), "--out", str(tmp_path), "--epochs", "1", "--train-subset", "640",
              "--test-subset", "300", "--no-progress", "--threads", "1"]
    assert main(["post-train", str(trained), "--eta", "1e-5", *common]) == 0
    assert main(["post-train", str(trained), "--eta", "1e-4", "--rule", "covariance_anchor", *common]) == 0
    output = capsys.readouterr().out
    assert "test accuracy:" in output
    payload = json.loads((tmp_path / "post_training_accuracy.json").read_text())
    assert len(payload["gentle_lr_eta_1e-5"]) == 2 and len(payload["covariance_anchor_eta_0.0001"]) == 2
    assert set(payload["weight_drift"]) == {"gentle_lr_eta_1e-5", "covariance_anchor_eta_0.0001"}
    model = load_study_network(tmp_path / "supervised_snn_post_trained_state_dict.pt")
    from experiments.snntorch_network import snntorch_model

    snntorch_model(study_network_config()).load_state_dict(model.state_dict(), strict=True)


def test_plasticity_study_table(trained: Path, mnist_dir: Path, tmp_path: Path) -> None:
    code = main(
        ["plasticity-study", str(trained), "--data-dir", str(mnist_dir), "--out", str(tmp_path), "--epochs", "1",
         "--train-subset", "640", "--test-subset", "300", "--no-progress", "--threads", "1",
         "--rules", "covariance,covariance_norm", "--etas", "1e-5,1e-4"]
    )
    assert code == 0
    runs = json.loads((tmp_path / "plasticity_study.json").read_text())["runs"]
    assert [(row["rule"], row["eta"]) for row in runs] == [
        ("covariance", 1e-5), ("covariance", 1e-4), ("covariance_norm", 1e-5), ("covariance_norm", 1e-4)
    ]
    assert all(0.0 <= row["macro_f1_after_last_epoch"] <= 1.0 for row in runs)
    table = (tmp_path / "plasticity_study.md").read_text()
    assert table.count("\n| covariance") == 4 and "macro-F1 (last)" in table


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--eta", "-1"], "--eta must be a non-negative"),
        (["--eta", "inf"], "--eta must be a non-negative"),
        (["--epochs", "0"], "--epochs must be a positive integer"),
        (["--batch-size", "0"], "--batch-size must be a positive integer"),
        (["--anchor-strength", "-1"], "anchor_strength must be a non-negative"),
    ],
)
def test_invalid_post_train_flags(flags: list[str], message: str, tmp_path: Path, capsys) -> None:
    path = tmp_path / "model.pt"
    save_model(FeedForwardSNN(study_network_config()), path)
    assert main(["post-train", str(path), "--out", str(tmp_path), *flags]) == 2
    assert message in capsys.readouterr().err


def test_unknown_rule_and_layers_are_refused_by_the_parser(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["post-train", "x.pt", "--rule", "magic"])
    with pytest.raises(SystemExit):
        main(["post-train", "x.pt", "--plastic-layers", "fc3"])
    assert "fc3" in capsys.readouterr().err


def test_eta_scale_sum_time_is_eta_times_the_steps_in_the_mean_form(trained: Path, splits) -> None:
    """--eta-scale sum_time at eta is the mean form at eta x T, bit for bit; sum x T x B per batch."""
    summed, meaned = load_study_network(trained), load_study_network(trained)
    quiet(summed, splits, eta=1e-5, epochs=1, eta_scale="sum_time")
    quiet(meaned, splits, eta=1e-5 * summed.num_steps, epochs=1)
    assert torch.equal(summed.fc1.weight, meaned.fc1.weight) and torch.equal(summed.fc2.weight, meaned.fc2.weight)
    assert eta_factor("sum", 25, 128) == 3200 and eta_factor("sum_batch", 25, 64) == 64 and eta_factor("mean", 25, 128) == 1
    with pytest.raises(ValueError, match="--eta-scale must be one of"):
        PostTrainConfig(eta_scale="per_image")


@pytest.mark.parametrize("command", ["post-train", "plasticity-study"])
def test_a_network_of_another_kind_is_refused_before_mnist_loads(command: str, tmp_path: Path, capsys) -> None:
    """784-256-128-10: one line naming the layers and the fix, exit code 2, before MNIST is read
    (the data folder does not exist)."""
    path = tmp_path / "deep.pt"
    save_model(FeedForwardSNN(network_with(study_network_config(), {"layer_sizes": (784, 256, 128, 10)})), path)
    missing = tmp_path / "no-mnist-here"
    assert main([command, str(path), "--out", str(tmp_path / "out"), "--data-dir", str(missing), "--threads", "1"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "post-training needs a 784-H-10 network with one hidden layer (fc1, fc2)" in lines[0]
    assert f"checkpoint {path} has layers 784-256-128-10. Fix: " in lines[0]
    assert not (tmp_path / "out").exists()


def test_post_train_refuses_other_layers_and_rate_input() -> None:
    """The library call refuses what the commands refuse, and a rate-coded input too: fc1's
    pre is the image as a constant current."""
    splits = (None, None)
    deep = FeedForwardSNN(network_with(study_network_config(), {"layer_sizes": (784, 64, 32, 10)}))
    with pytest.raises(ValueError, match="this network has layers 784-64-32-10. Fix: "):
        quiet(deep, splits)
    rate = FeedForwardSNN(network_with(study_network_config(), {"input_coding": "rate"}))
    with pytest.raises(ValueError, match="this network has input coding 'rate'. Fix: "):
        quiet(rate, splits)
    check_post_trainable(study_network_config())  # the study's network passes


def test_load_post_trainable_reads_the_study_network(trained: Path) -> None:
    model = load_post_trainable(trained, "numba")
    assert model.config.layer_sizes == (784, 512, 10) and model.backend == "numba"
    study = load_study_network(trained).state_dict()
    assert list(model.state_dict()) == list(study)
    assert all(torch.equal(value, study[key]) for key, value in model.state_dict().items())
