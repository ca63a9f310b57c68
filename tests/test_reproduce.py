"""`snn-mnist reproduce --quick` end to end: every artifact, the seeds' aggregate, stage reuse,
corruption detection, and that side-by-side workers give the numbers of one process."""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from experiments.cli import main
from experiments.reproduce import FIGURES, MANIFEST, METRICS_JSON, REPORT, RUNS_DIR
from experiments.reproduce_report import SEEDS_FIGURE, SEEDS_JSON, placement
from experiments.seeds import seed_folder
from training.network import study_network_config
from training.snntorch_checkpoint import load_network

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
STATE_DICTS = ["supervised_snn_baseline_state_dict.pt", "supervised_snn_post_trained_state_dict.pt"]


def run_quick(out: Path, mnist_dir: Path, *extra: str) -> int:
    return main(
        ["reproduce", "--quick", "--out", str(out), "--data-dir", str(mnist_dir), "--threads", "1", "--no-progress", *extra]
    )


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory, mnist_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("reproduce") / "results"
    assert run_quick(out, mnist_dir, "--archive") == 0
    return out


SEEDS = (0, 1)  # --quick


def stage_times(out: Path) -> dict[str, str]:
    return {
        f"{name} seed {seed}": entry["completed_at"]
        for seed in SEEDS
        for name, entry in json.loads((seed_folder(out, seed) / MANIFEST).read_text())["stages"].items()
    }


def test_every_artifact_exists_and_parses(quick_run: Path) -> None:
    out = quick_run
    with open(out / "training_curves.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["epoch", "train_acc", "test_acc"] and len(rows) == 1
    curves = json.loads((out / "training_curves.json").read_text())
    assert set(curves) >= {"train_acc_history", "test_acc_history"}
    accuracy = json.loads((out / "post_training_accuracy.json").read_text())
    assert len(accuracy["gentle_lr_eta_1e-5"]) == 2 and len(accuracy["strong_lr_eta_1e-4"]) == 2
    assert set(accuracy["weight_drift"]["gentle_lr_eta_1e-5"]) == {"fc1", "fc2"}
    metrics = json.loads((out / METRICS_JSON).read_text())
    for model in ("baseline", "post_trained"):
        assert len(metrics[model]["precision"]) == len(metrics[model]["recall"]) == len(metrics[model]["f1"]) == 10
        assert 0.0 <= metrics[model]["macro_f1"] <= 1.0
    config = json.loads((out / "experiment_config.json").read_text())
    assert config["training"]["epochs"] == 1 and "numba" in config["versions"]
    study = json.loads((out / "plasticity_study.json").read_text())
    assert {row["rule"] for row in study["runs"]} == {"covariance", "covariance_anchor"}
    for name in STATE_DICTS + [f"{RUNS_DIR}/strong_lr_eta_1e-4.pt"]:
        model = load_network(out / name, study_network_config()).model
        assert model.config.layer_sizes == (784, 512, 10)
    report = (out / REPORT).read_text()
    finals = [json.loads((seed_folder(out, seed) / "training_curves.json").read_text())["test_acc_history"][-1] for seed in SEEDS]
    mean, sd = np.mean(finals), np.std(finals, ddof=1)
    assert f"| final test accuracy (%) | 94.24 | {mean:.2f} ± {sd:.2f} (n=2) | {mean - 94.24:+.2f} |" in report
    assert curves == json.loads((seed_folder(out, 0) / "training_curves.json").read_text()), "the study's names are seed 0's"
    for png in [*FIGURES.values(), SEEDS_FIGURE]:
        assert f"({png})" in report, f"{png} not embedded in the report"
    summary = json.loads((out / SEEDS_JSON).read_text())
    assert summary["per_seed"]["seeds"] == list(SEEDS)
    row = next(row for row in summary["side_by_side"] if row["quantity"] == "final test accuracy (%)")
    assert row["ours"] == finals and row["study"] == 94.24


def test_placement_says_where_the_study_lies() -> None:
    assert placement(97.0, [96.0, 98.0]) == "within our seeds' range"
    assert placement(94.0, [97.0, 97.2, 97.4]) == "below our range, 16.0 sd from our mean"
    assert placement(99.0, [97.0, 97.0]) == "above every seed (ours agree exactly)"
    assert placement(99.0, [97.0]) == "one seed: no spread to compare with"


@pytest.mark.parametrize("png", sorted([*FIGURES.values(), SEEDS_FIGURE]))
def test_every_figure_is_a_non_blank_png(quick_run: Path, png: str) -> None:
    path = quick_run / png
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[0] > 200 and pixels.shape[1] > 300
    assert np.std(pixels[..., :3]) > 0.05, "figure is (nearly) blank"


def test_archive_holds_the_results(quick_run: Path) -> None:
    with zipfile.ZipFile(quick_run.parent / "results.zip") as bundle:
        names = set(bundle.namelist())
    assert "results/REPORT.md" in names and "results/cm_supervised_snn.png" in names
    assert "results/seed_1/supervised_snn_baseline_state_dict.pt" in names
    assert "results/training_state.pt" not in names and "results/seed_0/training_state.pt" not in names


def test_rerun_reuses_completed_stages(quick_run: Path, mnist_dir: Path, capsys) -> None:
    before = stage_times(quick_run)
    assert run_quick(quick_run, mnist_dir) == 0
    assert "6 of 6 stages reused" in capsys.readouterr().out
    assert stage_times(quick_run) == before


def test_corrupt_artifact_is_detected_and_rebuilt(quick_run: Path, mnist_dir: Path, capsys) -> None:
    model_file = seed_folder(quick_run, 1) / "supervised_snn_baseline_state_dict.pt"
    original = model_file.read_bytes()
    model_file.write_bytes(original[: len(original) // 2])  # truncated, as by a crash or a bad copy
    assert run_quick(quick_run, mnist_dir) == 0
    output = capsys.readouterr().out
    assert "seed 1: stage train: outputs missing, changed" in output
    assert "seed 0: stage train: reused" in output
    assert model_file.read_bytes() == original, "the rebuilt baseline differs: training is not deterministic"
    load_network(model_file, study_network_config())

    metrics = seed_folder(quick_run, 0) / METRICS_JSON
    metrics.write_text("{ not json")
    published = quick_run / "supervised_snn_post_trained_state_dict.pt"
    published.write_bytes(b"edited")  # a copy under the study's name: restored from seed 0
    assert run_quick(quick_run, mnist_dir) == 0
    assert "seed 0: stage analysis: outputs missing, changed" in capsys.readouterr().out
    assert json.loads(metrics.read_text())["baseline"]["macro_f1"] >= 0.0
    assert json.loads((quick_run / METRICS_JSON).read_text()) == json.loads(metrics.read_text())
    assert published.read_bytes() == (seed_folder(quick_run, 0) / published.name).read_bytes()


def test_force_rebuilds_everything(quick_run: Path, mnist_dir: Path, capsys) -> None:
    assert run_quick(quick_run, mnist_dir, "--force") == 0
    assert "(0 of 6 stages reused;" in capsys.readouterr().out


def test_side_by_side_jobs_give_the_numbers_of_one_process(quick_run: Path, mnist_dir: Path, tmp_path: Path) -> None:
    """The fixture ran with --threads 1 and the default jobs (2 on two cores); one job gives the same bits."""
    assert run_quick(tmp_path / "one", mnist_dir, "--jobs", "1") == 0
    for seed in SEEDS:
        for name in ("supervised_snn_baseline_state_dict.pt", "post_training_accuracy.json", METRICS_JSON):
            assert (seed_folder(tmp_path / "one", seed) / name).read_bytes() == (seed_folder(quick_run, seed) / name).read_bytes(), name
