"""`snn-mnist bench`: speed against the peers, each in its own process, as its users run it.

Workloads (see `benchmarks/variants.py` for the code of every variant):

  mnist              a network on real MNIST batches: one training step (forward,
                     the network's loss, backward, torch.optim.Adam, clip) and
                     inference over 1,000 test images.  Cases (--sizes):
                       study        the study's 784-512-10 (B 128, T 25), and grown:
                       hidden_2048  H 2048;  batch_512  B 512;  steps_100  T 100
                       tutorial5    snnTorch tutorial 5: 784-1000-10, beta 0.95,
                                    atan, membrane loss
                       rate         784-1000-10, rate-coded input, zero reset,
                                    learnable beta 0.95, atan, membrane loss
                       three        784-256-128-10, learnable beta per neuron,
                                    count loss
  open_neuromorphic  the Open Neuromorphic library benchmark: randn(500, 16, 4096)
                     through LIF alone, and through Linear(4096, 4096) + LIF;
                     loss out.sum(); forward and backward

Variants: snnTorch as its tutorials write it (fc1 at every step), snnTorch with fc1
hoisted under torch.compile (snntorch_compiled), a plain PyTorch loop eager and under
torch.compile (torch_loop_compiled), and ours: torch backend, numba exact path, numba
with the path the network picks (fused where it applies; the path is reported).  On
the study's cases also snnTorch with fc1 hoisted, eager, and SpikingJelly and Norse
when installed (the `bench` extra).  Every variant runs in a fresh process with this
environment, unchanged, and the same thread count, interleaved over rounds
(`benchmarks/harness.py`).  Reported: median ms with the range over rounds, the
ratio to snnTorch as written and to the fastest peer (the compiled ones included),
compile seconds in their own column (kept out of the step times; a compile that
fails leaves its variant out with a one-line error), peak memory, and whether the
snnTorch-semantics variants start from the same loss.  torch.compile takes tens of
seconds to minutes per process: the four networks alone are
  snn-mnist bench --threads 2 --sizes study,tutorial5,rate,three --open-neuromorphic ''
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.harness import MNIST_CASES, OPEN_NEUROMORPHIC_CASES, format_results, run_benchmark
from benchmarks.variants import MNIST_VARIANTS, OPEN_NEUROMORPHIC_VARIANTS
from experiments.cli import add_common_options
from experiments.train_cmd import load_splits
from training.checkpoint import atomic_write_json
from training.runtime import available_threads, machine_description
from training.train import library_versions


def _choices(text: str, known: tuple[str, ...], flag: str) -> tuple[str, ...]:
    chosen = tuple(name for name in text.split(",") if name)
    unknown = [name for name in chosen if name not in known]
    if unknown:
        raise ValueError(f"{flag}: unknown {', '.join(unknown)}; choose from {', '.join(known)}")
    return chosen


def run(args: argparse.Namespace) -> int:
    if args.rounds < 2:
        raise ValueError("--rounds must be at least 2: one round cannot show how much a figure varies")
    if args.steps < 3:
        raise ValueError("--steps must be at least 3 timed steps per round")
    threads = available_threads() if args.threads is None else args.threads
    if not 1 <= threads <= available_threads():
        raise ValueError(f"--threads must be an integer from 1 to {available_threads()}, got {args.threads}")
    mnist_cases = _choices(args.sizes, tuple(MNIST_CASES), "--sizes")
    neuromorphic_cases = _choices(args.open_neuromorphic, tuple(OPEN_NEUROMORPHIC_CASES), "--open-neuromorphic")
    variants = None if args.variants == "all" else _choices(
        args.variants, tuple(dict.fromkeys([*MNIST_VARIANTS, *OPEN_NEUROMORPHIC_VARIANTS])), "--variants"
    )
    train_split, test_split = load_splits(args)
    assert train_split is not None
    largest_batch = max(MNIST_CASES[case].batch for case in mnist_cases) if mnist_cases else 128
    needed = largest_batch * 8
    if len(train_split) < needed or len(test_split) < 1000:
        raise ValueError(f"the benchmark needs {needed} training and 1,000 test images")
    results = run_benchmark(
        train_split.flat_images[:needed].numpy(),
        train_split.labels[:needed].numpy(),
        test_split.flat_images[:1000].numpy(),
        threads,
        rounds=args.rounds,
        steps=args.steps,
        mnist_cases=mnist_cases,
        open_neuromorphic_cases=neuromorphic_cases,
        variants=variants,
        log=lambda line: print(line, flush=True),
    )
    results["machine"] = machine_description()
    results["versions"] = library_versions()
    print(format_results(results))
    if args.json is not None:
        atomic_write_json(Path(args.json), results)
        print(f"wrote {args.json}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="speed against snnTorch (eager and compiled), SpikingJelly, Norse and a plain PyTorch loop, each in its own process",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_options(parser, out=None, seed=False, device=False, backend=False)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds, one process per variant each (default: 2)")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per variant and round (default: 20)")
    parser.add_argument("--sizes", default=",".join(MNIST_CASES), help=f"MNIST cases, comma-separated: the study's sizes and the networks (default: {','.join(MNIST_CASES)}; '' for none)")
    parser.add_argument("--open-neuromorphic", default=",".join(OPEN_NEUROMORPHIC_CASES), help="Open Neuromorphic cases: lif, linear_lif (default: both; '' for none)")
    parser.add_argument("--variants", default="all", help="comma-separated subset of the variants (default: all installed)")
    parser.add_argument("--json", type=Path, default=None, help="write the results to this JSON file")
    parser.set_defaults(handler=run)
