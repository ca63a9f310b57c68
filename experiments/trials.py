"""Short training runs for measurements, one process each or side by side in workers.

A `Trial` is one epoch of the study's training (`training.train.train`, the code
behind `snn-mnist train`) with a given surrogate, seed, number of training images
and float kernel path; `run_trials` runs a list of them, here or in worker
processes, and returns a `TrialResult` for each.  Every run is independent and
single-process on a fixed thread count, so its numbers do not depend on how many
run at once.  `snn-mnist explain` uses them for the guide's training numbers.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import NamedTuple

import torch

from training.data import MnistSplit
from training.network import FeedForwardSNN, NetworkConfig, study_network_config
from training.presets import network_with
from training.runtime import configure_threads
from training.train import TrainConfig, train

# The float kernel paths of one x86-64 machine.  Each rounds float32 matrix products
# differently in the last bits, as another CPU would, so a training run on each is a
# fresh draw of what another machine measures.  "native" is this process's own
# environment; the others are forced through variables that torch and MKL read when
# they load, so their runs go to worker processes started with them.
KERNEL_PATHS: dict[str, dict[str, str]] = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"},
    "compatible": {"MKL_CBWR": "COMPATIBLE"},
}

Log = Callable[[str], None]


def quiet(_: str) -> None:
    """A log function that logs nothing (train() reports every epoch otherwise)."""


class Trial(NamedTuple):
    """One short training run: the study's settings but for the surrogate, for one seed,
    on the first `train_images` training images (one epoch), on one kernel path."""

    surrogate: str
    scale: float | None
    seed: int
    train_images: int
    kernel_path: str = "native"


class TrialResult(NamedTuple):
    test_accuracy: float  # percent, on every test image
    max_weight_change: float  # largest |change| of any weight or bias from its initial value


def run_trial(trial: Trial, train_split: MnistSplit, test_split: MnistSplit) -> TrialResult:
    """Train one epoch with `training.train.train` (the code behind `snn-mnist train`).
    Artifacts go to a temporary folder: only the accuracy and the weight change are kept."""
    with tempfile.TemporaryDirectory(prefix="snn-explain-") as folder:
        model, history = train(
            train_split.subset(trial.train_images),
            test_split,
            trial_network(trial.surrogate, trial.scale),
            # the exact path: the guide's numbers are those of the snnTorch-identical maths
            TrainConfig(epochs=1, seed=trial.seed, fused=False),
            Path(folder),
            progress=False,
            log=quiet,
        )
    start = initial_model(trial.surrogate, trial.seed)
    with torch.no_grad():
        moved = max(float((a - b).abs().max()) for a, b in zip(model.parameters(), start.parameters(), strict=True))
    return TrialResult(history.test_acc_history[-1], moved)


def timed_trial(trial: Trial, train_split: MnistSplit, test_split: MnistSplit, threads: int) -> tuple[TrialResult, float]:
    """`run_trial` on `threads` threads (in a worker process, or here), and its seconds."""
    configure_threads(threads)
    started = time.perf_counter()
    return run_trial(trial, train_split, test_split), time.perf_counter() - started


def run_trials(
    trials: Sequence[Trial],
    train_split: MnistSplit,
    test_split: MnistSplit,
    threads: int,
    jobs: int = 1,
    log: Log = print,
) -> dict[Trial, TrialResult]:
    """Every trial, in `jobs` processes at once (1: here, one after another).

    Each run is independent and single-process, on `threads` threads, so its numbers do
    not depend on `jobs`: two worker processes on two cores just take half the time.
    Kernel paths other than "native" always run in worker processes (KERNEL_PATHS)."""
    results: dict[Trial, TrialResult] = {}

    def report(trial: Trial, result: TrialResult, seconds: float) -> None:
        results[trial] = result
        scale = "" if trial.scale is None else f" {trial.scale:g}"
        log(
            f"  [{len(results)}/{len(trials)}] {trial.surrogate}{scale}, seed {trial.seed}, "
            f"{trial.kernel_path} kernels, {trial.train_images:,} images: {result.test_accuracy:.2f}% ({seconds:.0f} s)"
        )

    for path in dict.fromkeys(trial.kernel_path for trial in trials):
        batch = [trial for trial in trials if trial.kernel_path == path]
        if path == "native" and jobs == 1:
            for trial in batch:
                report(trial, *timed_trial(trial, train_split, test_split, threads))
        else:
            _run_in_workers(batch, train_split, test_split, threads, jobs, KERNEL_PATHS[path], report)
    return {trial: results[trial] for trial in trials}


def _run_in_workers(
    trials: Sequence[Trial],
    train_split: MnistSplit,
    test_split: MnistSplit,
    threads: int,
    jobs: int,
    variables: Mapping[str, str],
    report: Callable[[Trial, TrialResult, float], None],
) -> None:
    """The trials in `jobs` worker processes started with `variables` in their environment."""
    # The splits are put in shared memory once; each task then pickles only a handle.
    for split in (train_split, test_split):
        split.images.share_memory_()
        split.labels.share_memory_()
    context = torch.multiprocessing.get_context("spawn")
    with kernel_path_environment(variables), ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = {pool.submit(timed_trial, trial, train_split, test_split, threads): trial for trial in trials}
        for future in as_completed(futures):
            report(futures[future], *future.result())


@contextlib.contextmanager
def kernel_path_environment(variables: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the worker processes started inside; restore after.
    (This process's torch and MKL have loaded already: they do not read them again.)"""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def trial_network(surrogate: str, scale: float | None = None) -> NetworkConfig:
    """The study's network with another surrogate (`scale` None: the surrogate's default shape)."""
    return network_with(study_network_config(), {"surrogate": surrogate, "surrogate_scale": scale})


def initial_model(surrogate: str, seed: int) -> FeedForwardSNN:
    """The untrained network exactly as `train` builds it for this seed, on the exact path."""
    torch.manual_seed(seed)
    return FeedForwardSNN(trial_network(surrogate), fused=False)
