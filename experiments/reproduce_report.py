"""REPORT.md and seeds.json of `snn-mnist reproduce`: every number over the seeds.

Each training-derived number is the mean ± sample sd over the seeds (n), read from
the seed folders' files; the study's published value stands beside it, with where
that value lies relative to our seeds: inside their range, or how many of our sds
away from our mean.  Figures named without a seed are the first seed's (a named
single run); `seeds_summary.png` shows the spread.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from experiments import __version__, figures
from experiments.dose_response import DOSE_MARKDOWN
from experiments.posttrain_cmd import ACCURACY_JSON, STUDY_JSON
from experiments.seeds import format_mean_sd, mean_sd
from training.checkpoint import atomic_write_json, atomic_write_text
from training.runtime import describe_machine
from training.train import CONFIG_JSON, CURVES_JSON, library_versions

# File names of a seed folder (the study's own) and of the report.
REPORT = "REPORT.md"
SEEDS_JSON = "seeds.json"
SEEDS_FIGURE = "seeds_summary.png"
METRICS_JSON = "per_class_metrics.json"
RUNS_DIR = "post_trained"
GENTLE_KEY = "gentle_lr_eta_1e-5"
STRONG_KEY = "strong_lr_eta_1e-4"
STAGES = ("train", "plasticity", "analysis")
FIGURES = {
    "curves": "snn_train_test_accuracy.png",
    "cm_baseline": "cm_supervised_snn.png",
    "cm_post": "cm_post_trained_snn.png",
    "hist1": "weight_hist_layer1.png",
    "hist2": "weight_hist_layer2.png",
    "strong": "post_training_strong_lr.png",
    "gentle": "post_training_gentle_lr.png",
    "heatmaps": "snn_spike_heatmaps_post_trained.png",
    "hidden": "snn_hidden_activity_example_post_trained.png",
    "rules": "post_training_rules_comparison.png",
}

# The study's published numbers (its README, sections 4.2-4.4 and 6), for the
# side-by-side table only.  Its strong-eta curve was simulated, so it has none.
STUDY_PUBLISHED: dict[str, Any] = {
    "final_train_acc": 95.31,
    "final_test_acc": 94.24,
    "baseline_macro": {"precision": 0.945, "recall": 0.942, "f1": 0.942},
    "post_trained_macro": {"precision": 0.918, "recall": 0.908, "f1": 0.909},
    "gentle_trajectory": [94.24, 93.50, 92.43, 90.94],
}

SeedFolders = Sequence[tuple[int, Path, dict[str, Any]]]  # (seed, folder, its manifest's stages)


def placement(study: float, values: Sequence[float]) -> str:
    """Where the study's value lies relative to our seeds' values, in words."""
    if len(values) < 2:
        return "one seed: no spread to compare with"
    mean, sd = mean_sd(values)
    assert sd is not None
    if min(values) <= study <= max(values):
        return "within our seeds' range"
    side = "below" if study < mean else "above"
    if sd == 0:
        return f"{side} every seed (ours agree exactly)"
    return f"{side} our range, {abs(study - mean) / sd:.1f} sd from our mean"


def _read(folder: Path, name: str) -> Any:
    return json.loads((folder / name).read_text())


def collect(seeds: SeedFolders) -> dict[str, Any]:
    """Per-seed values of every reported quantity, from the seed folders' files."""
    per_seed: dict[str, Any] = {"seeds": [seed for seed, _, _ in seeds]}
    curves = [_read(folder, CURVES_JSON) for _, folder, _ in seeds]
    metrics = [_read(folder, METRICS_JSON) for _, folder, _ in seeds]
    accuracy = [_read(folder, ACCURACY_JSON) for _, folder, _ in seeds]
    per_seed["train_acc_history"] = [curve["train_acc_history"] for curve in curves]
    per_seed["test_acc_history"] = [curve["test_acc_history"] for curve in curves]
    per_seed["gentle"] = [values[GENTLE_KEY] for values in accuracy]
    per_seed["strong"] = [values[STRONG_KEY] for values in accuracy]
    per_seed["metrics"] = metrics
    per_seed["runs"] = [_read(folder, STUDY_JSON)["runs"] for _, folder, _ in seeds]
    return per_seed


def _over_seeds(values: Sequence[float], digits: int) -> str:
    return format_mean_sd(list(values), digits)


def side_by_side_rows(data: dict[str, Any], published: dict[str, Any]) -> list[tuple[str, float | None, list[float], int]]:
    """(quantity, study's value or None, our values over seeds, digits)."""
    rows: list[tuple[str, float | None, list[float], int]] = [
        ("final train accuracy (%)", published["final_train_acc"], [h[-1] for h in data["train_acc_history"]], 2),
        ("final test accuracy (%)", published["final_test_acc"], [h[-1] for h in data["test_acc_history"]], 2),
    ]
    for label, section, key in (("baseline", "baseline", "baseline_macro"), ("post-trained (eta 1e-5)", "post_trained", "post_trained_macro")):
        for metric in ("precision", "recall", "f1"):
            rows.append((f"{label} macro {metric}", published[key][metric], [m[section][f"macro_{metric}"] for m in data["metrics"]], 4))
    gentle, study_gentle = data["gentle"], published["gentle_trajectory"]
    for index in range(max(len(gentle[0]), len(study_gentle))):
        label = "before post-training" if index == 0 else f"after epoch {index}"
        ours = [values[index] for values in gentle] if index < len(gentle[0]) else []
        theirs = study_gentle[index] if index < len(study_gentle) else None
        rows.append((f"gentle (eta 1e-5) test accuracy, {label} (%)", theirs, ours, 2))
    for index in range(len(data["strong"][0])):
        label = "before post-training" if index == 0 else f"after epoch {index}"
        rows.append((f"strong (eta 1e-4) test accuracy, {label} (%)", None, [values[index] for values in data["strong"]], 2))
    return rows


def rules_table(runs_per_seed: Sequence[Sequence[dict[str, Any]]]) -> list[str]:
    """The rule x eta table, every cell mean ± sd over the seeds."""
    keys = [row["key"] for row in runs_per_seed[0]]
    epochs = len(runs_per_seed[0][0]["test_accuracy"]) - 1
    header = ["rule", "eta", "before"] + [f"epoch {e}" for e in range(1, epochs + 1)] + ["macro-F1 (last)", "drift fc1 (%)", "drift fc2 (%)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key in keys:
        members = [next(row for row in runs if row["key"] == key) for runs in runs_per_seed]
        cells = [members[0]["rule"], f"{members[0]['eta']:g}"]
        cells += [format_mean_sd([row["test_accuracy"][e] for row in members], 2, count=False) for e in range(epochs + 1)]
        cells.append(format_mean_sd([row["macro_f1_after_last_epoch"] for row in members], 4, count=False))
        for layer in ("fc1", "fc2"):
            cells.append(format_mean_sd([100 * row["weight_drift"][layer]["relative_change"] for row in members], 2, count=False))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def build_report(config: Any, out: Path, seeds: SeedFolders, jobs: int, seconds: float) -> tuple[str, dict[str, Any]]:
    """REPORT.md's text and seeds.json's content."""
    data = collect(seeds)
    n = len(seeds)
    first_seed, first_folder, _ = seeds[0]
    experiment = _read(first_folder, CONFIG_JSON)
    rows = side_by_side_rows(data, STUDY_PUBLISHED)
    lines = [
        "# Reproduction report",
        "",
        f"Generated by `snn-mnist reproduce` (snn-mnist {__version__}) on "
        f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, seeds {', '.join(map(str, data['seeds']))}. "
        f"Every number in the 'ours' column is the mean ± sample sd over these {n} seeds (n), measured in this run "
        "(each seed's files are in `seed_<S>/`); the 'study' column holds the study's published values, one run. "
        f"Figures without a seed in their caption are seed {first_seed}'s, and the files named as in the study "
        f"in this folder are seed {first_seed}'s too.",
        "",
    ]
    if config.train_subset is not None or config.epochs < 10:
        lines += [
            f"**Quick mode**: {config.train_subset or 60000:,} training and {config.test_subset or 10000:,} test images, "
            f"{config.epochs} training epoch(s), {config.post_epochs} post-training epoch(s). "
            "These numbers are a smoke test, not the study's setting.",
            "",
        ]
    lines += [
        "## Side by side with the study",
        "",
        "| quantity | study (published) | ours (mean ± sd, n) | difference of means | the study's value lies |",
        "|---|---|---|---|---|",
    ]
    summary_rows = []
    for label, theirs, ours, digits in rows:
        if not ours:
            lines.append(f"| {label} | {theirs:.{digits}f} | — | — | — |")
            continue
        mean = mean_sd(ours)[0]
        study_cell = "simulated in the study, not measured" if theirs is None else f"{theirs:.{digits}f}"
        difference = "—" if theirs is None else f"{mean - theirs:+.{digits}f}"
        where = "—" if theirs is None else placement(theirs, ours)
        lines.append(f"| {label} | {study_cell} | {_over_seeds(ours, digits)} | {difference} | {where} |")
        summary_rows.append({"quantity": label, "study": theirs, "ours": ours, "mean": mean, "sd": mean_sd(ours)[1]})
    gentle_loss = [values[0] - values[-1] for values in data["gentle"]]
    lines += [
        "",
        f"Our baselines' test accuracy differs from the study's by {mean_sd([h[-1] for h in data['test_acc_history']])[0] - STUDY_PUBLISHED['final_test_acc']:+.2f} "
        f"points: the study's baseline is one run of its own code, ours are {n} seeds of this one (see docs/); the "
        "post-training trajectories are therefore compared by their shape, how much is lost per epoch. "
        f"At eta 1e-5 our networks lose {format_mean_sd(gentle_loss)} points over "
        f"{len(data['gentle'][0]) - 1} epoch(s), the study's lost {STUDY_PUBLISHED['gentle_trajectory'][0] - STUDY_PUBLISHED['gentle_trajectory'][-1]:.2f}. "
        "Our eta multiplies a mean over batch and time (docs/plasticity.md); the dose-response study "
        "(`snn-mnist plasticity-study --dose-response`) finds the eta at which our rule loses as much.",
        "",
        "## Training",
        "",
        f"![accuracy per epoch over the seeds]({SEEDS_FIGURE})",
        "",
        f"![train and test accuracy, seed {first_seed}]({FIGURES['curves']})",
        "",
        "| epoch | train accuracy (%) | test accuracy (%) |",
        "|---|---|---|",
    ]
    for epoch in range(len(data["test_acc_history"][0])):
        lines.append(
            f"| {epoch + 1} | {format_mean_sd([h[epoch] for h in data['train_acc_history']], 2, count=False)} | "
            f"{format_mean_sd([h[epoch] for h in data['test_acc_history']], 2, count=False)} |"
        )
    lines += [
        "",
        f"![baseline confusion matrix, seed {first_seed}]({FIGURES['cm_baseline']}) "
        f"![post-trained confusion matrix, seed {first_seed}]({FIGURES['cm_post']})",
        "",
        f"## Post-training plasticity: every rule, measured (mean ± sd over {n} seeds)",
        "",
        *rules_table(data["runs"]),
        "",
        "Accuracy is on the test set before post-training and after each epoch; drift is ||W - W0||_F / ||W0||_F.",
        "",
        f"Seed {first_seed}:",
        "",
        f"![gentle, seed {first_seed}]({FIGURES['gentle']})",
        "",
        f"![strong, seed {first_seed}]({FIGURES['strong']})",
        "",
        f"![all rules, seed {first_seed}]({FIGURES['rules']})",
        "",
        f"![layer 1 weights, seed {first_seed}]({FIGURES['hist1']}) ![layer 2 weights, seed {first_seed}]({FIGURES['hist2']})",
        "",
        "## Dose-response: forgetting against eta",
        "",
    ]
    dose = out / DOSE_MARKDOWN
    if dose.is_file():
        lines += [dose.read_text().rstrip(), ""]
    else:
        lines += [
            f"Not run into this folder. `snn-mnist plasticity-study --dose-response --out {out}` reuses these seeds' "
            "baselines, runs every rule on a log grid of eta, and the next `reproduce` includes it here.",
            "",
        ]
    lines += [
        f"## Spikes of the post-trained network (seed {first_seed})",
        "",
        f"![spike heatmaps]({FIGURES['heatmaps']})",
        "",
        f"![hidden activity]({FIGURES['hidden']})",
        "",
        f"## Per-class metrics (test set, mean ± sd over {n} seeds)",
        "",
        "| digit | precision (baseline) | recall (baseline) | F1 (baseline) | precision (post) | recall (post) | F1 (post) |",
        "|---|---|---|---|---|---|---|",
    ]
    for digit in range(10):
        cells = [str(digit)]
        for section in ("baseline", "post_trained"):
            for metric in ("precision", "recall", "f1"):
                cells.append(format_mean_sd([m[section][metric][digit] for m in data["metrics"]], 4, count=False))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Run", "", "| seed | " + " | ".join(f"{name} (s)" for name in STAGES) + " |", "|---|" + "---|" * len(STAGES)]
    for seed, _, stages in seeds:
        lines.append(f"| {seed} | " + " | ".join(f"{stages.get(name, {}).get('seconds', math.nan):.1f}" for name in STAGES) + " |")
    lines += [
        "",
        f"A stage's time runs from its start to the end of its last task, including time its tasks waited behind "
        f"other seeds' tasks; {jobs} task(s) side by side on {config.threads} thread(s) each; "
        f"this invocation took {seconds:.1f} s in all (stages reused from an earlier run count only as the time to check them).",
        "",
        f"Settings: `{json.dumps(config.to_json())}`",
        "",
        f"Machine: {describe_machine(experiment['machine']) if 'machine' in experiment else 'not recorded by the training stage'}; "
        f"versions: `{json.dumps(experiment.get('versions', library_versions()))}`.",
        "",
    ]
    summary = {"config": config.to_json(), "jobs": jobs, "seconds": seconds, "side_by_side": summary_rows, "per_seed": data}
    return "\n".join(lines), summary


def write_report(config: Any, out: Path, seeds: SeedFolders, jobs: int, seconds: float) -> None:
    text, summary = build_report(config, out, seeds, jobs, seconds)
    data = summary["per_seed"]
    figures.plot_seed_summary(
        data["train_acc_history"], data["test_acc_history"], data["gentle"], data["strong"],
        STUDY_PUBLISHED["gentle_trajectory"], out / SEEDS_FIGURE,
    )
    atomic_write_json(out / SEEDS_JSON, summary)
    atomic_write_text(out / REPORT, text)
