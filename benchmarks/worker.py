"""One benchmark measurement in a fresh process: `python -m benchmarks.worker SPEC_JSON`.

The harness (`benchmarks.harness`) starts one of these per variant and round,
with the environment it was given and nothing added.  Every variant's process reads
its network through this project's `training.presets` (which imports `lif_core` and so
Numba's module); no Numba kernel runs in a peer's process, and its thread pool is
started only by the first parallel kernel.  The worker sets the thread
count the way a user does (`torch.set_num_threads`; for our kernels also
`numba.set_num_threads`), builds the variant, warms it up, times it, and prints
one JSON line with the timings (ms), the initial loss and the peak memory
(peak resident memory, and its growth over the resident memory just before the
variant is built; the peak may have been reached while importing a library).

compile_s (mnist, compiled variants; None for the others): the warm-up steps' wall time above warm-up x the steady median
step, plus the first INFERENCE_WARMUP inference passes' above as many steady passes:
what torch.compile's compilation costs a compiled variant (it compiles on its first
calls and recompiles on its second, when snnTorch's state or the batch's offset has
changed, and again for inference), kept out of the step times.  A compiled variant that fails
prints {"variant": ..., "error": "one line"} and exits 0, so the bench goes on.
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.variants import MNIST_VARIANTS, OPEN_NEUROMORPHIC_VARIANTS, mnist_runner, open_neuromorphic_runner
from training.network import study_network_config
from training.presets import network_with


INFERENCE_WARMUP = 2  # inference passes before the timed ones (a compiled variant recompiles in both)


def _peak_rss_mb() -> float:
    """The process's peak resident memory so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _current_rss_mb() -> float:
    """The process's resident memory now (Linux /proc; the peak where that is missing)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        return _peak_rss_mb()


def _timed_ms(action: Any) -> float:
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000.0


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    threads = int(spec["threads"])
    torch.set_num_threads(threads)
    workload, name = spec["workload"], spec["variant"]
    ours = (MNIST_VARIANTS if workload == "mnist" else OPEN_NEUROMORPHIC_VARIANTS)[name].ours
    if ours:
        import numba

        numba.set_num_threads(threads)
    result: dict[str, Any] = {"variant": name, "threads": threads}
    if workload == "mnist":
        config = network_with(study_network_config(), spec["network"])
        batch = int(spec["batch"])
        data = np.load(spec["data"])
        images, labels = torch.from_numpy(data["train_images"]), torch.from_numpy(data["train_labels"])
        batches = [
            (images[start : start + batch], labels[start : start + batch])
            for start in range(0, images.shape[0] - batch + 1, batch)
        ]
        baseline_mb = _current_rss_mb()  # after imports and data: what the variant adds is its own
        runner = mnist_runner(name, config, batches, torch.from_numpy(data["test_images"]))
        assert runner.train_step is not None and runner.infer is not None
        warm = [_timed_ms(lambda i=i: runner.train_step(i)) for i in range(spec["warmup"])]
        train = [_timed_ms(lambda i=i: runner.train_step(spec["warmup"] + i)) for i in range(spec["steps"])]
        first_infer = [_timed_ms(runner.infer) for _ in range(INFERENCE_WARMUP)]
        infer = [_timed_ms(runner.infer) for _ in range(spec["inference_passes"])]
        step, infer_pass = statistics.median(train), statistics.median(infer)
        result.update(
            initial_loss=runner.initial_loss,
            compute_path=runner.compute_path,
            train_step_ms=step,
            inference_ms_per_1000=infer_pass * 1000.0 / int(data["test_images"].shape[0]),
            compile_s=(max(0.0, sum(warm) - len(warm) * step) + max(0.0, sum(first_infer) - len(first_infer) * infer_pass)) / 1000.0
            if MNIST_VARIANTS[name].compiled
            else None,  # an eager variant's warm-up excess is first-use costs and the machine's noise
        )
    else:
        baseline_mb = _current_rss_mb()
        runner = open_neuromorphic_runner(name, spec["with_linear"], **spec["size"])
        assert runner.forward is not None and runner.backward is not None
        forward_ms, backward_ms = [], []
        for repeat in range(spec["warmup"] + spec["steps"]):
            started = time.perf_counter()
            output = runner.forward()
            middle = time.perf_counter()
            runner.backward(output)
            ended = time.perf_counter()
            del output
            if repeat >= spec["warmup"]:
                forward_ms.append((middle - started) * 1000.0)
                backward_ms.append((ended - middle) * 1000.0)
        result.update(
            forward_ms=statistics.median(forward_ms),
            backward_ms=statistics.median(backward_ms),
            forward_backward_ms=statistics.median([f + b for f, b in zip(forward_ms, backward_ms)]),
        )
    peak = _peak_rss_mb()
    result.update(peak_rss_mb=peak, peak_rss_increase_mb=peak - baseline_mb)
    return result


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text() if argv[0].endswith(".json") else argv[0])
    try:
        result = measure(spec)
    except Exception as error:
        if spec["workload"] != "mnist" or not MNIST_VARIANTS[spec["variant"]].compiled:
            raise
        # torch.compile's errors run over many lines: the first names what failed
        first = (str(error).strip().splitlines() or [""])[0]
        result = {"variant": spec["variant"], "error": f"{type(error).__name__}: {first}"[:300]}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
