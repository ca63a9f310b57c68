"""`snn-mnist post-train` and `snn-mnist plasticity-study`.

post-train applies one local rule to a trained checkpoint; plasticity-study
runs the default rule and every stabilised rule at several learning rates, each
from the same baseline, and tabulates accuracy per epoch, macro-F1 after the
last epoch, and weight drift.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from experiments.cli import add_common_options
from experiments.cluster import add_connect_timeout_option, check_cluster_address
from experiments.dose_response import DEFAULT_ETAS, DEFAULT_SEEDS, DOSE_JSON, DOSE_MARKDOWN, DoseResponseConfig, run_dose_response
from experiments.run_folder import writes_output_folder
from experiments.seeds import parse_seeds
from experiments.train_cmd import add_subset_options, load_splits, prepare_runtime
from lif_core.backend import Backend
from plasticity.hebbian import RULE_NAMES, STABILISED_RULES
from plasticity.posttrain import (
    ETA_SCALES,
    PLASTIC_LAYERS,
    PostTrainConfig,
    PostTrainResult,
    load_post_trainable,
    post_train,
    trajectory_key,
)
from training.checkpoint import atomic_write_json, atomic_write_text, save_model
from training.data import MnistSplit
from training.metrics import report_from_predictions
from training.runtime import available_threads, configure_threads

POST_TRAINED_FILE = "supervised_snn_post_trained_state_dict.pt"
ACCURACY_JSON = "post_training_accuracy.json"
STUDY_JSON = "plasticity_study.json"
STUDY_MARKDOWN = "plasticity_study.md"
STUDY_ETAS = (1e-5, 1e-4, 1e-3)
STUDY_RULES = ("covariance", *STABILISED_RULES)


def parse_layers(text: str) -> tuple[str, ...]:
    layers = tuple(part.strip() for part in text.split(",") if part.strip())
    if not layers or any(layer not in PLASTIC_LAYERS for layer in layers):
        raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {','.join(PLASTIC_LAYERS)}, got {text!r}")
    return layers


def parse_floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def check_etas(etas: Sequence[float], flag: str = "--etas") -> None:
    """Every learning rate of a list flag is finite and non-negative (ValueError naming `flag`),
    checked before any run starts."""
    bad = [eta for eta in etas if not (math.isfinite(eta) and eta >= 0)]
    if bad:
        listed = ",".join(f"{eta:g}" for eta in etas)
        raise ValueError(
            f"{flag} {listed}: {', '.join(f'{eta:g}' for eta in bad)} is not a non-negative finite learning rate. "
            f"Fix: give numbers such as {flag} 1e-5,1e-4"
        )


def parse_rules(text: str) -> tuple[str, ...]:
    rules = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [rule for rule in rules if rule not in RULE_NAMES]
    if not rules or unknown:
        raise argparse.ArgumentTypeError(f"rules must come from {', '.join(RULE_NAMES)}, got {text!r}")
    return rules


def record_run(path: Path, key: str, result: PostTrainResult) -> dict[str, Any]:
    """Add one run's trajectory (and drift) to post_training_accuracy.json, keeping the others."""
    payload: dict[str, Any] = {}
    if path.is_file():
        try:
            payload = json.loads(path.read_text())
        except json.JSONDecodeError:
            payload = {}  # a torn file from an older run: rebuilt from this run on
    payload[key] = result.test_accuracy
    payload.setdefault("weight_drift", {})[key] = result.to_json()["weight_drift"]
    atomic_write_json(path, payload)
    return payload


def study_row(key: str, result: PostTrainResult, labels: Any) -> dict[str, Any]:
    assert result.final_evaluation is not None
    report = report_from_predictions(labels, result.final_evaluation.predictions)
    return {
        "key": key,
        "rule": result.config.rule,
        "eta": result.config.eta,
        "plastic_layers": list(result.config.plastic_layers),
        "test_accuracy": result.test_accuracy,
        "macro_f1_after_last_epoch": report.macro_f1,
        "weight_drift": result.to_json()["weight_drift"],
        "seconds": result.seconds,
    }


def study_markdown(rows: Sequence[dict[str, Any]]) -> str:
    epochs = max(len(row["test_accuracy"]) for row in rows) - 1
    header = ["rule", "eta", "before"] + [f"epoch {e}" for e in range(1, epochs + 1)] + [
        "macro-F1 (last)",
        "drift fc1",
        "drift fc2",
        "at clip fc1/fc2",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        drift = row["weight_drift"]
        cells = [row["rule"], f"{row['eta']:g}"] + [f"{value:.2f}%" for value in row["test_accuracy"]]
        cells += [
            f"{row['macro_f1_after_last_epoch']:.4f}",
            f"{100 * drift['fc1']['relative_change']:.2f}%",
            f"{100 * drift['fc2']['relative_change']:.2f}%",
            f"{100 * drift['fc1']['fraction_at_clip']:.2f}% / {100 * drift['fc2']['fraction_at_clip']:.2f}%",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    notes = (
        "\nAccuracy is on the test set before post-training and after each epoch; drift is "
        "||W - W0||_F / ||W0||_F; 'at clip' is the share of weights with |W| = 1.\n"
    )
    return "\n".join(lines) + "\n" + notes


def run_study(
    checkpoint: Path,
    train_split: MnistSplit,
    test_split: MnistSplit,
    rules: Sequence[str],
    etas: Sequence[float],
    base: PostTrainConfig,
    backend: Backend,
    out: Path,
    progress: bool = True,
    log: Callable[[str], None] = print,
    runs_dir: Path | None = None,
) -> list[dict[str, Any]]:
    """Every (rule, eta) from the same baseline (its neurons on `backend`); writes the
    trajectories, the table and, for the study's gentle run, the post-trained checkpoint
    (every run's, as runs_dir/<key>.pt, when runs_dir is given)."""
    rows = []
    for rule in rules:
        for eta in etas:
            config = replace(base, rule=rule, eta=eta)
            model = load_post_trainable(checkpoint, backend)
            result = post_train(model, train_split, test_split, config, progress=progress, log=log)
            key = trajectory_key(rule, eta, config.plastic_layers)
            record_run(out / ACCURACY_JSON, key, result)
            if key == "gentle_lr_eta_1e-5":
                save_model(model, out / POST_TRAINED_FILE)
            if runs_dir is not None:
                save_model(model, runs_dir / f"{key}.pt")
            rows.append(study_row(key, result, test_split.labels))
            atomic_write_json(out / STUDY_JSON, {"baseline": str(checkpoint), "runs": rows})
            atomic_write_text(out / STUDY_MARKDOWN, study_markdown(rows))
    return rows


def _post_train_config(args: argparse.Namespace, rule: str, eta: float) -> PostTrainConfig:
    return PostTrainConfig(
        rule=rule,
        eta=eta,
        epochs=args.epochs,
        batch_size=args.batch_size,
        plastic_layers=args.plastic_layers,
        seed=args.seed,
        meta_strength=args.meta_strength,
        anchor_strength=args.anchor_strength,
        kernel_backend=args.kernel_backend,
        eta_scale=args.eta_scale,
    )


@writes_output_folder
def run_post_train(args: argparse.Namespace) -> int:
    config = _post_train_config(args, args.rule, args.eta)
    prepare_runtime(args)
    model = load_post_trainable(args.checkpoint, args.backend)  # fail fast, before loading MNIST
    train_split, test_split = load_splits(args)
    assert train_split is not None
    result = post_train(model, train_split, test_split, config, progress=not args.no_progress)
    out = Path(args.out)
    save_model(model, out / POST_TRAINED_FILE)
    key = trajectory_key(config.rule, config.eta, config.plastic_layers)
    record_run(out / ACCURACY_JSON, key, result)
    print("test accuracy per epoch: " + " -> ".join(f"{value:.2f}%" for value in result.test_accuracy))
    for name, drift in result.drift.items():
        print(f"{name}: relative change {100 * drift.relative_change:.3f}%, at clip {100 * drift.fraction_at_clip:.3f}%")
    print(f"test accuracy: {result.test_accuracy[-1]:.2f}%")
    print(f"wrote {out / POST_TRAINED_FILE} and {out / ACCURACY_JSON} (key {key!r})")
    return 0


def run_dose_response_study(args: argparse.Namespace) -> int:
    if args.checkpoint is not None:
        raise ValueError(
            f"--dose-response trains or reuses one baseline per seed in OUT/seed_<S>/, so it takes no checkpoint "
            f"(got {args.checkpoint}). Fix: leave the checkpoint out; `snn-mnist reproduce --out OUT` writes the same folders"
        )
    if args.eta_scale != "mean":
        raise ValueError("--dose-response measures eta in its mean form. Fix: leave --eta-scale out (the report converts)")
    threads = configure_threads(args.threads if args.threads is not None else 1)  # validates it
    jobs = args.jobs if args.jobs is not None else max(1, available_threads() // threads)
    config = DoseResponseConfig(
        etas=args.etas if args.etas is not None else DEFAULT_ETAS,
        rules=args.rules,
        seeds=tuple(args.seeds) if args.seeds is not None else DEFAULT_SEEDS,
        epochs=args.epochs,
        threads=threads,
        jobs=jobs,
        shift=args.shift,
    )
    if threads * jobs > available_threads():
        raise ValueError(
            f"--jobs {jobs} x --threads {threads} asks for more than the {available_threads()} cores here. "
            "Fix: lower --jobs or --threads"
        )
    if args.address is not None and args.address != "local":
        check_cluster_address(args.address, args.connect_timeout)
    args.threads = threads * jobs  # the baselines train on all of them
    prepare_runtime(args)
    train_split, test_split = load_splits(args)
    assert train_split is not None
    out = Path(args.out)
    run_dose_response(config, out, train_split, test_split, progress=not args.no_progress, address=args.address)
    json_name, markdown_name, figure_name = config.files()
    print((out / markdown_name).read_text())
    print(f"wrote {out / markdown_name}, {out / json_name} and {out / figure_name}")
    return 0


@writes_output_folder
def run_plasticity_study(args: argparse.Namespace) -> int:
    if args.dose_response:
        return run_dose_response_study(args)
    if args.checkpoint is None:
        raise ValueError("plasticity-study needs a trained checkpoint. Fix: give its path, or use --dose-response")
    if args.seeds is not None or args.jobs is not None or args.shift is not None or args.address is not None:
        raise ValueError("--seeds, --jobs, --shift and --address belong to --dose-response. Fix: add --dose-response, or leave them out")
    if args.etas is None:
        args.etas = STUDY_ETAS
    if not args.etas:
        raise ValueError("--etas lists no learning rate. Fix: give one or more, comma-separated, e.g. --etas 1e-5,1e-4")
    check_etas(args.etas)
    base = _post_train_config(args, "covariance", args.etas[0])
    for rule in args.rules:
        for eta in args.etas:
            replace(base, rule=rule, eta=eta)  # validate every run before any starts
    prepare_runtime(args)
    load_post_trainable(args.checkpoint, args.backend)  # fail fast, before loading MNIST and before any run
    train_split, test_split = load_splits(args)
    assert train_split is not None
    out = Path(args.out)
    rows = run_study(
        args.checkpoint, train_split, test_split, args.rules, args.etas, base, args.backend, out,
        progress=not args.no_progress,
    )
    print(study_markdown(rows))
    print(f"wrote {out / STUDY_MARKDOWN}, {out / STUDY_JSON} and {out / ACCURACY_JSON}")
    return 0


def _add_rule_options(parser: argparse.ArgumentParser, checkpoint_optional: bool = False) -> None:
    defaults = PostTrainConfig()
    if checkpoint_optional:
        parser.add_argument("checkpoint", type=Path, nargs="?", default=None, help="trained state_dict (not with --dose-response)")
    else:
        parser.add_argument("checkpoint", type=Path, help="trained state_dict (supervised_snn_baseline_state_dict.pt)")
    add_common_options(parser, device=False)
    parser.add_argument("--epochs", type=int, default=defaults.epochs, help="passes over the training images (default: 3)")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="images per update (default: 128)")
    parser.add_argument(
        "--plastic-layers", type=parse_layers, default=defaults.plastic_layers,
        help="which weight matrices learn: fc1, fc2 or fc1,fc2 (default: both)",
    )
    parser.add_argument("--meta-strength", type=float, default=defaults.meta_strength, help="covariance_meta: m in units of 1/rms(W0) (default: 1)")
    parser.add_argument("--anchor-strength", type=float, default=defaults.anchor_strength, help="covariance_anchor: pull toward W0 (default: 100)")
    parser.add_argument("--kernel-backend", choices=("numba", "numpy"), default="numba", help="plasticity kernels (default: numba)")
    parser.add_argument(
        "--eta-scale", choices=ETA_SCALES, default="mean",
        help="what eta multiplies: a mean over batch and time (default), or a sum over the time steps (sum_time), "
        "the batch's images (sum_batch) or both (sum): eta x T, B or T*B in the mean form (docs/plasticity.md)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_subset_options(parser)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "post-train",
        help="unsupervised Hebbian post-training of a trained checkpoint",
        description=(
            "Pass over the training images without labels, updating the weights with a local rule "
            "after every batch (weights clipped to [-1, 1], biases untouched); test accuracy before "
            "and after each epoch. Rules: " + ", ".join(RULE_NAMES) + "."
        ),
    )
    _add_rule_options(parser)
    parser.add_argument("--rule", choices=RULE_NAMES, default="covariance", help="learning rule (default: covariance)")
    parser.add_argument("--eta", type=float, default=PostTrainConfig().eta, help="learning rate (default: 1e-5, the study's gentle run)")
    parser.set_defaults(handler=run_post_train)

    parser = subparsers.add_parser(
        "plasticity-study",
        help="every stabilised rule and the default rule at several learning rates, from one baseline",
        description=(
            "Run post-training for each rule and eta from the same checkpoint and tabulate test "
            "accuracy per epoch, macro-F1 after the last epoch and weight drift "
            f"({STUDY_MARKDOWN}, {STUDY_JSON}, {ACCURACY_JSON})."
        ),
    )
    _add_rule_options(parser, checkpoint_optional=True)
    parser.add_argument(
        "--rules", type=parse_rules, default=STUDY_RULES,
        help=f"comma-separated rules (default: {','.join(STUDY_RULES)})",
    )
    parser.add_argument(
        "--etas", type=parse_floats, default=None,
        help="comma-separated learning rates (default: 1e-5,1e-4,1e-3; with --dose-response: "
        + ",".join(f"{eta:g}" for eta in DEFAULT_ETAS) + ")",
    )
    parser.add_argument(
        "--dose-response", action="store_true",
        help="forgetting against eta over seeds: one study-recipe baseline per seed in OUT/seed_<S>/ (trained when "
        f"absent), every rule at every eta from each ({DOSE_JSON}, {DOSE_MARKDOWN}, dose_response.png); resumable",
    )
    parser.add_argument("--seeds", type=parse_seeds, default=None, help="--dose-response: seeds (default: 0,1,2)")
    parser.add_argument(
        "--address", default=None, metavar="HOST:PORT",
        help="--dose-response: run the post-training runs on a Ray cluster (--out on storage every node mounts), "
        "or 'local' for an embedded Ray here; default: local worker processes",
    )
    add_connect_timeout_option(parser)
    parser.add_argument(
        "--shift", default=None, metavar="KIND:AMOUNT",
        help="--dose-response under an input shift, contrast:C (x -> C x) or noise:S (x + S z, clipped): post-train "
        "on the shifted training images and measure the gain on shifted test images and the cost on clean ones",
    )
    parser.add_argument(
        "--jobs", type=int, default=None,
        help="--dose-response: runs side by side, each on --threads threads (default 1) (default: cores / threads)",
    )
    parser.set_defaults(handler=run_plasticity_study)
