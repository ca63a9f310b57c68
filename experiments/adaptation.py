"""What unsupervised post-training buys under an input shift: `plasticity-study --dose-response --shift`.

The dose-response study run on shifted images (training.data.shifted: dimmer digits or
pixel noise): each seed's baseline, trained on clean images, post-trains without labels
on the shifted training images, and is measured on the shifted test images before and
after, and on the clean test images before and after:

    gain   = shifted-test accuracy after - before     what the rule adapted
    cost   = clean-test accuracy after - before       what it forgot of the clean task

A rule that keeps accuracy only by never moving has gain ~ 0; a useful one has gain > 0
at an eta where its cost stays small.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from experiments.seeds import mean_sd


def adaptation_summary(rows: Sequence[dict[str, Any]], rules: Sequence[str], etas: Sequence[float]) -> dict[str, Any]:
    """{rule: [{eta, n, shifted_before, gain, cost} ...]}, each a (mean, sd) over seeds, and each
    rule's best mean gain."""
    table: dict[str, Any] = {}
    for rule in rules:
        entries = []
        for eta in etas:
            members = [row for row in rows if row["rule"] == rule and row["eta"] == eta and "clean_accuracy" in row]
            if not members:
                continue
            entries.append({
                "eta": eta,
                "n": len(members),
                "shifted_before": mean_sd([row["test_accuracy"][0] for row in members]),
                "shifted_after": mean_sd([row["test_accuracy"][-1] for row in members]),
                "gain": mean_sd([row["test_accuracy"][-1] - row["test_accuracy"][0] for row in members]),
                "clean_before": mean_sd([row["clean_accuracy"][0] for row in members]),
                "cost": mean_sd([row["clean_accuracy"][1] - row["clean_accuracy"][0] for row in members]),
            })
        best = max(entries, key=lambda entry: entry["gain"][0], default=None)
        table[rule] = {"grid": entries, "best": best}
    return table


def _pm(value: tuple[float, float | None], signed: bool = True) -> str:
    mean, sd = value
    text = f"{mean:+.2f}" if signed else f"{mean:.2f}"
    return text + ("" if sd is None else f" ± {sd:.2f}")


def adaptation_markdown(payload: dict[str, Any], figure_name: str) -> str:
    config, summary = payload["config"], payload["summary"]["adaptation"]
    n = len(config["seeds"])
    lines = [
        f"Input shift **{config['shift']}**: each seed's baseline (trained on clean images) post-trained without labels "
        f"for {config['epochs']} epoch(s) on the shifted training images. Gain = shifted-test accuracy after minus before; "
        f"cost = clean-test accuracy after minus before; points, mean ± sd over {n} seeds.",
        "",
        "| rule | eta | shifted test before (%) | after (%) | gain | clean test before (%) | cost |",
        "|---|---|---|---|---|---|---|",
    ]
    for rule, entry in summary.items():
        for item in entry["grid"]:
            lines.append(
                f"| {rule} | {item['eta']:g} | {_pm(item['shifted_before'], False)} | {_pm(item['shifted_after'], False)} | "
                f"{_pm(item['gain'])} | {_pm(item['clean_before'], False)} | {_pm(item['cost'])} |"
            )
    lines += ["", f"![gain and cost against eta]({figure_name})", ""]
    for rule, entry in summary.items():
        best = entry["best"]
        if best is None:
            continue
        mean, sd = best["gain"]
        if mean > 0 and (sd is None or mean > 2 * sd):
            verdict = "a gain larger than twice its spread over seeds"
        elif mean > 0:
            verdict = "a gain within about two sds of zero: not distinguishable from no gain"
        else:
            verdict = "no gain"
        lines.append(
            f"- {rule}: best gain {_pm(best['gain'])} points at eta {best['eta']:g} (cost on clean images {_pm(best['cost'])}): {verdict}."
        )
    return "\n".join(lines) + "\n"
