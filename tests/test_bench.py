"""The benchmark's machinery (not its speed: speed goals are checked by running the
benchmark on an idle machine, never by a timed test) and the one-thread-pool fact."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import numpy as np
import pytest

from benchmarks.harness import MNIST_CASES, NETWORKS, MnistCase, run_benchmark
from benchmarks.variants import MNIST_VARIANTS, mnist_runner
from training.data import MnistSplit
from training.network import NetworkConfig

# The four networks at a size a test can afford: what each network is stays (input, reset,
# beta, surrogate, loss), the layers and steps shrink.
TINY = {
    "study": {"hidden_size": 32, "num_steps": 5},
    "tutorial5": {"layer_sizes": (784, 32, 10), "num_steps": 5},
    "rate": {"layer_sizes": (784, 32, 10), "num_steps": 5},
    "three": {"layer_sizes": (784, 16, 8, 10), "num_steps": 5},
}


def network(name: str, **settings: object) -> NetworkConfig:
    """NETWORKS[name] with other settings on top, as the bench builds it."""
    return MnistCase({**NETWORKS[name], **settings}).network


def test_bench_runs_variants_in_processes_and_reports_ratios(mnist_test: MnistSplit) -> None:
    images = mnist_test.flat_images[:1024].numpy()
    labels = mnist_test.labels[:1024].numpy()
    lines: list[str] = []
    results = run_benchmark(
        images, labels, images[:1000], threads=1, rounds=2, steps=3, warmup=1, inference_passes=1,
        mnist_cases=("study",), open_neuromorphic_cases=(), variants=("snntorch", "torch_loop", "numba"),
        log=lines.append,
    )
    block = results["mnist"]["study"]
    assert list(block["variants"]) == ["snntorch", "torch_loop", "numba"]
    assert block["same_initial_loss"] is True
    assert results["variants"] is block["variants"]  # the study's size at the top level
    for entry in block["variants"].values():
        assert len(entry["train_step_ms_rounds"]) == 2
        low, high = entry["train_step_ms_spread"]
        assert low <= entry["train_step_ms"] <= high
        assert entry["peak_rss_mb"] > 0
        fastest = block["variants"][block["fastest_peer"]["train_step_ms"]]["train_step_ms"]
        assert entry["train_step_ms_vs_fastest_peer"] == pytest.approx(fastest / entry["train_step_ms"])
    assert block["fastest_peer"]["train_step_ms"] in ("snntorch", "torch_loop")  # a peer, never ours
    assert len([line for line in lines if line.startswith("round ")]) == 6  # a line per worker: 3 variants x 2 rounds


def test_snntorch_semantics_variants_start_from_the_same_loss(mnist_test: MnistSplit) -> None:
    """In one process here (the benchmark checks the same across processes), at the study's size."""
    batches = [(mnist_test.flat_images[:64], mnist_test.labels[:64])]
    losses = {
        name: mnist_runner(name, network("study"), batches, mnist_test.flat_images[:250]).initial_loss
        for name in ("snntorch", "snntorch_hoisted", "torch_loop", "torch", "numba_exact", "numba")
    }
    reference = losses["snntorch"]
    assert reference is not None
    for name, loss in losses.items():
        assert loss == pytest.approx(reference, abs=1e-5), name


@pytest.mark.parametrize("name", list(NETWORKS))
def test_every_eager_variant_trains_each_network_from_the_same_loss(name: str, mnist_test: MnistSplit) -> None:
    """Every variant but the compiled ones (the same modules; one test below compiles) and the
    study-only peers, on each network made small: two training steps, an inference pass, and
    the same initial loss (rate-coded input: the same draws from seed 0)."""
    config = network(name, **TINY[name])
    batches = [(mnist_test.flat_images[:32], mnist_test.labels[:32]), (mnist_test.flat_images[32:64], mnist_test.labels[32:64])]
    losses, paths = {}, {}
    for variant in ("snntorch", "torch_loop", "torch", "numba_exact", "numba"):
        runner = mnist_runner(variant, config, batches, mnist_test.flat_images[:250])
        assert runner.train_step is not None and runner.infer is not None
        runner.train_step(0)
        runner.train_step(1)
        runner.infer()
        losses[variant], paths[variant] = runner.initial_loss, runner.compute_path
    assert all(loss == pytest.approx(losses["snntorch"], abs=1e-5) for loss in losses.values()), losses
    assert paths["snntorch"] is None and paths["torch"] == paths["numba_exact"] == "exact"
    assert paths["numba"] == ("fused" if name in ("study", "tutorial5") else "fast")


def test_the_networks_are_the_issues_four() -> None:
    study, tutorial5, rate, three = (MNIST_CASES[name].network for name in ("study", "tutorial5", "rate", "three"))
    assert study.describe() == (
        "784-512-10, 25 steps, current input, count loss + 0.0001 x activity; every layer: beta 0.9, threshold 1, "
        "subtract reset, reset_delay True, graded 1, fast_sigmoid(25)"
    )
    assert tutorial5.describe() == (
        "784-1000-10, 25 steps, current input, membrane loss; every layer: beta 0.95, threshold 1, "
        "subtract reset, reset_delay True, graded 1, atan(2)"
    )
    assert rate.describe() == (
        "784-1000-10, 25 steps, rate input, membrane loss; every layer: beta 0.95, threshold 1, "
        "zero reset, reset_delay True, graded 1, atan(2), learnt beta"
    )
    assert three.layer_sizes == (784, 256, 128, 10) and three.loss == "count" and three.activity_penalty == 0
    assert all(neuron.learn_beta and len(neuron.beta) == size and set(neuron.beta) == {0.9}
               for neuron, size in zip(three.neurons, (256, 128, 10)))
    assert not any(MNIST_CASES[name].study_network for name in ("tutorial5", "rate", "three"))


def test_compiled_variants_run_and_report_their_compile_time(mnist_test: MnistSplit) -> None:
    """One small case (compiling takes tens of seconds): both torch.compile'd peers run in their
    workers, start from snnTorch's loss, report compile seconds, and are peers for the ratios."""
    images = mnist_test.flat_images[:1024].numpy()
    labels = mnist_test.labels[:1024].numpy()
    cases = {"three": MnistCase({**NETWORKS["three"], **TINY["three"], "num_steps": 3}, batch=32, study_network=False)}
    results = run_benchmark(
        images, labels, images[:1000], threads=1, rounds=1, steps=3, warmup=3, inference_passes=1,
        mnist_cases=cases, open_neuromorphic_cases=(),
        variants=("snntorch", "snntorch_compiled", "torch_loop_compiled", "numba"), log=lambda line: None,
    )
    block = results["mnist"]["three"]
    assert block["failed"] == {}, block["failed"]
    assert list(block["variants"]) == ["snntorch", "snntorch_compiled", "torch_loop_compiled", "numba"]
    assert block["same_initial_loss"] is True
    for name in ("snntorch_compiled", "torch_loop_compiled"):
        assert block["variants"][name]["compile_s"] > 0
    assert block["variants"]["snntorch"]["compile_s"] is None
    assert block["fastest_peer"]["train_step_ms"] != "numba"


def test_ratios_are_to_the_fastest_peer_compiled_ones_included(monkeypatch: pytest.MonkeyPatch) -> None:
    """With made-up worker results: compiled snnTorch the fastest peer, the compiled plain loop
    failing (left out with its one-line error, not run again in the next round)."""
    import benchmarks.harness as harness

    figures = {"snntorch": 60.0, "snntorch_hoisted": 20.0, "snntorch_compiled": 8.0, "torch_loop": 18.0, "numba": 4.0}
    calls: list[str] = []

    def fake_worker(spec: dict) -> dict:
        calls.append(spec["variant"])
        if spec["variant"] == "torch_loop_compiled":
            return {"variant": "torch_loop_compiled", "error": "BackendCompilerFailed: backend='inductor' raised"}
        step = figures[spec["variant"]]
        return {"variant": spec["variant"], "train_step_ms": step, "inference_ms_per_1000": 10 * step,
                "compile_s": 30.0 if MNIST_VARIANTS[spec["variant"]].compiled else None, "initial_loss": 2.5,
                "compute_path": "fused" if spec["variant"] == "numba" else None, "peak_rss_mb": 500.0,
                "peak_rss_increase_mb": 50.0}

    monkeypatch.setattr(harness, "run_worker", fake_worker)
    lines: list[str] = []
    images = np.zeros((1024, 784), np.float32)
    results = run_benchmark(
        images, np.zeros(1024, np.int64), images[:1000], threads=1, rounds=2, steps=3,
        mnist_cases=("study",), open_neuromorphic_cases=(), variants=(*figures, "torch_loop_compiled"), log=lines.append,
    )
    block = results["mnist"]["study"]
    assert calls.count("torch_loop_compiled") == 1
    assert block["failed"] == {"torch_loop_compiled": "BackendCompilerFailed: backend='inductor' raised"}
    assert "torch_loop_compiled" not in block["variants"]
    assert block["fastest_peer"] == {"train_step_ms": "snntorch_compiled", "inference_ms_per_1000": "snntorch_compiled"}
    numba = block["variants"]["numba"]
    assert numba["train_step_ms_vs_fastest_peer"] == pytest.approx(2.0)
    assert numba["train_step_ms_vs_snntorch"] == pytest.approx(15.0)
    assert numba["compute_path"] == "fused"
    assert block["variants"]["snntorch_compiled"]["compile_s"] == 30.0 and numba["compile_s"] is None
    text = harness.format_results(results)
    assert "numba [fused]" in text and "torch_loop_compiled         failed, left out: BackendCompilerFailed" in text
    assert "| torch_loop_compiled | failed: BackendCompilerFailed" in harness.format_markdown(results)


def test_a_failing_compile_is_one_line_and_the_worker_goes_on(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    import torch

    from benchmarks import worker
    from benchmarks.harness import write_data

    def failing_compile(model, **options):
        def compiled(*args):
            raise RuntimeError("inductor could not find a C++ compiler\nthe rest of a long report")

        return compiled

    monkeypatch.setattr(torch, "compile", failing_compile)
    images = np.random.default_rng(0).random((64, 784), dtype=np.float32)
    data = write_data(images, np.zeros(64, np.int64), images[:10], tmp_path)
    spec = {"workload": "mnist", "variant": "torch_loop_compiled", "threads": 1,
            "network": {**NETWORKS["study"], **TINY["study"]}, "batch": 32, "data": str(data), "warmup": 1,
            "steps": 3, "inference_passes": 1}
    assert worker.main([json.dumps(spec)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result == {"variant": "torch_loop_compiled", "error": "RuntimeError: inductor could not find a C++ compiler"}


def test_a_compiled_worker_out_of_time_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import benchmarks.harness as harness

    def out_of_time(command: list[str], **options: object) -> None:
        raise subprocess.TimeoutExpired(command, options["timeout"])

    monkeypatch.setattr(harness.subprocess, "run", out_of_time)
    spec = {"workload": "mnist", "variant": "snntorch_compiled", "threads": 1, "network": {}, "batch": 128,
            "data": "bench_data.npz", "warmup": 1, "steps": 3, "inference_passes": 1}
    assert harness.run_worker(spec) == {
        "variant": "snntorch_compiled", "error": f"not done after {harness.COMPILED_WORKER_TIMEOUT_S} s (compiling and timing)"
    }
    with pytest.raises(subprocess.TimeoutExpired):  # an eager variant that hangs is a fault, not a result
        harness.run_worker({**spec, "variant": "snntorch"})


def test_sizes_selects_the_four_networks_alone() -> None:
    from experiments.bench import _choices

    assert _choices("study,tutorial5,rate,three", tuple(MNIST_CASES), "--sizes") == ("study", "tutorial5", "rate", "three")


@pytest.mark.parametrize("name", list(NETWORKS))
def test_snntorch_alone_runs_each_network_and_imports_nothing_of_ours(name: str, mnist_dir) -> None:
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "snntorch_alone.py"
    imports = [line for line in script.read_text().splitlines() if line.startswith(("import ", "from "))]
    assert not any(word in line for line in imports for word in ("benchmarks", "training", "lif_core", "experiments"))
    completed = subprocess.run(
        [sys.executable, str(script), str(mnist_dir), "--threads", "1", "--steps", "1", "--network", name],
        capture_output=True, text=True, check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.startswith(f"snnTorch alone, {name} (as the tutorials write it): train step ")


@pytest.mark.skipif(platform.system() != "Linux", reason="LD_DEBUG is glibc's dynamic loader")
def test_numba_parallel_regions_run_on_torchs_openmp_runtime() -> None:
    """One thread pool: with torch imported first (as lif_core does), Numba's OpenMP layer
    binds GOMP_parallel to the libgomp torch loaded, so both run on the same threads."""
    code = (
        "import lif_core, numba, numpy as np\n"
        "@numba.njit(parallel=True)\n"
        "def touch(values):\n"
        "    for i in numba.prange(values.shape[0]):\n"
        "        values[i] += 1.0\n"
        "touch(np.zeros(64))\n"
        "print(numba.threading_layer())\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False,
        env={**os.environ, "LD_DEBUG": "bindings"},
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    if completed.stdout.strip() != "omp":
        pytest.skip(f"Numba uses its {completed.stdout.strip()} threading layer here, not OpenMP")
    bindings = [line for line in completed.stderr.splitlines() if "`GOMP_parallel'" in line]
    numba_binding = [line for line in bindings if "omppool" in line.split(" to ")[0]]
    torch_binding = [line for line in bindings if "libtorch_cpu" in line.split(" to ")[0]]
    assert numba_binding and torch_binding, bindings
    target = lambda line: line.split(" to ")[1].split(" [")[0]
    assert {target(line) for line in numba_binding} == {target(line) for line in torch_binding}


def test_bench_data_is_what_the_workers_read(tmp_path) -> None:
    from benchmarks.harness import write_data

    path = write_data(np.zeros((4, 784), np.float32), np.zeros(4, np.int64), np.zeros((2, 784), np.float32), tmp_path)
    with np.load(path) as data:
        assert set(data.files) == {"train_images", "train_labels", "test_images"}


def test_performance_page_tables_are_the_committed_run() -> None:
    """docs/performance.md's tables are format_markdown of docs/bench.json, verbatim."""
    import json
    from pathlib import Path

    from benchmarks.harness import TABLES_BEGIN, TABLES_END, format_markdown

    docs = Path(__file__).resolve().parent.parent / "docs"
    page = (docs / "performance.md").read_text(encoding="utf-8")
    tables = page.split(TABLES_BEGIN, 1)[1].split(TABLES_END, 1)[0].strip()
    assert tables == format_markdown(json.loads((docs / "bench.json").read_text(encoding="utf-8"))).strip()


def test_a_failing_worker_is_one_error_naming_the_variant() -> None:
    from benchmarks.harness import BenchmarkWorkerError, run_worker

    spec = {"workload": "mnist", "variant": "snntorch", "threads": 1, "network": {}, "batch": 128,
            "data": "/nonexistent/bench_data.npz", "warmup": 1, "steps": 3, "inference_passes": 1}
    with pytest.raises(BenchmarkWorkerError, match="mnist/snntorch failed: .*Fix: leave that variant out"):
        run_worker(spec)


def test_step_profile_reports_every_part(capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m benchmarks.profile_step` (the profile in docs/performance.md) runs
    the fused path's ordinary loop and prints one row per part with its floor."""
    from benchmarks.profile_step import main

    assert main(["--threads", "1", "--warmup", "2", "--steps", "3", "--hidden", "64"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == "| part | in the step, ms | floor, ms |"
    names = [row.split(" | ")[0].lstrip("| ") for row in table[2:]]
    assert names[0] == "whole step" and "loss" in names and "weight clip" in names
    assert "fused forward kernel (" in table[3] and "fc1 GEMM " in table[3]
    assert all(float(row.split(" | ")[1]) > 0 for row in table[2:])
