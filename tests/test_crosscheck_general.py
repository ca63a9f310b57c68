"""`snn-mnist crosscheck` for networks other than the study's: a model description (--layers
...) or a snnTorch state_dict (--checkpoint), against the same network built with snnTorch.

Small on purpose (a few hundred real MNIST images, 2-3 batches, one epoch, 1 thread): the
point is that the three checks run and agree, not the accuracy reached.

Accuracy tolerance in (b): both sides train from the same weights on the same batches and
spikes, and their gradients agree to float32 rounding (rtol 1e-4 at worst, and bit for bit on
the machines measured so far), so after 3 Adam steps the two networks differ by rounding at
most; a prediction flips only for an image whose top two output counts tie.  We allow 1 point
(3 of the 300 test images) for machines whose BLAS rounds differently.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import snntorch as snn
import torch
from torch import nn

from experiments.cli import main
from experiments.snntorch_network import run_snntorch, snntorch_inputs, snntorch_loss
from training.data import load_mnist
from training.network import NetworkConfig
from training.snntorch_checkpoint import network_config_from_state_dict
from training.train import epoch_order

SMALL = ["--train-subset", "384", "--test-subset", "300", "--epochs", "1", "--threads", "1"]
ACCURACY_POINTS = 1.0  # see the module docstring


def run_crosscheck(argv: list[str], mnist_dir: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, dict[str, Any]]:
    code = main(["crosscheck", *argv, *SMALL, "--data-dir", str(mnist_dir), "--out", str(out)])
    stdout = capsys.readouterr().out
    report = json.loads((out / "crosscheck.json").read_text()) if (out / "crosscheck.json").is_file() else {}
    return code, stdout, report


def assert_all_checks_agree(report: dict[str, Any]) -> None:
    step, training, agreement = report["step_level"], report["independent_training"], report["prediction_agreement"]
    assert step["losses_agree"] and step["gradients_agree_to_rtol_1e-4"]
    assert step["max_loss_abs_diff"] <= step["loss_atol"]
    assert training["abs_diff_points"] <= ACCURACY_POINTS
    assert agreement["ours_checkpoint_in_snntorch"] == 1.0
    assert agreement["snntorch_checkpoint_in_ours"] == 1.0
    assert agreement["images"] == 300 and report["test_examples"] == 300 and report["train_examples"] == 384


def test_described_network_with_zero_reset_rate_input_and_membrane_loss(
    mnist_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--layers", "784,32,10", "--beta", "0.95", "--reset", "zero", "--input", "rate", "--loss", "membrane", "--batches", "2"]
    code, stdout, report = run_crosscheck(argv, mnist_dir, tmp_path, capsys)
    assert code == 0, stdout
    config = NetworkConfig.from_json(report["config"])
    # the architecture is printed first, and stored
    assert stdout.splitlines()[0] == f"architecture: {config.describe()}" == f"architecture: {report['architecture']}"
    assert config.layer_sizes == (784, 32, 10) and config.input_coding == "rate" and config.loss == "membrane"
    assert all(neuron.options.reset_mechanism == "zero" and neuron.beta == 0.95 for neuron in config.neurons)
    assert report["source"] == {"layers": [784, 32, 10], "naming": "study"}
    assert report["training"]["learning_rate"] == 1e-3  # the trainer's default, the study's
    step = report["step_level"]
    assert step["batches"] == 2 and step["inputs_identical"]
    assert step["loss_atol"] == pytest.approx(25 * 1e-6)  # 1e-6 per cross-entropy term, T = 25 terms
    assert set(step["per_batch"][0]) >= {"loss_ours", "loss_snntorch", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    # our side was trained by the trainer: its checkpoint and curves are in OUT/ours
    assert (tmp_path / "ours" / "supervised_snn_baseline_state_dict.pt").is_file()
    assert_all_checks_agree(report)


def three_layer_snntorch_model() -> nn.Sequential:
    """784-24-16-10 as a snnTorch user writes it: per-neuron learnt beta in the hidden layers,
    a zero reset in the second, a scalar fixed beta in the output layer."""
    torch.manual_seed(5)
    return nn.Sequential(
        nn.Linear(784, 24),
        snn.Leaky(beta=torch.rand(24) * 0.3 + 0.65, learn_beta=True, init_hidden=True),
        nn.Linear(24, 16),
        snn.Leaky(beta=torch.rand(16) * 0.3 + 0.65, learn_beta=True, init_hidden=True, reset_mechanism="zero"),
        nn.Linear(16, 10),
        snn.Leaky(beta=0.9, init_hidden=True, output=True),
    )


def test_snntorch_sequential_checkpoint_with_per_neuron_learnt_beta(
    mnist_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = three_layer_snntorch_model()
    path = tmp_path / "sequential.pt"
    torch.save(model.state_dict(), path)
    argv = ["--checkpoint", str(path), "--learn-beta", "1,2", "--batches", "3"]
    code, stdout, report = run_crosscheck(argv, mnist_dir, tmp_path / "out", capsys)
    assert code == 0, stdout
    assert stdout.startswith("architecture: 784-24-16-10, 25 steps, current input, count loss + 0.0001 x activity;")
    assert "per-neuron (24)" in stdout and "per-neuron (16)" in stdout and "zero reset" in stdout
    config = NetworkConfig.from_json(report["config"])
    assert [neuron.learn_beta for neuron in config.neurons] == [True, True, False]
    assert report["source"] == {"checkpoint": str(path), "naming": "sequential"}
    first = report["step_level"]["per_batch"][0]
    assert {"1.beta", "3.beta"} <= set(first) and "5.beta" not in first  # learnt beta's gradient compared too

    # (a) starts from the checkpoint's weights: its first loss is the snnTorch model's own on that batch
    state = torch.load(path, weights_only=True)
    expected_config, naming = network_config_from_state_dict(state, config)
    assert expected_config == config and naming == "sequential"
    train = load_mnist("train", mnist_dir).subset(384)
    batch = epoch_order(384, 0, 0)[:128]
    with torch.no_grad():
        output = run_snntorch(model, expected_config, snntorch_inputs(expected_config, train.flat_images[batch], None))
        loss = snntorch_loss(output, train.labels[batch], expected_config)
    assert first["loss_snntorch"] == first["loss_ours"] == pytest.approx(float(loss), abs=0, rel=0)
    assert_all_checks_agree(report)


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--checkpoint", "{ckpt}", "--layers", "784,32,10"], "--layers: a checkpoint holds the layer sizes"),
        (["--layers", "784,thirty,10"], "--layers '784,thirty,10' is not a list of layer sizes"),
        (["--layers", "784,32,5"], "MNIST needs 784 and 10"),
        (["--checkpoint", "{missing}"], "checkpoint not found"),
        (["--checkpoint", "{ckpt}", "--beta", "0.9"], "--beta: a checkpoint holds the layer sizes, reset mechanisms, beta"),
        (["--layers", "784,32,10", "--hidden", "64"], "--layers and --hidden both give the sizes"),
        (["--layers", "784,32,10", "--learn-beta", "3"], "learn_beta (3,): the network has 2 layers"),
        (["--checkpoint", "{ckpt}", "--learn-beta", "4"], "learn_beta (4,): the network has 3 layers"),
    ],
)
def test_bad_general_flags_are_one_line_errors(
    argv: list[str], expected: str, mnist_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = tmp_path / "model.pt"
    torch.save(three_layer_snntorch_model().state_dict(), checkpoint)
    words = [word.format(ckpt=checkpoint, missing=tmp_path / "missing.pt") for word in argv]
    code = main(["crosscheck", *words, *SMALL, "--data-dir", str(mnist_dir), "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured.err
    assert "Traceback" not in captured.err + captured.out
    assert len(lines) == 1 and lines[0].startswith("snn-mnist: error: ") and "Fix:" in lines[0], captured.err
    assert expected in lines[0]
    assert not (tmp_path / "out" / "crosscheck.json").exists()
