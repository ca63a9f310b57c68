"""The dose-response study (`plasticity-study --dose-response`): its arithmetic on made-up
runs, and the whole study on small MNIST subsets (files, resume, workers = in-process)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from experiments.cli import main
from experiments.dose_response import (
    DOSE_FIGURE,
    DOSE_JSON,
    DOSE_MARKDOWN,
    STUDY_LOSS,
    DoseResponseConfig,
    eta_for_loss,
    run_dose_response,
    summarise,
)
from experiments.seeds import seed_folder
from training.data import load_mnist


def test_eta_for_loss_interpolates_in_log_eta() -> None:
    losses = {1e-5: 0.0, 1e-4: 1.0, 1e-3: 3.0, 1e-2: 50.0}
    assert eta_for_loss(losses, 2.0) == pytest.approx(10 ** -3.5)
    assert eta_for_loss(losses, 1.0) == pytest.approx(1e-4)
    assert eta_for_loss(losses, 0.0) == 1e-5  # reached at the first grid point
    assert eta_for_loss(losses, 60.0) is None  # never reached
    # the first crossing counts, even if the loss dips again later
    assert eta_for_loss({1e-4: 0.0, 1e-3: 4.0, 1e-2: 2.0}, 3.0) == pytest.approx(10 ** (-4 + 0.75))


def _row(rule: str, eta: float, seed: int, accuracies: list[float], probe: bool = False) -> dict:
    drift = {"relative_change": eta, "fraction_at_clip": 0.0}
    return {"rule": rule, "eta": eta, "seed": seed, "probe": probe, "test_accuracy": accuracies,
            "weight_drift": {"fc1": drift, "fc2": drift}, "seconds": 1.0}


def test_summary_finds_the_study_loss_and_the_normalisation_it_implies() -> None:
    """Seed s loses 0, 1 and 2 + 3 (s + 1) points at eta 1e-5, 1e-4, 1e-3: eta* in closed form."""
    etas = (1e-5, 1e-4, 1e-3)
    config = DoseResponseConfig(etas=etas, rules=("covariance",), seeds=(0, 1, 2), epochs=1)
    rows, expected = [], []
    for seed in range(3):
        high = 2.0 + 3.0 * (seed + 1)  # loss at 1e-3
        for eta, loss in zip(etas, (0.0, 1.0, high)):
            rows.append(_row("covariance", eta, seed, [97.0, 97.0 - loss]))
        expected.append(10 ** (-4 + (STUDY_LOSS - 1.0) / (high - 1.0)))
    summary = summarise(rows, config)
    crossing = summary["study_loss_crossing"]
    assert [crossing["per_seed"][str(seed)] for seed in range(3)] == pytest.approx(expected)
    assert crossing["geometric_mean"] == pytest.approx(math.exp(sum(math.log(value) for value in expected) / 3))
    assert crossing["range"] == pytest.approx([min(expected), max(expected)])
    ratio = crossing["geometric_mean"] / 1e-5
    assert summary["normalisation"]["ratio_to_study_eta"] == pytest.approx(ratio)
    assert summary["normalisation"]["nearest_factor"] == 25  # eta* ~ 2.4e-4, 24 times 1e-5: nearest is T = 25
    entry = summary["table"]["covariance"][1]
    assert entry["loss_mean"] == [1.0] and entry["loss_sd"] == [0.0] and entry["n"] == 3
    assert summary["tolerance"]["covariance"]["per_seed"]["0"] == pytest.approx(10 ** -4.5)
    assert "probe" not in summary
    # probe runs: the per-epoch drops and whether they grow
    rows += [_row("covariance", 3e-4, seed, [97.0, 96.5, 95.5, 94.0], probe=True) for seed in range(3)]
    probe = summarise(rows, DoseResponseConfig(etas=etas, rules=("covariance",), seeds=(0, 1, 2), epochs=1))
    assert "probe" in probe  # probes never enter the grid's table
    assert probe["table"]["covariance"][1]["n"] == 3


@pytest.fixture(scope="module")
def small_splits(mnist_dir: Path):
    return load_mnist("train", mnist_dir).subset(600), load_mnist("test", mnist_dir).subset(300)


SMALL = dict(etas=(1e-3, 1e-2), rules=("covariance", "covariance_anchor"), seeds=(0, 1), epochs=2, baseline_epochs=1)


def test_the_study_on_subsets_writes_its_files_and_resumes(small_splits, tmp_path: Path) -> None:
    train_split, test_split = small_splits
    config = DoseResponseConfig(**SMALL)
    run_dose_response(config, tmp_path, train_split, test_split, progress=False, log=lambda _: None)
    for name in (DOSE_JSON, DOSE_MARKDOWN, DOSE_FIGURE):
        assert (tmp_path / name).is_file()
    for seed in config.seeds:
        assert (seed_folder(tmp_path, seed) / "supervised_snn_baseline_state_dict.pt").is_file()
    payload = json.loads((tmp_path / DOSE_JSON).read_text())
    grid = [row for row in payload["runs"] if not row["probe"]]
    assert len(grid) == 2 * 2 * 2
    assert all(len(row["test_accuracy"]) == config.epochs + 1 for row in payload["runs"])
    # every run starts from its seed's baseline accuracy
    for row in payload["runs"]:
        assert row["test_accuracy"][0] == payload["baseline_accuracy"][str(row["seed"])]
    markdown = (tmp_path / DOSE_MARKDOWN).read_text()
    assert "covariance_anchor" in markdown and "Tolerance" in markdown

    # interrupted: three runs lost; the same call runs only those, with the same numbers
    kept = payload["runs"][3:]
    (tmp_path / DOSE_JSON).write_text(json.dumps({**payload, "runs": kept}))
    lines: list[str] = []
    run_dose_response(config, tmp_path, train_split, test_split, progress=False, log=lines.append)
    assert f"{len(grid) - 3} of {len(grid)} runs already in {tmp_path / DOSE_JSON}: kept" in lines
    ran = [line for line in lines if line.startswith("[")]
    assert len(ran) == 3
    again = json.loads((tmp_path / DOSE_JSON).read_text())
    def numbers(runs: list[dict]) -> list[dict]:
        return [{key: value for key, value in row.items() if key != "seconds"} for row in runs]

    assert numbers(again["runs"]) == numbers(payload["runs"])


def test_workers_give_the_numbers_of_one_process(small_splits, tmp_path: Path) -> None:
    train_split, test_split = small_splits
    config = DoseResponseConfig(**{**SMALL, "etas": (1e-3, 3e-3), "rules": ("covariance",), "epochs": 1})
    here = run_dose_response(config, tmp_path / "here", train_split, test_split, progress=False, log=lambda _: None)
    workers = run_dose_response(
        DoseResponseConfig(**{**config.to_json(), "etas": config.etas, "rules": config.rules, "seeds": config.seeds, "jobs": 2}),
        tmp_path / "workers", train_split, test_split, progress=False, log=lambda _: None,
    )
    assert here["table"] == workers["table"]
    one = json.loads((tmp_path / "here" / DOSE_JSON).read_text())["runs"]
    two = json.loads((tmp_path / "workers" / DOSE_JSON).read_text())["runs"]
    assert [row["test_accuracy"] for row in one] == [row["test_accuracy"] for row in two]


def test_the_command_line(mnist_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main([
        "plasticity-study", "--dose-response", "--data-dir", str(mnist_dir), "--out", str(tmp_path),
        "--train-subset", "300", "--test-subset", "200", "--etas", "1e-3,1e-2", "--rules", "covariance",
        "--seeds", "0,1", "--epochs", "1", "--jobs", "1", "--threads", "1", "--no-progress",
    ])
    out = capsys.readouterr().out
    assert code == 0
    assert "loses the study's 3.30 points" in out or "never loses the study's 3.30 points" in out
    assert (tmp_path / DOSE_FIGURE).is_file()


def test_input_shifts() -> None:
    import torch

    from training.data import MnistSplit, shifted

    split = MnistSplit(torch.rand(4, 28, 28), torch.arange(4))
    dim = shifted(split, "contrast", 0.5)
    assert torch.equal(dim.images, split.images * 0.5) and dim.labels is split.labels
    noisy = shifted(split, "noise", 0.3, seed=1)
    assert torch.equal(noisy.images, shifted(split, "noise", 0.3, seed=1).images)  # one fixed draw per seed
    assert not torch.equal(noisy.images, shifted(split, "noise", 0.3, seed=2).images)
    assert float(noisy.images.min()) >= 0.0 and float(noisy.images.max()) <= 1.0
    for kind, amount, message in (("blur", 1.0, "unknown input shift"), ("contrast", 1.5, "in (0, 1]"), ("noise", 0.0, "> 0")):
        with pytest.raises(ValueError, match=re.escape(message)):
            shifted(split, kind, amount)


def test_the_study_under_a_shift_measures_gain_and_cost(small_splits, tmp_path: Path) -> None:
    train_split, test_split = small_splits
    config = DoseResponseConfig(**{**SMALL, "rules": ("covariance",), "epochs": 1, "shift": "noise:0.4"})
    assert config.files() == ("adaptation_noise0.4.json", "adaptation_noise0.4.md", "adaptation_noise0.4.png")
    summary = run_dose_response(config, tmp_path, train_split, test_split, progress=False, log=lambda _: None)
    payload = json.loads((tmp_path / "adaptation_noise0.4.json").read_text())
    assert len(payload["runs"]) == 2 * 2 and not any(row["probe"] for row in payload["runs"])
    for row in payload["runs"]:
        # clean accuracy before is the baseline's; shifted accuracy before is lower than clean here
        assert row["clean_accuracy"][0] == payload["baseline_accuracy"][str(row["seed"])]
    entry = summary["adaptation"]["covariance"]["grid"][0]
    gains = [row["test_accuracy"][-1] - row["test_accuracy"][0] for row in payload["runs"] if row["eta"] == entry["eta"]]
    assert entry["gain"][0] == pytest.approx(sum(gains) / len(gains))
    assert "gain" in (tmp_path / "adaptation_noise0.4.md").read_text()
    assert (tmp_path / "adaptation_noise0.4.png").is_file()
    assert not (tmp_path / DOSE_JSON).exists()
