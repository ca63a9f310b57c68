"""How one `snn-mnist explain` run compares with another: the tables behind
`explain --check-against` and the same-seed table of docs/portability.md.

The rules themselves (which kind of number may move how far) live in
`experiments.docs_numbers.compare`; this module only lays the result out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from experiments.docs_numbers import SeedRuns, allowed_range, compare
from training.checkpoint import atomic_write_text

COMPARISON_FILE = "comparison.md"


def comparison_table(committed: Mapping[str, Any], fresh: Mapping[str, Any]) -> str:
    """A Markdown table of every compared number that is not exact: the committed value, this
    run's, their difference and the range this run had to fall in."""
    rows = ["| number | kind | committed | this run | difference | allowed range | inside |", "|---|---|---|---|---|---|---|"]
    for key, kind in committed["kinds"].items():
        if kind in ("exact", "environment") or key not in fresh["values"]:
            continue
        old, new = committed["values"][key], fresh["values"][key]
        pairs = list(zip(old, new, strict=True)) if isinstance(old, list) else [(old, new)]
        difference = max(abs(float(b) - float(a)) for a, b in pairs)
        span = allowed_range(committed, key)
        allowed = f"[{span[0]:.4g}, {span[1]:.4g}]" if span is not None else "each within tolerance"
        inside = "yes" if not compare(committed, fresh, keys=[key]) else "**no**"
        rows.append(
            f"| `{key}` | {kind} | {committed['formatted'][key]} | {fresh['formatted'][key]} | "
            f"{difference:.3g} | {allowed} | {inside} |"
        )
    return "\n".join(rows) + "\n\n" + same_seed_table(committed, fresh)


def _same_seed_rows(pairs: Sequence[tuple[str, str, Sequence[float], Sequence[float], float]]) -> str:
    rows = [
        "| runs of | compared | seeds | largest same-seed difference | sd of the same-seed differences | seed-to-seed sd |",
        "|---|---|---|---|---|---|",
    ]
    for key, label, old, new, seed_sd in pairs:
        differences = [b - a for a, b in zip(old, new, strict=True)]
        rows.append(
            f"| `{key}` | {label} | {len(old)} | {max(abs(d) for d in differences):.3g} | "
            f"{SeedRuns(tuple(differences)).sd:.3g} | {seed_sd:.3g} |"
        )
    return "\n".join(rows) + "\n"


def same_seed_table(committed: Mapping[str, Any], fresh: Mapping[str, Any]) -> str:
    """How far the same seed's run moved between the two runs, per statistic's setting and
    kernel path, beside how far a change of seed moves it (the committed runs' sd)."""
    pairs = []
    for key, old in committed.get("runs", {}).items():
        for path, new in fresh.get("runs", {}).get(key, {}).items():
            if path in old and len(old[path]) == len(new):
                seed_sd = SeedRuns(tuple(v for values in old.values() for v in values)).sd
                pairs.append((key, f"{path}, this run vs committed", old[path], new, seed_sd))
    return _same_seed_rows(pairs)


def kernel_path_table(numbers: Mapping[str, Any]) -> str:
    """Within one run: how far each kernel path moved each seed's result from the first
    path's, beside the seed-to-seed sd of the first path's runs (docs/portability.md)."""
    pairs = []
    for key, by_path in numbers.get("runs", {}).items():
        paths = list(by_path)
        seed_sd = SeedRuns(tuple(by_path[paths[0]])).sd
        for path in paths[1:]:
            pairs.append((key, f"{path} vs {paths[0]}", by_path[paths[0]], by_path[path], seed_sd))
    return _same_seed_rows(pairs)


def check_against(committed: Mapping[str, Any], fresh: Mapping[str, Any], path: Path, out_dir: Path) -> int:
    """Print how this run's numbers compare with a committed numbers.json, write the table to
    out_dir/comparison.md; 1 if any number lies outside its range."""
    problems = compare(committed, fresh)
    header = (
        f"This run ({fresh['meta'].get('machine_description', 'machine not recorded')}) against {path} "
        f"({committed['meta'].get('machine_description', 'machine not recorded')}).\n\n"
    )
    atomic_write_text(Path(out_dir) / COMPARISON_FILE, header + comparison_table(committed, fresh))
    if problems:
        print(f"{len(problems)} numbers differ from {path} by more than their tolerance:")
        for line in problems:
            print("  " + line)
        print(f"the whole comparison: {Path(out_dir) / COMPARISON_FILE}")
        return 1
    print(f"every number lies within its tolerance of {path} (table: {Path(out_dir) / COMPARISON_FILE})")
    return 0
