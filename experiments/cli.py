"""The `snn-mnist` command line.

Every subcommand lives in its own module in `experiments/` and exposes
`register(subparsers)`, which adds its parser (using `add_common_options` for the
shared flags) and sets `handler` to a function taking the parsed arguments and
returning an exit code.  Shared conventions:

    --data-dir DIR      MNIST folder (falls back to $SNN_MNIST_DATA, then to the
                        per-user cache ~/.cache/snn-mnist/mnist, downloaded once)
    --download          fetch missing MNIST files into --data-dir with torchvision
    --out DIR           where artifacts go
    --seed N            RNG seed
    --threads N         torch and Numba threads together
    --device NAME       cpu, cuda, cuda:N or auto
    --backend NAME      numba, torch or auto (numba on CPU)

Bad input ends in one line, `snn-mnist: error: <the problem>. Fix: <what to do>`,
and exit code 2, never a traceback: handlers raise `SnnMnistError` or
`ValueError` for it, and `main` turns file-system errors (OSError) and failed
allocations (sizes too large for the machine) into such a line too.  `--out` and `--json` are checked before a command starts, so a run
does not fail at its very end for want of a place to write.

A command that writes `--out` holds that folder's lock while it runs and records its
identity there in run.json (`experiments.run_folder`); `train` and `stdp` check that their
sizes fit in memory before allocating (`check_fits_in_memory`), and `--address` reaches a
Ray cluster within `--connect-timeout` (`experiments.cluster`).
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
from training.progress import is_terminal
from training.runtime import available_memory_bytes, format_bytes

# Modules that provide subcommands, in the order `--help` lists them.
COMMAND_MODULES: list[str] = [
    "experiments.train_cmd",
    "experiments.crosscheck",
    "experiments.bench",
    "experiments.posttrain_cmd",
    "experiments.reproduce",
    "experiments.explain",
    "experiments.stdp_cmd",
    "experiments.sweep",
]


def output_folder(text: str) -> Path:
    """--out's type: a folder path; an empty one (which would mean the current folder) is refused."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty folder name would write into the current folder. Fix: name a folder, e.g. --out results (or --out . for the current one)")
    return Path(text)


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
            help=(
                "folder with the four MNIST IDX files (.gz or raw); default: $SNN_MNIST_DATA, "
                "else the per-user cache $XDG_CACHE_HOME/snn-mnist/mnist (~/.cache/snn-mnist/mnist), "
                "downloaded once when empty"
            ),
        )
        parser.add_argument(
            "--download",
            action="store_true",
            help=(
                "with --data-dir: download the missing MNIST files into DATA_DIR/MNIST/raw with "
                "torchvision (needs internet); without it, nothing to add: the per-user cache "
                "downloads MNIST once when empty"
            ),
        )
    if out is not None:
        parser.add_argument("--out", type=output_folder, default=Path(out), help=f"output folder (default: {out})")
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


def _file_in_the_way(path: Path) -> Path | None:
    """The first of `path` and its parents that exists as something other than a folder, if any."""
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            return None
        if candidate.exists():
            return candidate
    return None


def check_output_folder(path: Path, flag: str = "--out") -> None:
    """Refuse, before any work is done, an output folder that cannot be created (ValueError)."""
    blocker = _file_in_the_way(Path(path))
    if blocker is None:
        return
    where = "is a file" if blocker == Path(path) else f"lies inside {blocker}, which is a file"
    raise ValueError(
        f"{flag} {path} {where}, not a folder. "
        f"Fix: pass a folder path for {flag} (it is created if missing), or move the file out of the way."
    )


def check_output_file(path: Path, flag: str) -> None:
    """Refuse, before any work is done, an output file path that cannot be written (ValueError)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a folder. Fix: pass a file name for {flag}, e.g. {path / 'results.json'}.")
    blocker = _file_in_the_way(path.parent)
    if blocker is not None:
        raise ValueError(
            f"{flag} {path}: {blocker} is a file, so it cannot hold {path.name}. "
            f"Fix: pass a path for {flag} inside a folder (created if missing)."
        )


def check_output_paths(args: argparse.Namespace) -> None:
    """The shared output flags (--out folder, --json file) of any command, checked up front."""
    if isinstance(getattr(args, "out", None), Path):
        check_output_folder(args.out)
    if isinstance(getattr(args, "json", None), Path):
        check_output_file(args.json, "--json")


def check_fits_in_memory(command: str, needed: int, sizes: str, available: int | None = None) -> None:
    """Refuse, before anything is allocated, sizes whose estimated memory (`needed` bytes) exceeds
    what this machine has available (ValueError); `sizes` names the flags that set it."""
    available = available_memory_bytes() if available is None else available
    if available is None or needed <= available:
        return
    raise ValueError(
        f"{command} would need about {format_bytes(needed)} of memory with these sizes ({sizes}), more than the "
        f"{format_bytes(available)} available here. Fix: lower them, or run on a machine with more memory."
    )


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` says an allocation failed (numpy's MemoryError, torch's CPU or CUDA allocator)."""
    if isinstance(error, MemoryError):
        return True
    message = str(error)
    return "can't allocate memory" in message or "out of memory" in message


def flush_output_by_line() -> None:
    """Write stdout line by line even into a file or pipe, where Python buffers it in
    blocks: a log then shows each epoch's line when it happens, in order with the
    progress lines on stderr, not at exit."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None and not is_terminal(sys.stdout):
        reconfigure(line_buffering=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="snn-mnist",
        description=(
            "Leaky integrate-and-fire networks on MNIST, from scratch: surrogate-gradient "
            "training, Hebbian post-training plasticity, and checks against snnTorch."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", dest="command")
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
    flush_output_by_line()
    try:
        check_output_paths(args)
        return int(handler(args) or 0)
    except (SnnMnistError, ValueError) as error:
        # Bad input: one clear line, no traceback (set SNN_MNIST_TRACEBACK=1 to see it).
        if os.environ.get("SNN_MNIST_TRACEBACK"):
            raise
        print(f"snn-mnist: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        # The file system said no (permissions, a full disk, a path of the wrong kind): one line too.
        if os.environ.get("SNN_MNIST_TRACEBACK"):
            raise
        where = f": {error.filename}" if error.filename else ""
        print(
            f"snn-mnist: error: {error.strerror or error}{where}. "
            "Fix: check that path (folders for --out, readable files for inputs), its permissions and the free disk space.",
            file=sys.stderr,
        )
        return 2
    except (MemoryError, RuntimeError) as error:
        # Sizes too large for this machine (numpy raises MemoryError, torch a RuntimeError).
        if os.environ.get("SNN_MNIST_TRACEBACK") or not is_out_of_memory(error):
            raise
        detail = (str(error).strip().splitlines() or ["no detail"])[-1]
        print(
            f"snn-mnist: error: out of memory ({detail}). Fix: lower the sizes that set memory use "
            "(--hidden, --neurons, --steps, --batch-size) or run on a machine with more memory.",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("snn-mnist: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
