"""The benchmark's machinery (not its speed: speed goals are checked by running the
benchmark on an idle machine, never by a timed test) and the one-thread-pool fact."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import numpy as np
import pytest

from benchmarks.harness import run_benchmark
from benchmarks.variants import MnistSize, mnist_runner
from training.data import MnistSplit


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
    """In one process here (the benchmark checks the same across processes)."""
    batches = [(mnist_test.flat_images[:64], mnist_test.labels[:64])]
    size = MnistSize(batch=64)
    losses = {
        name: mnist_runner(name, size, batches, mnist_test.flat_images[:250]).initial_loss
        for name in ("snntorch", "snntorch_hoisted", "torch_loop", "torch", "numba_exact", "numba")
    }
    reference = losses["snntorch"]
    assert reference is not None
    for name, loss in losses.items():
        assert loss == pytest.approx(reference, abs=1e-5), name


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

    spec = {"workload": "mnist", "variant": "snntorch", "threads": 1, "size": {"batch": 128, "hidden": 512, "steps": 25},
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
