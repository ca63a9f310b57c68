"""Learning-rate schedules, the validation carve and --preset (issue 14)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from experiments.cli import main
from lif_core.surrogate import make_surrogate
from training.data import MnistSplit, carve_validation, load_mnist
from training.network import study_network_config
from training.presets import PRESETS, network_with, preset_configs
from training.train import CONFIG_JSON, CURVES_CSV, CURVES_JSON, TrainConfig, train


def test_cosine_schedule_starts_at_lr_and_ends_near_zero() -> None:
    config = TrainConfig(epochs=3, learning_rate=2e-3, lr_schedule="cosine")
    steps = 10
    rates = [config.learning_rate_at(k, steps) for k in range(3 * steps)]
    assert rates[0] == 2e-3
    assert all(a > b for a, b in zip(rates, rates[1:]))
    assert rates[-1] == pytest.approx(2e-3 * 0.5 * (1 + math.cos(math.pi * 29 / 30)))
    assert rates[15] == pytest.approx(1e-3)
    assert TrainConfig().learning_rate_at(123, 10) == TrainConfig().learning_rate


def test_unknown_schedule_is_refused() -> None:
    with pytest.raises(ValueError, match="--lr-schedule must be one of constant, cosine"):
        TrainConfig(lr_schedule="step")


def test_validation_carve_is_disjoint_fixed_and_complete() -> None:
    images = torch.arange(100, dtype=torch.float32).reshape(100, 1).expand(100, 784).contiguous()
    split = MnistSplit(images, torch.arange(100) % 10)
    kept, held = carve_validation(split, 20)
    again_kept, again_held = carve_validation(split, 20)
    assert torch.equal(held.images, again_held.images) and torch.equal(kept.images, again_kept.images)
    ids_kept, ids_held = kept.images[:, 0].long().tolist(), held.images[:, 0].long().tolist()
    assert len(ids_held) == 20 and len(ids_kept) == 80
    assert sorted(ids_kept + ids_held) == list(range(100))
    assert ids_kept == sorted(ids_kept)  # training order kept
    _, other = carve_validation(split, 20, seed=1)
    assert other.images[:, 0].long().tolist() != ids_held
    for bad in (0, 100, 2.5, True):
        with pytest.raises(ValueError, match="--validation must be a whole number"):
            carve_validation(split, bad)  # type: ignore[arg-type]


def test_presets_resolve_with_overrides_on_top() -> None:
    study_network, study_training = preset_configs("study")
    assert study_network == study_network_config() and study_training == TrainConfig()
    network, training = preset_configs("tuned", training={"epochs": 2, "seed": 3})
    assert training.epochs == 2 and training.seed == 3
    for key, value in PRESETS["tuned"].training.items():
        if key != "epochs":
            assert getattr(training, key) == value
    assert network == network_with(study_network_config(), PRESETS["tuned"].network)
    # another surrogate than the preset's drops the preset's scale (it belongs to its surrogate)
    other = "atan" if network.neurons[0].options.surrogate.name != "atan" else "fast_sigmoid"
    switched, _ = preset_configs("tuned", network={"surrogate": other})
    assert all(neuron.options.surrogate == make_surrogate(other) for neuron in switched.neurons)
    with pytest.raises(ValueError, match="preset must be one of"):
        preset_configs("best")


def test_validation_accuracy_is_recorded_and_written(mnist_dir: Path, tmp_path: Path) -> None:
    train_split = load_mnist("train", mnist_dir).subset(1280)
    kept, held = carve_validation(train_split, 256)
    seen: list[int] = []
    _, history = train(
        kept, load_mnist("test", mnist_dir).subset(200), study_network_config(), TrainConfig(epochs=2, lr_schedule="cosine"),
        tmp_path, progress=False, log=lambda _: None, validation_split=held,
        on_epoch=lambda epoch, h: seen.append(epoch),
    )
    assert seen == [1, 2] and len(history.val_acc_history) == 2
    curves = json.loads((tmp_path / CURVES_JSON).read_text())
    assert curves["val_acc_history"] == history.val_acc_history
    assert (tmp_path / CURVES_CSV).read_text().splitlines()[0] == "epoch,train_acc,test_acc,val_acc"


def test_train_command_with_preset_and_validation(mnist_dir: Path, tmp_path: Path, capsys) -> None:
    code = main(
        ["train", "--data-dir", str(mnist_dir), "--out", str(tmp_path), "--preset", "tuned", "--epochs", "1",
         "--train-subset", "768", "--validation", "256", "--test-subset", "200", "--no-progress", "--threads", "1"]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "validation accuracy:" in out
    config = json.loads((tmp_path / CONFIG_JSON).read_text())
    text = json.dumps(config)
    assert '"preset": "tuned"' in text and '"validation_examples": 256' in text and '"train_examples": 512' in text
    assert '"lr_schedule": "%s"' % PRESETS["tuned"].training["lr_schedule"] in text


def test_train_command_refuses_a_bad_validation_size(tmp_path: Path, mnist_dir: Path, capsys) -> None:
    code = main(["train", "--data-dir", str(mnist_dir), "--out", str(tmp_path), "--train-subset", "100",
                 "--validation", "100", "--no-progress"])
    assert code == 2
    error = capsys.readouterr().err
    assert "--validation must be a whole number" in error and "Traceback" not in error
