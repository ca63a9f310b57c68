"""The results of `snn-mnist sweep`: one row per trial, and the trials grouped by setting.

    sweep_results.json   the spec and every trial: settings, seed, per-epoch metrics,
                         train time, node, attempts (1 + restarts), status
    sweep_results.csv    the same, one line per trial (per-epoch lists joined with ';')
    SWEEP.md             settings ranked by mean validation accuracy, mean +- sd over seeds
    sweep.png            validation accuracy per setting (mean +- sd) and the top settings' curves

Aggregates use only trials that ran all their epochs; a trial stopped early by ASHA is
listed but not averaged.  sd is the sample standard deviation (n - 1), blank for n = 1.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from experiments.seeds import mean_sd
from experiments.sweep_space import METRIC, SweepSpec, configs_for, setting_label
from training.checkpoint import atomic_write_json, atomic_write_text

RESULTS_JSON = "sweep_results.json"
RESULTS_CSV = "sweep_results.csv"
MARKDOWN = "SWEEP.md"
FIGURE = "sweep.png"
PER_EPOCH = ("train_acc", METRIC, "test_acc", "loss", "epoch_seconds")


def rows_from_results(results: Iterable[Any], spec: SweepSpec) -> list[dict[str, Any]]:
    """One plain-dict row per trial of a Ray Tune ResultGrid, in a fixed order."""
    rows = []
    for result in results:
        config = result.config or {}
        settings = dict(config["settings"]) if "settings" in config else {k: v for k, v in config.items() if k != "seed"}
        seed = int(config.get("seed", spec.seeds[0]))
        frame = result.metrics_dataframe
        records = frame.to_dict("records") if frame is not None else []
        by_epoch: dict[int, dict[str, Any]] = {}
        post: dict[str, Any] = {}
        for record in records:  # a restarted trial may report an epoch twice: keep the last
            if any(str(key).startswith("post_") and _present(value) for key, value in record.items()):
                post = {key: value for key, value in record.items() if str(key).startswith("post_") and _present(value)}
            elif _present(record.get("epoch")) and _present(record.get(METRIC)):
                by_epoch[int(record["epoch"])] = record
        epochs = [by_epoch[k] for k in sorted(by_epoch)]
        last = epochs[-1] if epochs else {}
        planned = configs_for(settings, seed, spec.preset)[1].epochs
        if result.error is not None:
            status = "error"
        elif len(epochs) < planned:  # ASHA stopped it, or the sweep was interrupted
            status = "stopped early"
        else:
            status = "finished"
        row: dict[str, Any] = {
            "trial_id": str((result.metrics or {}).get("trial_id", Path(str(result.path)).name)),
            "settings": settings,
            "label": setting_label(settings),
            "seed": seed,
            "status": status,
            "epochs_done": len(epochs),
            "reports": len(records),  # epochs reported, counting repeats after a restart
            **{f"{key}_history": [float(record[key]) for record in epochs] for key in PER_EPOCH},
            "final_" + METRIC: float(last[METRIC]) if last else None,
            "final_test_acc": float(last["test_acc"]) if last else None,
            "best_" + METRIC: max((float(record[METRIC]) for record in epochs), default=None),
            "train_seconds": sum(float(record["epoch_seconds"]) for record in epochs),
            "node": last.get("node"),
            "attempts": int(max((float(r.get("attempt", 1)) for r in records if _present(r.get("attempt"))), default=1)),
            "error": str(result.error).splitlines()[0][:300] if result.error is not None else None,
        }
        if post:
            accuracies = sorted((int(key.rsplit("_", 1)[1]), float(value)) for key, value in post.items() if key.startswith("post_test_acc_"))
            row["post_test_acc_history"] = [value for _, value in accuracies]
            row.update({key: float(value) for key, value in post.items() if not key.startswith("post_test_acc_")})
        rows.append(row)
    rows.sort(key=lambda row: (row["label"], row["seed"]))
    return rows


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Settings ranked by mean final validation accuracy over their finished seeds."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row["status"] == "finished":
            groups.setdefault(row["label"], []).append(row)
    summary = []
    for label, members in groups.items():
        val_mean, val_sd = mean_sd([row["final_" + METRIC] for row in members])
        test_mean, test_sd = mean_sd([row["final_test_acc"] for row in members])
        entry = {
            "label": label,
            "settings": members[0]["settings"],
            "n": len(members),
            "seeds": sorted(row["seed"] for row in members),
            "val_mean": val_mean, "val_sd": val_sd, "test_mean": test_mean, "test_sd": test_sd,
            "train_seconds_mean": statistics.fmean(row["train_seconds"] for row in members),
            "val_curve_mean": [statistics.fmean(values) for values in zip(*(row[METRIC + "_history"] for row in members))],
        }
        if all("post_test_acc_history" in row for row in members):
            finals = [row["post_test_acc_history"][-1] for row in members]
            entry["post_final_mean"], entry["post_final_sd"] = mean_sd(finals)
        summary.append(entry)
    summary.sort(key=lambda entry: (-entry["val_mean"], entry["label"]))
    return summary


def _pm(mean: float, sd: float | None) -> str:
    return f"{mean:.2f} ± {sd:.2f}" if sd is not None else f"{mean:.2f}"


def sweep_markdown(rows: list[dict[str, Any]], spec: SweepSpec) -> str:
    summary = aggregate(rows)
    counts = {status: sum(row["status"] == status for row in rows) for status in ("finished", "stopped early", "error")}
    restarts = sum(row["attempts"] - 1 for row in rows)
    total_seconds = sum(row["train_seconds"] for row in rows)
    nodes = sorted({str(row["node"]) for row in rows if row["node"]})
    space = ", ".join(f"{name} {values}" for name, values in spec.to_json()["space"].items()) or "(none: the preset alone)"
    lines = [
        "# Sweep results",
        "",
        f"{len(rows)} trials ({counts['finished']} finished, {counts['stopped early']} stopped early, "
        f"{counts['error']} failed; {restarts} restart(s) after a lost worker), {spec.search} search over "
        f"{space}; preset {spec.preset}; seeds {', '.join(map(str, spec.seeds))}; {spec.threads} thread(s) per trial "
        f"on {len(nodes)} node(s). Training time, summed over trials: {total_seconds / 60:.1f} min.",
        "",
        f"Settings are ranked by the mean validation accuracy after the last epoch ({spec.validation} images "
        "carved from the training set); the test accuracy is shown, not used to choose. mean ± sd over seeds (n).",
        "",
    ]
    with_post = any("post_final_mean" in entry for entry in summary)
    header = "| rank | setting | n | validation % | test % | train s / trial |" + (" post-trained test % |" if with_post else "")
    lines += [header, "|" + " --- |" * (header.count("|") - 1)]
    for rank, entry in enumerate(summary, 1):
        cells = [str(rank), entry["label"], str(entry["n"]), _pm(entry["val_mean"], entry["val_sd"]),
                 _pm(entry["test_mean"], entry["test_sd"]), f"{entry['train_seconds_mean']:.0f}"]
        if with_post:
            cells.append(_pm(entry["post_final_mean"], entry.get("post_final_sd")) if "post_final_mean" in entry else "")
        lines.append("| " + " | ".join(cells) + " |")
    unfinished = [row for row in rows if row["status"] != "finished"]
    if unfinished:
        lines += ["", "Not averaged:", ""]
        lines += [f"- {row['label']} seed {row['seed']}: {row['status']} after {row['epochs_done']} epoch(s)"
                  + (f" ({row['error']})" if row["error"] else "") for row in unfinished]
    return "\n".join(lines) + "\n"


def rows_csv(rows: list[dict[str, Any]]) -> str:
    names = sorted({name for row in rows for name in row["settings"]})
    columns = ["trial_id", "seed", *names, "status", "epochs_done", "final_" + METRIC, "final_test_acc", "best_" + METRIC,
               "train_seconds", "node", "attempts", "reports", *(f"{key}_history" for key in PER_EPOCH), "post_test_acc_history"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        values = {**row, **row["settings"]}
        writer.writerow([
            ";".join(f"{v:.4f}" for v in values[c]) if c.endswith("_history") and isinstance(values.get(c), list)
            else ("" if values.get(c) is None else values[c])
            for c in columns
        ])
    return buffer.getvalue()


def write_figure(path: Path, rows: list[dict[str, Any]], top: int = 20) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = aggregate(rows)[:top]
    figure, (ranking, curves) = plt.subplots(1, 2, figsize=(13, max(3.5, 0.35 * len(summary) + 1.5)))
    positions = list(range(len(summary)))[::-1]
    ranking.errorbar([e["val_mean"] for e in summary], positions, xerr=[e["val_sd"] or 0.0 for e in summary], fmt="o", capsize=3)
    ranking.set_yticks(positions, [f"{e['label']} (n={e['n']})" for e in summary], fontsize=7)
    ranking.set_xlabel("validation accuracy after the last epoch (%), mean ± sd over seeds")
    ranking.set_title(f"settings ranked (top {len(summary)})")
    for entry in summary[:5]:
        curve = entry["val_curve_mean"]
        curves.plot(range(1, len(curve) + 1), curve, marker=".", label=entry["label"])
    curves.set_xlabel("epoch")
    curves.set_ylabel("validation accuracy (%), mean over seeds")
    curves.set_title("the five best settings")
    if summary:
        curves.legend(fontsize=7)
    figure.tight_layout()
    temporary = path.with_name(f".{path.name}.tmp")
    figure.savefig(temporary, dpi=120, format="png")
    plt.close(figure)
    temporary.replace(path)


def write_results(out: Path, rows: list[dict[str, Any]], spec: SweepSpec) -> None:
    atomic_write_json(out / RESULTS_JSON, {"spec": spec.to_json(), "settings": aggregate(rows), "trials": rows})
    atomic_write_text(out / RESULTS_CSV, rows_csv(rows))
    atomic_write_text(out / MARKDOWN, sweep_markdown(rows, spec))
    write_figure(out / FIGURE, rows)


def load_results(out: Path) -> dict[str, Any]:
    return json.loads((Path(out) / RESULTS_JSON).read_text())
