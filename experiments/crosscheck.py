"""`snn-mnist crosscheck`: our network against the same network written with snnTorch.

The network is the study's 784-512-10 unless the network flags describe another
(--layers 784,1000,10 --beta 0.95 --reset zero --input rate --loss membrane ...), or
--checkpoint PATH gives a snnTorch state_dict (the study's fc1/lif1/... naming or an
nn.Sequential's 0/1/2/...; sizes, beta, threshold, reset and graded factor read from it,
the rest from the flags).  Ours is `training.network.FeedForwardSNN` on its exact path;
theirs the snnTorch model a user writes for it (`experiments.snntorch_network`: the study's
class and loop, fc1(x) recomputed at every step, or the nn.Sequential).  The architecture is
printed first.

Three checks, from the same initial weights and the same batches:
  (a) step level: for the first N batches, both models start the step from identical
      weights (ours are copied into snnTorch's); we compare the loss and every gradient,
      then advance ours with the trainer's optimiser (Adam, weight clip);
  (b) training: each model trains on its own for E epochs, the same batches and input
      draws: ours with `snn-mnist train`'s trainer (`training.train.train`, its checkpoint and
      curves written to OUT/ours), snnTorch with the same optimiser (the trainer's Adam) and
      clip, so that the two runs differ only by the networks; we compare the losses batch by
      batch and the test accuracies;
  (c) agreement: our trained checkpoint loaded into snnTorch with strict=True, and snnTorch's
      into ours; predictions on the test set compared image by image.
With rate-coded input (--input rate) both sides draw the same spikes: ours from a
torch.Generator, snnTorch's spikegen.rate from torch's global generator, both seeded as the
trainer seeds them (`training.train.input_stream_seed`: (input seed, epoch) while training,
the input seed alone for (a) and for evaluation).

Exit code 0 when every step-level loss agrees (to 1e-6, and for the membrane loss, a sum of
T cross-entropies, to 1e-6 per term: T * 1e-6) and every gradient to a relative 1e-4.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from experiments.cli import add_common_options
from experiments.network_options import add_network_options, network_settings, refuse_checkpoint_flags
from experiments.train_cmd import add_subset_options, check_mnist_sizes, load_splits, prepare_runtime
from training.checkpoint import CheckpointError, atomic_write_json, read_checkpoint
from training.data import MnistSplit
from training.network import FeedForwardSNN, NetworkConfig, rate_code
from training.presets import preset_configs
from training.progress import progress_bar
from training.snntorch_checkpoint import (
    Naming,
    network_config_from_state_dict,
    rename_modules,
    snntorch_state_dict,
    state_dict_layers,
)
from training.train import (
    EVAL_BATCH,
    TrainConfig,
    build_optimizer,
    epoch_order,
    evaluate,
    input_generator,
    input_stream_seed,
    iterate_batches,
    train,
)

GRADIENT_RTOL = 1e-4
LOSS_ATOL = 1e-6


class Setup(NamedTuple):
    """A network to cross-check: its config, the snnTorch naming of its state_dict, the
    starting weights in that naming, and where they came from."""

    config: NetworkConfig
    naming: Naming
    initial_state: dict[str, torch.Tensor]
    source: dict[str, Any]


def gradient_agreement(ours: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
    """Max |ours - ref|, and the smallest rtol with |ours - ref| <= rtol * (|ref| + 1e-3 * max|ref|).

    The floor (1e-3 of the tensor's largest magnitude) keeps entries that are
    zero up to rounding from dominating a relative comparison."""
    difference = (ours - reference).abs()
    floor = 1e-3 * reference.abs().max().clamp_min(1e-30)
    relative = difference / (reference.abs() + floor)
    return {"max_abs_diff": float(difference.max()), "max_rel_diff": float(relative.max())}


def loss_tolerance(config: NetworkConfig) -> float:
    """LOSS_ATOL per cross-entropy term: 1e-6 for the count loss, T * 1e-6 for the membrane
    loss (a sum of T terms, each of float32 rounding ~1e-7 of its ~2.3)."""
    return LOSS_ATOL * (config.num_steps if config.loss == "membrane" else 1)


def setup_from_args(args: argparse.Namespace) -> Setup:
    """The network of the flags (weights drawn with --seed) or of --checkpoint."""
    settings = network_settings(args)
    if args.checkpoint is None:
        config, _ = preset_configs("study", network=settings)
        torch.manual_seed(args.seed)
        initial = snntorch_state_dict(FeedForwardSNN(config), "study")
        return Setup(config, "study", initial, {"layers": list(config.layer_sizes), "naming": "study"})
    refuse_checkpoint_flags(args)
    state = read_checkpoint(args.checkpoint)
    try:
        sizes, _ = state_dict_layers(state)
        base, _ = preset_configs("study", network={**settings, "layer_sizes": sizes})
        config, naming = network_config_from_state_dict(state, base)
    except (CheckpointError, ValueError) as error:
        raise CheckpointError(f"{args.checkpoint}: {error}") from None
    check_mnist_sizes(config.layer_sizes, args.checkpoint)
    initial = {key: value.detach().clone() for key, value in state.items()}
    return Setup(config, naming, initial, {"checkpoint": str(args.checkpoint), "naming": naming})


def our_model(setup: Setup, state: dict[str, torch.Tensor], backend: str) -> FeedForwardSNN:
    """FeedForwardSNN of the setup on its exact path (the one bit-identical to snnTorch), holding
    `state` (in the setup's naming), loaded with strict=True."""
    model = FeedForwardSNN(setup.config, backend=backend, fused=False)  # type: ignore[arg-type]  # argparse's choices
    model.load_state_dict(rename_modules(state, setup.naming, "study", setup.config.num_layers), strict=True)
    return model


def their_model(setup: Setup, state: dict[str, torch.Tensor]) -> nn.Module:
    """The snnTorch model of the setup, holding `state`, loaded with strict=True."""
    from experiments.snntorch_network import snntorch_model

    model = snntorch_model(setup.config, setup.naming)
    model.load_state_dict(state, strict=True)
    return model


class InputStreams:
    """The rate-coded input of both sides, one stream each, seeded alike (None for "current")."""

    def __init__(self, config: NetworkConfig, seed: int) -> None:
        from experiments.snntorch_network import RateStream

        rate = config.input_coding == "rate"
        self.ours = torch.Generator().manual_seed(seed) if rate else None
        self.theirs = RateStream(seed) if rate else None


def their_loss(model: nn.Module, config: NetworkConfig, images: torch.Tensor, labels: torch.Tensor, streams: InputStreams) -> tuple[torch.Tensor, torch.Tensor]:
    """snnTorch's loss on a batch, and the input its first layer saw."""
    from experiments.snntorch_network import run_snntorch, snntorch_inputs, snntorch_loss

    inputs = snntorch_inputs(config, images, streams.theirs)
    return snntorch_loss(run_snntorch(model, config, inputs), labels, config), inputs


def step_level_check(
    setup: Setup, backend: str, train_split: MnistSplit, train_config: TrainConfig, batches: int
) -> list[dict[str, Any]]:
    """(a): each step from identical weights and inputs; then our optimiser's step."""
    config, naming = setup.config, setup.naming
    ours, theirs = our_model(setup, setup.initial_state, backend), their_model(setup, setup.initial_state)
    optimizer = build_optimizer(ours, train_config.learning_rate, train_config.weight_decay)
    streams = InputStreams(config, input_stream_seed(train_config.draws_seed, None))
    names = dict(zip(snntorch_state_dict(ours, "study"), snntorch_state_dict(ours, naming)))
    order = epoch_order(len(train_split), train_config.seed, 0)
    rows = []
    for index, batch in enumerate(progress_bar(list(iterate_batches(order, train_config.batch_size))[:batches], desc="step check", leave=False)):
        images, labels = train_split.flat_images[batch], train_split.labels[batch]
        theirs.load_state_dict(snntorch_state_dict(ours, naming), strict=True)
        theirs.zero_grad(set_to_none=True)
        if streams.ours is not None:  # what our forward will draw, to show both sides saw the same spikes
            probe = torch.Generator().set_state(streams.ours.get_state())
            expected_inputs = rate_code(images, config.num_steps, probe)
        their_total, inputs = their_loss(theirs, config, images, labels, streams)
        their_total.backward()

        ours.zero_grad(set_to_none=True)
        our_total = ours.loss(ours(images, streams.ours), labels).total
        our_total.backward()
        row: dict[str, Any] = {
            "batch": index,
            "loss_ours": our_total.item(),
            "loss_snntorch": their_total.item(),
            "loss_abs_diff": abs(our_total.item() - their_total.item()),
        }
        if streams.ours is not None:
            row["inputs_identical"] = bool(torch.equal(expected_inputs, inputs))
        their_params = dict(theirs.named_parameters())
        for name, parameter in ours.named_parameters():
            reference = their_params[names[name]].grad
            reference = torch.zeros_like(parameter) if reference is None else reference
            mine = torch.zeros_like(parameter) if parameter.grad is None else parameter.grad
            row[names[name]] = gradient_agreement(mine, reference)
        rows.append(row)
        optimizer.step()
        ours.clip_weights(train_config.weight_clip)
    return rows


def train_theirs(model: nn.Module, config: NetworkConfig, train_split: MnistSplit, train_config: TrainConfig) -> tuple[float, list[float]]:
    """(b), snnTorch's side: the trainer's optimiser, batches, input draws and weight clip.
    Returns seconds taken and the loss of every batch."""
    optimizer = build_optimizer(model, train_config.learning_rate, train_config.weight_decay)
    linears = [module for module in model.modules() if isinstance(module, nn.Linear)]
    losses: list[float] = []
    started = time.perf_counter()
    for epoch in range(train_config.epochs):
        order = epoch_order(len(train_split), train_config.seed, epoch)
        streams = InputStreams(config, input_stream_seed(train_config.draws_seed, epoch))
        for batch in progress_bar(list(iterate_batches(order, train_config.batch_size)), desc=f"snnTorch epoch {epoch + 1}", leave=False):
            loss, _ = their_loss(model, config, train_split.flat_images[batch], train_split.labels[batch], streams)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                for linear in linears:
                    linear.weight.clamp_(-train_config.weight_clip, train_config.weight_clip)
            losses.append(loss.item())
    return time.perf_counter() - started, losses


@torch.no_grad()
def their_predictions(model: nn.Module, config: NetworkConfig, split: MnistSplit, input_seed: int) -> torch.Tensor:
    """argmax of the snnTorch model's output spike counts over a split, EVAL_BATCH images at a
    time; rate-coded input drawn from one stream seeded `input_seed`, as `evaluate` draws ours."""
    from experiments.snntorch_network import run_snntorch, snntorch_inputs

    streams = InputStreams(config, input_seed)
    predictions = []
    for start in progress_bar(range(0, len(split), EVAL_BATCH), desc="snnTorch evaluate", leave=False):
        images = split.flat_images[start : start + EVAL_BATCH]
        output = run_snntorch(model, config, snntorch_inputs(config, images, streams.theirs))
        predictions.append(output.output_counts.argmax(dim=1))
    return torch.cat(predictions)


def run_crosscheck(
    train_split: MnistSplit,
    test_split: MnistSplit,
    setup: Setup,
    train_config: TrainConfig,
    out: Path,
    batches: int = 20,
    backend: str = "auto",
) -> dict[str, Any]:
    """(a), (b) and (c); the report `run` writes as crosscheck.json.  train_config.epochs is (b)'s."""
    config, naming = setup.config, setup.naming
    steps = step_level_check(setup, backend, train_split, train_config, batches)

    our_losses: list[float] = []
    ours, history = train(
        train_split,
        test_split,
        config,
        train_config,
        out / "ours",
        extra_settings={"crosscheck_source": setup.source, "train_examples": len(train_split)},
        progress=False,
        log=lambda _: None,
        initial_state=rename_modules(setup.initial_state, naming, "study", config.num_layers),
        on_step=lambda _epoch, _step, loss: our_losses.append(loss),
    )
    theirs = their_model(setup, setup.initial_state)
    their_seconds, their_losses = train_theirs(theirs, config, train_split, train_config)
    evaluation_seed = input_stream_seed(train_config.draws_seed, None)
    evaluation = input_generator(train_config.draws_seed, None) if config.input_coding == "rate" else None
    ours_eval = evaluate(ours, test_split, generator=evaluation)
    their_preds = their_predictions(theirs, config, test_split, evaluation_seed)
    their_acc = 100.0 * int((their_preds == test_split.labels).sum()) / len(test_split)

    # (c) checkpoints moved across, strict=True both ways
    ours_in_theirs = their_model(setup, snntorch_state_dict(ours, naming))
    agree_ours = their_predictions(ours_in_theirs, config, test_split, evaluation_seed) == ours_eval.predictions
    theirs_in_ours = our_model(setup, theirs.state_dict(), backend)
    evaluation = input_generator(train_config.draws_seed, None) if config.input_coding == "rate" else None
    agree_theirs = evaluate(theirs_in_ours, test_split, generator=evaluation).predictions == their_preds

    tolerance = loss_tolerance(config)
    max_loss_diff = max(row["loss_abs_diff"] for row in steps)
    parameter_names = [name for name, _ in their_model(setup, setup.initial_state).named_parameters()]
    max_rel = max(row[name]["max_rel_diff"] for row in steps for name in parameter_names)
    step_level: dict[str, Any] = {
        "batches": len(steps),
        "max_loss_abs_diff": max_loss_diff,
        "loss_atol": tolerance,
        "max_gradient_rel_diff": max_rel,
        "losses_agree": max_loss_diff <= tolerance,
        "gradients_agree_to_rtol_1e-4": max_rel <= GRADIENT_RTOL,
    }
    if config.input_coding == "rate":
        step_level["inputs_identical"] = all(row["inputs_identical"] for row in steps)
    drift = [abs(a - b) / max(abs(b), 1e-30) for a, b in zip(our_losses, their_losses)]
    return {
        "architecture": config.describe(),
        "config": config.to_json(),
        "source": setup.source,
        "training": train_config.to_json(),
        "train_examples": len(train_split),
        "test_examples": len(test_split),
        "step_level": {**step_level, "per_batch": steps},
        "independent_training": {
            "epochs": train_config.epochs,
            "test_acc_ours": ours_eval.accuracy,
            "test_acc_snntorch": their_acc,
            "abs_diff_points": abs(ours_eval.accuracy - their_acc),
            "seconds_ours": sum(history.train_seconds),
            "seconds_snntorch": their_seconds,
            "batches": len(drift),
            "batches_with_equal_loss": sum(a == b for a, b in zip(our_losses, their_losses)),
            "max_relative_loss_difference": max(drift, default=0.0),
            "final_loss_ours": our_losses[-1] if our_losses else math.nan,
            "final_loss_snntorch": their_losses[-1] if their_losses else math.nan,
        },
        "prediction_agreement": {
            "ours_checkpoint_in_snntorch": float(agree_ours.float().mean()),
            "snntorch_checkpoint_in_ours": float(agree_theirs.float().mean()),
            "images": len(test_split),
        },
    }


def format_report(report: dict[str, Any]) -> str:
    step, train_, agree = report["step_level"], report["independent_training"], report["prediction_agreement"]
    epochs = str(train_["epochs"])
    lines = [
        f"{'check':<52} {'result':>22}",
        f"{'(a) max |loss ours - loss snnTorch| over ' + str(step['batches']) + ' batches':<52} {step['max_loss_abs_diff']:>22.3e}",
        f"{'(a) max relative gradient difference':<52} {step['max_gradient_rel_diff']:>22.3e}",
    ]
    if "inputs_identical" in step:
        lines.append(f"{'(a) same rate-coded input spikes on both sides':<52} {str(step['inputs_identical']).lower():>22}")
    equal = f"{train_['batches_with_equal_loss']} of {train_['batches']}"
    lines += [
        f"{'(b) test accuracy after ' + epochs + ' epoch(s): ours':<52} {train_['test_acc_ours']:>21.2f}%",
        f"{'(b) test accuracy after ' + epochs + ' epoch(s): snnTorch':<52} {train_['test_acc_snntorch']:>21.2f}%",
        f"{'(b) training time ours / snnTorch (s)':<52} {train_['seconds_ours']:>10.1f} / {train_['seconds_snntorch']:<9.1f}",
        f"{'(b) batches with equal loss':<52} {equal:>22}",
        f"{'(b) max relative loss difference while training':<52} {train_['max_relative_loss_difference']:>22.3e}",
        f"{'(c) same predictions, our checkpoint in snnTorch':<52} {100 * agree['ours_checkpoint_in_snntorch']:>21.2f}%",
        f"{'(c) same predictions, snnTorch checkpoint in ours':<52} {100 * agree['snntorch_checkpoint_in_ours']:>21.2f}%",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.batches < 1:
        raise ValueError(f"--batches must be a positive integer, got {args.batches}. Fix: pass e.g. --batches 20.")
    if args.input_seed is not None and args.input_seed < 0:
        raise ValueError(f"--input-seed must be a non-negative integer, got {args.input_seed}. Fix: pass e.g. --input-seed 0.")
    _, train_config = preset_configs(
        "study",
        training={
            "epochs": args.epochs,
            "learning_rate": args.lr,
            "seed": args.seed,
            "input_seed": args.input_seed,
            "backend": args.backend,
            "fused": False,
        },
    )
    prepare_runtime(args)
    setup = setup_from_args(args)
    print(f"architecture: {setup.config.describe()}")
    train_split, test_split = load_splits(args)
    assert train_split is not None
    out = Path(args.out)
    report = run_crosscheck(train_split, test_split, setup, train_config, out, args.batches, args.backend)
    print(format_report(report))
    atomic_write_json(out / "crosscheck.json", report)
    print(f"wrote {out / 'crosscheck.json'} (our trained checkpoint and curves in {out / 'ours'})")
    step = report["step_level"]
    ok = step["losses_agree"] and step["gradients_agree_to_rtol_1e-4"] and step.get("inputs_identical", True)
    return 0 if ok and not math.isnan(report["independent_training"]["test_acc_ours"]) else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    defaults = TrainConfig()
    parser = subparsers.add_parser(
        "crosscheck",
        help="compare our network with the same network written with snnTorch: the study's, any described "
        "by flags, or a snnTorch checkpoint (needs the test extra)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_options(parser, device=False, out="results")
    add_network_options(parser)
    parser.add_argument(
        "--checkpoint", type=Path, default=None, metavar="PATH",
        help="a snnTorch state_dict (torch.save): fc1/lif1/... or nn.Sequential 0/1/2/... keys; sizes, beta, "
        "threshold, reset and graded factor are read from it, and it is the starting point",
    )
    parser.add_argument("--batches", type=int, default=20, help="batches for the step-level check (default: 20)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs each model trains independently (default: 1)")
    parser.add_argument("--lr", type=float, default=None, help=f"Adam learning rate (default: {defaults.learning_rate:g}, the study's)")
    parser.add_argument(
        "--input-seed", type=int, default=None,
        help="seed of a rate-coded network's input draws (default: --seed), as `snn-mnist train` draws them",
    )
    add_subset_options(parser)
    parser.set_defaults(handler=run)
