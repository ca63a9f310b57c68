"""The fast and the exact path trained side by side: paired, seed by seed.

    python -m experiments.path_comparison RUNS_DIR OUT.json

RUNS_DIR holds one `snn-mnist train` folder per network, seed and path, named
NETWORK-sSEED-PATH (PATH "fast" for the default, "exact" for `--exact`), each with its
`experiment_config.json` and `training_curves.json`.  A seed fixes the initial weights and
the batch order, so the two runs of one seed are a pair: the statistic is the paired
difference d_s = fast_s - exact_s of the final test accuracy, its mean and sd over seeds,
and the two-sided 95 % Student t interval of the mean difference,

    mean(d) +- t_{0.975, n-1} sd(d) / sqrt(n)

"Indistinguishable" means that interval contains 0.  The runs are never pooled as
independent samples.  `paired_summary` is what `tests/test_fast_paths.py` recomputes from
the committed JSON (docs/fast_paths.json), with the statement docs/performance.md makes.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments.docs_numbers import student_t_quantile
from training.checkpoint import atomic_write_json

RUN_NAME = re.compile(r"(?P<network>[a-z0-9_]+)-s(?P<seed>\d+)-(?P<path>fast|exact)")
CONFIDENCE = 0.95


def paired_summary(fast: Sequence[float], exact: Sequence[float]) -> dict[str, Any]:
    """Mean and sd of the paired differences fast - exact, their 95 % t interval, and
    whether it contains 0."""
    if len(fast) != len(exact) or len(fast) < 2:
        raise ValueError(f"need two or more pairs, got {len(fast)} fast and {len(exact)} exact runs")
    differences = [a - b for a, b in zip(fast, exact)]
    n = len(differences)
    mean = sum(differences) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in differences) / (n - 1))
    half = student_t_quantile(1 - (1 - CONFIDENCE) / 2, n - 1) * sd / math.sqrt(n)
    return {
        "differences": differences,
        "mean_difference": mean,
        "sd_difference": sd,
        "interval": [mean - half, mean + half],
        "indistinguishable": mean - half <= 0.0 <= mean + half,
    }


def collect(runs_dir: Path) -> dict[str, Any]:
    """Every finished run of RUNS_DIR, grouped by network, with the paired summaries."""
    networks: dict[str, dict[str, Any]] = {}
    for folder in sorted(runs_dir.iterdir()):
        match = RUN_NAME.fullmatch(folder.name)
        curves = folder / "training_curves.json"
        if not match or not curves.is_file():
            continue
        config = json.loads((folder / "experiment_config.json").read_text(encoding="utf-8"))
        history = json.loads(curves.read_text(encoding="utf-8"))
        if len(history["test_acc_history"]) != config["training"]["epochs"]:
            continue  # still running, or stopped early: not a finished run
        entry = networks.setdefault(match["network"], {"network": config["network"], "runs": {}})
        entry["runs"][f"s{match['seed']}-{match['path']}"] = {
            "seed": int(match["seed"]),
            "path": match["path"],
            "compute_path": config.get("compute_path"),
            "epochs": len(history["test_acc_history"]),
            "test_accuracy": history["test_acc_history"][-1],
        }
    for entry in networks.values():
        seeds = sorted({run["seed"] for run in entry["runs"].values()})
        paired = [s for s in seeds if f"s{s}-fast" in entry["runs"] and f"s{s}-exact" in entry["runs"]]
        entry["paired_seeds"] = paired
        if len(paired) >= 2:
            entry["summary"] = paired_summary(
                [entry["runs"][f"s{s}-fast"]["test_accuracy"] for s in paired],
                [entry["runs"][f"s{s}-exact"]["test_accuracy"] for s in paired],
            )
    return networks


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m experiments.path_comparison RUNS_DIR OUT.json", file=sys.stderr)
        return 2
    networks = collect(Path(argv[0]))
    atomic_write_json(Path(argv[1]), {"confidence": CONFIDENCE, "networks": networks})
    for name, entry in networks.items():
        summary = entry.get("summary")
        if summary is None:
            print(f"{name}: {len(entry['paired_seeds'])} paired seeds, too few")
            continue
        low, high = summary["interval"]
        print(
            f"{name}: fast - exact = {summary['mean_difference']:+.2f} ± {summary['sd_difference']:.2f} points "
            f"over seeds {entry['paired_seeds']}, 95% interval [{low:+.2f}, {high:+.2f}]"
            f"{' (contains 0)' if summary['indistinguishable'] else ''}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
