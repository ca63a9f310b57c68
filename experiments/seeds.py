"""One measurement over several seeds: the study's baseline per seed, and mean ± sd.

Multi-seed results live in one folder per seed, `OUT/seed_<S>/`, each holding what
`snn-mnist train` writes (the study's file names).  `study_baseline` trains the
study's recipe there, or reuses a finished run of the same settings, so every
command that needs "the baseline of seed S" (`reproduce`, the dose-response study)
finds or builds the same one.

Spread is the sample standard deviation (n - 1); with one value there is none.
"""

from __future__ import annotations

import argparse
import math
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path

from lif_core.backend import Backend
from training.data import MnistSplit
from training.network import NetworkConfig, study_network_config
from training.train import MODEL_FILE, STATE_FILE, TrainConfig, train


def seed_folder(out: Path, seed: int) -> Path:
    return Path(out) / f"seed_{seed}"


def parse_seeds(text: str) -> list[int]:
    """`0,1,2` or `0-4` (both ends included), for --seeds."""
    try:
        if "-" in text and "," not in text:
            low, high = (int(part) for part in text.split("-"))
            return list(range(low, high + 1))
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seeds as 0,1,2 or 0-4, got {text!r}") from None


def mean_sd(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def format_mean_sd(values: Sequence[float], digits: int = 2, count: bool = True) -> str:
    """"97.27 ± 0.08 (n=3)"; a single value prints alone ("97.27 (n=1)")."""
    if not values:
        return "—"
    mean, sd = mean_sd(values)
    text = f"{mean:.{digits}f}" + ("" if sd is None else f" ± {sd:.{digits}f}")
    return f"{text} (n={len(values)})" if count else text


def geometric_mean(values: Sequence[float]) -> float:
    return math.exp(statistics.fmean(math.log(value) for value in values))


def study_baseline(
    folder: Path,
    seed: int,
    train_split: MnistSplit,
    test_split: MnistSplit,
    threads: int,
    network_config: NetworkConfig | None = None,
    epochs: int = 10,
    progress: bool = True,
    log: Callable[[str], None] = print,
    backend: Backend = "auto",
) -> Path:
    """The study's recipe trained with `seed` into `folder` (resumed if it was interrupted;
    a finished run with the same settings is reused as it is); returns the model file.
    network_config: the network (None: `study_network_config()`); backend: where its
    neurons run (`TrainConfig.backend`, the same maths)."""
    folder = Path(folder)
    arguments = dict(
        extra_settings={"threads": threads, "train_examples": len(train_split), "test_examples": len(test_split)},
        progress=progress,
        log=log,
    )
    resume = (folder / STATE_FILE).is_file()
    train(
        train_split,
        test_split,
        network_config if network_config is not None else study_network_config(),
        TrainConfig(epochs=epochs, seed=seed, backend=backend),
        folder,
        resume=resume,
        **arguments,
    )
    return folder / MODEL_FILE
