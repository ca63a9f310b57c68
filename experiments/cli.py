"""The `snn-mnist` command line.

Every subcommand lives in its own module in `experiments/` and exposes
`register(subparsers)`, which adds its parser (using `add_common_options` for the
shared flags) and sets `handler` to a function taking the parsed arguments and
returning an exit code.  Shared conventions:

    --data-dir DIR      MNIST folder (falls back to $SNN_MNIST_DATA)
    --download          fetch MNIST with torchvision when online
    --out DIR           where artifacts go
    --seed N            RNG seed
    --threads N         torch and Numba threads together
    --device NAME       cpu, cuda, cuda:N or auto
    --backend NAME      numba, torch or auto (numba on CPU)
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from experiments import __version__
from training.errors import SnnMnistError

# Modules that provide subcommands, in the order `--help` lists them.
COMMAND_MODULES: list[str] = [
    "experiments.train_cmd",
    "experiments.crosscheck",
    "experiments.bench",
    "experiments.posttrain_cmd",
    "experiments.reproduce",
    "experiments.explain",
    "experiments.stdp_cmd",
]


def add_common_options(
    parser: argparse.ArgumentParser,
    *,
    data: bool = True,
    out: str | None = "results",
    seed: bool = True,
    threads: bool = True,
    device: bool = True,
    backend: bool = True,
) -> None:
    """Add the shared flags a subcommand needs (see the module docstring)."""
    if data:
        parser.add_argument(
            "--data-dir",
            type=Path,
            default=None,
            help="folder with the four MNIST IDX files (.gz or raw); default: $SNN_MNIST_DATA",
        )
        parser.add_argument(
            "--download",
            action="store_true",
            help="download MNIST with torchvision into --data-dir (needs internet)",
        )
    if out is not None:
        parser.add_argument("--out", type=Path, default=Path(out), help=f"output folder (default: {out})")
    if seed:
        parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    if threads:
        parser.add_argument(
            "--threads",
            type=int,
            default=None,
            help="threads for torch and Numba together (default: all cores)",
        )
    if device:
        parser.add_argument(
            "--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)"
        )
    if backend:
        parser.add_argument(
            "--backend",
            choices=("auto", "numba", "torch"),
            default="auto",
            help="LIF kernels: numba (CPU, fast), torch (any device), auto (numba on CPU)",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="snn-mnist",
        description=(
            "Leaky integrate-and-fire networks on MNIST, from scratch: surrogate-gradient "
            "training, Hebbian post-training plasticity, and checks against snnTorch."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0 if not (argv if argv is not None else sys.argv[1:]) else 2
    try:
        return int(handler(args) or 0)
    except (SnnMnistError, ValueError) as error:
        # Bad input: one clear line, no traceback (set SNN_MNIST_TRACEBACK=1 to see it).
        if os.environ.get("SNN_MNIST_TRACEBACK"):
            raise
        print(f"snn-mnist: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("snn-mnist: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
