"""`snn-mnist train` and `snn-mnist evaluate`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import NamedTuple

import torch

from experiments.cli import add_common_options
from training.checkpoint import CheckpointError, atomic_write_json, model_from_state_dict, read_checkpoint
from training.data import MnistSplit, carve_validation, load_mnist
from training.model import INPUT_SIZE, NUM_CLASSES, ModelConfig
from training.presets import PRESETS, preset_configs
from training.snntorch_checkpoint import network_from_state_dict
from training.runtime import configure_threads, keep_freed_memory, resolve_device, seed_everything
from training.train import EVAL_BATCH, LR_SCHEDULES, TrainConfig, evaluate, train


def add_model_options(parser: argparse.ArgumentParser, from_preset: bool = False) -> None:
    """The network's flags.  from_preset=True: their defaults are None and come from --preset."""
    defaults = ModelConfig()

    def default(value: object) -> object:
        return None if from_preset else value

    said = "study" if from_preset else "default"
    parser.add_argument("--hidden", type=int, default=default(defaults.hidden_size), help=f"hidden LIF neurons ({said}: 512)")
    parser.add_argument("--beta", type=float, default=default(defaults.beta), help=f"membrane decay per step, in [0, 1] ({said}: 0.9)")
    parser.add_argument("--threshold", type=float, default=default(defaults.threshold), help=f"firing threshold ({said}: 1.0)")
    parser.add_argument("--steps", type=int, default=default(defaults.num_steps), help=f"time steps per image ({said}: 25)")
    parser.add_argument(
        "--exact",
        action="store_true",
        help="run the exact path (lif1, fc2, lif2 as separate steps, bit-identical to snnTorch) "
        "instead of the fused kernel (the same sums in another order, several times faster)",
    )
    add_surrogate_options(parser)
    if from_preset:
        parser.set_defaults(surrogate=None)


def add_surrogate_options(parser: argparse.ArgumentParser, general: bool = False) -> None:
    """--surrogate and --surrogate-scale.  general=True (a command that also runs general
    networks): sigmoid as well, and no default (None), so that the command picks the study's
    fast_sigmoid or snnTorch's atan by the network it runs."""
    parser.add_argument(
        "--surrogate",
        choices=("fast_sigmoid", "atan", "sigmoid") if general else ("fast_sigmoid", "atan"),
        default=None if general else "fast_sigmoid",
        help=(
            "surrogate gradient (default: fast_sigmoid for the study's network, as the study; atan, "
            "snnTorch's default, for a --layers or --checkpoint network; sigmoid for those only)"
            if general
            else "surrogate gradient (default: fast_sigmoid, as the study)"
        ),
    )
    parser.add_argument(
        "--surrogate-scale",
        type=float,
        default=None,
        help=(
            "fast_sigmoid slope (default 25), atan alpha (default 2) or sigmoid slope (default 25)"
            if general
            else "fast_sigmoid slope (default 25) or atan alpha (default 2)"
        ),
    )


def add_subset_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train-subset", type=int, default=None, help="use only the first N training images")
    parser.add_argument("--test-subset", type=int, default=None, help="use only the first N test images")


def load_splits(args: argparse.Namespace, train_split: bool = True) -> tuple[MnistSplit | None, MnistSplit]:
    """Load train (optional) and test splits, honouring --train-subset / --test-subset."""
    test = load_mnist("test", args.data_dir, download=args.download)
    if getattr(args, "test_subset", None) is not None:
        test = test.subset(args.test_subset)
    if not train_split:
        return None, test
    train_data = load_mnist("train", args.data_dir, download=args.download)
    if getattr(args, "train_subset", None) is not None:
        train_data = train_data.subset(args.train_subset)
    return train_data, test


def prepare_runtime(args: argparse.Namespace) -> torch.device:
    """Threads, seed, device and allocator settings shared by the commands."""
    threads = configure_threads(args.threads)
    args.threads = threads
    if hasattr(args, "seed"):
        seed_everything(args.seed)
    keep_freed_memory()
    return resolve_device(getattr(args, "device", "cpu"))


def run_train(args: argparse.Namespace) -> int:
    # the preset's values, with every flag given on the command line on top
    model_config, train_config = preset_configs(
        args.preset,
        model_overrides={
            "hidden_size": args.hidden,
            "beta": args.beta,
            "threshold": args.threshold,
            "num_steps": args.steps,
            "surrogate": args.surrogate,
            "surrogate_scale": args.surrogate_scale,
            "backend": args.backend,
            "fused": not args.exact,
        },
        training_overrides={
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "learning_rate": args.lr,
            "lr_schedule": args.lr_schedule,
            "alpha_reg": args.alpha_reg,
            "weight_clip": args.weight_clip,
            "augment_shift": args.augment_shift,
            "weight_decay": args.weight_decay,
            "seed": args.seed,
        },
    )
    device = prepare_runtime(args)
    train_data, test_data = load_splits(args)
    assert train_data is not None
    validation_data = None
    if args.validation:
        train_data, validation_data = carve_validation(train_data, args.validation)
    started = time.perf_counter()
    _, history = train(
        train_data,
        test_data,
        model_config,
        train_config,
        args.out,
        resume=args.resume,
        device=device,
        extra_settings={
            "preset": args.preset,
            "threads": args.threads,
            "device": str(device),
            "train_examples": len(train_data),
            "validation_examples": len(validation_data) if validation_data is not None else 0,
            "test_examples": len(test_data),
        },
        progress=not args.no_progress,
        validation_split=validation_data,
    )
    print(f"train accuracy: {history.train_acc_history[-1]:.2f}%")
    if history.val_acc_history:
        print(f"validation accuracy: {history.val_acc_history[-1]:.2f}%")
    print(f"test accuracy: {history.test_acc_history[-1]:.2f}%")
    print(f"wall time: {time.perf_counter() - started:.1f} s; artifacts in {args.out}")
    return 0


def check_mnist_sizes(sizes: tuple[int, ...], checkpoint: Path) -> None:
    """A checkpoint's network must take MNIST's 784 pixels and give its 10 classes (CheckpointError)."""
    if sizes[0] != INPUT_SIZE or sizes[-1] != NUM_CLASSES:
        raise CheckpointError(
            f"{checkpoint}: the network takes {sizes[0]} inputs and gives {sizes[-1]} outputs; MNIST needs "
            f"{INPUT_SIZE} and {NUM_CLASSES}. Fix: pass a checkpoint of a network trained on MNIST."
        )


class EvaluationModel(NamedTuple):
    model: torch.nn.Module
    architecture: str  # what was detected, printed
    generator: torch.Generator | None  # the rate-coded input's draws, else None


def model_for_evaluation(args: argparse.Namespace, device: torch.device) -> EvaluationModel:
    """The study's SupervisedSNN (fast path) when the checkpoint is one with snn.Leaky's
    defaults and the flags ask nothing else; otherwise the general `FeedForwardSNN`, which
    reads any snnTorch state_dict of Linear -> Leaky layers (study naming or nn.Sequential)."""
    state = read_checkpoint(args.checkpoint)
    if args.reset_delay and args.input == "current":
        base = ModelConfig(
            num_steps=args.steps, surrogate=args.surrogate, surrogate_scale=args.surrogate_scale, backend=args.backend
        )
        try:
            model = model_from_state_dict(state, base).to(device).eval()
        except CheckpointError:
            pass  # not the study's network with its defaults: the general reader below says why, if neither fits
        else:
            return EvaluationModel(
                model,
                f"the study's network 784-{model.config.hidden_size}-10, snn.Leaky defaults "
                f"(beta {float(model.lif1.beta):g}, threshold {float(model.lif1.threshold):g}, subtract reset), "
                f"{args.steps} steps, constant-current input ({model.compute_path(device)} path)",
                None,
            )
    try:
        loaded = network_from_state_dict(state, args.steps, reset_delay=args.reset_delay, input_coding=args.input)
    except CheckpointError as error:
        raise CheckpointError(f"{args.checkpoint}: {error}") from None
    check_mnist_sizes(loaded.model.config.layer_sizes, args.checkpoint)
    generator = torch.Generator().manual_seed(args.input_seed) if args.input == "rate" else None
    naming = "fc1/lif1/... names" if loaded.naming == "study" else "nn.Sequential keys"
    model = loaded.model.use_backend(args.backend).to(device).eval()
    return EvaluationModel(model, f"{loaded.model.config.describe()} ({naming})", generator)


def run_evaluate(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be a positive integer, got {args.batch_size}")
    device = prepare_runtime(args)
    model, architecture, generator = model_for_evaluation(args, device)
    print(f"architecture: {architecture}")
    _, test_data = load_splits(args, train_split=False)
    result = evaluate(model, test_data, args.batch_size, progress=not args.no_progress, generator=generator)
    print(f"test accuracy: {result.accuracy:.2f}%")
    if args.json is not None:
        atomic_write_json(
            Path(args.json),
            {
                "checkpoint": str(args.checkpoint),
                "architecture": architecture,
                "test_accuracy": result.accuracy,
                "predictions": result.predictions.tolist(),
                "labels": test_data.labels.tolist(),
                "output_spike_counts": result.output_counts.to(torch.int64).tolist(),
            },
        )
    return 0


def on_off(value: str) -> bool:
    """on/true -> True, off/false -> False (any case), for flags such as --reset-delay."""
    choices = {"on": True, "true": True, "off": False, "false": False}
    if value.lower() not in choices:
        raise argparse.ArgumentTypeError(f"expected on or off, got {value!r}")
    return choices[value.lower()]


def register(subparsers: argparse._SubParsersAction) -> None:
    defaults = TrainConfig()
    parser = subparsers.add_parser(
        "train",
        help="train the 784-512-10 LIF network with surrogate-gradient BPTT",
        description=(
            "Train the study's supervised SNN: BPTT, loss = CE on output spike counts + "
            "alpha_reg * hidden spike activity, Adam, weights clipped after every step. "
            "Writes the checkpoint, curves and config to --out after every epoch; "
            "--resume continues an interrupted run to the same final numbers."
        ),
    )
    add_common_options(parser)
    add_model_options(parser, from_preset=True)
    parser.add_argument(
        "--preset",
        choices=tuple(PRESETS),
        default="study",
        help="the recipe the other flags start from: "
        + "; ".join(f"{name}: {preset.description}" for name, preset in PRESETS.items())
        + " (default: study). Flags given override it.",
    )
    parser.add_argument("--epochs", type=int, default=None, help=f"epochs (study: {defaults.epochs})")
    parser.add_argument("--batch-size", type=int, default=None, help=f"batch size (study: {defaults.batch_size})")
    parser.add_argument("--lr", type=float, default=None, help=f"Adam learning rate (study: {defaults.learning_rate:g})")
    parser.add_argument(
        "--lr-schedule", choices=LR_SCHEDULES, default=None,
        help="constant, or cosine decay from --lr to 0 over the run (study: constant)",
    )
    parser.add_argument("--alpha-reg", type=float, default=None, help=f"weight of the hidden spike-activity penalty (study: {defaults.alpha_reg:g})")
    parser.add_argument("--weight-clip", type=float, default=None, help=f"clamp weights to [-c, c] after each step (study: {defaults.weight_clip:g})")
    parser.add_argument(
        "--augment-shift", type=int, default=None, metavar="PIXELS",
        help="move each training image by a random whole number of pixels, up to PIXELS in each direction, "
        "new every epoch (study: 0, none; test images are never moved)",
    )
    parser.add_argument("--weight-decay", type=float, default=None, help=f"Adam's L2 weight decay (study: {defaults.weight_decay:g})")
    parser.add_argument(
        "--validation", type=int, default=0, metavar="N",
        help="hold N random training images out of training (a fixed draw) and report their accuracy "
        "after every epoch, for choosing settings without the test set (default: 0, none)",
    )
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last completed epoch")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_subset_options(parser)
    parser.set_defaults(handler=run_train)

    parser = subparsers.add_parser(
        "evaluate",
        help="test accuracy and predictions of a checkpoint (ours or snnTorch's)",
        description=(
            "Evaluate a state_dict of ours or of snnTorch: the study's class (fc1/lif1/...) or an "
            "nn.Sequential of nn.Linear and snn.Leaky layers, any depth. Layers, sizes, reset mechanism, "
            "beta and threshold (scalar or per neuron) and the graded spike factor are read from the "
            "tensors; --steps, --reset-delay and --input say what a state_dict does not hold. Prints "
            "the architecture it detected and 'test accuracy: XX.XX%'."
        ),
    )
    parser.add_argument("checkpoint", type=Path, help="state_dict .pt file")
    add_common_options(parser, out=None, seed=False)
    parser.add_argument("--steps", type=int, default=ModelConfig().num_steps, help="time steps per image (default: 25)")
    add_surrogate_options(parser)
    parser.add_argument(
        "--reset-delay", type=on_off, default=True, metavar="on|off",
        help="snn.Leaky's reset_delay, which a state_dict does not hold (default: on, snnTorch's default)",
    )
    parser.add_argument(
        "--input", choices=("current", "rate"), default="current",
        help="input coding: the image as constant current (the study) or spikegen.rate spikes (default: current)",
    )
    parser.add_argument("--input-seed", type=int, default=0, help="seed of the rate-coded input's draws (default: 0)")
    parser.add_argument("--batch-size", type=int, default=EVAL_BATCH, help=f"evaluation batch size (default: {EVAL_BATCH})")
    parser.add_argument("--json", type=Path, default=None, help="write predictions and spike counts to this JSON file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_subset_options(parser)
    parser.set_defaults(handler=run_evaluate)
