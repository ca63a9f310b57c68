"""`snn-mnist reproduce`: the whole study in one command, measured end to end.

Stages, each writing into --out (default results/):

    train        supervised BPTT baseline (training.train)
    plasticity   post-training: the default rule and every stabilised rule at each eta,
                 all from the same baseline (experiments.posttrain_cmd.run_study)
    analysis     confusion matrices, per-class metrics, every figure
    report       REPORT.md: our numbers beside the study's published ones

`stages.json` records, for every completed stage, its settings, the SHA-256 of
each file it wrote, and its wall time.  A re-run into the same folder reuses a
stage when its settings are unchanged, every file it wrote is still there with
the same hash, and the stages before it were reused too; otherwise the stage
(and everything after it) is rebuilt.  A file that was truncated or edited
after the run is therefore detected and rebuilt, never trusted.  --force
rebuilds everything.  An interrupted training stage resumes from its last
completed epoch.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from experiments import __version__, figures
from experiments.cli import add_common_options
from experiments.posttrain_cmd import (
    ACCURACY_JSON,
    POST_TRAINED_FILE,
    STUDY_JSON,
    STUDY_MARKDOWN,
    STUDY_RULES,
    run_study,
)
from experiments.train_cmd import load_splits, prepare_runtime
from plasticity.posttrain import PostTrainConfig
from training.checkpoint import (
    CheckpointError,
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    load_model,
)
from training.data import MnistSplit
from training.metrics import classification_report, confusion_matrix
from training.model import ModelConfig
from training.runtime import describe_machine
from training.train import (
    CONFIG_JSON,
    CURVES_CSV,
    CURVES_JSON,
    MODEL_FILE,
    STATE_FILE,
    TrainConfig,
    evaluate,
    library_versions,
    train,
)

MANIFEST = "stages.json"
REPORT = "REPORT.md"
METRICS_JSON = "per_class_metrics.json"
RUNS_DIR = "post_trained"
GENTLE_KEY = "gentle_lr_eta_1e-5"
STRONG_KEY = "strong_lr_eta_1e-4"
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


@dataclass(frozen=True)
class ReproduceConfig:
    """Everything that decides the numbers; a change rebuilds the stages it touches."""

    epochs: int = 10
    post_epochs: int = 3
    etas: tuple[float, ...] = (1e-5, 1e-4, 1e-3)
    rules: tuple[str, ...] = STUDY_RULES
    train_subset: int | None = None
    test_subset: int | None = None
    seed: int = 0
    surrogate: str = "fast_sigmoid"
    backend: str = "auto"
    threads: int = 2

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.post_epochs < 1:
            raise ValueError("--epochs and --post-epochs must be positive integers")
        if 1e-5 not in self.etas or 1e-4 not in self.etas:
            raise ValueError("--etas must include the study's 1e-5 (gentle) and 1e-4 (strong)")
        if "covariance" not in self.rules:
            raise ValueError("--rules must include the study's default rule, covariance")

    @classmethod
    def quick(cls, **overrides: Any) -> ReproduceConfig:
        """A smoke-test run: 2,000 training and 1,000 test images, one epoch of each kind."""
        settings = dict(epochs=1, post_epochs=1, etas=(1e-5, 1e-4), train_subset=2000, test_subset=1000)
        settings.update(overrides)
        return cls(**settings)

    def to_json(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["etas"] = list(self.etas)
        payload["rules"] = list(self.rules)
        return payload


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Manifest:
    """stages.json: what each completed stage wrote, so a re-run can trust or rebuild it."""

    path: Path
    stages: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Manifest:
        try:
            return cls(path, json.loads(path.read_text())["stages"])
        except (OSError, ValueError, KeyError, TypeError):
            return cls(path)  # absent or unreadable: every stage runs

    def valid(self, name: str, settings: dict[str, Any], out: Path) -> bool:
        entry = self.stages.get(name)
        if not entry or entry.get("settings") != settings:
            return False
        for relative, digest in entry.get("outputs", {}).items():
            file = out / relative
            if not file.is_file() or sha256(file) != digest:
                return False
        return True

    def record(self, name: str, settings: dict[str, Any], out: Path, outputs: Sequence[str], seconds: float) -> None:
        self.stages[name] = {
            "settings": settings,
            "outputs": {relative: sha256(out / relative) for relative in outputs},
            "seconds": seconds,
            "completed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        atomic_write_json(self.path, {"stages": self.stages})

    def forget(self, names: Sequence[str]) -> None:
        for name in names:
            self.stages.pop(name, None)
        atomic_write_json(self.path, {"stages": self.stages})

    def digest(self, name: str) -> dict[str, str]:
        return dict(self.stages.get(name, {}).get("outputs", {}))


@dataclass
class Context:
    config: ReproduceConfig
    out: Path
    train_split: MnistSplit
    test_split: MnistSplit
    log: Callable[[str], None]
    progress: bool


def model_config(config: ReproduceConfig) -> ModelConfig:
    return ModelConfig(surrogate=config.surrogate, backend=config.backend)


def stage_train(context: Context) -> list[str]:
    config, out = context.config, context.out
    train_config = TrainConfig(epochs=config.epochs, seed=config.seed)
    resume = (out / STATE_FILE).is_file()
    arguments = dict(
        extra_settings={"threads": config.threads, "train_examples": len(context.train_split), "test_examples": len(context.test_split)},
        progress=context.progress,
        log=context.log,
    )
    try:
        train(context.train_split, context.test_split, model_config(config), train_config, out, resume=resume, **arguments)
    except CheckpointError as error:
        if not resume:
            raise
        context.log(f"cannot resume ({error}); training from scratch")
        train(context.train_split, context.test_split, model_config(config), train_config, out, resume=False, **arguments)
    return [MODEL_FILE, CURVES_CSV, CURVES_JSON, CONFIG_JSON]


def stage_plasticity(context: Context) -> list[str]:
    config, out = context.config, context.out
    for stale in (ACCURACY_JSON, STUDY_JSON, STUDY_MARKDOWN):
        (out / stale).unlink(missing_ok=True)
    base = PostTrainConfig(epochs=config.post_epochs, seed=config.seed)
    rows = run_study(
        out / MODEL_FILE,
        context.train_split,
        context.test_split,
        config.rules,
        config.etas,
        base,
        model_config(config),
        out,
        progress=context.progress,
        log=context.log,
        runs_dir=out / RUNS_DIR,
    )
    return [ACCURACY_JSON, STUDY_JSON, STUDY_MARKDOWN, POST_TRAINED_FILE] + [f"{RUNS_DIR}/{row['key']}.pt" for row in rows]


def stage_analysis(context: Context) -> list[str]:
    out, test = context.out, context.test_split
    base_config = model_config(context.config)
    baseline = load_model(out / MODEL_FILE, base_config).eval()
    post_trained = load_model(out / POST_TRAINED_FILE, base_config).eval()
    strong = load_model(out / RUNS_DIR / f"{STRONG_KEY}.pt", base_config).eval()
    baseline_eval, post_eval = evaluate(baseline, test), evaluate(post_trained, test)
    baseline_matrix = confusion_matrix(test.labels, baseline_eval.predictions)
    post_matrix = confusion_matrix(test.labels, post_eval.predictions)
    baseline_report, post_report = classification_report(baseline_matrix), classification_report(post_matrix)
    atomic_write_json(
        out / METRICS_JSON,
        {
            "baseline": baseline_report.to_json(),
            "post_trained": post_report.to_json(),
            "post_trained_run": GENTLE_KEY,
            "confusion_matrix_baseline": baseline_matrix.tolist(),
            "confusion_matrix_post_trained": post_matrix.tolist(),
        },
    )

    curves = json.loads((out / CURVES_JSON).read_text())
    figures.plot_training_curves(curves["train_acc_history"], curves["test_acc_history"], out / FIGURES["curves"])
    figures.plot_confusion_matrix(baseline_matrix, "Supervised SNN (baseline)", out / FIGURES["cm_baseline"])
    figures.plot_confusion_matrix(post_matrix, "After gentle post-training (covariance, eta = 1e-5)", out / FIGURES["cm_post"])
    for layer, name in (("fc1", "hist1"), ("fc2", "hist2")):
        figures.plot_weight_histograms(
            getattr(baseline, layer).weight.detach().numpy(),
            {
                "after gentle (eta 1e-5)": getattr(post_trained, layer).weight.detach().numpy(),
                "after strong (eta 1e-4)": getattr(strong, layer).weight.detach().numpy(),
            },
            f"Layer {layer[-1]} ({layer})",
            out / FIGURES[name],
        )
    runs = json.loads((out / STUDY_JSON).read_text())["runs"]
    baseline_acc = baseline_eval.accuracy
    for eta, name, label in ((1e-4, "strong", "strong"), (1e-5, "gentle", "gentle")):
        figures.plot_accuracy_trajectories(
            {row["rule"]: row["test_accuracy"] for row in runs if row["eta"] == eta},
            f"Post-training, {label} learning rate (eta = {eta:g})\nmeasured test accuracy of every rule",
            out / FIGURES[name],
            baseline=baseline_acc,
        )
    figures.plot_rule_comparison(runs, out / FIGURES["rules"], baseline=baseline_acc)

    example = 0
    with torch.no_grad():
        output = post_trained(test.flat_images[example : example + 1])
    figures.plot_spike_heatmaps(
        test.images[example].numpy(),
        output.hidden_spikes[:, 0].numpy(),
        output.output_spikes[:, 0].numpy(),
        int(test.labels[example]),
        int(output.output_counts[0].argmax()),
        out / FIGURES["heatmaps"],
    )
    figures.plot_hidden_activity(output.hidden_spikes[:, 0].numpy(), int(test.labels[example]), out / FIGURES["hidden"])
    return [METRICS_JSON, *FIGURES.values()]


def _difference(ours: float, theirs: float | None, scale: float = 1.0, digits: int = 2) -> str:
    if theirs is None:
        return "—"
    return f"{(ours - theirs) * scale:+.{digits}f}"


def build_report(context: Context, manifest: Manifest, reused: dict[str, bool], started: float) -> str:
    out, config = context.out, context.config
    curves = json.loads((out / CURVES_JSON).read_text())
    metrics = json.loads((out / METRICS_JSON).read_text())
    accuracy = json.loads((out / ACCURACY_JSON).read_text())
    study_md = (out / STUDY_MARKDOWN).read_text()
    experiment = json.loads((out / CONFIG_JSON).read_text())
    published = STUDY_PUBLISHED
    gentle, strong = accuracy[GENTLE_KEY], accuracy[STRONG_KEY]

    rows = [
        ("final train accuracy (%)", curves["train_acc_history"][-1], published["final_train_acc"], 1.0, 2, "{:.2f}"),
        ("final test accuracy (%)", curves["test_acc_history"][-1], published["final_test_acc"], 1.0, 2, "{:.2f}"),
    ]
    for label, section, key in (("baseline", "baseline", "baseline_macro"), ("post-trained (eta 1e-5)", "post_trained", "post_trained_macro")):
        for metric in ("precision", "recall", "f1"):
            rows.append(
                (f"{label} macro {metric}", metrics[section][f"macro_{metric}"], published[key][metric], 1.0, 4, "{:.4f}")
            )
    lines = [
        "# Reproduction report",
        "",
        f"Generated by `snn-mnist reproduce` (snn-mnist {__version__}) on "
        f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}. Every number in the 'ours' column and "
        "every figure below comes from this run; the 'study' column holds the study's published values.",
        "",
    ]
    if config.train_subset is not None or config.epochs < 10:
        lines += [
            f"**Quick mode**: {len(context.train_split):,} training and {len(context.test_split):,} test images, "
            f"{config.epochs} training epoch(s), {config.post_epochs} post-training epoch(s). "
            "These numbers are a smoke test, not the study's setting.",
            "",
        ]
    lines += ["## Side by side with the study", "", "| quantity | study (published) | ours (measured) | difference |", "|---|---|---|---|"]
    for label, ours, theirs, scale, digits, template in rows:
        lines.append(f"| {label} | {template.format(theirs)} | {template.format(ours)} | {_difference(ours, theirs, scale, digits)} |")
    for index in range(max(len(gentle), len(published["gentle_trajectory"]))):
        ours_value = gentle[index] if index < len(gentle) else None
        theirs_value = published["gentle_trajectory"][index] if index < len(published["gentle_trajectory"]) else None
        label = "before post-training" if index == 0 else f"after epoch {index}"
        lines.append(
            f"| gentle (eta 1e-5) test accuracy, {label} (%) | {'—' if theirs_value is None else f'{theirs_value:.2f}'} | "
            f"{'—' if ours_value is None else f'{ours_value:.2f}'} | "
            f"{'—' if ours_value is None or theirs_value is None else f'{ours_value - theirs_value:+.2f}'} |"
        )
    for index, value in enumerate(strong):
        label = "before post-training" if index == 0 else f"after epoch {index}"
        lines.append(f"| strong (eta 1e-4) test accuracy, {label} (%) | simulated in the study, not measured | {value:.2f} | — |")
    lines += [
        "",
        "The study's baseline and ours start from different random weights and differ in",
        "implementation details (see docs/), so the baselines differ; the post-training",
        "trajectories are therefore compared by their shape (how much is lost per epoch), not",
        "their level. Our eta multiplies a mean over batch and time (docs/plasticity.md).",
        "",
        "## Training",
        "",
        "![train and test accuracy](snn_train_test_accuracy.png)",
        "",
        "| epoch | train accuracy (%) | test accuracy (%) |",
        "|---|---|---|",
    ]
    for epoch, (train_acc, test_acc) in enumerate(zip(curves["train_acc_history"], curves["test_acc_history"]), 1):
        lines.append(f"| {epoch} | {train_acc:.2f} | {test_acc:.2f} |")
    lines += [
        "",
        "![baseline confusion matrix](cm_supervised_snn.png) ![post-trained confusion matrix](cm_post_trained_snn.png)",
        "",
        "## Post-training plasticity: every rule, measured",
        "",
        study_md,
        "![gentle](post_training_gentle_lr.png)",
        "",
        "![strong](post_training_strong_lr.png)",
        "",
        "![all rules](post_training_rules_comparison.png)",
        "",
        "![layer 1 weights](weight_hist_layer1.png) ![layer 2 weights](weight_hist_layer2.png)",
        "",
        "## Spikes of the post-trained network",
        "",
        "![spike heatmaps](snn_spike_heatmaps_post_trained.png)",
        "",
        "![hidden activity](snn_hidden_activity_example_post_trained.png)",
        "",
        "## Per-class metrics (test set)",
        "",
        "| digit | precision (baseline) | recall (baseline) | F1 (baseline) | precision (post) | recall (post) | F1 (post) |",
        "|---|---|---|---|---|---|---|",
    ]
    for digit in range(10):
        base, post = metrics["baseline"], metrics["post_trained"]
        lines.append(
            f"| {digit} | {base['precision'][digit]:.4f} | {base['recall'][digit]:.4f} | {base['f1'][digit]:.4f} | "
            f"{post['precision'][digit]:.4f} | {post['recall'][digit]:.4f} | {post['f1'][digit]:.4f} |"
        )
    lines += ["", "## Run", "", "| stage | wall time (s) | this invocation |", "|---|---|---|"]
    for name in ("train", "plasticity", "analysis"):
        entry = manifest.stages.get(name, {})
        lines.append(f"| {name} | {entry.get('seconds', float('nan')):.1f} | {'reused' if reused.get(name) else 'ran'} |")
    lines += [
        f"| total (this invocation, up to the report) | {time.perf_counter() - started:.1f} | |",
        "",
        f"Settings: `{json.dumps(config.to_json())}`",
        "",
        f"Threads: {config.threads}; machine: "
        f"{describe_machine(experiment['machine']) if 'machine' in experiment else 'not recorded by the training stage'}; "
        f"versions: `{json.dumps(experiment.get('versions', library_versions()))}`.",
        "",
    ]
    return "\n".join(lines)


def archive(out: Path) -> Path:
    """Pack the results folder into <out>.zip (written atomically beside it)."""
    target = out.with_suffix(".zip") if out.suffix == "" else out.parent / (out.name + ".zip")

    def write(temp: Path) -> None:
        with zipfile.ZipFile(temp, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
            for file in sorted(out.rglob("*")):
                if file.is_file() and not file.name.startswith(".") and file.name != STATE_FILE:
                    bundle.write(file, Path(out.name) / file.relative_to(out))

    atomic_write(target, write)
    return target


def reproduce(
    config: ReproduceConfig,
    out: Path,
    train_split: MnistSplit,
    test_split: MnistSplit,
    force: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, bool]:
    """Run (or reuse) every stage and write REPORT.md; returns {stage: reused}."""
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    manifest = Manifest.load(out / MANIFEST)
    if force:
        manifest.forget(list(manifest.stages))
        (out / STATE_FILE).unlink(missing_ok=True)
    context = Context(config, out, train_split, test_split, log, progress)
    settings = config.to_json()
    stages: list[tuple[str, Callable[[Context], list[str]], dict[str, Any]]] = [
        ("train", stage_train, {"epochs": settings["epochs"], "seed": settings["seed"], "surrogate": settings["surrogate"],
                                "train_subset": settings["train_subset"], "test_subset": settings["test_subset"]}),
        ("plasticity", stage_plasticity, {**settings}),
        ("analysis", stage_analysis, {**settings}),
    ]
    reused: dict[str, bool] = {}
    for index, (name, function, base_settings) in enumerate(stages):
        # A stage depends on the exact files the stages before it wrote.
        stage_settings = {**base_settings, "upstream": {earlier: manifest.digest(earlier) for earlier, _, _ in stages[:index]}}
        if manifest.valid(name, stage_settings, out):
            log(f"stage {name}: reused (outputs intact since {manifest.stages[name]['completed_at']})")
            reused[name] = True
            continue
        if name in manifest.stages:
            log(f"stage {name}: outputs missing, changed, or made with other settings; rebuilding")
            manifest.forget([name])
            if name == "train":
                (out / STATE_FILE).unlink(missing_ok=True)  # nothing to resume: start clean
        log(f"stage {name}: running")
        stage_started = time.perf_counter()
        outputs = function(context)
        reused[name] = False
        manifest.record(name, stage_settings, out, outputs, time.perf_counter() - stage_started)
        log(f"stage {name}: done in {manifest.stages[name]['seconds']:.1f} s")
    atomic_write_text(out / REPORT, build_report(context, manifest, reused, started))
    return reused


def run(args: argparse.Namespace) -> int:
    prepare_runtime(args)
    overrides = {"seed": args.seed, "surrogate": args.surrogate, "backend": args.backend, "threads": args.threads}
    if args.etas is not None:
        overrides["etas"] = args.etas
    config = ReproduceConfig.quick(**overrides) if args.quick else ReproduceConfig(**overrides)
    args.train_subset, args.test_subset = config.train_subset, config.test_subset
    train_split, test_split = load_splits(args)
    assert train_split is not None
    started = time.perf_counter()
    out = Path(args.out)
    reuse = reproduce(config, out, train_split, test_split, force=args.force, progress=not args.no_progress)
    print(f"wrote {out / REPORT} ({sum(reuse.values())} of {len(reuse)} stages reused) in {time.perf_counter() - started:.1f} s")
    if args.archive:
        print(f"archived {archive(out)}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from experiments.posttrain_cmd import parse_floats

    parser = subparsers.add_parser(
        "reproduce",
        help="the whole study: train, post-train every rule, analyse, report (results/REPORT.md)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_options(parser, device=False)
    parser.add_argument("--surrogate", choices=("fast_sigmoid", "atan"), default="fast_sigmoid", help="surrogate gradient (default: fast_sigmoid)")
    parser.add_argument("--etas", type=parse_floats, default=None, help="post-training learning rates (default: 1e-5,1e-4,1e-3)")
    parser.add_argument("--quick", action="store_true", help="smoke test: small subset, one epoch of each kind (well under a minute)")
    parser.add_argument("--force", action="store_true", help="rebuild every stage even if its outputs are intact")
    parser.add_argument("--archive", action="store_true", help="also pack the results folder into one .zip beside it")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(handler=run)
