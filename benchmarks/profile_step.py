"""Where one training step of the fused path spends its time, part by part, against
the floor of the operations every variant pays.

    python -m benchmarks.profile_step [--threads 2] [--warmup 100] [--steps 300] [--hidden 512]

The step is the ordinary loop of the benchmark (`benchmarks/variants.py`):
`FeedForwardSNN` forward (the study's network), the study's loss, `zero_grad`, `loss.backward()`, the
default `torch.optim.Adam` step and the weight clip, on consecutive real MNIST
batches of 128 from the study's initial weights.  Each part is timed with
`time.perf_counter` between the calls (and the two fused kernels inside them by
wrapping their functions), median over `--steps` steps after `--warmup`.  The
floors are the same GEMMs and the optimiser timed alone, on the same tensors.

Run it on an otherwise idle machine; prints a Markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from benchmarks.variants import LEARNING_RATE
from lif_core import fused_kernels
from training.data import load_mnist
from training.network import FeedForwardSNN, study_network_config
from training.presets import network_with

BATCH = 128


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3


def _timed_alone(action: Callable[[], Any], repeats: int) -> float:
    for _ in range(10):
        action()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return _median_ms(samples)


def profile(threads: int, warmup: int, steps: int, hidden: int) -> list[tuple[str, float, str]]:
    """Rows (part, median ms in the step, floor) for the fused path's training step."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = FeedForwardSNN(network_with(study_network_config(), {"hidden_size": hidden}))
    if model.compute_path() != "fused":
        raise SystemExit("profile_step: the fused path is not available here (it needs the numba backend on the CPU)")
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    train = load_mnist("train")
    images, labels = train.flat_images, train.labels
    batches = len(train) // BATCH

    kernel_times: dict[str, list[float]] = {"fused forward kernel": [], "fused backward kernel": []}
    originals = {"fused forward kernel": fused_kernels.forward, "fused backward kernel": fused_kernels.backward}

    def timed(name: str) -> Callable[..., Any]:
        original = originals[name]

        def run(*args: Any) -> Any:
            start = time.perf_counter()
            result = original(*args)
            kernel_times[name].append(time.perf_counter() - start)
            return result

        return run

    fused_kernels.forward = timed("fused forward kernel")  # type: ignore[assignment]
    fused_kernels.backward = timed("fused backward kernel")  # type: ignore[assignment]
    parts: dict[str, list[float]] = {
        name: [] for name in ("whole step", "forward", "loss", "zero_grad", "backward", "Adam step", "weight clip")
    }
    try:
        for step in range(warmup + steps):
            if step == warmup:
                for samples in kernel_times.values():
                    samples.clear()
            index = step % batches
            x = images[index * BATCH : (index + 1) * BATCH]
            y = labels[index * BATCH : (index + 1) * BATCH]
            marks = [time.perf_counter()]
            output = model(x)
            marks.append(time.perf_counter())
            loss = model.loss(output, y).total
            marks.append(time.perf_counter())
            optimizer.zero_grad()
            marks.append(time.perf_counter())
            loss.backward()
            marks.append(time.perf_counter())
            optimizer.step()
            marks.append(time.perf_counter())
            model.clip_weights(1.0)
            marks.append(time.perf_counter())
            if step >= warmup:
                parts["whole step"].append(marks[-1] - marks[0])
                for name, start, end in zip(list(parts)[1:], marks, marks[1:]):
                    parts[name].append(end - start)
    finally:
        fused_kernels.forward, fused_kernels.backward = originals.values()  # type: ignore[assignment]

    # floors: the same operations alone, on tensors of the same shapes
    x = images[:BATCH].contiguous()
    weight = model.fc1.weight.detach()
    grad_current = torch.randn(BATCH, hidden)
    fc1_floor = _timed_alone(lambda: torch.nn.functional.linear(x, weight, model.fc1.bias.detach()), steps)
    dw1_floor = _timed_alone(lambda: grad_current.t().mm(x), steps)
    adam_floor = _timed_alone(optimizer.step, steps)
    fused_adam = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, fused=True)
    fused_adam_floor = _timed_alone(fused_adam.step, steps)

    forward_kernel = _median_ms(kernel_times["fused forward kernel"])
    backward_kernel = _median_ms(kernel_times["fused backward kernel"])
    return [
        ("whole step", _median_ms(parts["whole step"]), ""),
        (f"forward: fc1 GEMM, fused forward kernel ({forward_kernel:.2f}), Python and autograd",
         _median_ms(parts["forward"]), f"fc1 GEMM {fc1_floor:.2f}"),
        ("loss", _median_ms(parts["loss"]), ""),
        ("`zero_grad`", _median_ms(parts["zero_grad"]), ""),
        (f"backward: fused backward kernel ({backward_kernel:.2f}), dW1 GEMM, db1, autograd",
         _median_ms(parts["backward"]), f"dW1 GEMM {dw1_floor:.2f}"),
        ("`torch.optim.Adam` step, its defaults (a for-loop over the parameters)", _median_ms(parts["Adam step"]),
         f"{adam_floor:.2f} alone; {fused_adam_floor:.2f} with `fused=True`"),
        ("weight clip", _median_ms(parts["weight clip"]), ""),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--hidden", type=int, default=512)
    args = parser.parse_args(argv)
    rows = profile(args.threads, args.warmup, args.steps, args.hidden)
    print("| part | in the step, ms | floor, ms |")
    print("| --- | --- | --- |")
    for name, milliseconds, floor in rows:
        print(f"| {name} | {milliseconds:.2f} | {floor} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
