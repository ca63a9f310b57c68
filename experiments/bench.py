"""`snn-mnist bench`: training-step and inference speed against snnTorch, side by side.

Variants, all from the same initial weights, on the same real MNIST batches and
the same threads, timed interleaved (one step of each variant per round, so a
busy machine slows all of them alike):

    snntorch   the study's model and loop: snn.Leaky, fc1(x) at every step,
               torch.optim.Adam (default, as the study), weights clipped
    torch      our SupervisedSNN, torch backend (readable reference kernels)
    numba      our SupervisedSNN, Numba backend (the default on CPU)

Our variants train with our own loop (`training.train.train_step`, fused Adam).
A training step is forward + backward + optimiser + clip on one batch;
inference is a forward pass without autograd over 1,000 test images, in
batches of `--inference-batch` (250 by default, what `evaluate` uses) for
every variant alike.
Medians over the rounds are reported, with the ratio snnTorch / variant.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from experiments.cli import add_common_options
from experiments.train_cmd import load_splits, prepare_runtime
from training.checkpoint import atomic_write_json
from training.data import MnistSplit
from training.model import ModelConfig, SupervisedSNN
from training.train import EVAL_BATCH, TrainConfig, build_optimizer, library_versions, train_step

VARIANTS = ("snntorch", "torch", "numba")


def _timed(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000.0


def run_benchmark(
    train_split: MnistSplit,
    test_split: MnistSplit,
    threads: int,
    rounds: int = 20,
    inference_rounds: int = 5,
    batch_size: int = 128,
    num_steps: int = 25,
    variants: tuple[str, ...] = VARIANTS,
    inference_batch: int = EVAL_BATCH,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    from experiments.snntorch_reference import build_study_model, study_loss

    train_config = TrainConfig(batch_size=batch_size)
    torch.manual_seed(0)
    initial = SupervisedSNN(ModelConfig(num_steps=num_steps)).state_dict()
    models: dict[str, Any] = {}
    optimizers: dict[str, torch.optim.Optimizer] = {}
    for name in variants:
        if name == "snntorch":
            model = build_study_model()
            model.load_state_dict(initial, strict=True)
            optimizers[name] = torch.optim.Adam(model.parameters(), lr=train_config.learning_rate)
        else:
            model = SupervisedSNN(ModelConfig(num_steps=num_steps, backend=name))
            model.load_state_dict(initial, strict=True)
            optimizers[name] = build_optimizer(model, train_config.learning_rate)
        models[name] = model

    batches = [
        (train_split.flat_images[start : start + batch_size], train_split.labels[start : start + batch_size])
        for start in range(0, batch_size * rounds, batch_size)
    ]
    inference_images = test_split.flat_images[:1000]

    def train_once(name: str, images: torch.Tensor, labels: torch.Tensor) -> None:
        model, optimizer = models[name], optimizers[name]
        if name == "snntorch":
            loss, _ = study_loss(model, images, labels, train_config.alpha_reg, num_steps)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                model.fc1.weight.clamp_(-1.0, 1.0)
                model.fc2.weight.clamp_(-1.0, 1.0)
        else:
            train_step(model, optimizer, images, labels, train_config)

    @torch.no_grad()
    def infer_once(name: str) -> None:
        model = models[name]
        for start in range(0, inference_images.shape[0], inference_batch):
            chunk = inference_images[start : start + inference_batch]
            if name == "snntorch":
                model(chunk, num_steps)
            else:
                model(chunk)

    log("warming up (JIT compilation, allocator)...")
    for name in variants:
        train_once(name, *batches[0])
        infer_once(name)

    train_ms: dict[str, list[float]] = {name: [] for name in variants}
    infer_ms: dict[str, list[float]] = {name: [] for name in variants}
    for round_index in range(rounds):
        for name in variants:
            images, labels = batches[round_index % len(batches)]
            train_ms[name].append(_timed(lambda: train_once(name, images, labels)))
    for _ in range(inference_rounds):
        for name in variants:
            infer_ms[name].append(_timed(lambda: infer_once(name)))

    results: dict[str, Any] = {
        "threads": threads,
        "batch": batch_size,
        "steps": num_steps,
        "rounds": rounds,
        "inference_rounds": inference_rounds,
        "inference_images": int(inference_images.shape[0]),
        "inference_batch": inference_batch,
        "versions": library_versions(),
        "variants": {},
    }
    for name in variants:
        results["variants"][name] = {
            "train_step_ms": statistics.median(train_ms[name]),
            "inference_ms_per_1000": statistics.median(infer_ms[name]) * 1000.0 / inference_images.shape[0],
            "train_step_ms_all": train_ms[name],
            "inference_ms_all": infer_ms[name],
        }
    if "snntorch" in variants:
        reference = results["variants"]["snntorch"]
        for name in variants:
            entry = results["variants"][name]
            entry["train_speedup_vs_snntorch"] = reference["train_step_ms"] / entry["train_step_ms"]
            entry["inference_speedup_vs_snntorch"] = reference["inference_ms_per_1000"] / entry["inference_ms_per_1000"]
    return results


def format_results(results: dict[str, Any]) -> str:
    lines = [
        f"threads {results['threads']}, batch {results['batch']}, T {results['steps']}, "
        f"medians over {results['rounds']} training rounds / {results['inference_rounds']} inference rounds",
        f"{'variant':<10} {'train step (ms)':>16} {'x snnTorch':>11} {'inference /1000 (ms)':>21} {'x snnTorch':>11}",
    ]
    for name, entry in results["variants"].items():
        lines.append(
            f"{name:<10} {entry['train_step_ms']:>16.2f} {entry.get('train_speedup_vs_snntorch', float('nan')):>10.1f}x "
            f"{entry['inference_ms_per_1000']:>21.1f} {entry.get('inference_speedup_vs_snntorch', float('nan')):>10.1f}x"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.rounds < 1 or args.inference_rounds < 1 or args.inference_batch < 1:
        raise ValueError("--rounds, --inference-rounds and --inference-batch must be positive integers")
    prepare_runtime(args)
    train_split, test_split = load_splits(args)
    assert train_split is not None
    if len(train_split) < args.batch_size or len(test_split) < 1000:
        raise ValueError("the benchmark needs at least one training batch and 1,000 test images")
    variants = tuple(args.variants.split(","))
    unknown = [name for name in variants if name not in VARIANTS]
    if unknown:
        raise ValueError(f"--variants: unknown {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    results = run_benchmark(
        train_split,
        test_split,
        args.threads,
        rounds=args.rounds,
        inference_rounds=args.inference_rounds,
        batch_size=args.batch_size,
        variants=variants,
        inference_batch=args.inference_batch,
    )
    print(format_results(results))
    if args.json is not None:
        atomic_write_json(Path(args.json), results)
        print(f"wrote {args.json}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="training-step and inference speed vs snnTorch (needs the test extra)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_options(parser, out=None, seed=False, device=False, backend=False)
    parser.add_argument("--rounds", type=int, default=20, help="timed training steps per variant (default: 20)")
    parser.add_argument("--inference-rounds", type=int, default=5, help="timed inference passes per variant (default: 5)")
    parser.add_argument("--batch-size", type=int, default=128, help="training batch (default: 128)")
    parser.add_argument("--inference-batch", type=int, default=EVAL_BATCH, help=f"images per forward pass when timing inference (default: {EVAL_BATCH})")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of snntorch,torch,numba")
    parser.add_argument("--json", type=Path, default=None, help="write the results to this JSON file")
    parser.set_defaults(handler=run)
