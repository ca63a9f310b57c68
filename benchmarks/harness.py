"""Run every benchmark variant in its own fresh process, interleaved over rounds.

    run_benchmark(...)  ->  results (JSON-ready)     format_results(results) -> text

Rules (a user comparing libraries sees the same):
  * one process per variant and round (`benchmarks.worker`), started with this
    process's environment unchanged: no environment variable or setting is imposed
    on any library; every variant uses the same thread count, set the way a user
    sets it (`torch.set_num_threads`, plus `numba.set_num_threads` for ours);
  * rounds interleave the variants (round 1: a, b, c, ...; round 2: a, b, c, ...), so
    a machine that gets busier slows all of them alike; each round's figure is the
    median over its timed steps, and a variant's figure is the median over rounds,
    with the range of the round figures as its spread;
  * the cases are the study's network at its size and with each dimension grown, and the
    other networks of `NETWORKS` (tutorial 5, rate-coded, three layers); the peers
    written for the study's network alone (SpikingJelly, Norse, snnTorch with fc1
    hoisted) run on the study's cases only;
  * ratios are given to snnTorch as its tutorials write it *and* to the fastest peer
    (the fastest variant that is not ours, the torch.compile'd ones included), per case;
  * the compiled variants' compile seconds are reported on their own and kept out of
    the step times: the warm-up steps' wall time above warm-up x the steady median,
    plus the first inference passes' above as many steady passes (`benchmarks.worker`);
    a compiled variant whose compilation fails is left out with its one-line error;
  * the snnTorch-semantics variants must give the same initial loss (checked).
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.variants import MNIST_VARIANTS, OPEN_NEUROMORPHIC_VARIANTS, Variant
from training.errors import SnnMnistError
from training.network import NetworkConfig, study_network_config
from training.presets import network_with


class BenchmarkWorkerError(SnnMnistError):
    """A variant's worker process failed; its last error line is in the message."""


# The networks of the issue "One neuron, one network, one trainer", as settings on top of the
# study's (`training.presets.network_with`); the `snn-mnist train` flags of each are in the README.
NETWORKS: dict[str, dict[str, Any]] = {
    # 784-512-10, beta 0.9, subtract reset, fast sigmoid 25, constant current, count loss + 1e-4 x activity
    "study": {},
    # snnTorch tutorial 5: 784-1000-10, beta 0.95, atan(2), membrane loss sum_t CE(U_t)
    "tutorial5": {"layer_sizes": (784, 1000, 10), "beta": 0.95, "surrogate": "atan", "loss": "membrane",
                  "activity_penalty": 0.0},
    # rate-coded input, zero reset, learnable scalar beta, atan(2), membrane loss
    "rate": {"layer_sizes": (784, 1000, 10), "beta": 0.95, "learn_beta": True, "reset_mechanism": "zero",
             "input_coding": "rate", "surrogate": "atan", "loss": "membrane", "activity_penalty": 0.0},
    # three layers, a learnable beta per neuron in every layer, count loss without penalty
    "three": {"layer_sizes": (784, 256, 128, 10), "per_neuron": "beta", "learn_beta": True, "activity_penalty": 0.0},
}


@dataclass(frozen=True)
class MnistCase:
    """A network, as settings on top of the study's (`training.presets.network_with`), and the
    batch it trains on.  study_network: the study's network at some size, where the peers
    written for it alone (`Variant.study_only`) run too."""

    settings: Mapping[str, Any]
    batch: int = 128
    study_network: bool = True

    @property
    def network(self) -> NetworkConfig:
        return network_with(study_network_config(), self.settings)


# The study's network at its size and with each dimension grown, then the other networks.
MNIST_CASES: dict[str, MnistCase] = {
    "study": MnistCase(NETWORKS["study"]),
    "hidden_2048": MnistCase({"hidden_size": 2048}),
    "batch_512": MnistCase(NETWORKS["study"], batch=512),
    "steps_100": MnistCase({"num_steps": 100}),
    **{name: MnistCase(NETWORKS[name], study_network=False) for name in ("tutorial5", "rate", "three")},
}
OPEN_NEUROMORPHIC_CASES: dict[str, bool] = {"lif": False, "linear_lif": True}  # name -> with Linear(N, N)
OPEN_NEUROMORPHIC_SIZE = {"steps": 500, "batch": 16, "neurons": 4096}
INITIAL_LOSS_TOLERANCE = 1e-5
WORKER_TIMEOUT_S = 900
COMPILED_WORKER_TIMEOUT_S = 3600  # torch.compile unrolls the T-step loop: minutes per (re)compilation
MNIST_KEYS = ("train_step_ms", "inference_ms_per_1000", "compile_s")
OPEN_NEUROMORPHIC_KEYS = ("forward_ms", "backward_ms", "forward_backward_ms")


def installed(module: str | None) -> bool:
    return module is None or importlib.util.find_spec(module) is not None


def available_variants(table: dict[str, Variant], wanted: tuple[str, ...] | None) -> list[str]:
    return [name for name, variant in table.items() if (wanted is None or name in wanted) and installed(variant.module)]


def write_data(train_images: np.ndarray, train_labels: np.ndarray, test_images: np.ndarray, folder: Path) -> Path:
    path = folder / "bench_data.npz"
    np.savez(path, train_images=train_images, train_labels=train_labels, test_images=test_images)
    return path


def run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One fresh `python -m benchmarks.worker` with this process's environment, untouched.
    A compiled variant whose compilation fails or runs out of time comes back as
    {"error": "one line"}."""
    compiled = spec["workload"] == "mnist" and MNIST_VARIANTS[spec["variant"]].compiled
    timeout = COMPILED_WORKER_TIMEOUT_S if compiled else WORKER_TIMEOUT_S
    try:
        completed = subprocess.run(
            [sys.executable, "-m", "benchmarks.worker", json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(os.environ),
            check=False,  # a failure is reported below, with the worker's last error line
        )
    except subprocess.TimeoutExpired:
        if not compiled:
            raise
        return {"variant": spec["variant"], "error": f"not done after {timeout} s (compiling and timing)"}
    if completed.returncode != 0:
        last = (completed.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise BenchmarkWorkerError(
            f"the benchmark worker for {spec['workload']}/{spec['variant']} failed: {last}. "
            f"Fix: leave that variant out with --variants, or run python -m benchmarks.worker "
            f"'{json.dumps(spec)}' to see the whole error"
        )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _summary(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "spread": [min(values), max(values)], "rounds": values}


def _aggregate(rounds: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    for key in keys:
        if rounds[0].get(key) is None:  # compile_s of an eager variant
            entry[key] = None
            continue
        summary = _summary([float(r[key]) for r in rounds])
        entry[key] = summary["median"]
        entry[f"{key}_spread"] = summary["spread"]
        entry[f"{key}_rounds"] = summary["rounds"]
    entry["peak_rss_mb"] = max(float(r["peak_rss_mb"]) for r in rounds)
    entry["peak_rss_increase_mb"] = max(float(r["peak_rss_increase_mb"]) for r in rounds)
    if rounds[0].get("initial_loss") is not None:
        entry["initial_loss"] = float(rounds[0]["initial_loss"])
    if rounds[0].get("compute_path") is not None:
        entry["compute_path"] = rounds[0]["compute_path"]
    return entry


def _add_ratios(variants: dict[str, dict[str, Any]], table: dict[str, Variant], keys: tuple[str, ...]) -> dict[str, Any]:
    """{key}_vs_snntorch and {key}_vs_fastest_peer for each key; returns the fastest peers.
    A peer is any variant that is not ours, the compiled ones included."""
    fastest: dict[str, str] = {}
    peers = [name for name in variants if not table[name].ours]
    for key in keys:
        if peers:
            fastest[key] = min(peers, key=lambda name: variants[name][key])
        for entry in variants.values():
            entry[f"{key}_vs_snntorch"] = (
                variants["snntorch"][key] / entry[key] if "snntorch" in variants else None
            )
            entry[f"{key}_vs_fastest_peer"] = variants[fastest[key]][key] / entry[key] if key in fastest else None
    return fastest


def _cases(mnist_cases: Iterable[str] | Mapping[str, MnistCase]) -> dict[str, MnistCase]:
    """Case names (of MNIST_CASES), or cases of one's own by name."""
    if isinstance(mnist_cases, Mapping):
        return dict(mnist_cases)
    return {name: MNIST_CASES[name] for name in mnist_cases}


def run_benchmark(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    threads: int,
    rounds: int = 2,
    steps: int = 20,
    warmup: int = 5,
    inference_passes: int = 5,
    mnist_cases: Iterable[str] | Mapping[str, MnistCase] = tuple(MNIST_CASES),
    open_neuromorphic_cases: tuple[str, ...] = tuple(OPEN_NEUROMORPHIC_CASES),
    variants: tuple[str, ...] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Time every installed variant on every case; see the module docstring for the rules."""
    cases = _cases(mnist_cases)
    mnist_names = available_variants(MNIST_VARIANTS, variants)
    neuromorphic_names = available_variants(OPEN_NEUROMORPHIC_VARIANTS, variants)
    missing = [
        name
        for name, variant in MNIST_VARIANTS.items()
        if not installed(variant.module) and (variants is None or name in variants)
    ]
    if missing:
        log(f"not installed, skipped: {', '.join(missing)} (pip install -e \".[bench]\")")
    case_variants = {
        case: [name for name in mnist_names if spec.study_network or not MNIST_VARIANTS[name].study_only]
        for case, spec in cases.items()
    }
    jobs: list[tuple[str, str, str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(prefix="snn-bench-") as folder:
        data = write_data(train_images, train_labels, test_images, Path(folder))
        for case, mnist_case in cases.items():
            for name in case_variants[case]:
                spec = {
                    "workload": "mnist", "variant": name, "threads": threads, "network": dict(mnist_case.settings),
                    "batch": mnist_case.batch, "data": str(data), "warmup": warmup, "steps": steps,
                    "inference_passes": inference_passes,
                }
                jobs.append(("mnist", case, name, spec))
        for case in open_neuromorphic_cases:
            for name in neuromorphic_names:
                spec = {
                    "workload": "open_neuromorphic", "variant": name, "threads": threads,
                    "with_linear": OPEN_NEUROMORPHIC_CASES[case], "size": OPEN_NEUROMORPHIC_SIZE,
                    # Linear(4096, 4096) over 8,000 rows is seconds of GEMM per pass
                    "warmup": 1, "steps": 3 if OPEN_NEUROMORPHIC_CASES[case] else max(3, steps // 4),
                }
                jobs.append(("open_neuromorphic", case, name, spec))
        measured: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        failed: dict[tuple[str, str, str], str] = {}
        for round_index in range(rounds):
            for number, (workload, case, name, spec) in enumerate(jobs, 1):
                where = f"round {round_index + 1}/{rounds}, {number}/{len(jobs)}: {workload} {case} {name}"
                if (workload, case, name) in failed:
                    continue
                result = run_worker(spec)
                if "error" in result:
                    failed[(workload, case, name)] = result["error"]
                    log(f"{where}: failed, left out: {result['error']}")
                    continue
                measured.setdefault((workload, case, name), []).append(result)
                figure = result.get("train_step_ms", result.get("forward_backward_ms"))
                compiling = f", compile {result['compile_s']:.1f} s" if result.get("compile_s") is not None else ""
                log(f"{where}: {figure:.2f} ms{compiling}")

    results: dict[str, Any] = {
        "threads": threads,
        "rounds": rounds,
        "timed_steps_per_round": steps,
        "environment": {key: value for key, value in os.environ.items() if key.startswith(("OMP_", "MKL_", "KMP_", "NUMBA_", "ATEN_"))},
        "mnist": {},
        "open_neuromorphic": {},
    }
    for case, mnist_case in cases.items():
        config = mnist_case.network
        names = [name for name in case_variants[case] if ("mnist", case, name) not in failed]
        entries = {name: _aggregate(measured[("mnist", case, name)], MNIST_KEYS) for name in names}
        fastest = _add_ratios(entries, MNIST_VARIANTS, MNIST_KEYS[:2])
        losses = {name: entries[name]["initial_loss"] for name in entries if MNIST_VARIANTS[name].snntorch_maths}
        reference = losses.get("snntorch", next(iter(losses.values()), None))
        results["mnist"][case] = {
            "size": {"batch": mnist_case.batch, "steps": config.num_steps, "layers": list(config.layer_sizes)},
            "network": config.describe(),
            "variants": entries,
            "failed": {name: error for (_, failed_case, name), error in failed.items() if failed_case == case},
            "fastest_peer": fastest,
            "same_initial_loss": reference is not None
            and all(abs(loss - reference) <= INITIAL_LOSS_TOLERANCE for loss in losses.values()),
        }
    for case in open_neuromorphic_cases:
        names = [name for name in neuromorphic_names if ("open_neuromorphic", case, name) not in failed]
        entries = {name: _aggregate(measured[("open_neuromorphic", case, name)], OPEN_NEUROMORPHIC_KEYS) for name in names}
        fastest = _add_ratios(entries, OPEN_NEUROMORPHIC_VARIANTS, OPEN_NEUROMORPHIC_KEYS)
        results["open_neuromorphic"][case] = {"size": OPEN_NEUROMORPHIC_SIZE, "with_linear": OPEN_NEUROMORPHIC_CASES[case],
                                              "variants": entries, "fastest_peer": fastest}
    if "study" in results["mnist"]:
        results["variants"] = results["mnist"]["study"]["variants"]  # the study's size, at the top level
    return results


def _ratio(value: float | None) -> str:
    return "    -" if value is None else f"{value:5.1f}x"


def _seconds(entry: dict[str, Any]) -> str:
    """The compile (first-call) seconds, or '-' in results that predate them."""
    return "-" if entry.get("compile_s") is None else f"{entry['compile_s']:.1f}"


def _label(name: str, entry: dict[str, Any]) -> str:
    """The variant's name, with the path ours took: 'numba [fused]'."""
    return f"{name} [{entry['compute_path']}]" if entry.get("compute_path") else name


def _case_title(case: str, block: dict[str, Any]) -> str:
    """'study: 784-512-10, B 128 T 25' (results written before the four networks give H, not the layers)."""
    size = block["size"]
    layers = "-".join(map(str, size["layers"])) if "layers" in size else f"784-{size['hidden']}-10"
    return f"{case}: {layers}, B {size['batch']} T {size['steps']}"


def format_results(results: dict[str, Any]) -> str:
    lines = [f"threads {results['threads']}, {results['rounds']} rounds, each variant in its own process; "
             "median ms (range over rounds); ratios to snnTorch as written and to the fastest peer (compiled ones included); "
             "compile s (compiled variants): the warm-up steps' and first inference passes' time above the steady figures"]
    for case, block in results["mnist"].items():
        lines.append("")
        lines.append(f"MNIST {_case_title(case, block)}, training step and inference "
                     f"(same initial loss: {'yes' if block['same_initial_loss'] else 'NO'})")
        if block.get("network"):
            lines.append(f"  {block['network']}")
        lines.append(f"{'variant':<27} {'train step':>22} {'x snnTorch':>10} {'x fastest':>9} {'infer /1000':>22} "
                     f"{'x fastest':>9} {'compile s':>9} {'peak MB':>8}")
        for name, entry in block["variants"].items():
            low, high = entry["train_step_ms_spread"]
            ilow, ihigh = entry["inference_ms_per_1000_spread"]
            lines.append(
                f"{_label(name, entry):<27} {entry['train_step_ms']:>8.2f} ({low:6.2f}-{high:6.2f}) {_ratio(entry['train_step_ms_vs_snntorch']):>10} "
                f"{_ratio(entry['train_step_ms_vs_fastest_peer']):>9} {entry['inference_ms_per_1000']:>8.1f} ({ilow:6.1f}-{ihigh:6.1f}) "
                f"{_ratio(entry['inference_ms_per_1000_vs_fastest_peer']):>9} {_seconds(entry):>9} {entry['peak_rss_increase_mb']:>8.0f}"
            )
        for name, error in block.get("failed", {}).items():
            lines.append(f"{name:<27} failed, left out: {error}")
        lines.append(f"fastest peer: train {block['fastest_peer'].get('train_step_ms')}, inference {block['fastest_peer'].get('inference_ms_per_1000')}")
    for block in results["open_neuromorphic"].values():
        size = block["size"]
        lines.append("")
        lines.append(f"Open Neuromorphic benchmark, {'Linear(N, N) + ' if block['with_linear'] else ''}LIF, "
                     f"T {size['steps']} B {size['batch']} N {size['neurons']}")
        lines.append(f"{'variant':<27} {'forward':>9} {'backward':>9} {'fwd+bwd':>9} {'x snnTorch':>10} {'x fastest':>9} {'peak MB':>8}")
        for name, entry in block["variants"].items():
            lines.append(
                f"{name:<27} {entry['forward_ms']:>9.1f} {entry['backward_ms']:>9.1f} {entry['forward_backward_ms']:>9.1f} "
                f"{_ratio(entry['forward_backward_ms_vs_snntorch']):>10} {_ratio(entry['forward_backward_ms_vs_fastest_peer']):>9} "
                f"{entry['peak_rss_increase_mb']:>8.0f}"
            )
    return "\n".join(lines)


def format_markdown(results: dict[str, Any]) -> str:
    """The tables of docs/performance.md, from a results JSON."""
    lines: list[str] = []
    for case, block in results["mnist"].items():
        lines += [
            f"**MNIST {_case_title(case, block)}** "
            f"(same initial loss for the snnTorch-semantics variants: {'yes' if block['same_initial_loss'] else 'no'})",
            "",
            "| variant | train step, ms (range) | x snnTorch | x fastest peer | inference /1000, ms (range) | x fastest peer | compile, s | peak MB |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for name, entry in block["variants"].items():
            low, high = entry["train_step_ms_spread"]
            ilow, ihigh = entry["inference_ms_per_1000_spread"]
            lines.append(
                f"| {_label(name, entry)} | {entry['train_step_ms']:.2f} ({low:.2f}-{high:.2f}) | {_ratio(entry['train_step_ms_vs_snntorch']).strip()} "
                f"| {_ratio(entry['train_step_ms_vs_fastest_peer']).strip()} | {entry['inference_ms_per_1000']:.1f} ({ilow:.1f}-{ihigh:.1f}) "
                f"| {_ratio(entry['inference_ms_per_1000_vs_fastest_peer']).strip()} | {_seconds(entry)} | {entry['peak_rss_increase_mb']:.0f} |"
            )
        for name, error in block.get("failed", {}).items():
            lines.append(f"| {name} | failed: {error} | | | | | | |")
        lines.append("")
    for block in results["open_neuromorphic"].values():
        size = block["size"]
        lines += [
            f"**Open Neuromorphic, {'Linear(N, N) + ' if block['with_linear'] else ''}LIF, T {size['steps']} B {size['batch']} N {size['neurons']}**",
            "",
            "| variant | forward, ms | backward, ms | forward + backward, ms (range) | x snnTorch | x fastest peer | peak MB |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for name, entry in block["variants"].items():
            low, high = entry["forward_backward_ms_spread"]
            lines.append(
                f"| {name} | {entry['forward_ms']:.1f} | {entry['backward_ms']:.1f} | {entry['forward_backward_ms']:.1f} ({low:.1f}-{high:.1f}) "
                f"| {_ratio(entry['forward_backward_ms_vs_snntorch']).strip()} | {_ratio(entry['forward_backward_ms_vs_fastest_peer']).strip()} "
                f"| {entry['peak_rss_increase_mb']:.0f} |"
            )
        lines.append("")
    return "\n".join(lines)


TABLES_BEGIN, TABLES_END = "<!-- bench-tables:begin -->", "<!-- bench-tables:end -->"


def render_tables(results_path: Path, page: Path) -> None:
    """Rewrite the tables between the bench-tables markers of `page` from a results JSON."""
    text = page.read_text(encoding="utf-8")
    head, _, rest = text.partition(TABLES_BEGIN)
    _, _, tail = rest.partition(TABLES_END)
    tables = format_markdown(json.loads(results_path.read_text(encoding="utf-8")))
    page.write_text(f"{head}{TABLES_BEGIN}\n{tables}\n{TABLES_END}{tail}", encoding="utf-8")


if __name__ == "__main__":  # python -m benchmarks.harness RESULTS.json PAGE.md
    render_tables(Path(sys.argv[1]), Path(sys.argv[2]))
