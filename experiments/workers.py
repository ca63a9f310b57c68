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


class TaskPool:
    """Submit tasks, then take their results as they finish (`next_done`); more tasks may be
    submitted meanwhile, so a task can start as soon as what it needs is done.

    jobs == 1 without an address runs each task here, when its result is asked for, in the
    order submitted.  Use as a context manager: workers and any Ray this started stop on exit."""

    def __init__(self, jobs: int, threads: int, address: str | None = None) -> None:
        self.jobs, self.threads, self.address = jobs, threads, address
        self._queue: list[tuple[int, Callable[..., Any], tuple[Any, ...]]] = []  # jobs == 1: not run yet
        self._pending: dict[Any, int] = {}
        self._count = 0
        self._pool: ProcessPoolExecutor | None = None
        self._ray: Any = None
        self._started_ray: Any = None
        self._stored: dict[int, Any] = {}

    def __enter__(self) -> TaskPool:
        if self.address is not None:
            from experiments.sweep import start_ray  # Ray is an optional extra: imported only when asked for

            self._started_ray = start_ray(None if self.address == "local" else self.address)
            import ray

            self._ray = ray
            self._remote = ray.remote(num_cpus=self.threads, max_retries=2)(_call_spread)
        elif self.jobs > 1:
            self._pool = ProcessPoolExecutor(max_workers=self.jobs, mp_context=torch.multiprocessing.get_context("spawn"))
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self._started_ray is not None:
            self._started_ray.shutdown()

    def submit(self, function: Callable[..., Any], *arguments: Any) -> int:
        """Queue function(*arguments); returns the task's number (0, 1, ...).  `function` must be a
        module-level function: workers import it by name."""
        number, self._count = self._count, self._count + 1
        if self._ray is not None:
            reference = self._remote.remote(function, self.threads, *(self._to_store(value) for value in arguments))
            self._pending[reference] = number
        elif self._pool is not None:
            for value in arguments:
                if isinstance(value, MnistSplit):  # a handle is pickled, not the images
                    value.images.share_memory_()
                    value.labels.share_memory_()
            self._pending[self._pool.submit(_call, function, self.threads, arguments)] = number
        else:
            self._queue.append((number, function, arguments))
        return number

    def __len__(self) -> int:
        """Tasks submitted and not yet taken."""
        return len(self._pending) + len(self._queue)

    def next_done(self) -> tuple[int, Any]:
        """(task number, result) of a finished task; a task's exception is raised here."""
        if self._queue:
            number, function, arguments = self._queue.pop(0)
            return number, _call(function, self.threads, arguments)
        if self._ray is not None:
            done, _ = self._ray.wait(list(self._pending), num_returns=1)
            return self._pending.pop(done[0]), self._ray.get(done[0])
        finished = next(as_completed(self._pending))
        return self._pending.pop(finished), finished.result()

    def _to_store(self, value: Any) -> Any:
        if isinstance(value, MnistSplit):  # into the object store once, then passed by reference
            if id(value) not in self._stored:
                self._stored[id(value)] = self._ray.put(value)
            return self._stored[id(value)]
        return value


def run_side_by_side(
    function: Callable[..., Result], tasks: Sequence[tuple[Any, ...]], jobs: int, threads: int, address: str | None = None
) -> Iterator[tuple[int, Result]]:
    """(index, function(*tasks[index])) as each finishes; `jobs` == 1 runs them here, in order."""
    with TaskPool(jobs, threads, address) as pool:
        for arguments in tasks:
            pool.submit(function, *arguments)
        while len(pool):
            yield pool.next_done()
