"""The trainer, checkpoints and evaluation, on real MNIST subsets: the study's network and
the others a user writes (any depth, rate-coded input, other resets, learnt values, the
membrane loss), from Python and from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from experiments.cli import main
from experiments.snntorch_network import RateStream, run_snntorch, snntorch_inputs, snntorch_model
from training import network as network_module
from training.checkpoint import CheckpointError, save_model
from training.data import MnistSplit, load_mnist, translate
from training.network import FeedForwardSNN, NetworkConfig, study_network_config
from training.presets import network_with
from training.snntorch_checkpoint import load_network
from training.train import (
    MODEL_FILE,
    TrainConfig,
    TrainHistory,
    TrainingDivergedError,
    epoch_offsets,
    epoch_order,
    evaluate,
    input_generator,
    train,
)

TRAIN_IMAGES = 1280  # 10 batches of 128
TEST_IMAGES = 500


@pytest.fixture(scope="module")
def splits(mnist_dir: Path) -> tuple[MnistSplit, MnistSplit]:
    return load_mnist("train", mnist_dir).subset(TRAIN_IMAGES), load_mnist("test", mnist_dir).subset(TEST_IMAGES)


# A network of each kind the study's is not: three layers, rate-coded input, zero reset,
# per-neuron learnt beta, the membrane loss (small, so that an epoch takes a second).
GENERAL = network_with(
    study_network_config(),
    {"layer_sizes": (784, 48, 24, 10), "input_coding": "rate", "reset_mechanism": "zero", "surrogate": "atan",
     "per_neuron": "beta", "learn_beta": True, "loss": "membrane", "activity_penalty": 0.0},
)


def quiet_train(
    splits, out: Path, epochs: int, resume: bool = False, training: dict | None = None,
    network: NetworkConfig | None = None, **settings
) -> tuple[FeedForwardSNN, TrainHistory]:
    train_split, test_split = splits
    return train(
        train_split,
        test_split,
        network_with(network if network is not None else study_network_config(), settings),
        TrainConfig(epochs=epochs, seed=3, **(training or {})),
        out,
        resume=resume,
        progress=False,
        log=lambda message: None,
    )


def test_our_state_dict_loads_into_the_study_snntorch_model_and_back() -> None:
    """Keys, shapes and dtypes are the study's: strict loading works both ways, and the
    two models then produce identical output spikes."""
    config = study_network_config()
    torch.manual_seed(0)
    ours = FeedForwardSNN(config)
    study = snntorch_model(config)
    study.load_state_dict(ours.state_dict(), strict=True)
    assert {k: (v.shape, v.dtype) for k, v in ours.state_dict().items()} == {
        k: (v.shape, v.dtype) for k, v in study.state_dict().items()
    }
    torch.manual_seed(1)
    other = snntorch_model(config)
    back = load_network_from(other.state_dict(), config, fused=False)  # the exact path
    images = torch.rand(16, 784)
    with torch.no_grad():
        assert torch.equal(back(images).output_spikes, run_snntorch(other, config, images).output_spikes)


def load_network_from(state: dict, base: NetworkConfig, fused: bool = True) -> FeedForwardSNN:
    from training.snntorch_checkpoint import network_from_state_dict

    return network_from_state_dict(state, base, fused=fused).model


def test_checkpoint_with_other_hidden_beta_threshold_builds_the_matching_model(tmp_path: Path) -> None:
    config = network_with(study_network_config(), {"hidden_size": 64, "beta": 0.8})
    torch.manual_seed(0)
    study = snntorch_model(config)
    study.lif1.threshold.fill_(0.7)
    study.lif2.threshold.fill_(0.7)
    path = tmp_path / "snntorch.pt"
    torch.save(study.state_dict(), path)
    model = load_network(path, study_network_config()).model
    assert model.config.layer_sizes == (784, 64, 10)
    assert float(model.lif1.beta) == pytest.approx(0.8)
    assert float(model.lif2.threshold) == pytest.approx(0.7)
    images = torch.rand(8, 784)
    with torch.no_grad():
        assert torch.equal(model(images).output_spikes, run_snntorch(study, config, images).output_spikes)


def test_checkpoint_that_does_not_fit_names_the_problem(tmp_path: Path) -> None:
    state = FeedForwardSNN(study_network_config()).state_dict()
    state["fc2.weight"] = torch.zeros(10, 100)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as error:
        load_network(path)
    message = str(error.value)
    assert "fc2.weight takes 100 inputs, but the layer before it has 512 neurons" in message
    assert str(path) in message and "Fix:" in message and "\n" not in message
    del state["lif2.beta"]
    state["fc2.weight"] = torch.zeros(10, 512)
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="missing 'beta'"):
        load_network(path)


@pytest.mark.parametrize(
    "payload, expected",
    [
        (b"not a zip or pickle", "cannot read checkpoint"),
        (None, "checkpoint not found"),
    ],
)
def test_unreadable_or_missing_checkpoint_errors_clearly(tmp_path: Path, payload: bytes | None, expected: str) -> None:
    path = tmp_path / "model.pt"
    if payload is not None:
        path.write_bytes(payload)
    with pytest.raises(CheckpointError, match=expected):
        load_network(path)


def test_whole_pickled_model_is_refused_by_weights_only_loading(tmp_path: Path) -> None:
    path = tmp_path / "whole.pt"
    torch.save(FeedForwardSNN(study_network_config()), path)
    with pytest.raises(CheckpointError, match="state_dict"):
        load_network(path)


def test_evaluate_ties_go_to_the_lowest_class() -> None:
    counts = torch.tensor([[0.0, 3.0, 3.0, 1.0], [2.0, 2.0, 2.0, 2.0]])
    assert counts.argmax(dim=1).tolist() == [1, 0]


def test_training_is_deterministic_for_a_seed(splits, tmp_path: Path) -> None:
    """Two runs with one seed and thread count give bit-identical weights."""
    first, history_a = quiet_train(splits, tmp_path / "a", epochs=1)
    second, history_b = quiet_train(splits, tmp_path / "b", epochs=1)
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name
    assert history_a.test_acc_history == history_b.test_acc_history


def test_fifty_batch_runs_with_one_seed_give_identical_weights(mnist_dir: Path, tmp_path: Path) -> None:
    train_split = load_mnist("train", mnist_dir).subset(50 * 128)
    test_split = load_mnist("test", mnist_dir).subset(100)
    runs = [
        train(train_split, test_split, study_network_config(), TrainConfig(epochs=1, seed=11), tmp_path / name, progress=False, log=lambda m: None)[0]
        for name in ("a", "b")
    ]
    for (name, a), (_, b) in zip(runs[0].state_dict().items(), runs[1].state_dict().items()):
        assert torch.equal(a, b), name


def test_training_learns_and_writes_every_artifact(splits, tmp_path: Path) -> None:
    model, history = quiet_train(splits, tmp_path, epochs=2)
    # 20 Adam steps on 1,280 images, tested on 500; chance is 10%. A training-derived number,
    # so the bound comes from its measured spread (docs/portability.md): seeds 0-9 gave
    # 46.0-80.2% (mean 64.0, sd 10.4) on the native kernels and 45.4-82.4% with
    # ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=AVX2; the same seed moved by up to 5.4 points
    # between the two (seed 3, used here: 66.2 and 69.4). 30% lies 36 points below this
    # seed's value (almost 7 times the largest same-seed move between kernel paths) and
    # 3.3 seed sds below the mean, and is still three times chance.
    assert history.test_acc_history[-1] > 30.0
    for name in (MODEL_FILE, "training_state.pt", "training_curves.csv", "training_curves.json", "experiment_config.json"):
        assert (tmp_path / name).is_file(), name
    curves = json.loads((tmp_path / "training_curves.json").read_text())
    assert curves["test_acc_history"] == history.test_acc_history
    lines = (tmp_path / "training_curves.csv").read_text().splitlines()
    assert lines[0] == "epoch,train_acc,test_acc" and len(lines) == 3
    config = json.loads((tmp_path / "experiment_config.json").read_text())
    assert config["training"]["seed"] == 3 and "torch" in config["versions"]
    # the machine is recorded with the run: trained numbers' last bits depend on it
    assert config["machine"]["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert config["machine"]["cpu"] and config["machine"]["cores"] >= 1
    assert NetworkConfig.from_json(config["network"]) == model.config and config["compute_path"] == "fused"
    reloaded = load_network(tmp_path / MODEL_FILE, study_network_config()).model
    assert evaluate(reloaded, splits[1]).accuracy == history.test_acc_history[-1]
    assert not list(tmp_path.glob("*.tmp")), "temporary files left behind"


def test_resume_reaches_the_same_numbers_as_an_uninterrupted_run(splits, tmp_path: Path) -> None:
    straight, straight_history = quiet_train(splits, tmp_path / "straight", epochs=3)
    quiet_train(splits, tmp_path / "resumed", epochs=1)
    resumed, resumed_history = quiet_train(splits, tmp_path / "resumed", epochs=3, resume=True)
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    assert straight_history.test_acc_history == resumed_history.test_acc_history
    assert straight_history.train_acc_history == resumed_history.train_acc_history


def test_any_network_trains_deterministically_and_resumes_to_the_same_bits(splits, tmp_path: Path) -> None:
    """A three-layer rate-coded zero-reset network with learnt per-neuron beta and the membrane
    loss: two runs give the same bits, a run interrupted after an epoch and resumed gives the
    bits of an uninterrupted one (input draws included), its checkpoint loads strict into the
    snnTorch model of the same network and runs the same spikes there."""
    straight, straight_history = quiet_train(splits, tmp_path / "straight", epochs=2, network=GENERAL)
    again, _ = quiet_train(splits, tmp_path / "again", epochs=2, network=GENERAL)
    quiet_train(splits, tmp_path / "resumed", epochs=1, network=GENERAL)
    resumed, resumed_history = quiet_train(splits, tmp_path / "resumed", epochs=2, resume=True, network=GENERAL)
    assert straight.compute_path() == "fast" and straight.lif1.beta.shape == (48,)
    assert not torch.equal(straight.lif1.beta, torch.full((48,), 0.9))  # beta learnt
    states = zip(straight.state_dict().items(), again.state_dict().items(), resumed.state_dict().items())
    for (name, a), (_, b), (_, c) in states:
        assert torch.equal(a, b) and torch.equal(a, c), name
    assert straight_history.test_acc_history == resumed_history.test_acc_history
    assert straight_history.loss_history == resumed_history.loss_history
    # 20 steps on 1,280 images, 10 classes: chance is 10%
    assert straight_history.test_acc_history[-1] > 20.0
    theirs = snntorch_model(GENERAL)
    theirs.load_state_dict(torch.load(tmp_path / "straight" / MODEL_FILE, weights_only=True), strict=True)
    images = splits[1].flat_images[:32]
    ours = straight(images, input_generator(3, None))
    spikes = run_snntorch(theirs, GENERAL, snntorch_inputs(GENERAL, images, RateStream(3))).output_spikes
    assert torch.equal(ours.output_spikes, spikes)


def test_resume_refuses_changed_settings_and_missing_state(splits, tmp_path: Path) -> None:
    quiet_train(splits, tmp_path, epochs=1)
    with pytest.raises(CheckpointError, match=r"network.neurons\[0\].beta: saved 0.9, now 0.8") as error:
        quiet_train(splits, tmp_path, epochs=2, resume=True, beta=0.8)
    assert "\n" not in str(error.value) and "network.neurons[1].beta" in str(error.value)
    with pytest.raises(CheckpointError, match="training.fused: saved True, now False"):
        quiet_train(splits, tmp_path, epochs=2, resume=True, training={"fused": False})
    with pytest.raises(CheckpointError, match="no completed epoch"):
        quiet_train(splits, tmp_path / "empty", epochs=2, resume=True)


def test_a_run_saved_by_snn_mnist_0_1_resumes_to_the_same_bits(splits, tmp_path: Path) -> None:
    """Before the one network, a training state held the study's network as "model" settings
    and the activity penalty as training.alpha_reg; such a run resumes here, to the bits of an
    uninterrupted run (and a changed setting is still refused, named)."""
    straight, _ = quiet_train(splits, tmp_path / "straight", epochs=2)
    quiet_train(splits, tmp_path / "old", epochs=1)
    state = torch.load(tmp_path / "old" / "training_state.pt", weights_only=True)
    training = {key: value for key, value in state["settings"]["training"].items() if key not in ("input_seed", "backend", "fused")}
    state["settings"] = {
        **{key: value for key, value in state["settings"].items() if key not in ("network", "training")},
        "model": {"hidden_size": 512, "beta": 0.9, "threshold": 1.0, "num_steps": 25, "surrogate": "fast_sigmoid",
                  "surrogate_scale": None, "backend": "auto", "fused": True},
        "training": {**training, "alpha_reg": 1e-4},
    }
    torch.save(state, tmp_path / "old" / "training_state.pt")
    resumed, _ = quiet_train(splits, tmp_path / "old", epochs=2, resume=True)
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(splits, tmp_path: Path, monkeypatch) -> None:
    quiet_train(splits, tmp_path, epochs=1)
    good = torch.load(tmp_path / MODEL_FILE, weights_only=True)
    original = network_module.spike_count_loss
    calls = {"count": 0}

    def poisoned(*args, **kwargs):
        calls["count"] += 1
        terms = original(*args, **kwargs)
        if calls["count"] == 4:
            return terms._replace(total=terms.total * float("nan"))
        return terms

    monkeypatch.setattr(network_module, "spike_count_loss", poisoned)
    with pytest.raises(TrainingDivergedError, match=r"loss became nan at epoch 2, batch 4.*after epoch 1"):
        quiet_train(splits, tmp_path, epochs=2, resume=True)
    kept = torch.load(tmp_path / MODEL_FILE, weights_only=True)
    for name in good:
        assert torch.equal(good[name], kept[name]), name


def test_epoch_order_depends_only_on_seed_and_epoch() -> None:
    assert torch.equal(epoch_order(100, 5, 2), epoch_order(100, 5, 2))
    assert not torch.equal(epoch_order(100, 5, 2), epoch_order(100, 5, 3))
    assert sorted(epoch_order(100, 5, 2).tolist()) == list(range(100))


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--epochs", "0"], "--epochs must be a positive integer"),
        (["--batch-size", "-4"], "--batch-size must be a positive integer"),
        (["--steps", "0"], "--steps must be a positive integer"),
        (["--lr", "0"], "--lr must be a positive finite number"),
        (["--lr", "nan"], "--lr must be a positive finite number"),
        (["--beta", "1.5"], "--beta must be a number in [0, 1]"),
        (["--beta", "-0.1"], "--beta must be a number in [0, 1]"),
        (["--threshold", "0"], "--threshold must be a positive finite number"),
        (["--alpha-reg", "-1"], "--alpha-reg must be a non-negative"),
        (["--threads", "0"], "--threads must be an integer from 1"),
        (["--surrogate-scale", "-2"], "--surrogate-scale must be a positive finite number"),
        (["--layers", "784,ten,10"], "--layers '784,ten,10' is not a list of layer sizes"),
        (["--layers", "784,64,5"], "MNIST needs 784 and 10"),
        (["--layers", "784,64,10", "--hidden", "32"], "--layers and --hidden both give the sizes"),
        (["--learn-beta", "3"], "learn_beta"),
        (["--per-neuron", "graded"], "graded cannot be per neuron"),
        (["--hidden", "64", "--layers", "784,32,16,10"], "--layers and --hidden"),
        (["--seed", "-1"], "--seed must be a non-negative integer"),
        (["--augment-shift", "-1"], "--augment-shift must be a whole number of pixels from 0 to 8"),
        (["--augment-shift", "9"], "--augment-shift must be a whole number of pixels from 0 to 8"),
        (["--weight-decay=-1e-4"], "--weight-decay must be a non-negative finite number"),
    ],
)
def test_invalid_training_flags_give_clear_errors(flags: list[str], message: str, tmp_path: Path, capsys) -> None:
    code = main(["train", "--out", str(tmp_path), "--no-progress", *flags])
    assert code == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error
    assert not (tmp_path / MODEL_FILE).exists()


def test_train_and_evaluate_commands_end_to_end(mnist_dir: Path, tmp_path: Path, capsys) -> None:
    code = main(
        ["train", "--data-dir", str(mnist_dir), "--out", str(tmp_path), "--epochs", "1", "--train-subset", "640",
         "--test-subset", "200", "--no-progress", "--threads", "1"]
    )
    assert code == 0
    trained = capsys.readouterr().out
    assert "test accuracy:" in trained
    predictions = tmp_path / "predictions.json"
    code = main(
        ["evaluate", str(tmp_path / MODEL_FILE), "--data-dir", str(mnist_dir), "--test-subset", "200",
         "--json", str(predictions), "--no-progress", "--threads", "1"]
    )
    assert code == 0
    line = [row for row in capsys.readouterr().out.splitlines() if row.startswith("test accuracy:")][0]
    assert line == [row for row in trained.splitlines() if row.startswith("test accuracy:")][0]
    payload = json.loads(predictions.read_text())
    assert len(payload["predictions"]) == 200 and len(payload["output_spike_counts"][0]) == 10
    accuracy = 100 * sum(p == y for p, y in zip(payload["predictions"], payload["labels"])) / 200
    assert f"test accuracy: {accuracy:.2f}%" == line


FOUR_NETWORKS = {
    "study": [],
    "tutorial5": ["--layers", "784,1000,10", "--beta", "0.95", "--surrogate", "atan", "--loss", "membrane", "--alpha-reg", "0"],
    "rate": ["--layers", "784,1000,10", "--beta", "0.95", "--learn-beta", "--reset", "zero", "--surrogate", "atan",
             "--input", "rate", "--loss", "membrane", "--alpha-reg", "0"],
    "three_layer": ["--layers", "784,256,128,10", "--per-neuron", "beta", "--learn-beta", "--alpha-reg", "0"],
}


@pytest.mark.parametrize("name", list(FOUR_NETWORKS))
def test_train_trains_every_network_from_the_command_line(name: str, mnist_dir: Path, tmp_path: Path, capsys) -> None:
    """`snn-mnist train` with the network flags: the study's network, tutorial 5's, a rate-coded
    zero-reset one with learnt beta and the membrane loss, a 3-layer one with learnt per-neuron
    beta.  Each writes a checkpoint that loads strict into the matching snnTorch model (the
    fc1/lif1/... class) and that `evaluate` reads back to the accuracy training printed."""
    flags = FOUR_NETWORKS[name]
    out = tmp_path / name
    common = ["--data-dir", str(mnist_dir), "--test-subset", "200", "--no-progress", "--threads", "1"]
    assert main(["train", "--out", str(out), "--epochs", "1", "--train-subset", "256", *common, *flags]) == 0
    trained = capsys.readouterr().out
    config = NetworkConfig.from_json(json.loads((out / "experiment_config.json").read_text())["network"])
    assert f"network: {config.describe()}" in trained
    theirs = snntorch_model(config)
    theirs.load_state_dict(torch.load(out / MODEL_FILE, weights_only=True), strict=True)
    evaluate_flags = [flag for flag in flags if flag not in ("--learn-beta",)]
    describing = {"--layers", "--beta", "--reset", "--per-neuron"}
    evaluate_flags = [
        value for index, value in enumerate(evaluate_flags)
        if value not in describing and (index == 0 or evaluate_flags[index - 1] not in describing)
    ]
    assert main(["evaluate", str(out / MODEL_FILE), *common, *evaluate_flags]) == 0
    line = [row for row in capsys.readouterr().out.splitlines() if row.startswith("test accuracy:")][0]
    assert line == [row for row in trained.splitlines() if row.startswith("test accuracy:")][0]


def test_evaluate_missing_checkpoint_is_one_clear_line(mnist_dir: Path, tmp_path: Path, capsys) -> None:
    code = main(["evaluate", str(tmp_path / "nope.pt"), "--data-dir", str(mnist_dir)])
    assert code == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_crosscheck_step_level_agreement_on_a_few_batches(splits) -> None:
    from experiments.crosscheck import GRADIENT_RTOL, LOSS_ATOL, Setup, step_level_check

    config = study_network_config()
    torch.manual_seed(0)
    initial = FeedForwardSNN(config).state_dict()
    setup = Setup(config, "study", dict(initial), {})
    rows = step_level_check(setup, "auto", splits[0], TrainConfig(fused=False), batches=3)
    assert len(rows) == 3
    for row in rows:
        assert row["loss_abs_diff"] <= LOSS_ATOL
        for name in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"):
            assert row[name]["max_rel_diff"] <= GRADIENT_RTOL, (row["batch"], name, row[name])


def test_save_model_is_atomic_and_loadable(tmp_path: Path) -> None:
    model = FeedForwardSNN(study_network_config())
    path = tmp_path / "sub" / "model.pt"
    save_model(model, path)
    assert path.is_file() and not list(path.parent.glob("*.tmp"))
    assert set(torch.load(path, weights_only=True)) == set(model.state_dict())


def test_translate_moves_each_image_by_its_offset_and_fills_zeros() -> None:
    images = torch.rand(3, 28, 28) + 0.1  # no zero pixel, so a zero is a filled one
    moved = translate(images, torch.tensor([[2, -1], [0, 0], [-3, 3]]))
    assert torch.equal(moved[1], images[1])
    # x'[i, j] = x[i - dy, j - dx]
    assert torch.equal(moved[0, 2:, :27], images[0, :26, 1:])
    assert (moved[0, :2] == 0).all() and (moved[0, :, 27] == 0).all()
    assert torch.equal(moved[2, :25, 3:], images[2, 3:, :25])
    assert (moved[2, 25:] == 0).all() and (moved[2, :, :3] == 0).all()
    assert torch.equal(translate(images, torch.zeros(3, 2, dtype=torch.int64)), images)


def test_epoch_offsets_are_a_function_of_seed_and_epoch_within_the_range() -> None:
    assert torch.equal(epoch_offsets(500, 5, 2, 2), epoch_offsets(500, 5, 2, 2))
    assert not torch.equal(epoch_offsets(500, 5, 2, 2), epoch_offsets(500, 5, 3, 2))
    offsets = epoch_offsets(500, 5, 2, 2)
    assert offsets.shape == (500, 2) and set(offsets.flatten().tolist()) == {-2, -1, 0, 1, 2}
    assert not epoch_offsets(500, 5, 2, 0).any()


def test_augmented_training_differs_and_resumes_to_the_same_bits(splits, tmp_path: Path) -> None:
    augmented = {"augment_shift": 2, "weight_decay": 1e-4}
    plain, _ = quiet_train(splits, tmp_path / "plain", epochs=2)
    straight, straight_history = quiet_train(splits, tmp_path / "straight", epochs=2, training=augmented)
    assert not torch.equal(plain.fc1.weight, straight.fc1.weight)
    quiet_train(splits, tmp_path / "resumed", epochs=1, training=augmented)
    resumed, resumed_history = quiet_train(splits, tmp_path / "resumed", epochs=2, resume=True, training=augmented)
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    assert straight_history.train_acc_history == resumed_history.train_acc_history
    with pytest.raises(CheckpointError, match="training.augment_shift"):
        quiet_train(splits, tmp_path / "resumed", epochs=3, resume=True, training={"augment_shift": 1, "weight_decay": 1e-4})
