"""Independent runs side by side, one worker process each, on a fixed thread count.

Every run here is single-process and deterministic for a given thread count, so its
numbers do not depend on how many run at once: two workers on two cores just take
half the time.  Here, the workers are local processes, and MNIST splits passed as
arguments go to shared memory first, so each task pickles only a handle, not 200 MB
of images.  With a Ray address (`--address HOST:PORT`, or `local` for an embedded
loopback-only Ray, as `snn-mnist sweep` starts), every task is a Ray task on
`threads` CPUs of the cluster, and the splits go into Ray's object store once.  Tasks
that write files write them where they are told, so on a cluster that place must be
storage every node mounts.
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


def _call_spread(function: Callable[..., Result], threads: int, *arguments: Any) -> Result:
    # Ray resolves object references only when they are arguments themselves, not inside a tuple
    return _call(function, threads, arguments)


def run_side_by_side(
    function: Callable[..., Result], tasks: Sequence[tuple[Any, ...]], jobs: int, threads: int, address: str | None = None
) -> Iterator[tuple[int, Result]]:
    """(index, function(*tasks[index])) as each finishes; `jobs` == 1 runs them here, in order.

    `function` must be importable by name (a module-level function): workers are spawned."""
    if address is not None:
        yield from _on_ray(function, tasks, threads, address)
        return
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


def _on_ray(function: Callable[..., Result], tasks: Sequence[tuple[Any, ...]], threads: int, address: str) -> Iterator[tuple[int, Result]]:
    from experiments.sweep import start_ray  # Ray is an optional extra: imported only when asked for

    ray = start_ray(None if address == "local" else address)
    import ray as ray_module

    try:
        stored: dict[int, Any] = {}

        def to_store(value: Any) -> Any:
            if isinstance(value, MnistSplit):
                if id(value) not in stored:
                    stored[id(value)] = ray_module.put(value)
                return stored[id(value)]
            return value

        remote = ray_module.remote(num_cpus=threads, max_retries=2)(_call_spread)
        pending = {remote.remote(function, threads, *(to_store(value) for value in arguments)): index for index, arguments in enumerate(tasks)}
        while pending:
            done, _ = ray_module.wait(list(pending), num_returns=1)
            yield pending.pop(done[0]), ray_module.get(done[0])
    finally:
        if ray is not None:
            ray.shutdown()
