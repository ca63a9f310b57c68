"""Benchmark the plasticity kernels: Numba vs the NumPy reference vs a torch matmul formulation.

    python benchmarks/bench_plasticity.py [--threads N] [--json PATH] [--repeats R] [--rules all]

Times one weight update (median of --repeats calls after a warm-up call, so
Numba's compilation is not counted) for the two layers of the 784-512-10
network at batch 128 and T = 25:

    fc1  784 -> 512   pre = the images (constant over time), post = hidden spikes
    fc2  512 -> 10    pre = hidden spikes,                    post = output spikes

on two kinds of spike data at the same mean rates (default hidden 10%, output 3%):

    network    spikes of the study's real network driven by MNIST test images, with its
               (randomly initialised) weights scaled until the layers fire at the target
               rates: the temporal structure of a trained net (a neuron either stays
               silent for an image or fires regularly), so most (sample, neuron) pairs
               are silent.  Falls back to synthetic images when no MNIST is found.
    bernoulli  independent spikes at the same rates: the worst case for the kernel's
               skipping of silent pairs (93% of pairs fire at least once in 25 steps).

NumPy's BLAS gets --threads too (through OPENBLAS_NUM_THREADS / MKL_NUM_THREADS,
set before numpy is imported).  On a machine shared with other busy processes,
Numba's default OpenMP layer with more than one thread can stall each parallel
region for a scheduler slice or more (libgomp's spinning workers get
descheduled); --threads 1 avoids that.  The header prints the threading layer
and the load average so a reader can judge.

Implementations: "numba" (`plasticity.hebbian_kernels`, float64 sums),
"numpy" (`plasticity.hebbian_reference`, float64), and for the covariance rule
"torch", the same update as dense float32 matmuls (counts^T x for fc1, centred
spikes^T spikes for fc2) plus add and clamp; "torch-cuda" too when CUDA is
available (synchronised).  Ratios > 1 mean Numba is faster.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def _preset_blas_threads(argv: list[str]) -> None:
    """NumPy's BLAS sizes its thread pool when numpy is imported, so give it --threads now
    (the reference's matmuls would otherwise use every core while Numba and torch use N)."""
    for index, arg in enumerate(argv):
        value = arg.split("=", 1)[1] if arg.startswith("--threads=") else None
        if arg == "--threads" and index + 1 < len(argv):
            value = argv[index + 1]
        if value is not None and value.isdigit():
            for name in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
                os.environ.setdefault(name, value)


if __name__ == "__main__":
    _preset_blas_threads(sys.argv[1:])

import torch  # noqa: E402  (first: Numba's OpenMP layer then shares torch's libgomp)
import numba  # noqa: E402
import numpy as np  # noqa: E402

from plasticity.hebbian import RULE_NAMES, PlasticityRule  # noqa: E402
from training.data import MnistDataError, load_mnist  # noqa: E402
from training.network import FeedForwardSNN, study_network_config  # noqa: E402
from training.presets import network_with  # noqa: E402
from training.runtime import configure_threads  # noqa: E402

ETA = 1e-5


def mnist_images(batch: int, data_dir: Path | None) -> tuple[np.ndarray, str]:
    """The first `batch` MNIST test images (B, 784), or synthetic ones when none are found."""
    candidates = [data_dir, None, REPO_ROOT.parent / "shared" / "data" / "mnist"]
    for folder in candidates:
        try:
            split = load_mnist("test", folder)
        except (MnistDataError, ValueError):
            continue
        return split.flat_images[:batch].numpy().copy(), "MNIST test images"
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(batch, 784)) * (rng.random((batch, 784)) < 0.19)
    return (pixels / 255.0).astype(np.float32), "synthetic images (no MNIST found)"


def network_spikes(
    images: np.ndarray, num_steps: int, hidden_rate: float, output_rate: float, seed: int
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Hidden (T, B, 512) and output (T, B, 10) spikes of the study's network, its weights
    scaled by bisection until the layers' mean rates hit the targets."""
    torch.manual_seed(seed)
    model = FeedForwardSNN(network_with(study_network_config(), {"num_steps": num_steps}))
    x = torch.from_numpy(images)
    w1 = model.fc1.weight.detach().clone()
    w2 = model.fc2.weight.detach().clone()

    def run(gain1: float, gain2: float):
        with torch.no_grad():
            model.fc1.weight.copy_(w1 * gain1)
            model.fc2.weight.copy_(w2 * gain2)
            return model(x)

    def bisect(rate_of: Callable[[float], float], target: float) -> float:
        low, high = 0.0, 64.0
        for _ in range(30):
            middle = 0.5 * (low + high)
            low, high = (middle, high) if rate_of(middle) < target else (low, middle)
        return 0.5 * (low + high)

    gain1 = bisect(lambda g: run(g, 1.0).hidden_spikes.mean().item(), hidden_rate)
    gain2 = bisect(lambda g: run(gain1, g).output_spikes.mean().item(), output_rate)
    output = run(gain1, gain2)
    return (
        output.hidden_spikes.numpy().copy(),
        output.output_spikes.numpy().copy(),
        {"fc1_gain": gain1, "fc2_gain": gain2},
    )


def bernoulli_spikes(
    shape_hidden: tuple[int, ...],
    shape_output: tuple[int, ...],
    hidden_rate: float,
    output_rate: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    hidden = (rng.random(shape_hidden) < hidden_rate).astype(np.float32)
    output = (rng.random(shape_output) < output_rate).astype(np.float32)
    return hidden, output


def torch_covariance_update(weight: torch.Tensor, pre: torch.Tensor, post: torch.Tensor, eta: float) -> None:
    """The covariance rule as dense float32 matmuls, then clamp to [-1, 1]."""
    num_steps, batch = post.shape[:2]
    if pre.dim() == 2:
        # sum_b (C_bi - <C_i>) x_bj: centred counts sum to zero over b, so x needs no centring
        counts = post.sum(dim=0)
        delta = (counts - counts.mean(dim=0)).T @ pre
    else:
        centred = post - post.mean(dim=1, keepdim=True)
        delta = centred.reshape(num_steps * batch, -1).T @ pre.reshape(num_steps * batch, -1)
    weight.add_(delta, alpha=eta / (num_steps * batch)).clamp_(-1.0, 1.0)


def median_ms(
    call: Callable[[], object], repeats: int, synchronize: Callable[[], None] | None = None
) -> dict[str, float]:
    call()  # warm-up: compilation, caches, allocator
    if synchronize:
        synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        if synchronize:
            synchronize()
        times.append(time.perf_counter() - start)
    return {"median_ms": 1e3 * statistics.median(times), "min_ms": 1e3 * min(times)}


def increment_error(result: np.ndarray, reference: np.ndarray, start: np.ndarray) -> float:
    """max |dW - dW_ref| / max |dW_ref| for one update from `start`."""
    reference_step = reference.astype(np.float64) - start
    scale = np.abs(reference_step).max()
    error = np.abs(result.astype(np.float64) - reference.astype(np.float64)).max()
    return float(error / scale) if scale > 0 else float(error)


def bench_layer(
    layer: str,
    pre: np.ndarray,
    post: np.ndarray,
    rules: list[str],
    repeats: int,
    rng: np.random.Generator,
) -> list[dict[str, Any]]:
    n_post, n_pre = post.shape[2], pre.shape[-1]
    start = rng.uniform(-0.05, 0.05, (n_post, n_pre)).astype(np.float32)
    rows = []
    for name in rules:
        row: dict[str, Any] = {"layer": layer, "rule": name}
        numba_rule = PlasticityRule(name, backend="numba")
        numpy_rule = PlasticityRule(name, backend="numpy")
        state = numba_rule.init_state(start)
        # accuracy: one update large enough to see, from the same start
        check_eta = 0.5
        fast, slow = start.copy(), start.copy()
        numba_rule.update(fast, pre, post, check_eta, state)
        numpy_rule.update(slow, pre, post, check_eta, state)
        row["numba_rel_error"] = increment_error(fast, slow, start)

        weight = start.copy()
        row["numba"] = median_ms(lambda: numba_rule.update(weight, pre, post, ETA, state), repeats)
        weight = start.copy()
        row["numpy"] = median_ms(
            lambda: numpy_rule.update(weight, pre, post, ETA, state), max(3, repeats // 2)
        )
        if name == "covariance":
            pre_t, post_t = torch.from_numpy(pre), torch.from_numpy(post)
            check = torch.from_numpy(start.copy())
            torch_covariance_update(check, pre_t, post_t, check_eta)
            row["torch_rel_error"] = increment_error(check.numpy(), slow, start)
            weight_t = torch.from_numpy(start.copy())
            row["torch"] = median_ms(lambda: torch_covariance_update(weight_t, pre_t, post_t, ETA), repeats)
            if torch.cuda.is_available():
                device = torch.device("cuda")
                pre_c, post_c = pre_t.to(device), post_t.to(device)
                weight_c = torch.from_numpy(start.copy()).to(device)
                row["torch-cuda"] = median_ms(
                    lambda: torch_covariance_update(weight_c, pre_c, post_c, ETA),
                    repeats,
                    synchronize=torch.cuda.synchronize,
                )
        rows.append(row)
    return rows


def activity_stats(images: np.ndarray, hidden: np.ndarray, output: np.ndarray) -> dict[str, float]:
    return {
        "hidden_rate": float(hidden.mean()),
        "output_rate": float(output.mean()),
        "hidden_pairs_firing": float((hidden.sum(axis=0) > 0).mean()),
        "output_pairs_firing": float((output.sum(axis=0) > 0).mean()),
        "nonzero_pixels": float((images > 0).mean()),
    }


def format_table(rows: list[dict[str, Any]], implementations: list[str]) -> str:
    """One line per (spikes, layer, rule): 'median (min)' ms per implementation, ratios of medians."""
    header = f"{'spikes':<10}{'layer':<14}{'rule':<18}" + "".join(f"{name:>18}" for name in implementations)
    header += f"{'numpy/numba':>12}{'torch/numba':>12}{'err numba':>10}{'err torch':>10}"
    lines = [header, "-" * len(header)]
    for row in rows:
        cells = "".join(
            (f"{row[name]['median_ms']:>9.2f} ({row[name]['min_ms']:.2f})" if name in row else "-").rjust(18)
            for name in implementations
        )
        numba_ms = row["numba"]["median_ms"]
        ratio_numpy = f"{row['numpy']['median_ms'] / numba_ms:>12.1f}"
        ratio_torch = f"{row['torch']['median_ms'] / numba_ms:>12.2f}" if "torch" in row else f"{'-':>12}"
        err_numba = f"{row['numba_rel_error']:>10.0e}"
        err_torch = f"{row['torch_rel_error']:>10.0e}" if "torch_rel_error" in row else f"{'-':>10}"
        label = f"{row['spikes']:<10}{row['layer']:<14}{row['rule']:<18}"
        lines.append(label + cells + ratio_numpy + ratio_torch + err_numba + err_torch)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--threads", type=int, default=None, help="torch and Numba threads (default: all cores)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--repeats", type=int, default=15, help="timed calls per measurement (default: 15)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--hidden-rate", type=float, default=0.10)
    parser.add_argument("--output-rate", type=float, default=0.03)
    parser.add_argument("--rules", choices=("covariance", "all"), default="covariance")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="MNIST folder (default: $SNN_MNIST_DATA, then ../shared/data/mnist)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    threads = configure_threads(args.threads)
    rules = ["covariance"] if args.rules == "covariance" else list(RULE_NAMES)
    images, image_source = mnist_images(args.batch, args.data_dir)
    rates = (args.hidden_rate, args.output_rate)
    hidden_net, output_net, gains = network_spikes(images, args.steps, *rates, args.seed)
    hidden_iid, output_iid = bernoulli_spikes(hidden_net.shape, output_net.shape, *rates, args.seed)

    rng = np.random.default_rng(args.seed)
    rows = []
    data: dict[str, Any] = {}
    for label, hidden, output in (("network", hidden_net, output_net), ("bernoulli", hidden_iid, output_iid)):
        data[label] = activity_stats(images, hidden, output)
        for layer, pre, post in (("fc1 784->512", images, hidden), ("fc2 512->10", hidden, output)):
            for row in bench_layer(layer, pre, post, rules, args.repeats, rng):
                rows.append({"spikes": label, **row})

    implementations = ["numba", "numpy", "torch"] + (["torch-cuda"] if torch.cuda.is_available() else [])
    environment = {
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "threads": threads,
        "numba_threading_layer": numba.threading_layer(),
        "numba": numba.__version__,
        "numpy": np.__version__,
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    print(f"plasticity update, batch {args.batch}, T {args.steps}, eta {ETA:g}; {threads} thread(s), "
          f"{environment['cpus']} CPUs, numba layer {environment['numba_threading_layer']}, "
          f"load average {environment['load_average']}")
    print(
        f"pre of fc1: {image_source}; network spikes: the study's network with weights scaled "
        f"x{gains['fc1_gain']:.3g} (fc1), x{gains['fc2_gain']:.3g} (fc2) to fire at the target rates"
    )
    for label, stats in data.items():
        print(
            f"  {label:<10} hidden rate {stats['hidden_rate']:.3f} "
            f"({stats['hidden_pairs_firing']:.0%} of (sample, neuron) pairs fire), "
            f"output rate {stats['output_rate']:.3f} ({stats['output_pairs_firing']:.0%})"
        )
    print("ms per update, median (min) of --repeats calls; ratios of medians, > 1: numba faster;")
    print("err: max |dW - dW_numpy| / max |dW_numpy| for one update")
    print(format_table(rows, implementations))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "config": {
                key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()
            },
            "eta": ETA,
            "environment": environment,
            "images": image_source,
            "gains": gains,
            "activity": data,
            "results": rows,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
