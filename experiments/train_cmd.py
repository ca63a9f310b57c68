"""`snn-mnist train` and `snn-mnist evaluate`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from experiments.cli import add_common_options
from training.checkpoint import atomic_write_json, load_model
from training.data import MnistSplit, load_mnist
from training.model import ModelConfig
from training.runtime import configure_threads, keep_freed_memory, resolve_device, seed_everything
from training.train import EVAL_BATCH, TrainConfig, evaluate, train


def add_model_options(parser: argparse.ArgumentParser) -> None:
    defaults = ModelConfig()
    parser.add_argument("--hidden", type=int, default=defaults.hidden_size, help="hidden LIF neurons (default: 512)")
    parser.add_argument("--beta", type=float, default=defaults.beta, help="membrane decay per step, in [0, 1] (default: 0.9)")
    parser.add_argument("--threshold", type=float, default=defaults.threshold, help="firing threshold (default: 1.0)")
    parser.add_argument("--steps", type=int, default=defaults.num_steps, help="time steps per image (default: 25)")
    parser.add_argument(
        "--exact",
        action="store_true",
        help="run the exact path (lif1, fc2, lif2 as separate steps, bit-identical to snnTorch) "
        "instead of the fused kernel (the same sums in another order, several times faster)",
    )
    add_surrogate_options(parser)


def add_surrogate_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--surrogate",
        choices=("fast_sigmoid", "atan"),
        default="fast_sigmoid",
        help="surrogate gradient (default: fast_sigmoid, as the study)",
    )
    parser.add_argument(
        "--surrogate-scale",
        type=float,
        default=None,
        help="fast_sigmoid slope (default 25) or atan alpha (default 2)",
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
    model_config = ModelConfig(
        hidden_size=args.hidden,
        beta=args.beta,
        threshold=args.threshold,
        num_steps=args.steps,
        surrogate=args.surrogate,
        surrogate_scale=args.surrogate_scale,
        backend=args.backend,
        fused=not args.exact,
    )
    train_config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        alpha_reg=args.alpha_reg,
        weight_clip=args.weight_clip,
        seed=args.seed,
    )
    device = prepare_runtime(args)
    train_data, test_data = load_splits(args)
    assert train_data is not None
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
            "threads": args.threads,
            "device": str(device),
            "train_examples": len(train_data),
            "test_examples": len(test_data),
        },
        progress=not args.no_progress,
    )
    print(f"train accuracy: {history.train_acc_history[-1]:.2f}%")
    print(f"test accuracy: {history.test_acc_history[-1]:.2f}%")
    print(f"wall time: {time.perf_counter() - started:.1f} s; artifacts in {args.out}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be a positive integer, got {args.batch_size}")
    device = prepare_runtime(args)
    base = ModelConfig(
        num_steps=args.steps,
        surrogate=args.surrogate,
        surrogate_scale=args.surrogate_scale,
        backend=args.backend,
    )
    model = load_model(args.checkpoint, base).to(device).eval()
    _, test_data = load_splits(args, train_split=False)
    result = evaluate(model, test_data, args.batch_size, progress=not args.no_progress)
    print(f"test accuracy: {result.accuracy:.2f}%")
    if args.json is not None:
        atomic_write_json(
            Path(args.json),
            {
                "checkpoint": str(args.checkpoint),
                "hidden_size": model.config.hidden_size,
                "beta": float(model.lif1.beta),
                "threshold": float(model.lif1.threshold),
                "test_accuracy": result.accuracy,
                "predictions": result.predictions.tolist(),
                "labels": test_data.labels.tolist(),
                "output_spike_counts": result.output_counts.to(torch.int64).tolist(),
            },
        )
    return 0


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
    add_model_options(parser)
    parser.add_argument("--epochs", type=int, default=defaults.epochs, help="epochs (default: 10)")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="batch size (default: 128)")
    parser.add_argument("--lr", type=float, default=defaults.learning_rate, help="Adam learning rate (default: 1e-3)")
    parser.add_argument("--alpha-reg", type=float, default=defaults.alpha_reg, help="weight of the hidden spike-activity penalty (default: 1e-4)")
    parser.add_argument("--weight-clip", type=float, default=defaults.weight_clip, help="clamp weights to [-c, c] after each step (default: 1)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last completed epoch")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_subset_options(parser)
    parser.set_defaults(handler=run_train)

    parser = subparsers.add_parser(
        "evaluate",
        help="test accuracy and predictions of a checkpoint (ours or snnTorch's)",
        description=(
            "Evaluate any SupervisedSNN state_dict, ours or the study's snnTorch one; hidden size, "
            "beta and threshold are read from the checkpoint. Prints 'test accuracy: XX.XX%'."
        ),
    )
    parser.add_argument("checkpoint", type=Path, help="state_dict .pt file")
    add_common_options(parser, out=None, seed=False)
    parser.add_argument("--steps", type=int, default=ModelConfig().num_steps, help="time steps per image (default: 25)")
    add_surrogate_options(parser)
    parser.add_argument("--batch-size", type=int, default=EVAL_BATCH, help=f"evaluation batch size (default: {EVAL_BATCH})")
    parser.add_argument("--json", type=Path, default=None, help="write predictions and spike counts to this JSON file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_subset_options(parser)
    parser.set_defaults(handler=run_evaluate)
