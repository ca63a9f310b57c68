"""`snn-mnist crosscheck`: our implementation against snnTorch, for the study's network or any other.

Without --layers or --checkpoint it checks the study's 784-512-10 network
(training.model.SupervisedSNN against experiments/snntorch_reference.py).  With a model
description (--layers 784,1000,10 --beta 0.95 --reset zero --input rate --loss membrane ...)
or a snnTorch state_dict (--checkpoint PATH: the study's fc1/lif1/... naming or an
nn.Sequential's 0/1/2/...; sizes, beta, threshold, reset and graded factor read from it,
--steps, --reset-delay, --input, --loss, --surrogate, --learn-beta/--learn-threshold from the
flags) it checks our general FeedForwardSNN against the same network built with snnTorch
(experiments/snntorch_network.py), trained by both with torch.optim.Adam (--lr), and prints
the architecture first.

Three checks, from the same initial weights and the same batches:
  (a) step level: for the first N batches, both models start the step from
      identical weights (ours are copied into snnTorch's); we compare the loss
      and every weight/bias gradient, then advance with our optimiser;
  (b) training: each model trains on its own for E epochs (snnTorch with
      torch.optim.Adam as the study writes it, ours with our loop), same batch
      order; we compare the test accuracies;
  (c) agreement: our trained checkpoint loaded into snnTorch with strict=True,
      and snnTorch's into ours; predictions on the test set compared image by image.
With rate-coded input (--input rate) both sides draw the same spikes: ours from
torch.Generator().manual_seed(s), snnTorch's spikegen.rate from torch's global generator
seeded with s, with s = --input-seed for (a) and for evaluation, --input-seed + epoch for
epoch `epoch` (0-based) of training.

Exit code 0 when every step-level loss agrees (to 1e-6, and for the membrane loss, a sum of
T cross-entropies, to 1e-6 per term: T * 1e-6) and every gradient to a relative 1e-4.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from experiments.cli import add_common_options
from experiments.train_cmd import (
    add_subset_options,
    add_surrogate_options,
    check_mnist_sizes,
    load_splits,
    on_off,
    prepare_runtime,
)
from lif_core.leaky import RESET_MECHANISMS, LeakyOptions, LeakySurrogate
from lif_core.surrogate import Sigmoid, make_surrogate
from training.checkpoint import CheckpointError, atomic_write_json, model_from_state_dict, read_checkpoint
from training.data import MnistSplit
from training.model import INPUT_SIZE, NUM_CLASSES, ModelConfig, SupervisedSNN
from training.network import INPUT_CODINGS, LOSSES, FeedForwardSNN, NetworkConfig, NeuronConfig, rate_code
from training.progress import progress_bar
from training.snntorch_checkpoint import (
    Naming,
    network_config_from_state_dict,
    snntorch_state_dict,
    to_sequential_keys,
)
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


# --------------------------------------------------------------------------- general networks
# (--layers or --checkpoint: FeedForwardSNN against experiments.snntorch_network's snnTorch model)

GENERAL_LEARNING_RATE = 5e-4  # snnTorch tutorial 5's Adam learning rate
GENERAL_DEFAULTS = NeuronConfig()  # snn.Leaky's defaults, beta 0.95 as tutorial 5
# flags that describe the neurons, and so belong with --layers only (a checkpoint holds them)
DESCRIPTION_FLAGS = ("beta", "threshold", "reset", "graded")
# flags of general networks only (the study's network is fixed: current input, count loss, ...)
GENERAL_FLAGS = (*DESCRIPTION_FLAGS, "reset_delay", "learn_beta", "learn_threshold", "input", "input_seed", "loss", "activity_penalty")


def flag(name: str) -> str:
    """argparse destination -> the flag as typed: "input_seed" -> "--input-seed"."""
    return "--" + name.replace("_", "-")


def parse_layers(text: str) -> tuple[int, ...]:
    """--layers "784,1000,10" -> (784, 1000, 10): MNIST's 784 inputs first, its 10 classes last."""
    example = f"{INPUT_SIZE},1000,{NUM_CLASSES}"
    words = [word.strip() for word in text.split(",")]
    if len(words) < 2 or not all(word.isdigit() and int(word) >= 1 for word in words):
        raise ValueError(
            f"--layers {text!r} is not a list of layer sizes. Fix: give two or more positive integers "
            f"separated by commas, inputs first, e.g. --layers {example}."
        )
    sizes = tuple(int(word) for word in words)
    if sizes[0] != INPUT_SIZE or sizes[-1] != NUM_CLASSES:
        raise ValueError(
            f"--layers {text}: the network takes {sizes[0]} inputs and gives {sizes[-1]} outputs; MNIST needs "
            f"{INPUT_SIZE} and {NUM_CLASSES}. Fix: start with {INPUT_SIZE} and end with {NUM_CLASSES}, e.g. --layers {example}."
        )
    return sizes


def _check_finite(value: float, name: str, low: float | None = None, high: float | None = None, positive: bool = False) -> float:
    """A finite float (in [low, high], or > 0), else a one-line error naming the flag."""
    inside = math.isfinite(value) and (low is None or value >= low) and (high is None or value <= high)
    if not inside or (positive and not value > 0):
        if positive:
            wanted = "a positive finite number"
        elif low is not None and high is not None:
            wanted = f"a number in [{low:g}, {high:g}]"
        elif low is not None:
            wanted = f"a finite number >= {low:g}"
        else:
            wanted = "a finite number"
        raise ValueError(f"{flag(name)} must be {wanted}, got {value!r}. Fix: pass such a value.")
    return value


def general_surrogate(args: argparse.Namespace) -> LeakySurrogate:
    """--surrogate / --surrogate-scale for a general network; atan(2), snnTorch's default, when not given."""
    name = args.surrogate or "atan"
    if args.surrogate_scale is not None:
        _check_finite(args.surrogate_scale, "surrogate_scale", positive=True)
    if name == "sigmoid":
        return Sigmoid() if args.surrogate_scale is None else Sigmoid(slope=float(args.surrogate_scale))
    return make_surrogate(name, args.surrogate_scale)  # type: ignore[return-value]  # never heaviside


def parse_learnt(value: str | None, name: str, layers: int) -> list[bool]:
    """--learn-beta / --learn-threshold: absent -> no layer, given bare ("all") -> every layer,
    "1,3" -> layers 1 and 3 (1-based), as one bool per layer."""
    if value is None:
        return [False] * layers
    if value == "all":
        return [True] * layers
    words = [word.strip() for word in value.split(",")]
    if not words or not all(word.isdigit() and 1 <= int(word) <= layers for word in words):
        raise ValueError(
            f"{flag(name)} {value!r}: the network has {layers} layer{'s' if layers > 1 else ''}. Fix: give "
            f"{flag(name)} alone (every layer) or layer numbers from 1 to {layers} separated by commas, "
            f"e.g. {flag(name)} {'1,' if layers > 1 else ''}{layers}."
        )
    chosen = {int(word) for word in words}
    return [layer in chosen for layer in range(1, layers + 1)]


class GeneralSetup(NamedTuple):
    """A general network to cross-check: its config, the snnTorch naming of its state_dict,
    the starting weights in that naming, and where they came from."""

    config: NetworkConfig
    naming: Naming
    initial_state: dict[str, torch.Tensor]
    source: dict[str, Any]


def refuse_general_flags(args: argparse.Namespace) -> None:
    """The study's network takes none of the general networks' flags: a one-line error naming the first given."""
    for name in GENERAL_FLAGS:
        if getattr(args, name) is not None:
            raise ValueError(
                f"{flag(name)} describes a general network, and the study's network (784-512-10, its own settings) "
                f"takes no {flag(name)}. Fix: add --layers (e.g. --layers {INPUT_SIZE},512,{NUM_CLASSES}) or "
                f"--checkpoint PATH to cross-check a general network, or drop {flag(name)}."
            )
    if args.surrogate == "sigmoid":
        raise ValueError(
            "--surrogate sigmoid: the study's network runs fast_sigmoid or atan. "
            "Fix: choose one of those, or add --layers / --checkpoint to cross-check a general network."
        )


def general_setup(args: argparse.Namespace) -> GeneralSetup:
    """The network of --layers (weights from torch's generator seeded with --seed) or of --checkpoint."""
    if args.layers is not None and args.checkpoint is not None:
        raise ValueError(
            "--layers and --checkpoint both give the network. Fix: give either --layers (a network described "
            "by flags) or --checkpoint (a snnTorch state_dict), not both."
        )
    steps = args.steps if args.steps is not None else ModelConfig().num_steps
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"--steps must be a positive integer, got {steps!r}. Fix: pass e.g. --steps 25.")
    if args.input_seed is not None and args.input_seed < 0:
        raise ValueError(f"--input-seed must be a non-negative integer, got {args.input_seed}. Fix: pass e.g. --input-seed 0.")
    penalty = 0.0 if args.activity_penalty is None else _check_finite(args.activity_penalty, "activity_penalty", low=0.0)
    loss = args.loss or "count"
    if penalty != 0 and loss != "count":
        raise ValueError(
            "--activity-penalty applies to --loss count only. Fix: drop --activity-penalty, or use --loss count."
        )
    surrogate = general_surrogate(args)
    reset_delay = True if args.reset_delay is None else args.reset_delay
    input_coding = args.input or "current"
    if args.checkpoint is not None:
        for name in DESCRIPTION_FLAGS:
            if getattr(args, name) is not None:
                raise ValueError(
                    f"{flag(name)}: with --checkpoint, {name} comes from the checkpoint's tensors. "
                    f"Fix: drop {flag(name)} (or describe the network with --layers instead of --checkpoint)."
                )
        state = read_checkpoint(args.checkpoint)
        settings = {
            "reset_delay": reset_delay,
            "input_coding": input_coding,
            "loss": loss,
            "surrogate": surrogate,
            "activity_penalty": penalty,
        }
        try:
            layers = network_config_from_state_dict(state, steps, **settings)[0].num_layers
            config, naming = network_config_from_state_dict(
                state,
                steps,
                learn_beta=parse_learnt(args.learn_beta, "learn_beta", layers),
                learn_threshold=parse_learnt(args.learn_threshold, "learn_threshold", layers),
                **settings,
            )
        except CheckpointError as error:
            raise CheckpointError(f"{args.checkpoint}: {error}") from None
        check_mnist_sizes(config.layer_sizes, args.checkpoint)
        initial = {key: value.detach().clone() for key, value in state.items()}
        return GeneralSetup(config, naming, initial, {"checkpoint": str(args.checkpoint), "naming": naming})
    sizes = parse_layers(args.layers)
    beta = GENERAL_DEFAULTS.beta if args.beta is None else _check_finite(args.beta, "beta", 0.0, 1.0)
    threshold = GENERAL_DEFAULTS.threshold if args.threshold is None else _check_finite(args.threshold, "threshold", positive=True)
    graded = 1.0 if args.graded is None else _check_finite(args.graded, "graded")
    if graded == 0:
        raise ValueError("--graded must be a finite non-zero number, got 0.0. Fix: pass e.g. --graded 1.")
    options = LeakyOptions(args.reset or "subtract", reset_delay, graded, surrogate)  # type: ignore[arg-type]
    layers = len(sizes) - 1
    learnt = zip(parse_learnt(args.learn_beta, "learn_beta", layers), parse_learnt(args.learn_threshold, "learn_threshold", layers))
    neurons = tuple(NeuronConfig(beta, threshold, learn_beta, learn_threshold, options) for learn_beta, learn_threshold in learnt)
    config = NetworkConfig(sizes, neurons, steps, input_coding, loss, penalty)  # type: ignore[arg-type]
    torch.manual_seed(args.seed)
    initial = snntorch_state_dict(FeedForwardSNN(config), "sequential")
    return GeneralSetup(config, "sequential", initial, {"layers": list(sizes), "naming": "sequential"})


def general_pair(setup: GeneralSetup, backend: str) -> tuple[FeedForwardSNN, nn.Module]:
    """Ours and snnTorch's model, both holding the starting weights (strict=True both)."""
    from experiments.snntorch_network import snntorch_model

    config = setup.config
    ours = FeedForwardSNN(config, backend=backend)  # type: ignore[arg-type]  # argparse's choices
    ours.load_state_dict(to_sequential_keys(setup.initial_state, setup.naming, config.num_layers), strict=True)
    theirs = snntorch_model(config, setup.naming)
    theirs.load_state_dict(setup.initial_state, strict=True)
    return ours, theirs


def their_parameter_names(ours: FeedForwardSNN, naming: Naming) -> dict[str, str]:
    """Our parameter name -> snnTorch's in `naming` ("0.weight" -> "fc1.weight", ...)."""
    renames = dict(zip(snntorch_state_dict(ours, "sequential"), snntorch_state_dict(ours, naming)))
    return {name: renames[name] for name, _ in ours.named_parameters()}


def loss_tolerance(config: NetworkConfig) -> float:
    """LOSS_ATOL per cross-entropy term: 1e-6 for the count loss, T * 1e-6 for the membrane
    loss (a sum of T terms, each of float32 rounding ~1e-7 of its ~2.3)."""
    return LOSS_ATOL * (config.num_steps if config.loss == "membrane" else 1)


def stream_seed(input_seed: int, epoch: int) -> int:
    """Seed of the rate-coded draws of training epoch `epoch` (0-based)."""
    return input_seed + epoch


class InputStreams:
    """The rate-coded input of both sides, one stream each, seeded alike (None for "current")."""

    def __init__(self, config: NetworkConfig, seed: int) -> None:
        from experiments.snntorch_network import RateStream

        rate = config.input_coding == "rate"
        self.ours = torch.Generator().manual_seed(seed) if rate else None
        self.theirs = RateStream(seed) if rate else None


def general_step_level_check(
    setup: GeneralSetup, backend: str, train_split: MnistSplit, batch_size: int, seed: int, input_seed: int, lr: float, batches: int
) -> list[dict[str, Any]]:
    """(a) for a general network: each step from identical weights, same inputs; then our Adam steps."""
    from experiments.snntorch_network import run_snntorch, snntorch_inputs, snntorch_loss

    ours, theirs = general_pair(setup, backend)
    config, naming = setup.config, setup.naming
    names = their_parameter_names(ours, naming)
    optimizer = torch.optim.Adam(ours.parameters(), lr=lr)
    streams = InputStreams(config, input_seed)
    order = epoch_order(len(train_split), seed, 0)
    rows = []
    for index, batch in enumerate(progress_bar(list(iterate_batches(order, batch_size))[:batches], desc="step check", leave=False)):
        images, labels = train_split.flat_images[batch], train_split.labels[batch]
        theirs.load_state_dict(snntorch_state_dict(ours, naming), strict=True)
        theirs.zero_grad(set_to_none=True)
        if streams.ours is not None:  # what our forward will draw, to show both sides saw the same spikes
            probe = torch.Generator().set_state(streams.ours.get_state())
            expected_inputs = rate_code(images, config.num_steps, probe)
        inputs = snntorch_inputs(config, images, streams.theirs)
        their_total = snntorch_loss(run_snntorch(theirs, config, inputs), labels, config)
        their_total.backward()

        output = ours(images, streams.ours)
        our_total = ours.loss(output, labels).total
        ours.zero_grad(set_to_none=True)
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
    return rows


def train_general(
    model: nn.Module,
    side: str,
    config: NetworkConfig,
    train_split: MnistSplit,
    batch_size: int,
    seed: int,
    input_seed: int,
    lr: float,
    epochs: int,
) -> tuple[float, list[float]]:
    """(b) for one side ("ours" or "snnTorch"): Adam over its parameters, the same batches and
    rate-coded draws.  Returns seconds taken and the loss of every batch."""
    from experiments.snntorch_network import run_snntorch, snntorch_inputs, snntorch_loss

    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses: list[float] = []
    started = time.perf_counter()
    for epoch in range(epochs):
        order = epoch_order(len(train_split), seed, epoch)
        streams = InputStreams(config, stream_seed(input_seed, epoch))
        for batch in progress_bar(list(iterate_batches(order, batch_size)), desc=f"{side} epoch {epoch + 1}", leave=False):
            images, labels = train_split.flat_images[batch], train_split.labels[batch]
            if isinstance(model, FeedForwardSNN):
                loss = model.loss(model(images, streams.ours), labels).total
            else:
                loss = snntorch_loss(run_snntorch(model, config, snntorch_inputs(config, images, streams.theirs)), labels, config)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    return time.perf_counter() - started, losses


@torch.no_grad()
def snntorch_predictions(model: nn.Module, config: NetworkConfig, split: MnistSplit, input_seed: int) -> torch.Tensor:
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


def our_evaluation(model: FeedForwardSNN, split: MnistSplit, input_seed: int) -> Any:
    """`evaluate` with the rate-coded draws from torch.Generator().manual_seed(input_seed)."""
    generator = torch.Generator().manual_seed(input_seed) if model.config.input_coding == "rate" else None
    return evaluate(model, split, generator=generator)


def run_general_crosscheck(
    train_split: MnistSplit,
    test_split: MnistSplit,
    setup: GeneralSetup,
    *,
    backend: str = "auto",
    batch_size: int = TrainConfig().batch_size,
    seed: int = 0,
    input_seed: int = 0,
    learning_rate: float = GENERAL_LEARNING_RATE,
    batches: int = 20,
    epochs: int = 1,
) -> dict[str, Any]:
    """(a), (b) and (c) for a general network; the report `run` writes as crosscheck.json."""
    from experiments.snntorch_network import snntorch_model

    config, naming = setup.config, setup.naming
    steps = general_step_level_check(setup, backend, train_split, batch_size, seed, input_seed, learning_rate, batches)

    ours, theirs = general_pair(setup, backend)
    training = {"batch_size": batch_size, "seed": seed, "input_seed": input_seed, "learning_rate": learning_rate}
    schedule = (train_split, batch_size, seed, input_seed, learning_rate, epochs)
    ours_seconds, our_losses = train_general(ours, "ours", config, *schedule)
    their_seconds, their_losses = train_general(theirs, "snnTorch", config, *schedule)
    ours_eval = our_evaluation(ours, test_split, input_seed)
    their_predictions = snntorch_predictions(theirs, config, test_split, input_seed)
    their_acc = 100.0 * int((their_predictions == test_split.labels).sum()) / len(test_split)

    # (c) checkpoints moved across, strict=True both ways
    ours_in_theirs = snntorch_model(config, naming)
    ours_in_theirs.load_state_dict(snntorch_state_dict(ours, naming), strict=True)
    agree_ours = snntorch_predictions(ours_in_theirs, config, test_split, input_seed) == ours_eval.predictions
    theirs_in_ours = FeedForwardSNN(config, backend=backend)  # type: ignore[arg-type]
    theirs_in_ours.load_state_dict(to_sequential_keys(theirs.state_dict(), naming, config.num_layers), strict=True)
    agree_theirs = our_evaluation(theirs_in_ours, test_split, input_seed).predictions == their_predictions

    tolerance = loss_tolerance(config)
    max_loss_diff = max(row["loss_abs_diff"] for row in steps)
    parameter_names = list(their_parameter_names(ours, naming).values())
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
        "training": {**training, "optimizer": "torch.optim.Adam", "weight_clip": None},
        "train_examples": len(train_split),
        "test_examples": len(test_split),
        "step_level": {**step_level, "per_batch": steps},
        "independent_training": {
            "epochs": epochs,
            "test_acc_ours": ours_eval.accuracy,
            "test_acc_snntorch": their_acc,
            "abs_diff_points": abs(ours_eval.accuracy - their_acc),
            "seconds_ours": ours_seconds,
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
    step, train, agree = report["step_level"], report["independent_training"], report["prediction_agreement"]
    lines = [
        f"{'check':<52} {'result':>22}",
        f"{'(a) max |loss ours - loss snnTorch| over ' + str(step['batches']) + ' batches':<52} {step['max_loss_abs_diff']:>22.3e}",
        f"{'(a) max relative gradient difference':<52} {step['max_gradient_rel_diff']:>22.3e}",
    ]
    if "inputs_identical" in step:
        lines.append(f"{'(a) same rate-coded input spikes on both sides':<52} {str(step['inputs_identical']).lower():>22}")
    lines += [
        f"{'(b) test accuracy after ' + str(train['epochs']) + ' epoch(s): ours':<52} {train['test_acc_ours']:>21.2f}%",
        f"{'(b) test accuracy after ' + str(train['epochs']) + ' epoch(s): snnTorch':<52} {train['test_acc_snntorch']:>21.2f}%",
        f"{'(b) training time ours / snnTorch (s)':<52} {train['seconds_ours']:>10.1f} / {train['seconds_snntorch']:<9.1f}",
    ]
    if "batches_with_equal_loss" in train:
        equal = f"{train['batches_with_equal_loss']} of {train['batches']}"
        lines += [
            f"{'(b) batches with equal loss':<52} {equal:>22}",
            f"{'(b) max relative loss difference while training':<52} {train['max_relative_loss_difference']:>22.3e}",
        ]
    lines += [
        f"{'(c) same predictions, our checkpoint in snnTorch':<52} {100 * agree['ours_checkpoint_in_snntorch']:>21.2f}%",
        f"{'(c) same predictions, snnTorch checkpoint in ours':<52} {100 * agree['snntorch_checkpoint_in_ours']:>21.2f}%",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.batches < 1:
        raise ValueError(f"--batches must be a positive integer, got {args.batches}")
    if args.epochs < 1:
        raise ValueError(f"--epochs must be a positive integer, got {args.epochs}")
    if args.lr is not None:
        _check_finite(args.lr, "lr", positive=True)
    if args.layers is not None or args.checkpoint is not None:
        return run_general(args)
    refuse_general_flags(args)
    # The exact path: the one that is bit-identical to snnTorch (the fused kernel sums
    # the output layer in its own order; tests/test_fused.py holds it to this one).
    model_config = ModelConfig(
        surrogate=args.surrogate or "fast_sigmoid",
        surrogate_scale=args.surrogate_scale,
        backend=args.backend,
        fused=False,
        **({"num_steps": args.steps} if args.steps is not None else {}),
    )
    train_config = TrainConfig(seed=args.seed, **({"learning_rate": args.lr} if args.lr is not None else {}))
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


def run_general(args: argparse.Namespace) -> int:
    """`crosscheck --layers ...` or `crosscheck --checkpoint PATH`."""
    prepare_runtime(args)
    setup = general_setup(args)
    print(f"architecture: {setup.config.describe()}")
    train_split, test_split = load_splits(args)
    assert train_split is not None
    report = run_general_crosscheck(
        train_split,
        test_split,
        setup,
        backend=args.backend,
        seed=args.seed,
        input_seed=args.input_seed or 0,
        learning_rate=args.lr if args.lr is not None else GENERAL_LEARNING_RATE,
        batches=args.batches,
        epochs=args.epochs,
    )
    print(format_report(report))
    out = Path(args.out)
    atomic_write_json(out / "crosscheck.json", report)
    print(f"wrote {out / 'crosscheck.json'}")
    step = report["step_level"]
    ok = step["losses_agree"] and step["gradients_agree_to_rtol_1e-4"] and step.get("inputs_identical", True)
    return 0 if ok and not math.isnan(report["independent_training"]["test_acc_ours"]) else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "crosscheck",
        help="compare our implementation with snnTorch: the study's model, or any described or saved one (needs the test extra)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_options(parser, device=False, out="results")
    add_surrogate_options(parser, general=True)
    parser.add_argument("--batches", type=int, default=20, help="batches for the step-level check (default: 20)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs each model trains independently (default: 1)")
    parser.add_argument(
        "--steps", type=int, default=None, help=f"time steps per image (default: {ModelConfig().num_steps})"
    )
    parser.add_argument(
        "--lr", type=float, default=None,
        help=f"Adam learning rate (default: {TrainConfig().learning_rate:g} for the study's network, "
        f"{GENERAL_LEARNING_RATE:g} for a general one, as snnTorch's tutorial 5)",
    )
    add_subset_options(parser)

    general = parser.add_argument_group(
        "general networks",
        "A network described by flags (--layers and the neuron flags) or read from a snnTorch\n"
        "state_dict (--checkpoint), instead of the study's; each flag below needs one of the two.",
    )
    general.add_argument(
        "--layers", default=None, metavar="784,H,...,10",
        help=f"layer sizes, inputs first, e.g. {INPUT_SIZE},1000,{NUM_CLASSES}; weights drawn with --seed",
    )
    general.add_argument(
        "--checkpoint", type=Path, default=None, metavar="PATH",
        help="a snnTorch state_dict (torch.save): fc1/lif1/... or nn.Sequential 0/1/2/... keys; "
        "sizes, beta, threshold, reset and graded factor are read from it, and it is the starting point",
    )
    general.add_argument(
        "--beta", type=float, default=None, help=f"membrane decay, in [0, 1] (default: {GENERAL_DEFAULTS.beta:g}); --layers only"
    )
    general.add_argument(
        "--threshold", type=float, default=None, help=f"firing threshold (default: {GENERAL_DEFAULTS.threshold:g}); --layers only"
    )
    general.add_argument(
        "--reset", choices=RESET_MECHANISMS, default=None, help="reset mechanism (default: subtract); --layers only"
    )
    general.add_argument(
        "--graded", type=float, default=None, help="graded_spikes_factor, the spike's size (default: 1); --layers only"
    )
    general.add_argument(
        "--reset-delay", type=on_off, default=None, metavar="on|off",
        help="snn.Leaky's reset_delay (default: on, snnTorch's default)",
    )
    for name, what in (("beta", "beta"), ("threshold", "the threshold")):
        general.add_argument(
            f"--learn-{name}", nargs="?", const="all", default=None, metavar="LAYERS",
            help=f"{what} is a learnt parameter (learn_{name}=True): alone, in every layer; with layer "
            f"numbers (e.g. 1,2), in those layers only (a state_dict does not say which; default: none)",
        )
    general.add_argument(
        "--input", choices=INPUT_CODINGS, default=None,
        help="input coding: the image as constant current, or spikegen.rate spikes (default: current)",
    )
    general.add_argument("--input-seed", type=int, default=None, help="seed of the rate-coded input's draws (default: 0)")
    general.add_argument(
        "--loss", choices=LOSSES, default=None,
        help="count: CE on output spike counts (+ --activity-penalty); membrane: sum over steps of CE on "
        "the output membrane, as snnTorch's tutorial 5 (default: count)",
    )
    general.add_argument(
        "--activity-penalty", type=float, default=None,
        help="with --loss count: weight of the mean hidden spike count (default: 0)",
    )
    parser.set_defaults(handler=run)
