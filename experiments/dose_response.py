"""`snn-mnist plasticity-study --dose-response`: how forgetting grows with eta, over seeds.

For every seed S there is one baseline, the study's recipe trained with seed S in
`OUT/seed_S/` (trained here when absent; `snn-mnist reproduce` writes the same
folders).  From it, every rule runs post-training at every eta of a log grid, with
post-training seed S, and the test accuracy before and after each epoch and the
weight drift are recorded:

    loss_e(rule, eta, S) = acc_0 - acc_e        points lost after e epochs

From the losses after the last epoch:

    eta*(rule, S, L) = the eta at which rule first loses L points, interpolated
                       linearly in log10(eta) between the two grid points around it

is found for the study's 3-epoch loss L = 3.30 (94.24 -> 90.94%, the default rule at
its eta = 1e-5) and for L = 0.5 (what each rule tolerates).  eta* of the default rule
over seeds is summarised by its geometric mean and its range; the default rule is
then run once more per seed at that geometric mean (the "probe"), to compare its
epoch-by-epoch losses with the study's (-0.74, -1.07, -1.49 points).

Our eta multiplies a mean over batch and time (docs/plasticity.md); a rule written
as a sum over the T = 25 steps and/or the B = 128 images of a batch takes that eta
divided by T, B or T·B.  The ratio eta* / 1e-5 says which of these normalisations of
the study's 1e-5 our measurements point to.

Every finished run is added to dose_response.json atomically, so an interrupted study
started again with the same command runs only what is missing.  Runs are independent
(one process each, `threads` threads), so `jobs` of them go side by side.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch

from experiments.adaptation import adaptation_markdown, adaptation_summary
from experiments.figures import plot_adaptation, plot_dose_response
from experiments.seeds import format_mean_sd, geometric_mean, mean_sd, seed_folder, study_baseline
from experiments.workers import run_side_by_side
from plasticity.hebbian import STABILISED_RULES
from plasticity.posttrain import PostTrainConfig, load_post_trainable, post_train
from training.checkpoint import atomic_write_json, atomic_write_text
from training.data import MnistSplit, shifted
from training.train import evaluate

DOSE_JSON = "dose_response.json"
DOSE_MARKDOWN = "dose_response.md"
DOSE_FIGURE = "dose_response.png"
# 1e-6 ... 1e-2 in half decades (1, 3, 10, 30, ...): 9 points
DEFAULT_ETAS = (1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
DEFAULT_SEEDS = (0, 1, 2)
# The study's gentle run (its README, section 4.4): 94.24 -> 93.50 -> 92.43 -> 90.94% at eta 1e-5
STUDY_ETA = 1e-5
STUDY_TRAJECTORY = (94.24, 93.50, 92.43, 90.94)
STUDY_LOSS = round(STUDY_TRAJECTORY[0] - STUDY_TRAJECTORY[-1], 2)  # 3.30 points after 3 epochs
TOLERATED_LOSS = 0.5
DEFAULT_RULE = "covariance"
# How a rule written as a sum (not a mean) over batch and/or time rescales eta,
# for the study's T = 25 steps and batch of 128.
STEPS, BATCH = 25, 128
NORMALISATIONS = {
    "a mean over batch and time (ours)": 1,
    "a sum over the 25 time steps, a mean over the batch": STEPS,
    "a sum over the 128 images of a batch, a mean over time": BATCH,
    "a sum over batch and time": STEPS * BATCH,
}

Log = Callable[[str], None]


@dataclass(frozen=True)
class DoseResponseConfig:
    etas: tuple[float, ...] = DEFAULT_ETAS
    rules: tuple[str, ...] = (DEFAULT_RULE, *STABILISED_RULES)
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    epochs: int = 3  # post-training epochs
    baseline_epochs: int = 10
    threads: int = 1  # per run
    jobs: int = 1  # runs side by side
    shift: str | None = None  # "contrast:0.5" / "noise:0.3": post-train and test on shifted images

    def __post_init__(self) -> None:
        self.input_shift()  # validates
        if len(self.etas) < 2 or any(not (math.isfinite(eta) and eta > 0) for eta in self.etas):
            raise ValueError(f"--etas needs two or more positive learning rates for a dose-response, got {self.etas!r}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"--seeds must list distinct seeds, got {self.seeds!r}")
        if DEFAULT_RULE not in self.rules:
            raise ValueError(f"--rules must include the default rule, {DEFAULT_RULE}, for the study's comparison")
        for name, flag in (("epochs", "--epochs"), ("baseline_epochs", "baseline_epochs"), ("threads", "--threads"), ("jobs", "--jobs")):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{flag} must be a positive integer, got {value!r}")

    def to_json(self) -> dict[str, Any]:
        payload = asdict(self)
        for key in ("etas", "rules", "seeds"):
            payload[key] = list(payload[key])
        return payload

    def input_shift(self) -> tuple[str, float] | None:
        """(kind, amount) of --shift KIND:AMOUNT, or None."""
        if self.shift is None:
            return None
        kind, _, amount = self.shift.partition(":")
        try:
            value = float(amount)
        except ValueError:
            raise ValueError(f"--shift takes KIND:AMOUNT, e.g. contrast:0.5 or noise:0.3, got {self.shift!r}") from None
        shifted(MnistSplit(torch.zeros(1, 1, 1), torch.zeros(1, dtype=torch.int64)), kind, value)  # validates both
        return kind, value

    def files(self) -> tuple[str, str, str]:
        """(json, markdown, figure) names: dose_response.* or, under a shift, adaptation_<kind><amount>.*"""
        if self.shift is None:
            return DOSE_JSON, DOSE_MARKDOWN, DOSE_FIGURE
        kind, amount = self.input_shift() or ("", 0.0)
        stem = f"adaptation_{kind}{amount:g}"
        return f"{stem}.json", f"{stem}.md", f"{stem}.png"


class Run(NamedTuple):
    rule: str
    eta: float
    seed: int
    probe: bool = False  # the default rule at the measured eta*, not a grid point


def _key(run: Run) -> str:
    return f"{run.rule}|{run.eta!r}|{run.seed}|{'probe' if run.probe else 'grid'}"


def _quiet(_: str) -> None:
    """A log function for workers: the main process reports."""


def _run_of(row: dict[str, Any]) -> Run:
    return Run(row["rule"], row["eta"], row["seed"], bool(row.get("probe")))


def post_train_run(
    run: Run, baseline: Path, train_split: MnistSplit, test_split: MnistSplit, epochs: int, clean_test: MnistSplit | None = None
) -> dict[str, Any]:
    """One post-training run from the seed's baseline (here, or in a worker process).  Under an
    input shift, train/test are the shifted images and clean_test the unshifted test images,
    whose accuracy before and after is recorded too (what the adaptation costs)."""
    model = load_post_trainable(baseline)
    clean_before = evaluate(model, clean_test).accuracy if clean_test is not None else None
    config = PostTrainConfig(rule=run.rule, eta=run.eta, epochs=epochs, seed=run.seed)
    result = post_train(model, train_split, test_split, config, progress=False, log=lambda _: None)
    row = {**run._asdict(), **{key: value for key, value in result.to_json().items() if key != "config"}}
    if clean_test is not None:
        row["clean_accuracy"] = [clean_before, evaluate(model, clean_test).accuracy]
    return row


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _load_previous(path: Path, config: DoseResponseConfig, baselines: dict[int, str]) -> list[dict[str, Any]]:
    """Runs of an earlier, interrupted study that still hold: same post-training epochs, same baseline file."""
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    if previous.get("config", {}).get("epochs") != config.epochs:
        return []
    return [row for row in previous.get("runs", []) if previous.get("baselines", {}).get(str(row.get("seed"))) == baselines.get(row.get("seed"))]


def losses_after(rows: Sequence[dict[str, Any]], rule: str, seed: int, epoch: int) -> dict[float, float]:
    """{eta: points lost after `epoch` epochs} of one rule and seed (grid runs only)."""
    return {
        float(row["eta"]): row["test_accuracy"][0] - row["test_accuracy"][epoch]
        for row in rows
        if row["rule"] == rule and row["seed"] == seed and not row.get("probe")
    }


def eta_for_loss(loss_by_eta: dict[float, float], target: float) -> float | None:
    """The eta at which the loss first reaches `target`, linear in log10(eta) between grid
    points; None when no grid point reaches it.  At the grid's first point: that eta."""
    etas = sorted(loss_by_eta)
    for index, eta in enumerate(etas):
        if loss_by_eta[eta] >= target:
            if index == 0:
                return eta
            low, high = etas[index - 1], eta
            below, above = loss_by_eta[low], loss_by_eta[high]
            fraction = (target - below) / (above - below)
            return 10 ** (math.log10(low) + fraction * (math.log10(high) - math.log10(low)))
    return None


def _round_significant(value: float, digits: int = 2) -> float:
    return float(f"{value:.{digits - 1}e}")


def crossing(rows: Sequence[dict[str, Any]], rule: str, seeds: Sequence[int], epochs: int, target: float) -> dict[str, Any]:
    """eta*(rule, seed, target) per seed, with the geometric mean and range over the seeds that reach it."""
    per_seed = {seed: eta_for_loss(losses_after(rows, rule, seed, epochs), target) for seed in seeds}
    reached = [eta for eta in per_seed.values() if eta is not None]
    return {
        "target_points": target,
        "per_seed": {str(seed): eta for seed, eta in per_seed.items()},
        "geometric_mean": geometric_mean(reached) if reached else None,
        "range": [min(reached), max(reached)] if reached else None,
        "seeds_reaching": len(reached),
    }


def summarise(rows: Sequence[dict[str, Any]], config: DoseResponseConfig) -> dict[str, Any]:
    """Loss and drift per rule and eta (mean ± sd over seeds), the eta* crossings, the
    normalisation they imply and the probe runs' epoch-by-epoch shape."""
    table: dict[str, list[dict[str, Any]]] = {}
    for rule in config.rules:
        entries = []
        for eta in config.etas:
            members = [row for row in rows if row["rule"] == rule and row["eta"] == eta and not row.get("probe")]
            if not members:
                continue
            loss_per_epoch = [
                mean_sd([row["test_accuracy"][0] - row["test_accuracy"][epoch] for row in members])
                for epoch in range(1, config.epochs + 1)
            ]
            entries.append({
                "eta": eta,
                "n": len(members),
                "loss_mean": [mean for mean, _ in loss_per_epoch],
                "loss_sd": [sd for _, sd in loss_per_epoch],
                "final_accuracy": mean_sd([row["test_accuracy"][-1] for row in members]),
                "drift_fc1": mean_sd([row["weight_drift"]["fc1"]["relative_change"] for row in members]),
                "drift_fc2": mean_sd([row["weight_drift"]["fc2"]["relative_change"] for row in members]),
            })
        table[rule] = entries
    study_crossing = crossing(rows, DEFAULT_RULE, config.seeds, config.epochs, STUDY_LOSS)
    tolerance = {rule: crossing(rows, rule, config.seeds, config.epochs, TOLERATED_LOSS) for rule in config.rules}
    summary: dict[str, Any] = {"table": table, "study_loss_crossing": study_crossing, "tolerance": tolerance}
    if config.shift is not None:
        summary["adaptation"] = adaptation_summary(rows, config.rules, config.etas)
    star = study_crossing["geometric_mean"]
    if star is not None:
        ratio = star / STUDY_ETA
        low, high = (value / STUDY_ETA for value in study_crossing["range"])
        nearest = min(NORMALISATIONS, key=lambda name: abs(math.log10(NORMALISATIONS[name]) - math.log10(ratio)))
        summary["normalisation"] = {
            "ratio_to_study_eta": ratio,
            "ratio_range": [low, high],
            "nearest": nearest,
            "nearest_factor": NORMALISATIONS[nearest],
            "nearest_within_range": low <= NORMALISATIONS[nearest] <= high,
        }
        probes = [row for row in rows if row.get("probe")]
        if probes:
            drops = [
                [row["test_accuracy"][epoch - 1] - row["test_accuracy"][epoch] for row in probes]
                for epoch in range(1, config.epochs + 1)
            ]
            means = [mean_sd(values)[0] for values in drops]
            summary["probe"] = {
                "eta": probes[0]["eta"],
                "n": len(probes),
                "drop_per_epoch": [mean_sd(values) for values in drops],
                "total_loss": mean_sd([row["test_accuracy"][0] - row["test_accuracy"][-1] for row in probes]),
                "accelerating": all(later > earlier for earlier, later in zip(means, means[1:])),
            }
    return summary


class DoseResponse:
    """Runs the grid (and the probes) for a config, keeping dose_response.json current."""

    def __init__(
        self,
        config: DoseResponseConfig,
        out: Path,
        train_split: MnistSplit,
        test_split: MnistSplit,
        progress: bool = True,
        log: Log = print,
        address: str | None = None,
    ) -> None:
        self.address = address
        self.config, self.out, self.train_split, self.test_split = config, Path(out), train_split, test_split
        self.progress, self.log = progress, log
        self.baselines: dict[int, Path] = {}
        self.hashes: dict[int, str] = {}
        self.rows: list[dict[str, Any]] = []

    def run(self) -> dict[str, Any]:
        started = time.perf_counter()
        self.out.mkdir(parents=True, exist_ok=True)
        # the baselines are tasks too, on the runs' thread count: the very folders (and bits)
        # `snn-mnist reproduce --out OUT` writes with its default --threads 1
        tasks = [
            (seed_folder(self.out, seed), seed, self.train_split, self.test_split, self.config.threads, None,
             self.config.baseline_epochs, self.progress and self.config.jobs == 1 and self.address is None, _quiet)
            for seed in self.config.seeds
        ]
        for index, path in run_side_by_side(study_baseline, tasks, min(self.config.jobs, len(tasks)), self.config.threads, self.address):
            self.baselines[self.config.seeds[index]] = path
            self.log(f"baseline of seed {self.config.seeds[index]}: {path}")
        self.hashes = {seed: sha256(path) for seed, path in self.baselines.items()}
        self.rows = _load_previous(self.out / self.config.files()[0], self.config, self.hashes)
        grid = [Run(rule, eta, seed) for seed in self.config.seeds for rule in self.config.rules for eta in self.config.etas]
        self._run_all(grid)
        star = summarise(self.rows, self.config)["study_loss_crossing"]["geometric_mean"]
        if star is not None and self.config.shift is None:
            self._run_all([Run(DEFAULT_RULE, _round_significant(star), seed, probe=True) for seed in self.config.seeds])
        summary = self._write(time.perf_counter() - started)
        return summary

    def _run_all(self, runs: Sequence[Run]) -> None:
        done = {_key(_run_of(row)) for row in self.rows}
        todo = [run for run in runs if _key(run) not in done]
        if len(todo) < len(runs):
            self.log(f"{len(runs) - len(todo)} of {len(runs)} runs already in {self.out / self.config.files()[0]}: kept")
        if not todo:
            return
        epochs, threads = self.config.epochs, self.config.threads
        started, count = time.perf_counter(), 0

        def finished(row: dict[str, Any]) -> None:
            nonlocal count
            self.rows.append(row)
            self._write(None)
            count += 1
            rate = (time.perf_counter() - started) / count
            accuracy = row["test_accuracy"]
            self.log(
                f"[{count}/{len(todo)}] {row['rule']} eta={row['eta']:g} seed {row['seed']}{' (probe)' if row.get('probe') else ''}: "
                f"{accuracy[0]:.2f}% -> {accuracy[-1]:.2f}% ({row['seconds']:.0f} s; about {rate * (len(todo) - count) / 60:.1f} min left)"
            )

        shift = self.config.input_shift()
        if shift is None:
            tasks = [(run, self.baselines[run.seed], self.train_split, self.test_split, epochs) for run in todo]
        else:
            # one fixed draw of the shift for every run (seeds 1 and 2: training and test images differ)
            train_shifted, test_shifted = shifted(self.train_split, *shift, seed=1), shifted(self.test_split, *shift, seed=2)
            tasks = [(run, self.baselines[run.seed], train_shifted, test_shifted, epochs, self.test_split) for run in todo]
        for _, row in run_side_by_side(post_train_run, tasks, self.config.jobs, threads, self.address):
            finished(row)

    def _write(self, seconds: float | None) -> dict[str, Any]:
        summary = summarise(self.rows, self.config)
        payload = {
            "config": self.config.to_json(),
            "baselines": {str(seed): digest for seed, digest in self.hashes.items()},
            "baseline_accuracy": {
                str(seed): json.loads((path.parent / "training_curves.json").read_text())["test_acc_history"][-1]
                for seed, path in self.baselines.items()
            },
            "study": {"eta": STUDY_ETA, "trajectory": list(STUDY_TRAJECTORY), "loss": STUDY_LOSS},
            "default_rule": DEFAULT_RULE,
            "tolerated_loss": TOLERATED_LOSS,
            "runs": sorted(self.rows, key=lambda row: (row["rule"], bool(row.get("probe")), row["eta"], row["seed"])),
            "summary": summary,
        }
        json_name, markdown_name, figure_name = self.config.files()
        if seconds is not None:
            payload["seconds"] = seconds
            if self.config.shift is None:
                atomic_write_text(self.out / markdown_name, dose_markdown(payload))
                plot_dose_response(payload, self.out / figure_name)
            else:
                atomic_write_text(self.out / markdown_name, adaptation_markdown(payload, figure_name))
                plot_adaptation(payload, self.out / figure_name)
        atomic_write_json(self.out / json_name, payload)
        return summary


def _eta_text(eta: float | None) -> str:
    return "not reached on the grid" if eta is None else f"{eta:.2g}"


def dose_markdown(payload: dict[str, Any]) -> str:
    """The dose-response section: loss and drift tables, eta* and what it implies."""
    config, summary = payload["config"], payload["summary"]
    epochs, seeds = config["epochs"], config["seeds"]
    accuracy = list(payload["baseline_accuracy"].values())
    lines = [
        f"Baselines: the study's recipe, seeds {', '.join(map(str, seeds))}: test accuracy (%) {format_mean_sd(accuracy)}. "
        f"Every rule ran {epochs} post-training epochs over the training images at each eta, from each seed's baseline. "
        f"Loss = accuracy before minus accuracy after the last epoch, in points, mean ± sd over seeds; drift = "
        "||W - W0||_F / ||W0||_F.",
        "",
        "| eta | " + " | ".join(f"{rule}: loss (points)" for rule in config["rules"]) + " |",
        "|---|" + "---|" * len(config["rules"]),
    ]
    for eta in config["etas"]:
        cells = [f"{eta:g}"]
        for rule in config["rules"]:
            entry = next((item for item in summary["table"][rule] if item["eta"] == eta), None)
            if entry is None:
                cells.append("—")
                continue
            mean, sd = entry["loss_mean"][-1], entry["loss_sd"][-1]
            cells.append(f"{mean:+.2f}" + ("" if sd is None else f" ± {sd:.2f}"))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| eta | " + " | ".join(f"{rule}: drift fc1 / fc2" for rule in config["rules"]) + " |", "|---|" + "---|" * len(config["rules"])]
    for eta in config["etas"]:
        cells = [f"{eta:g}"]
        for rule in config["rules"]:
            entry = next((item for item in summary["table"][rule] if item["eta"] == eta), None)
            cells.append("—" if entry is None else f"{100 * entry['drift_fc1'][0]:.2f}% / {100 * entry['drift_fc2'][0]:.2f}%")
        lines.append("| " + " | ".join(cells) + " |")
    crossing_ = summary["study_loss_crossing"]
    lines += ["", "![accuracy loss against eta](dose_response.png)", ""]
    per_seed = ", ".join(f"seed {seed}: {_eta_text(eta)}" for seed, eta in crossing_["per_seed"].items())
    if crossing_["geometric_mean"] is None:
        lines.append(f"The default rule never loses the study's {STUDY_LOSS:.2f} points within the grid ({per_seed}).")
    else:
        low, high = crossing_["range"]
        lines.append(
            f"**The default rule ({DEFAULT_RULE}) loses the study's {STUDY_LOSS:.2f} points in {epochs} epochs at eta = "
            f"{crossing_['geometric_mean']:.2g}** (geometric mean over {crossing_['seeds_reaching']} seeds; range "
            f"{low:.2g} to {high:.2g}; {per_seed})."
        )
        normalisation = summary["normalisation"]
        lines += [
            "",
            f"That is {normalisation['ratio_to_study_eta']:.0f} times the study's eta = 1e-5 (range "
            f"{normalisation['ratio_range'][0]:.0f} to {normalisation['ratio_range'][1]:.0f}). Of the normalisations a rule "
            f"can be written in (factor to our mean: mean 1, sum over time {STEPS}, sum over the batch {BATCH}, sum over both "
            f"{STEPS * BATCH}), the nearest is {normalisation['nearest']} (factor {normalisation['nearest_factor']}), which "
            + ("lies within" if normalisation["nearest_within_range"] else "lies outside")
            + " the seeds' range.",
        ]
        probe = summary.get("probe")
        if probe:
            drops = ", ".join(f"{-mean:+.2f}" + ("" if sd is None else f" ± {sd:.2f}") for mean, sd in probe["drop_per_epoch"])
            study_drops = ", ".join(f"{b - a:+.2f}" for a, b in zip(STUDY_TRAJECTORY, STUDY_TRAJECTORY[1:]))
            total_mean, total_sd = probe["total_loss"]
            lines += [
                "",
                f"Run again at eta = {probe['eta']:g} ({probe['n']} seeds), the default rule's accuracy changes by {drops} points "
                f"in epochs 1..{epochs} ({-total_mean:+.2f}" + ("" if total_sd is None else f" ± {total_sd:.2f}") + " in all); the "
                f"study's changed by {study_drops}. " + (
                    "Like the study's, the loss grows from epoch to epoch."
                    if probe["accelerating"]
                    else "Unlike the study's, the loss does not grow from epoch to epoch."
                ),
            ]
            if abs(total_mean - STUDY_LOSS) > 2 * (total_sd or 0.0):
                side = "above" if total_mean < STUDY_LOSS else "below"
                lines += [
                    "",
                    f"The run at that eta lost {total_mean:.2f} points, not {STUDY_LOSS:.2f}: the loss is far from linear in "
                    f"log(eta) between the grid points, so the interpolated eta is approximate and the true crossing lies {side} it.",
                ]
    lines += ["", f"**Tolerance**: the eta at which each rule first loses {TOLERATED_LOSS} points after {epochs} epochs:", ""]
    lines += ["| rule | eta at 0.5-point loss (geometric mean, range) | per seed |", "|---|---|---|"]
    for rule, entry in summary["tolerance"].items():
        value = "not reached on the grid" if entry["geometric_mean"] is None else (
            f"{entry['geometric_mean']:.2g} ({entry['range'][0]:.2g} to {entry['range'][1]:.2g})"
            + ("" if entry["seeds_reaching"] == len(seeds) else f", {entry['seeds_reaching']} of {len(seeds)} seeds")
        )
        lines.append(f"| {rule} | {value} | " + ", ".join(_eta_text(eta) for eta in entry["per_seed"].values()) + " |")
    if "seconds" in payload:
        lines += ["", f"Wall time of this invocation: {payload['seconds']:.0f} s."]
    return "\n".join(lines) + "\n"


def run_dose_response(
    config: DoseResponseConfig,
    out: Path,
    train_split: MnistSplit,
    test_split: MnistSplit,
    progress: bool = True,
    log: Log = print,
    address: str | None = None,
) -> dict[str, Any]:
    """The whole dose-response study into `out`; returns its summary.  With a Ray `address`
    (or "local") the runs are Ray tasks, and `out` must be on storage every node mounts."""
    return DoseResponse(config, Path(out).resolve(), train_split, test_split, progress=progress, log=log, address=address).run()
