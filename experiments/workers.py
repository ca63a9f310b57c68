"""Independent runs side by side, one worker process each, on a fixed thread count.

Every run here is single-process and deterministic for a given thread count, so its
numbers do not depend on how many run at once: two workers on two cores just take
half the time.  MNIST splits passed as arguments go to shared memory first, so each
task pickles only a handle, not 200 MB of images.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, TypeVar

import torch

from training.data import MnistSplit
from training.runtime import configure_threads

Result = TypeVar("Result")


def _call(function: Callable[..., Result], threads: int, arguments: tuple[Any, ...]) -> Result:
    configure_threads(threads)
    return function(*arguments)


def run_side_by_side(
    function: Callable[..., Result], tasks: Sequence[tuple[Any, ...]], jobs: int, threads: int
) -> Iterator[tuple[int, Result]]:
    """(index, function(*tasks[index])) as each finishes; `jobs` == 1 runs them here, in order.

    `function` must be importable by name (a module-level function): workers are spawned."""
    if jobs == 1:
        for index, arguments in enumerate(tasks):
            yield index, _call(function, threads, arguments)
        return
    for arguments in tasks:
        for value in arguments:
            if isinstance(value, MnistSplit):
                value.images.share_memory_()
                value.labels.share_memory_()
    context = torch.multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = {pool.submit(_call, function, threads, arguments): index for index, arguments in enumerate(tasks)}
        for future in as_completed(futures):
            yield futures[future], future.result()
