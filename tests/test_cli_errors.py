"""Bad input to any `snn-mnist` command ends in one line, `snn-mnist: error: ...`, exit code 2.

Every case here fails before any training starts, so the whole file runs in
seconds.  The line must name the problem; most also say how to fix it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from experiments.cli import build_parser, main
from experiments.snntorch_network import snntorch_model
from training.network import FeedForwardSNN, study_network_config
from training.presets import network_with

HIDDEN = 16
TINY = ["--train-subset", "256", "--test-subset", "100"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Paths the cases refer to by name: good and broken checkpoints, a plain file, run folders."""
    root = tmp_path_factory.mktemp("cli_errors")
    config = network_with(study_network_config(), {"hidden_size": HIDDEN})
    torch.manual_seed(0)
    state = FeedForwardSNN(config).state_dict()
    paths: dict[str, str] = {}

    def save(name: str, payload: object) -> None:
        torch.save(payload, root / f"{name}.pt")
        paths[name] = str(root / f"{name}.pt")

    def changed(**tensors: torch.Tensor) -> dict[str, torch.Tensor]:
        return {**state, **{key.replace("__", "."): value for key, value in tensors.items()}}

    save("good", state)
    save("wrong_shape", changed(fc1__weight=torch.zeros(HIDDEN, 100)))
    save("float64", changed(fc1__weight=state["fc1.weight"].double()))
    nan_weights = state["fc2.weight"].clone()
    nan_weights[0, 0] = float("nan")
    save("nan_weights", changed(fc2__weight=nan_weights))
    save("nan_beta", changed(lif2__beta=torch.tensor(float("nan"))))
    save("list", [1, 2, 3])
    save("training_state_like", {"model": state, "optimizer": {}, "history": {}, "settings": {}})
    study = snntorch_model(config)
    study.lif1.reset_mechanism = "zero"  # snnTorch sets reset_mechanism_val to 1
    save("snntorch_zero_reset", study.state_dict())
    study = snntorch_model(config)
    study.lif2.reset_mechanism = "none"
    save("snntorch_no_reset", study.state_dict())
    save("graded_spikes", changed(lif1__graded_spikes_factor=torch.tensor(2.0)))
    save("three_layers", FeedForwardSNN(network_with(config, {"layer_sizes": (784, HIDDEN, 8, 10)})).state_dict())

    (root / "empty.pt").write_bytes(b"")
    paths["empty"] = str(root / "empty.pt")
    (root / "text.pt").write_text("not a checkpoint\n")
    paths["text"] = str(root / "text.pt")
    (root / "folder.pt").mkdir()
    paths["folder"] = str(root / "folder.pt")
    (root / "a_file").write_text("x")
    paths["file"] = str(root / "a_file")

    stdp_run = root / "stdp_run"
    stdp_run.mkdir()
    np.savez(stdp_run / "stdp_state.npz", weights=np.zeros(1), theta=np.zeros(1), meta=np.array("{}"))
    paths["stdp_run"] = str(stdp_run)
    train_run = root / "train_run"
    train_run.mkdir()
    torch.save(state, train_run / "supervised_snn_baseline_state_dict.pt")
    (train_run / "experiment_config.json").write_text("{}\n")
    paths["train_run"] = str(train_run)
    foreign_state = root / "foreign_state"
    foreign_state.mkdir()
    torch.save([1, 2], foreign_state / "training_state.pt")
    paths["foreign_state"] = str(foreign_state)
    paths["fresh"] = str(root / "fresh")
    return paths


# (command line with {name} placeholders, text the error line must contain)
CASES: list[tuple[str, str]] = [
    # train: counts, sizes and floats
    ("train --threads 0", "--threads must be an integer from 1"),
    ("train --epochs 0", "--epochs must be a positive integer"),
    ("train --batch-size 0", "--batch-size must be a positive integer"),
    ("train --hidden 0", "--hidden must be a positive integer"),
    ("train --steps 0", "--steps must be a positive integer"),
    ("train --lr nan", "--lr must be a positive finite number"),
    ("train --lr inf", "--lr must be a positive finite number"),
    ("train --beta 2", "--beta must be a number in [0, 1]"),
    ("train --layers 784,64", "MNIST needs 784 and 10"),
    ("train --learn-beta 5", "learn_beta (5,): the network has 2 layers"),
    ("train --layers 784,16,10", "--layers and --hidden both give the sizes"),
    ("train --alpha-reg nan", "--alpha-reg must be a non-negative finite number"),
    ("train --weight-clip nan", "--weight-clip must be positive"),
    ("train --surrogate-scale inf", "--surrogate-scale must be a positive finite number"),
    ("train --train-subset 0", "subset size must be a positive integer"),
    # train: where it writes, what it resumes
    ("train --out {file}", "is a file, not a folder"),
    ("train --out {file}/sub", "which is a file"),
    ("train --resume --out {stdp_run}", "no completed epoch to resume from"),
    ("train --resume --out {foreign_state}", "is not a training state written by `snn-mnist train`"),
    # evaluate: checkpoints that are not usable state_dicts
    ("evaluate {folder}", "is a folder, not a file"),
    ("evaluate {fresh}/missing.pt", "checkpoint not found"),
    ("evaluate {empty}", "is empty (0 bytes)"),
    ("evaluate {text}", "cannot read checkpoint"),
    ("evaluate {list}", "holds a list, not a state_dict"),
    ("evaluate {training_state_like}", "not a training state"),
    ("evaluate {wrong_shape}", "takes 100 inputs and gives 10 outputs; MNIST needs 784 and 10"),
    ("evaluate {float64}", "has dtype torch.float64, the model needs torch.float32"),
    ("evaluate {nan_weights}", "fc2.weight holds NaN or infinite values"),
    ("evaluate {nan_beta}", "lif2.beta holds NaN or infinite values"),
    ("evaluate {good} --batch-size 0", "--batch-size must be a positive integer"),
    ("evaluate {good} --steps 0", "--steps must be a positive integer"),
    ("evaluate {good} --threads 0", "--threads must be an integer from 1"),
    ("evaluate {good} --json {folder}", "--json"),
    ("evaluate {good} --json {file}/predictions.json", "is a file, so it cannot hold predictions.json"),
    ("evaluate {good} --hidden 32", "--hidden: a checkpoint holds the layer sizes"),
    # the other commands
    ("crosscheck --batches 0", "--batches must be a positive integer"),
    ("crosscheck --epochs 0", "--epochs must be a positive integer"),
    ("crosscheck --out {file}", "is a file, not a folder"),
    ("bench --rounds 1", "--rounds must be at least 2"),
    ("bench --sizes huge", "--sizes: unknown huge"),
    ("bench --variants nope", "--variants: unknown nope"),
    ("bench --json {folder}", "is a folder"),
    ("post-train {good} --eta nan", "--eta must be a non-negative finite learning rate"),
    ("post-train {good} --epochs 0", "--epochs must be a positive integer"),
    ("post-train {good} --batch-size 0", "--batch-size must be a positive integer"),
    ("post-train {empty}", "is empty (0 bytes)"),
    ("post-train {good} --out {file}", "is a file, not a folder"),
    ("plasticity-study {good} --etas ,", "--etas lists no learning rate"),
    ("plasticity-study {good} --etas 1e-5,nan", "--etas 1e-05,nan: nan is not a non-negative finite learning rate"),
    ("plasticity-study {three_layers}", "post-training needs a 784-H-10 network"),
    ("post-train {three_layers}", "post-training needs a 784-H-10 network"),
    ("plasticity-study --etas 1e-5", "plasticity-study needs a trained checkpoint"),
    ("plasticity-study {good} --seeds 0,1", "belong to --dose-response"),
    ("plasticity-study {good} --dose-response", "takes no checkpoint"),
    ("plasticity-study --dose-response --seeds 0,0", "--seeds must list distinct seeds"),
    ("plasticity-study --dose-response --etas 1e-3", "two or more positive learning rates"),
    ("plasticity-study --dose-response --rules hebb,oja", "must include the default rule, covariance"),
    ("plasticity-study --dose-response --jobs 0", "--jobs must be a positive integer"),
    ("plasticity-study --dose-response --jobs 64", "asks for more than the"),
    ("plasticity-study --dose-response --shift blur:2", "unknown input shift 'blur'"),
    ("plasticity-study --dose-response --eta-scale sum", "measures eta in its mean form"),
    ("plasticity-study --dose-response --shift contrast", "--shift takes KIND:AMOUNT"),
    ("plasticity-study {good} --shift noise:0.3", "belong to --dose-response"),
    ("reproduce --quick --seeds 0", "--seeds must be a positive number of seeds"),
    ("reproduce --quick --jobs 0", "--jobs must be a positive integer"),
    ("reproduce --quick --jobs 64", "asks for more than the"),
    ("reproduce --threads 0", "--threads must be an integer from 1"),
    ("reproduce --quick --etas 1e-5,1e-4,nan", "--etas 1e-05,0.0001,nan: nan is not a non-negative finite learning rate"),
    ("reproduce --quick --out {file}", "is a file, not a folder"),
    ("explain --threads 0", "--threads must be an integer from 1"),
    ("explain --quick --out {file}", "is a file, not a folder"),
    ("stdp --quick --neurons 0", "--neurons must be an integer >= 1"),
    ("stdp --quick --epochs 0", "--epochs must be an integer >= 1"),
    ("stdp --quick --test-images 0", "--test-images must be an integer from 1 to 10000"),
    ("stdp --quick --checkpoint-every 0", "--checkpoint-every must be an integer >= 1"),
    ("stdp --quick --dt nan", "--dt (dt_ms) must be a finite number"),
    ("stdp --quick --out {file}", "is a file, not a folder"),
    ("stdp --quick --resume --out {train_run}", "holds no STDP run"),
]

# Flags each command takes, added to every case so that nothing slow or noisy runs.
COMMAND_FLAGS: dict[str, list[str]] = {
    "train": [*TINY, "--epochs", "1", "--hidden", str(HIDDEN), "--no-progress"],
    "evaluate": ["--test-subset", "100", "--no-progress"],
    "crosscheck": TINY,
    "bench": [],
    "post-train": [*TINY, "--no-progress"],
    "plasticity-study": [*TINY, "--no-progress"],
    "reproduce": ["--no-progress"],
    "explain": [],
    "stdp": [],
}


def command_line(template: str, inputs: dict[str, str], mnist_dir: Path) -> list[str]:
    words = [word.format(**inputs) for word in template.split()]
    command, rest = words[0], words[1:]
    positional = [word for word in rest[:1] if not word.startswith("-")]
    flags = rest[len(positional) :]
    defaults = [*COMMAND_FLAGS[command], "--data-dir", str(mnist_dir)]
    if "--out" not in flags and command != "evaluate" and command != "bench":
        defaults += ["--out", inputs["fresh"]]
    # later flags win in argparse, so the case's own flags come last
    return [command, *positional, *defaults, *flags]


@pytest.mark.parametrize("template, expected", CASES, ids=[template for template, _ in CASES])
def test_bad_input_is_one_error_line_with_exit_code_2(
    template: str, expected: str, inputs: dict[str, str], mnist_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(command_line(template, inputs, mnist_dir))
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured.err
    assert "Traceback" not in captured.err + captured.out
    assert len(lines) == 1 and lines[0].startswith("snn-mnist: error: "), captured.err
    assert expected in lines[0]


def test_zero_reset_snntorch_checkpoint_is_evaluated_by_the_general_network(
    inputs: dict[str, str], mnist_dir: Path, capsys
) -> None:
    """Once refused, now read: the study's class with reset_mechanism="zero" runs on the general
    FeedForwardSNN, and evaluate says what it detected."""
    code = main(["evaluate", inputs["snntorch_zero_reset"], "--data-dir", str(mnist_dir), "--test-subset", "50", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    assert "architecture: 784-16-10" in out and "lif1: " in out and "zero reset" in out and "fc1/lif1/... names" in out
    assert "test accuracy:" in out


@pytest.mark.parametrize(
    "raised, expected",
    [
        (MemoryError("Unable to allocate 596. GiB"), "out of memory (Unable to allocate 596. GiB)"),
        (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes"), "out of memory"),
        (PermissionError(13, "Permission denied", "/results/x.json"), "Permission denied: /results/x.json"),
    ],
)
def test_memory_and_file_system_errors_are_one_line(raised: BaseException, expected: str, monkeypatch, capsys) -> None:
    import experiments.train_cmd

    def handler(args: object) -> int:
        raise raised

    monkeypatch.setattr(experiments.train_cmd, "run_train", handler)
    assert main(["train"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("snn-mnist: error: ") and expected in lines[0] and "Fix:" in lines[0]


def test_other_runtime_errors_are_bugs_and_keep_their_traceback(monkeypatch) -> None:
    import experiments.train_cmd

    def handler(args: object) -> int:
        raise RuntimeError("a bug")

    monkeypatch.setattr(experiments.train_cmd, "run_train", handler)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["train"])


def test_no_help_text_shows_a_doubled_percent_sign() -> None:
    """argparse %-formats help= strings but not descriptions, so '%%' there shows as '%%'."""
    parser = build_parser()
    subparsers = next(action for action in parser._actions if action.choices and isinstance(action.choices, dict))
    assert "%%" not in parser.format_help()
    for name, subparser in subparsers.choices.items():
        assert "%%" not in subparser.format_help(), name


# Issue 31, finding 10: checks before work, naming the flag the user typed.  Each of these
# used to train (every seed, or 16 s of explain) before failing, or to name another flag.
CHECKS_BEFORE_WORK: list[tuple[str, str]] = [
    ("reproduce --quick --etas 1e-5,1e-4,nan", "--etas 1e-05,0.0001,nan: nan is not a non-negative finite learning rate"),
    ("reproduce --quick --etas 1e-5,1e-4,-1", "-1 is not a non-negative finite learning rate"),
    ("plasticity-study {good} --etas 1e-5,inf", "--etas 1e-05,inf: inf is not"),
    ("explain --quick --check-against {good}", "--check-against {good}: not a text file"),
    ("explain --quick --check-against {text}", "--check-against {text}: not valid JSON"),
    ("explain --quick --check-against {list_json}", "holds a JSON list"),
]


@pytest.mark.parametrize("template, expected", CHECKS_BEFORE_WORK, ids=[template for template, _ in CHECKS_BEFORE_WORK])
def test_flags_and_files_are_checked_before_any_work(
    template: str, expected: str, inputs: dict[str, str], mnist_dir: Path, capsys, monkeypatch, tmp_path: Path
) -> None:
    import experiments.train_cmd

    def no_data(*args: object, **kwargs: object) -> None:
        raise AssertionError("MNIST was read before the flags were checked")

    (tmp_path / "list.json").write_text("[1, 2]\n")
    names = {**inputs, "list_json": str(tmp_path / "list.json")}
    for module in ("experiments.train_cmd", "experiments.explain", "experiments.posttrain_cmd", "experiments.reproduce"):
        monkeypatch.setattr(f"{module}.load_mnist", no_data, raising=False)
        monkeypatch.setattr(f"{module}.load_splits", no_data, raising=False)
    assert experiments.train_cmd.load_splits is no_data
    code = main(command_line(template, names, mnist_dir))
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2 and "Traceback" not in captured.err, captured.err
    assert len(lines) == 1 and lines[0].startswith("snn-mnist: error: "), captured.err
    assert expected.format(**names) in lines[0] and "Fix:" in lines[0]
