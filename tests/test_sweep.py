"""`snn-mnist sweep` (issue 14): the search space, the results, and Ray Tune runs on an
embedded, loopback-only Ray: results and aggregates, a killed worker retried, an interrupted
sweep resumed without redoing finished trials.  Each Ray run is a subprocess in its own
session, and the whole session is killed at the end, so no Ray server outlives a test."""

from __future__ import annotations

import builtins
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from experiments.cli import main
from experiments.sweep_report import RESULTS_CSV, RESULTS_JSON, MARKDOWN, FIGURE, aggregate, sweep_markdown
from experiments.sweep_space import (
    Distribution,
    SweepError,
    SweepSpec,
    canonical_name,
    configs_for,
    parse_param,
    read_toml,
)
from training.data import carve_validation, load_mnist
from training.network import study_network_config
from training.runtime import configure_threads
from training.train import TrainConfig, train


LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")


# --- the space, without Ray ---------------------------------------------------------------

def test_params_parse_to_canonical_names_and_values() -> None:
    assert parse_param("lr=1e-3,2e-3") == ("learning_rate", (1e-3, 2e-3))
    assert parse_param("post.eta=1e-5") == ("post_eta", (1e-5,))
    assert parse_param("surrogate=atan,fast_sigmoid") == ("surrogate", ("atan", "fast_sigmoid"))
    assert parse_param("surrogate_scale=loguniform:5:30") == ("surrogate_scale", Distribution("loguniform", 5.0, 30.0))
    assert canonical_name("weight-clip") == "weight_clip"
    for bad, message in (("learnrate=1", "unknown setting"), ("seed=1,2", "use --seeds"), ("lr", "NAME=V1,V2"),
                         ("lr=loguniform:0:1", "positive low end"), ("lr=uniform:a:b", "two numbers")):
        with pytest.raises(SweepError, match=message):
            parse_param(bad)


def test_toml_file_gives_space_and_options(tmp_path: Path) -> None:
    path = tmp_path / "sweep.toml"
    path.write_text('[space]\nlr = [1e-3, 2e-3]\nbeta = {uniform = [0.8, 0.95]}\n[sweep]\nseeds = [0, 1]\nsearch = "random"\n')
    space, options = read_toml(path)
    assert space == {"learning_rate": (1e-3, 2e-3), "beta": Distribution("uniform", 0.8, 0.95)}
    assert options == {"seeds": [0, 1], "search": "random"}
    path.write_text("[spaces]\n")
    with pytest.raises(SweepError, match="unknown table"):
        read_toml(path)


def test_spec_checks_every_combination_before_it_starts() -> None:
    spec = SweepSpec(space={"learning_rate": (1e-3, 2e-3), "epochs": (1, 2)}, seeds=(0, 1))
    assert spec.trial_count == 8 and len(spec.expand()) == 4
    random_spec = SweepSpec(space={"beta": Distribution("uniform", 0.8, 0.95)}, search="random", samples=3)
    assert random_spec.expand() == random_spec.expand() and len({s["beta"] for s in random_spec.expand()}) == 3
    for kwargs, message in (
        ({"space": {"beta": Distribution("uniform", 0.8, 0.9)}}, "grid search needs lists"),
        ({"space": {"beta": (1.5,)}}, r"--beta must be a number in \[0, 1\]"),
        ({"search": "optuna"}, "optuna search tunes on one seed"),
        ({"validation": 0}, "never on the test set"),
        ({"seeds": (0, 0)}, "distinct"),
    ):
        with pytest.raises(SweepError, match=message):
            SweepSpec(**kwargs)


def test_a_sweep_searches_any_network_setting(tmp_path: Path) -> None:
    """Every flat network setting is a sweep setting: each combination builds the network
    `snn-mnist train` would build from the same flags, and trains the study's way otherwise."""
    params = ("reset_mechanism=subtract,zero", "input_coding=current,rate", "loss=count,membrane",
              "layer_sizes=784-256-10,784-128-64-10", "learn_beta=true,false", "alpha_reg=1e-3")
    space = dict(parse_param(text) for text in params)
    assert space["activity_penalty"] == (1e-3,) and space["layer_sizes"] == ("784-256-10", "784-128-64-10")
    spec = SweepSpec(space=space, seeds=(0,))
    assert spec.trial_count == 32
    built = set()
    for settings in spec.expand():
        network, training, post = configs_for(settings, 4, "study")
        assert post is None and training.seed == 4 and training == TrainConfig(seed=4)
        assert network.layer_sizes == tuple(int(size) for size in settings["layer_sizes"].split("-"))
        assert network.input_coding == settings["input_coding"] and network.loss == settings["loss"]
        assert network.activity_penalty == 1e-3 and network.num_steps == study_network_config().num_steps
        for neuron, study in zip(network.neurons, study_network_config().neurons * 3):
            assert neuron.options.reset_mechanism == settings["reset_mechanism"]
            assert neuron.learn_beta is settings["learn_beta"]
            assert (neuron.beta, neuron.threshold, neuron.options.surrogate) == (study.beta, study.threshold, study.options.surrogate)
        built.add(network)
    assert len(built) == 32
    # in a TOML file: sizes as lists, learn_* as the layers that learn
    path = tmp_path / "network.toml"
    path.write_text("[space]\nlayer_sizes = [[784, 1000, 10]]\nlearn_beta = [[1], true]\nbeta = [0.95]\nsurrogate = [\"atan\"]\n")
    toml_spec = SweepSpec(space=read_toml(path)[0], seeds=(0,))
    first, every = (configs_for(settings, 0, "study")[0] for settings in toml_spec.expand())
    assert first.layer_sizes == (784, 1000, 10) and [n.learn_beta for n in first.neurons] == [True, False]
    assert [n.learn_beta for n in every.neurons] == [True, True]
    assert all(n.beta == 0.95 and n.options.surrogate.name == "atan" for n in first.neurons)


def test_a_bad_network_setting_is_one_line_naming_it(tmp_path: Path, capsys) -> None:
    for text, message in (
        ("reset_mechanism=subtract,sideways", "reset_mechanism 'sideways' is not supported"),
        ("input_coding=poisson", "input coding 'poisson'"),
        ("loss=mse", "loss 'mse'"),
        ("layer_sizes=784-256-9", "--layers 784,256,9: the network takes 784 inputs and gives 9 outputs"),
        ("learn_beta=3", "learn_beta .*layer numbers from 1 to 2"),
        ("threshold=0", "--threshold must be a positive finite number"),
        ("beta=fast", "beta 'fast' is not a number"),
    ):
        with pytest.raises(SweepError, match=message):
            SweepSpec(space=dict([parse_param(text)]), seeds=(0,))
        assert main(["sweep", "--param", text, "--seeds", "0", "--out", str(tmp_path / "s")]) == 2
        error = capsys.readouterr().err
        assert text.split("=")[0] in error and "Traceback" not in error and len(error.strip().splitlines()) == 1
    with pytest.raises(SweepError, match="cannot be searched"):
        parse_param("input_seed=1")
    with pytest.raises(SweepError, match="post-training needs a 784-H-10 network"):
        SweepSpec(space={"layer_sizes": ("784-256-128-10",), "post_eta": (1e-5,)}, seeds=(0,))


def test_a_spec_saved_with_alpha_reg_is_the_same_sweep(tmp_path: Path) -> None:
    """Sweeps written when the activity penalty was the training setting alpha_reg (as the
    committed docs/tuning/second/alpha) resume under its name now, with the same numbers."""
    from experiments.sweep import SPEC_JSON, check_spec_matches

    committed = Path(__file__).resolve().parents[1] / "docs" / "tuning" / "second" / "alpha" / SPEC_JSON
    assert "alpha_reg" in json.loads(committed.read_text())["space"]
    (tmp_path / SPEC_JSON).write_bytes(committed.read_bytes())
    name, values = parse_param("alpha_reg=1e-3,1e-2")
    check_spec_matches(tmp_path, SweepSpec(space={name: values}, seeds=(0,), preset="tuned"))
    old, new = configs_for({"alpha_reg": 1e-2}, 0, "tuned"), configs_for({"activity_penalty": 1e-2}, 0, "tuned")
    assert old == new and old[0].activity_penalty == 1e-2
    with pytest.raises(SweepError, match="space differ"):
        check_spec_matches(tmp_path, SweepSpec(space={"activity_penalty": (1e-3,)}, seeds=(0,), preset="tuned"))


def _row(label: str, seed: int, val: float, test: float, status: str = "finished") -> dict:
    return {"label": label, "settings": {"learning_rate": float(label)}, "seed": seed, "status": status,
            "final_val_acc": val, "final_test_acc": test, "train_seconds": 10.0, "val_acc_history": [val - 1, val],
            "epochs_done": 2, "attempts": 1, "node": "n", "error": None}


def test_aggregates_are_mean_and_sample_sd_over_finished_seeds() -> None:
    rows = [_row("0.001", 0, 97.0, 96.0), _row("0.001", 1, 98.0, 97.0), _row("0.002", 0, 99.0, 95.0),
            _row("0.002", 1, 10.0, 10.0, status="stopped early")]
    summary = aggregate(rows)
    assert [entry["label"] for entry in summary] == ["0.002", "0.001"]  # ranked on validation, not test
    assert summary[1]["val_mean"] == 97.5 and summary[1]["val_sd"] == pytest.approx(statistics.stdev([97.0, 98.0]))
    assert summary[0]["n"] == 1 and summary[0]["val_sd"] is None
    text = sweep_markdown(rows, SweepSpec(space={"learning_rate": (1e-3, 2e-3)}, seeds=(0, 1)))
    assert "| 2 | 0.001 | 2 | 97.50 ± 0.71 | 96.50 ± 0.71 |" in text and "stopped early after 2 epoch(s)" in text


def test_missing_ray_is_one_line_with_the_fix(monkeypatch, tmp_path: Path, capsys) -> None:
    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    assert main(["sweep", "--param", "lr=1e-3", "--out", str(tmp_path / "s")]) == 2
    error = capsys.readouterr().err
    assert 'pip install -e ".[sweep]"' in error and "Traceback" not in error and len(error.strip().splitlines()) == 1


# --- real sweeps on an embedded Ray -----------------------------------------------------------

def sweep_command(out: Path, mnist_dir: Path, *flags: str) -> list[str]:
    return [sys.executable, "-m", "experiments", "sweep", "--data-dir", str(mnist_dir), "--out", str(out), *flags]


@pytest.fixture
def sessions() -> Iterator[list[subprocess.Popen]]:
    """Sweeps started by a test; each process group (the driver and all of its Ray) is killed after."""
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        with_group_killed(process)


def with_group_killed(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=60)
    deadline = time.time() + 30
    while time.time() < deadline and _group_members(process.pid):
        time.sleep(0.2)
    assert not _group_members(process.pid), "Ray processes outlived their sweep"


def _group_members(group: int) -> list[int]:
    members = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == group and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc.pid)
        except (ProcessLookupError, psutil.Error):
            pass
    return members


def start(sessions: list, command: list[str], log: Path) -> subprocess.Popen:
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
                               cwd=Path(__file__).resolve().parents[1], env={**os.environ, "PYTHONUNBUFFERED": "1"})
    sessions.append(process)
    return process


def finish(process: subprocess.Popen, log: Path, timeout: float = 600) -> str:
    code = process.wait(timeout=timeout)
    text = log.read_text()
    assert code == 0, text[-3000:]
    return text


def trial_rows(out: Path) -> list[dict]:
    return json.loads((out / RESULTS_JSON).read_text())["trials"]


def progress_reports(out: Path) -> list[dict]:
    """Every epoch report Ray has written so far, from the trials' progress.csv files."""
    import csv

    reports = []
    for path in (out / "ray" / "trials").glob("*/progress.csv"):
        try:
            reports += list(csv.DictReader(path.open()))
        except OSError:
            pass
    return reports


def direct_run(mnist_dir: Path, train_images: int, validation: int, test_images: int, tmp_path: Path, **training) -> list[float]:
    """The same trial as a plain `training.train.train` call: its validation curve."""
    configure_threads(1)
    train_split, held = carve_validation(load_mnist("train", mnist_dir).subset(train_images), validation)
    _, history = train(train_split, load_mnist("test", mnist_dir).subset(test_images), study_network_config(), TrainConfig(**training),
                       tmp_path / "direct", progress=False, log=lambda _: None, validation_split=held)
    return history.val_acc_history


def test_small_sweep_writes_results_with_correct_aggregates(mnist_dir: Path, tmp_path: Path, sessions) -> None:
    out, log = tmp_path / "sweep", tmp_path / "sweep.log"
    flags = ("--param", "lr=1e-3,2e-3", "--param", "epochs=2", "--seeds", "0,1", "--train-subset", "1500",
             "--validation", "500", "--test-subset", "300", "--cpus", "2")
    process = start(sessions, sweep_command(out, mnist_dir, *flags), log)
    listening_checked = False
    while process.poll() is None:  # while it runs: every Ray server listens on loopback only
        ray_pids = {child.pid for child in psutil.Process(process.pid).children(recursive=True)} | {process.pid}
        sockets = [c for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN and c.pid in ray_pids]
        assert all(c.laddr.ip in LOOPBACK for c in sockets), [c.laddr for c in sockets]
        listening_checked |= bool(sockets)
        time.sleep(0.5)
    text = finish(process, log)
    assert listening_checked
    assert text.count("best so far") == 4
    rows = trial_rows(out)
    assert len(rows) == 4 and all(row["status"] == "finished" and row["epochs_done"] == 2 for row in rows)
    assert {(row["settings"]["learning_rate"], row["seed"]) for row in rows} == {(1e-3, 0), (1e-3, 1), (2e-3, 0), (2e-3, 1)}
    summary = json.loads((out / RESULTS_JSON).read_text())["settings"]
    for entry in summary:
        members = [row["final_val_acc"] for row in rows if row["label"] == entry["label"]]
        assert entry["n"] == 2 and entry["val_mean"] == pytest.approx(statistics.fmean(members))
        assert entry["val_sd"] == pytest.approx(statistics.stdev(members))
        assert f"{entry['val_mean']:.2f} ± {entry['val_sd']:.2f}" in (out / MARKDOWN).read_text()
    assert summary[0]["val_mean"] >= summary[1]["val_mean"]
    assert len((out / RESULTS_CSV).read_text().splitlines()) == 5 and (out / FIGURE).stat().st_size > 10_000
    # one trial is one call of the training function: the same numbers as a direct call
    row = next(r for r in rows if r["settings"]["learning_rate"] == 1e-3 and r["seed"] == 1)
    assert row["val_acc_history"] == direct_run(mnist_dir, 1500, 500, 300, tmp_path, epochs=2, seed=1)


def test_killed_worker_is_retried_and_the_sweep_completes(mnist_dir: Path, tmp_path: Path, sessions) -> None:
    out, log = tmp_path / "sweep", tmp_path / "sweep.log"
    flags = ("--param", "epochs=6", "--seeds", "0,1", "--train-subset", "3000", "--validation", "500",
             "--test-subset", "300", "--cpus", "2")
    process = start(sessions, sweep_command(out, mnist_dir, *flags), log)
    victim = None
    deadline = time.time() + 300
    while victim is None and time.time() < deadline and process.poll() is None:
        first_epochs = [r for r in progress_reports(out) if r.get("epoch") == "1"]
        if first_epochs:
            victim = int(first_epochs[0]["pid"])
            os.kill(victim, signal.SIGKILL)  # the worker process dies mid-trial
        time.sleep(0.05)
    assert victim is not None, log.read_text()[-2000:]
    text = finish(process, log)
    assert "restarting it from its last epoch" in text
    rows = trial_rows(out)
    assert len(rows) == 2 and all(row["status"] == "finished" and row["epochs_done"] == 6 for row in rows)
    retried = [row for row in rows if row["attempts"] == 2]
    assert len(retried) == 1
    # nothing lost: the restarted trial resumed from its last epoch to the numbers of an uninterrupted run
    assert retried[0]["val_acc_history"] == direct_run(mnist_dir, 3000, 500, 300, tmp_path, epochs=6, seed=retried[0]["seed"])


def test_interrupted_sweep_resumes_without_redoing_finished_trials(mnist_dir: Path, tmp_path: Path, sessions) -> None:
    out = tmp_path / "sweep"
    flags = ("--param", "lr=1e-3,2e-3", "--param", "epochs=3", "--seeds", "0,1", "--train-subset", "2000",
             "--validation", "500", "--test-subset", "300", "--cpus", "1")  # one trial at a time
    first_log = tmp_path / "first.log"
    process = start(sessions, sweep_command(out, mnist_dir, *flags), first_log)
    deadline = time.time() + 300
    while "[1/4]" not in first_log.read_text() and time.time() < deadline and process.poll() is None:
        time.sleep(0.1)
    assert "[1/4]" in first_log.read_text(), first_log.read_text()[-2000:]
    time.sleep(6)  # past the next experiment-state snapshot (TUNE_GLOBAL_CHECKPOINT_S=5)
    finished_before = [line for line in first_log.read_text().splitlines() if line.startswith("[")]
    with_group_killed(process)  # the driver and its Ray die at once, as on a crash or kill -9
    assert not (out / RESULTS_JSON).exists()
    second_log = tmp_path / "second.log"
    text = finish(start(sessions, sweep_command(out, mnist_dir, *flags), second_log), second_log)
    assert "resuming the sweep" in text
    rows = trial_rows(out)
    assert len(rows) == 4 and all(row["status"] == "finished" and row["epochs_done"] == 3 for row in rows)
    done = {line.split("]", 1)[1].split(":", 1)[0].strip() for line in finished_before}
    assert done
    for row in rows:
        if f"{row['label']} seed={row['seed']}" in done:
            assert row["attempts"] == 1 and row["reports"] == 3  # never started again
    # the same command on a finished sweep runs nothing and rewrites the same results
    third_log = tmp_path / "third.log"
    finish(start(sessions, sweep_command(out, mnist_dir, *flags), third_log), third_log)
    assert [(r["label"], r["seed"], r["val_acc_history"], r["attempts"]) for r in trial_rows(out)] == \
        [(r["label"], r["seed"], r["val_acc_history"], r["attempts"]) for r in rows]


def test_resume_with_other_settings_is_refused(tmp_path: Path, mnist_dir: Path, capsys) -> None:
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "sweep_spec.json").write_text(json.dumps(SweepSpec(space={"learning_rate": (1e-3,)}).to_json()))
    assert main(["sweep", "--param", "lr=2e-3", "--out", str(out), "--data-dir", str(mnist_dir)]) == 2
    error = capsys.readouterr().err
    assert "holds a sweep with other settings (space differ)" in error and "Traceback" not in error


def test_reproduce_seeds_on_an_embedded_ray_give_the_local_numbers(mnist_dir: Path, tmp_path: Path, sessions) -> None:
    """`reproduce --address local` sends its tasks to Ray (here an embedded, loopback-only one):
    the same files, bit for bit, as the local worker processes, and no Ray process left behind."""
    from experiments.cli import main as cli_main
    from experiments.seeds import seed_folder

    quick = ["reproduce", "--quick", "--data-dir", str(mnist_dir), "--threads", "1", "--no-progress"]
    log = tmp_path / "ray.log"
    process = start(sessions, [sys.executable, "-m", "experiments", *quick, "--out", str(tmp_path / "ray"), "--address", "local"], log)
    assert cli_main([*quick, "--out", str(tmp_path / "local"), "--jobs", "1"]) == 0
    assert "(0 of 6 stages reused" in finish(process, log)
    with_group_killed(process)
    for seed in (0, 1):
        for name in ("supervised_snn_baseline_state_dict.pt", "post_training_accuracy.json", "per_class_metrics.json"):
            ours = (seed_folder(tmp_path / "ray", seed) / name).read_bytes()
            assert ours == (seed_folder(tmp_path / "local", seed) / name).read_bytes(), f"seed {seed}: {name}"
