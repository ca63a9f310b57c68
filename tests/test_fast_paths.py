"""The paired comparison of the fast and the exact path that docs/performance.md reports,
recomputed from the committed runs (docs/fast_paths.json, written by
`python -m experiments.path_comparison`).

Runs of one seed share their initial weights and batch order, so they are compared as pairs:
the statistic is the mean of d_s = fast_s - exact_s with its 95 % Student t interval; the
page says "cannot be told apart" for a network exactly when that interval contains 0.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from experiments.path_comparison import paired_summary

DOCS = Path(__file__).resolve().parents[1] / "docs"
T_975 = {2: 4.302653}  # Student t quantiles from a table, for the check of the statistic itself


def _networks() -> dict:
    return json.loads((DOCS / "fast_paths.json").read_text(encoding="utf-8"))["networks"]


def test_paired_summary_is_the_paired_t_interval() -> None:
    summary = paired_summary([97.0, 97.5, 96.0], [96.5, 97.4, 96.3])
    differences = [0.5, 0.1, -0.3]
    mean = sum(differences) / 3
    sd = math.sqrt(sum((d - mean) ** 2 for d in differences) / 2)
    half = T_975[2] * sd / math.sqrt(3)
    assert summary["mean_difference"] == pytest.approx(mean)
    assert summary["sd_difference"] == pytest.approx(sd)
    assert summary["interval"] == pytest.approx([mean - half, mean + half], abs=1e-5)
    assert summary["indistinguishable"]
    assert not paired_summary([97.0, 97.1, 97.2], [96.0, 96.0, 96.1])["indistinguishable"]
    with pytest.raises(ValueError, match="two or more pairs"):
        paired_summary([97.0], [96.0])


@pytest.mark.parametrize("name", sorted(_networks()))
def test_committed_summaries_recompute_from_their_runs(name: str) -> None:
    entry = _networks()[name]
    runs = entry["runs"]
    seeds = entry["paired_seeds"]
    assert len(seeds) >= 3, "a claim about a training path needs three or more paired seeds"
    for seed in seeds:
        fast, exact = runs[f"s{seed}-fast"], runs[f"s{seed}-exact"]
        assert fast["epochs"] == exact["epochs"] == 10
        assert exact["compute_path"] == "exact" and fast["compute_path"] in ("fused", "fast")
    recomputed = paired_summary(
        [runs[f"s{s}-fast"]["test_accuracy"] for s in seeds], [runs[f"s{s}-exact"]["test_accuracy"] for s in seeds]
    )
    committed = entry["summary"]
    assert recomputed["indistinguishable"] == committed["indistinguishable"]
    for key in ("differences", "interval"):
        assert recomputed[key] == pytest.approx(committed[key])
    for key in ("mean_difference", "sd_difference"):
        assert recomputed[key] == pytest.approx(committed[key])


def test_performance_page_states_what_the_intervals_say() -> None:
    """The page's table row of each network gives its paired mean difference and interval, and
    its verdict ("cannot be told apart" / "differ") follows from whether the interval holds 0."""
    page = (DOCS / "performance.md").read_text(encoding="utf-8")
    for name, entry in _networks().items():
        summary = entry["summary"]
        low, high = summary["interval"]
        row = re.search(rf"^\| {re.escape(name)} \|.*$", page, flags=re.MULTILINE)
        assert row is not None, f"performance.md has no row for {name}"
        assert f"{summary['mean_difference']:+.2f} ± {summary['sd_difference']:.2f}" in row.group(0)
        assert f"[{low:+.2f}, {high:+.2f}]" in row.group(0)
        verdict = "cannot be told apart" if summary["indistinguishable"] else "differ"
        assert row.group(0).rstrip(" |").endswith(verdict), row.group(0)
