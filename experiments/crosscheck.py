"""`snn-mnist crosscheck`: our implementation against the study's snnTorch model.

Three checks, from the same initial weights and the same batches:
  (a) step level: for the first N batches, both models start the step from
      identical weights (ours are copied into snnTorch's); we compare the loss
      and every weight/bias gradient, then advance with our optimiser;
  (b) training: each model trains on its own for E epochs (snnTorch with
      torch.optim.Adam as the study writes it, ours with our loop), same batch
      order; we compare the test accuracies;
  (c) agreement: our trained checkpoint loaded into snnTorch with strict=True,
      and snnTorch's into ours; predictions on the test set compared image by image.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from experiments.cli import add_common_options
from experiments.train_cmd import add_subset_options, add_surrogate_options, load_splits, prepare_runtime
from training.checkpoint import atomic_write_json, model_from_state_dict
from training.data import MnistSplit
from training.model import ModelConfig, SupervisedSNN
from training.progress import progress_bar
from training.train import (
    EVAL_BATCH,
    TrainConfig,
    build_optimizer,
    epoch_order,
    evaluate,
    iterate_batches,
    spike_count_loss,
    train_step,
)

GRADIENT_RTOL = 1e-4
LOSS_ATOL = 1e-6


def gradient_agreement(ours: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    """Max |ours - ref|, and the smallest rtol with |ours - ref| <= rtol * (|ref| + 1e-3 * max|ref|).

    The floor (1e-3 of the tensor's largest magnitude) keeps entries that are
    zero up to rounding from dominating a relative comparison."""
    difference = (ours - reference).abs()
    floor = 1e-3 * reference.abs().max().clamp_min(1e-30)
    relative = difference / (reference.abs() + floor)
    return {"max_abs_diff": float(difference.max()), "max_rel_diff": float(relative.max())}


def step_level_check(
    model: SupervisedSNN, study: Any, train_split: MnistSplit, train_config: TrainConfig, batches: int
) -> list[dict[str, Any]]:
    """(a): loss and gradient differences over the first `batches` batches, identical weights each step."""
    from experiments.snntorch_reference import study_loss

    optimizer = build_optimizer(model, train_config.learning_rate)
    order = epoch_order(len(train_split), train_config.seed, 0)
    rows = []
    for index, batch in enumerate(progress_bar(list(iterate_batches(order, train_config.batch_size))[:batches], desc="step check", leave=False)):
        images, labels = train_split.flat_images[batch], train_split.labels[batch]
        study.load_state_dict(model.state_dict(), strict=True)
        study.zero_grad(set_to_none=True)
        study_total, _ = study_loss(study, images, labels, train_config.alpha_reg, model.num_steps)
        study_total.backward()

        output = model(images)
        ours = spike_count_loss(output.output_counts, output.hidden_counts, labels, train_config.alpha_reg)
        model.zero_grad(set_to_none=True)
        ours.total.backward()
        row: dict[str, Any] = {
            "batch": index,
            "loss_ours": ours.total.item(),
            "loss_snntorch": study_total.item(),
            "loss_abs_diff": abs(ours.total.item() - study_total.item()),
        }
        study_params = dict(study.named_parameters())
        for name, parameter in model.named_parameters():
            row[name] = gradient_agreement(parameter.grad, study_params[name].grad)
        rows.append(row)
        optimizer.step()
        model.clip_weights(train_config.weight_clip)
    return rows


def train_study_model(study: Any, train_split: MnistSplit, train_config: TrainConfig, epochs: int, num_steps: int) -> float:
    """(b), snnTorch side: the study's loop. Returns seconds taken."""
    from experiments.snntorch_reference import study_loss

    optimizer = torch.optim.Adam(study.parameters(), lr=train_config.learning_rate)
    started = time.perf_counter()
    for epoch in range(epochs):
        order = epoch_order(len(train_split), train_config.seed, epoch)
        for batch in progress_bar(list(iterate_batches(order, train_config.batch_size)), desc=f"snnTorch epoch {epoch + 1}", leave=False):
            loss, _ = study_loss(study, train_split.flat_images[batch], train_split.labels[batch], train_config.alpha_reg, num_steps)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                study.fc1.weight.clamp_(-train_config.weight_clip, train_config.weight_clip)
                study.fc2.weight.clamp_(-train_config.weight_clip, train_config.weight_clip)
    return time.perf_counter() - started


def train_our_model(model: SupervisedSNN, train_split: MnistSplit, train_config: TrainConfig, epochs: int) -> float:
    """(b), our side: the same batches through `train_step`. Returns seconds taken."""
    optimizer = build_optimizer(model, train_config.learning_rate)
    started = time.perf_counter()
    for epoch in range(epochs):
        order = epoch_order(len(train_split), train_config.seed, epoch)
        for batch in progress_bar(list(iterate_batches(order, train_config.batch_size)), desc=f"ours epoch {epoch + 1}", leave=False):
            train_step(model, optimizer, train_split.flat_images[batch], train_split.labels[batch], train_config)
    return time.perf_counter() - started


@torch.no_grad()
def study_predictions(study: Any, split: MnistSplit, num_steps: int, batch_size: int = EVAL_BATCH) -> torch.Tensor:
    predictions = []
    for start in range(0, len(split), batch_size):
        output_spikes, _ = study(split.flat_images[start : start + batch_size], num_steps)
        predictions.append(output_spikes.sum(dim=0).argmax(dim=1))
    return torch.cat(predictions)


def run_crosscheck(
    train_split: MnistSplit,
    test_split: MnistSplit,
    model_config: ModelConfig,
    train_config: TrainConfig,
    batches: int,
    epochs: int,
) -> dict[str, Any]:
    from experiments.snntorch_reference import build_study_model

    def fresh_pair() -> tuple[SupervisedSNN, Any]:
        torch.manual_seed(train_config.seed)
        model = SupervisedSNN(model_config)
        study = build_study_model(model_config.hidden_size, model_config.beta, model_config.surrogate, model_config.surrogate_scale)
        study.load_state_dict(model.state_dict(), strict=True)
        return model, study

    model, study = fresh_pair()
    steps = step_level_check(model, study, train_split, train_config, batches)

    model, study = fresh_pair()
    ours_seconds = train_our_model(model, train_split, train_config, epochs)
    study_seconds = train_study_model(study, train_split, train_config, epochs, model_config.num_steps)
    ours_eval = evaluate(model, test_split)
    study_acc = 100.0 * float((study_predictions(study, test_split, model_config.num_steps) == test_split.labels).float().mean())

    # (c) checkpoints moved across, strict=True both ways
    ours_in_study = build_study_model(model_config.hidden_size, model_config.beta, model_config.surrogate, model_config.surrogate_scale)
    ours_in_study.load_state_dict(model.state_dict(), strict=True)
    agree_ours = study_predictions(ours_in_study, test_split, model_config.num_steps) == ours_eval.predictions
    study_in_ours = model_from_state_dict(study.state_dict(), model_config)
    agree_study = evaluate(study_in_ours, test_split).predictions == study_predictions(study, test_split, model_config.num_steps)

    max_loss_diff = max(row["loss_abs_diff"] for row in steps)
    max_rel = max(row[name]["max_rel_diff"] for row in steps for name, _ in model.named_parameters())
    return {
        "model": model_config.to_json(),
        "training": asdict(train_config),
        "train_examples": len(train_split),
        "test_examples": len(test_split),
        "step_level": {
            "batches": len(steps),
            "max_loss_abs_diff": max_loss_diff,
            "max_gradient_rel_diff": max_rel,
            "losses_agree_to_1e-6": max_loss_diff <= LOSS_ATOL,
            "gradients_agree_to_rtol_1e-4": max_rel <= GRADIENT_RTOL,
            "per_batch": steps,
        },
        "independent_training": {
            "epochs": epochs,
            "test_acc_ours": ours_eval.accuracy,
            "test_acc_snntorch": study_acc,
            "abs_diff_points": abs(ours_eval.accuracy - study_acc),
            "seconds_ours": ours_seconds,
            "seconds_snntorch": study_seconds,
        },
        "prediction_agreement": {
            "ours_checkpoint_in_snntorch": float(agree_ours.float().mean()),
            "snntorch_checkpoint_in_ours": float(agree_study.float().mean()),
            "images": len(test_split),
        },
    }


def format_report(report: dict[str, Any]) -> str:
    step, train, agree = report["step_level"], report["independent_training"], report["prediction_agreement"]
    lines = [
        f"{'check':<52} {'result':>22}",
        f"{'(a) max |loss ours - loss snnTorch| over ' + str(step['batches']) + ' batches':<52} {step['max_loss_abs_diff']:>22.3e}",
        f"{'(a) max relative gradient difference':<52} {step['max_gradient_rel_diff']:>22.3e}",
        f"{'(b) test accuracy after ' + str(train['epochs']) + ' epoch(s): ours':<52} {train['test_acc_ours']:>21.2f}%",
        f"{'(b) test accuracy after ' + str(train['epochs']) + ' epoch(s): snnTorch':<52} {train['test_acc_snntorch']:>21.2f}%",
        f"{'(b) training time ours / snnTorch (s)':<52} {train['seconds_ours']:>10.1f} / {train['seconds_snntorch']:<9.1f}",
        f"{'(c) same predictions, our checkpoint in snnTorch':<52} {100 * agree['ours_checkpoint_in_snntorch']:>21.2f}%",
        f"{'(c) same predictions, snnTorch checkpoint in ours':<52} {100 * agree['snntorch_checkpoint_in_ours']:>21.2f}%",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.batches < 1:
        raise ValueError(f"--batches must be a positive integer, got {args.batches}")
    if args.epochs < 1:
        raise ValueError(f"--epochs must be a positive integer, got {args.epochs}")
    # The exact path: the one that is bit-identical to snnTorch (the fused kernel sums
    # the output layer in its own order; tests/test_fused.py holds it to this one).
    model_config = ModelConfig(
        surrogate=args.surrogate, surrogate_scale=args.surrogate_scale, backend=args.backend, fused=False
    )
    train_config = TrainConfig(seed=args.seed)
    prepare_runtime(args)
    train_split, test_split = load_splits(args)
    assert train_split is not None
    report = run_crosscheck(train_split, test_split, model_config, train_config, args.batches, args.epochs)
    print(format_report(report))
    out = Path(args.out)
    atomic_write_json(out / "crosscheck.json", report)
    print(f"wrote {out / 'crosscheck.json'}")
    ok = report["step_level"]["losses_agree_to_1e-6"] and report["step_level"]["gradients_agree_to_rtol_1e-4"]
    return 0 if ok and not math.isnan(report["independent_training"]["test_acc_ours"]) else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "crosscheck",
        help="compare our implementation with the study's snnTorch model (needs the test extra)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_options(parser, device=False, out="results")
    add_surrogate_options(parser)
    parser.add_argument("--batches", type=int, default=20, help="batches for the step-level check (default: 20)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs each model trains independently (default: 1)")
    add_subset_options(parser)
    parser.set_defaults(handler=run)
