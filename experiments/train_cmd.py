"""`snn-mnist train` and `snn-mnist evaluate`: any network, from flags or from a checkpoint."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import NamedTuple

import torch

from experiments.cli import add_common_options, check_fits_in_memory
from experiments.network_options import add_network_options, network_settings, refuse_checkpoint_flags
from experiments.run_folder import RUN_FILE, file_checksum, hold_output_folder, run_identity
from training.checkpoint import CheckpointError, atomic_write_json, read_checkpoint
from training.data import INPUT_SIZE, NUM_CLASSES, MnistSplit, carve_validation, load_mnist, mnist_files
from training.network import FeedForwardSNN
from training.presets import PRESETS, network_with, preset_configs
from training.runtime import configure_threads, keep_freed_memory, resolve_device, seed_everything
from training.snntorch_checkpoint import network_from_state_dict, state_dict_layers
from training.train import (
    CONFIG_JSON,
    CURVES_CSV,
    CURVES_JSON,
    EVAL_BATCH,
    LR_SCHEDULES,
    MODEL_FILE,
    STATE_FILE,
    TrainConfig,
    estimate_training_bytes,
    evaluate,
    input_generator,
    train,
)

RUN_FILES = (MODEL_FILE, STATE_FILE, CURVES_CSV, CURVES_JSON, CONFIG_JSON, RUN_FILE)


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


def check_train_folder(out: Path, resume: bool, force: bool) -> list[str]:
    """Refuse to start a new run in a folder holding another, unless --force; returns the other
    run's files, which --force removes once every other check has passed (`remove_run_files`),
    so that the two runs never mix.  --resume goes on to the library's checks."""
    if resume and force:
        raise ValueError("--resume and --force contradict each other. Fix: --resume to continue the run in --out, --force to replace it")
    present = [name for name in RUN_FILES if (out / name).exists()]
    if resume or not present:
        return []
    if set(present) <= {RUN_FILE, CONFIG_JSON}:
        return present  # a run stopped before its first epoch ended: nothing of it to lose
    if not force:
        raise ValueError(
            f"--out {out} holds another run ({', '.join(present)}). "
            "Fix: pass --resume to continue it, --force to replace it, or another --out folder."
        )
    return present


def remove_run_files(out: Path, names: list[str]) -> None:
    for name in names:
        (out / name).unlink(missing_ok=True)


def check_same_data(out: Path, checksums: dict[str, str], data_dir: Path | None) -> None:
    """--resume: the data files must be those the run was trained on (as its run.json says)."""
    try:
        saved = json.loads((out / RUN_FILE).read_text(encoding="utf-8")).get("data", {})
    except (OSError, ValueError, AttributeError):
        return  # a run from before run.json: nothing to compare against
    changed = sorted(name for name in saved.keys() | checksums.keys() if saved.get(name) != checksums.get(name))
    if changed:
        where = f"--data-dir {data_dir}" if data_dir is not None else "the MNIST data this run reads"
        raise ValueError(
            f"--resume: {where} holds other files than the run in {out} was trained on "
            f"({', '.join(changed)} differ by SHA-256). Fix: pass the run's --data-dir, or start a new --out folder."
        )


def run_train(args: argparse.Namespace) -> int:
    with hold_output_folder(args.out):
        return _run_train(args)


def _run_train(args: argparse.Namespace) -> int:
    replaced = check_train_folder(args.out, args.resume, args.force)
    # the preset's values, with every flag given on the command line on top
    network_config, train_config = preset_configs(
        args.preset,
        network=network_settings(args),
        training={
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "learning_rate": args.lr,
            "lr_schedule": args.lr_schedule,
            "weight_clip": args.weight_clip,
            "augment_shift": args.augment_shift,
            "weight_decay": args.weight_decay,
            "seed": args.seed,
            "input_seed": args.input_seed,
            "backend": args.backend,
            "fused": False if args.exact else None,
        },
    )
    sizes = ", ".join(
        f"{name} {value}" for name, value in (
            ("--hidden/--layers", "-".join(map(str, network_config.layer_sizes))),
            ("--steps", network_config.num_steps),
            ("--batch-size", train_config.batch_size),
        )
    )
    check_fits_in_memory("train", estimate_training_bytes(network_config, train_config), sizes)
    device = prepare_runtime(args)
    train_data, test_data = load_splits(args)
    assert train_data is not None
    files = mnist_files(args.data_dir)
    checksums = {name: file_checksum(path) for name, path in files.items()}
    if args.resume:
        check_same_data(args.out, checksums, args.data_dir)
    validation_data = None
    if args.validation:
        train_data, validation_data = carve_validation(train_data, args.validation)
    print(f"network: {network_config.describe()}")
    remove_run_files(args.out, replaced)  # --force, every check passed: the old run goes first
    if not args.resume:  # (a resumed run keeps the identity it has, if any: a run from before run.json has none)
        identity = run_identity(
            "train",
            {"network": network_config.to_json(), "training": train_config.to_json(), "preset": args.preset},
            files,
        )
        atomic_write_json(args.out / RUN_FILE, identity)
    started = time.perf_counter()
    _, history = train(
        train_data,
        test_data,
        network_config,
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
            "data_sha256": checksums,
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
    model: FeedForwardSNN
    architecture: str  # what was detected, printed
    generator: torch.Generator | None  # the rate-coded input's draws, else None


def network_from_checkpoint(args: argparse.Namespace, backend: str, fused: bool = True) -> tuple[FeedForwardSNN, str]:
    """The network of a checkpoint (ours, the study's fc1/lif1/... or an nn.Sequential's keys):
    sizes, resets and values from its tensors, everything else from the network flags on
    top of the study's settings.  Returns the model and how its keys were named."""
    refuse_checkpoint_flags(args)
    state = read_checkpoint(args.checkpoint)
    try:
        sizes, _ = state_dict_layers(state)
        base, _ = preset_configs("study", network={**network_settings(args), "layer_sizes": sizes})
        loaded = network_from_state_dict(state, base, backend, fused)  # type: ignore[arg-type]
    except (CheckpointError, ValueError) as error:
        raise CheckpointError(f"{args.checkpoint}: {error}") from None
    check_mnist_sizes(loaded.model.config.layer_sizes, args.checkpoint)
    naming = "fc1/lif1/... names" if loaded.naming == "study" else "nn.Sequential keys"
    return loaded.model, naming


def model_for_evaluation(args: argparse.Namespace, device: torch.device) -> EvaluationModel:
    """The checkpoint's network (`network_from_checkpoint`), on the fast kernels where they apply."""
    model, naming = network_from_checkpoint(args, args.backend)
    model = model.to(device).eval()
    generator = input_generator(args.input_seed, None) if model.config.input_coding == "rate" else None
    architecture = f"{model.config.describe()} ({naming}, {model.compute_path(device)} path)"
    return EvaluationModel(model, architecture, generator)


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


def register(subparsers: argparse._SubParsersAction) -> None:
    defaults = TrainConfig()
    parser = subparsers.add_parser(
        "train",
        help="train a LIF network with surrogate-gradient BPTT (the study's 784-512-10 by default, or any --layers)",
        description=(
            "Train a spiking network with BPTT: the study's (loss = CE on output spike counts + "
            "alpha_reg * hidden spike activity, Adam, weights clipped after every step) unless the "
            "network flags describe another (--layers, --beta, --reset, --input rate, --loss membrane, "
            "--learn-beta, ...). Writes the checkpoint (fc1/lif1/... keys, which the matching snnTorch "
            "class loads with strict=True), curves and config to --out after every epoch; --resume "
            "continues an interrupted run to the same final numbers."
        ),
    )
    add_common_options(parser)
    add_network_options(parser)
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
    parser.add_argument(
        "--input-seed", type=int, default=None,
        help="seed of a rate-coded network's input draws (default: --seed); epoch e draws from (seed, e)",
    )
    parser.add_argument(
        "--exact",
        action="store_true",
        help="run the exact path (layer by layer, bit-identical to snnTorch) instead of the fast kernels "
        "(the fused kernel of 2-layer constant-current networks, spike-driven Linear layers elsewhere: "
        "the same sums in another order, faster)",
    )
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last completed epoch")
    parser.add_argument(
        "--force", action="store_true",
        help="replace the training run already in --out (its files are removed first); without it, train refuses such a folder",
    )
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
    add_network_options(parser)
    parser.add_argument("--input-seed", type=int, default=0, help="seed of the rate-coded input's draws (default: 0)")
    parser.add_argument("--batch-size", type=int, default=EVAL_BATCH, help=f"evaluation batch size (default: {EVAL_BATCH})")
    parser.add_argument("--json", type=Path, default=None, help="write predictions and spike counts to this JSON file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_subset_options(parser)
    parser.set_defaults(handler=run_evaluate)
