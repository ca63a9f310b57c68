"""`snn-mnist sweep`: settings x seeds of `snn-mnist train` (and `post-train`) on Ray Tune.

One trial is one call of `training.train.train`, the function behind `snn-mnist train`, with
the preset's settings, the trial's settings on top and the trial's seed; with post_* settings,
`plasticity.posttrain.post_train` (behind `snn-mnist post-train`) runs on the trained network
after it.  Ray Tune schedules the trials:

  * embedded (no --address): a local Ray on this machine's cores, listening on 127.0.0.1 only,
    one trial per `--threads` cores, stopped when the sweep ends;
  * --address HOST:PORT (or auto): an existing cluster (`ray start --head` on one machine,
    `ray start --address HOST:PORT` on the others).

The MNIST arrays go into Ray's object store once (`tune.with_parameters`); workers read them
from there, so nodes need no copy of the data.  After every epoch a trial reports its metrics
and its training state (weights, optimiser, histories) as a Ray checkpoint, which Ray writes
to the sweep's storage; a trial whose worker dies is restarted from its last epoch
(FailureConfig) and ends with the same numbers, and an interrupted sweep started again with
the same command is restored from `OUT/ray` and runs only the trials that had not finished.
Trials are compared on the validation accuracy after their last epoch; the test accuracy is
recorded, never used to choose.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from experiments.cli import add_common_options
from experiments.cluster import add_connect_timeout_option, check_cluster_address
from experiments.run_folder import writes_output_folder
from experiments.seeds import parse_seeds
from experiments.sweep_report import rows_from_results, write_results
from experiments.sweep_space import (
    ALIASES,
    METRIC,
    SCHEDULERS,
    SEARCHES,
    Distribution,
    SweepError,
    SweepSpec,
    configs_for,
    parse_param,
    read_toml,
    setting_label,
)
from plasticity.posttrain import post_train
from training.checkpoint import atomic_write_json, atomic_write_text
from training.data import MnistSplit, carve_validation, load_mnist
from training.presets import PRESETS
from training.runtime import configure_threads
from training.train import STATE_FILE, TrainHistory, train

EXPERIMENT = "trials"  # Ray's folder under OUT/ray
SPEC_JSON = "sweep_spec.json"
ATTEMPTS_FILE = "attempts.log"  # one line per start of a trial, carried in its checkpoints
MISSING_RAY = (
    "snn-mnist sweep needs Ray Tune, which is an optional extra. "
    'Fix: pip install -e ".[sweep]" (or pip install "ray[tune]>=2.40" optuna)'
)
Log = Callable[[str], None]


@dataclass(frozen=True)
class SweepData:
    """The images every trial trains and is measured on, as uint8 arrays for the object store."""

    train_images: np.ndarray
    train_labels: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray

    @staticmethod
    def from_splits(train_split: MnistSplit, val_split: MnistSplit, test_split: MnistSplit) -> SweepData:
        def pixels(split: MnistSplit) -> np.ndarray:
            # images are uint8 / 255 (training.data), so this round trip is exact
            return np.rint(split.images.numpy() * 255.0).astype(np.uint8)

        return SweepData(
            pixels(train_split), train_split.labels.numpy(), pixels(val_split), val_split.labels.numpy(),
            pixels(test_split), test_split.labels.numpy(),
        )

    @staticmethod
    def split(images: np.ndarray, labels: np.ndarray) -> MnistSplit:
        # the same float32 division as training.data.load_mnist
        return MnistSplit(torch.from_numpy(images.astype(np.float32)) / 255.0, torch.from_numpy(labels.copy()))


def load_sweep_data(spec: SweepSpec, data_dir: Path | None, download: bool) -> SweepData:
    train_split = load_mnist("train", data_dir, download=download)
    test_split = load_mnist("test", data_dir, download=download)
    if spec.train_subset is not None:
        train_split = train_split.subset(spec.train_subset)
    if spec.test_subset is not None:
        test_split = test_split.subset(spec.test_subset)
    train_split, val_split = carve_validation(train_split, spec.validation)
    return SweepData.from_splits(train_split, val_split, test_split)


def sweep_trial(config: dict[str, Any], data: SweepData, preset: str, threads: int) -> None:
    """One trial, run by Ray in a worker: train (resuming from the trial's last checkpoint, if
    Ray restarted it) and report every epoch; then post-train if the settings ask for it."""
    from ray import tune

    settings = dict(config["settings"]) if "settings" in config else {k: v for k, v in config.items() if k != "seed"}
    seed = int(config["seed"])
    network_config, train_config, post_config = configs_for(settings, seed, preset)
    configure_threads(threads)
    node, pid = socket.gethostname(), os.getpid()
    work = Path(tempfile.mkdtemp(prefix="snn-mnist-trial-"))
    try:
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as saved:
                shutil.copytree(saved, work, dirs_exist_ok=True)
        attempts = work / ATTEMPTS_FILE
        previous = attempts.read_text() if attempts.is_file() else ""
        atomic_write_text(attempts, previous + f"{node} {pid}\n")
        attempt = previous.count("\n") + 1
        train_split, val_split = SweepData.split(data.train_images, data.train_labels), SweepData.split(data.val_images, data.val_labels)
        test_split = SweepData.split(data.test_images, data.test_labels)

        def report(metrics: dict[str, Any]) -> None:
            with tempfile.TemporaryDirectory(prefix="snn-mnist-checkpoint-") as snapshot:
                shutil.copytree(work, snapshot, dirs_exist_ok=True)
                tune.report({**metrics, "node": node, "pid": pid, "attempt": attempt}, checkpoint=tune.Checkpoint.from_directory(snapshot))

        def on_epoch(epoch: int, history: TrainHistory) -> None:
            report({
                "epoch": epoch,
                "train_acc": history.train_acc_history[-1],
                METRIC: history.val_acc_history[-1],
                "test_acc": history.test_acc_history[-1],
                "loss": history.loss_history[-1],
                "epoch_seconds": history.epoch_seconds[-1],
            })

        model, history = train(
            train_split, test_split, network_config, train_config, work, resume=(work / STATE_FILE).is_file(),
            extra_settings={"sweep_settings": settings, "threads": threads}, progress=False, log=lambda _: None,
            validation_split=val_split, on_epoch=on_epoch,
        )
        if post_config is not None:
            result = post_train(model, train_split, test_split, post_config, progress=False, log=lambda _: None)
            atomic_write_json(work / "post_training.json", result.to_json())
            report({
                "epoch": train_config.epochs,
                **{f"post_test_acc_{k}": value for k, value in enumerate(result.test_accuracy)},
                **{f"post_drift_{name}": drift.relative_change for name, drift in result.drift.items()},
                "post_seconds": result.seconds,
            })
    finally:
        shutil.rmtree(work, ignore_errors=True)


def set_ray_environment(embedded: bool) -> None:
    """Ray reads these when it is imported and started; the caller's own settings win."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage reports from a sweep
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "5")  # experiment state saved often, for restores
    # a checkpoint per epoch is the point here, not a bottleneck to warn about
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if embedded:
        # an embedded Ray is a one-machine Ray: node address 127.0.0.1, so that every server it
        # starts (GCS, raylet, workers, agents) listens on loopback only
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def start_ray(address: str | None, cpus: int | None = None) -> Any:
    """Attach to the cluster at `address`, or start an embedded (loopback-only) Ray on `cpus`
    cores; returns the ray module if this call started it (the caller shuts it down), else None."""
    set_ray_environment(embedded=not address)
    ray = import_ray()
    if ray.is_initialized():
        return None
    if address:
        check_cluster_address(address)  # ray.init has no time limit of its own
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    else:
        ray.init(num_cpus=cpus or os.cpu_count(), include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    return ray


def import_ray() -> Any:
    try:
        import ray
        from ray import tune  # noqa: F401
    except ImportError:
        raise SweepError(MISSING_RAY) from None
    return ray


def make_progress_callback(total: int, log: Log) -> Any:
    from ray import tune

    class FinishedTrials(tune.Callback):
        """One line per finished trial, with the best validation accuracy so far."""

        def __init__(self) -> None:
            self.best: tuple[float, str] | None = None

        @staticmethod
        def finished(trials: list, trial: Any) -> int:  # counted from Ray's list, so a resumed sweep counts right
            return sum(other is trial or other.status in ("TERMINATED", "ERROR") for other in trials)

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            result = trial.last_result or {}
            label = f"{setting_label(trial.config.get('settings', {}))} seed={trial.config.get('seed')}"
            if METRIC in result:
                if self.best is None or result[METRIC] > self.best[0]:
                    self.best = (result[METRIC], label)
                log(
                    f"[{self.finished(trials, trial)}/{total}] {label}: validation {result[METRIC]:.2f}% test {result.get('test_acc', float('nan')):.2f}% "
                    f"after {result.get('epoch')} epochs on {result.get('node')}; best so far {self.best[0]:.2f}% ({self.best[1]})"
                )

        def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            log(f"trial {trial.trial_id} failed ({trial.error_file or 'worker lost'}); restarting it from its last epoch")

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            log(f"[{self.finished(trials, trial)}/{total}] trial {trial.trial_id} failed for good; see {trial.error_file}")

    return FinishedTrials()


def param_space(spec: SweepSpec) -> dict[str, Any]:
    from ray import tune

    if spec.search != "optuna":
        return {"settings": tune.grid_search(spec.expand()), "seed": tune.grid_search(list(spec.seeds))}
    space: dict[str, Any] = {"seed": spec.seeds[0]}
    for name, values in spec.space.items():
        if isinstance(values, Distribution):
            space[name] = {"loguniform": tune.loguniform, "uniform": tune.uniform}.get(values.kind, lambda a, b: tune.randint(int(a), int(b) + 1))(values.low, values.high)
        else:
            space[name] = tune.choice(list(values))
    return space


def tune_config(spec: SweepSpec, max_epochs: int) -> Any:
    from ray import tune

    options: dict[str, Any] = {"metric": METRIC, "mode": "max"}
    if spec.search == "optuna":
        try:
            from ray.tune.search.optuna import OptunaSearch

            options["search_alg"] = OptunaSearch(seed=spec.search_seed)
            options["num_samples"] = spec.samples
        except (ImportError, AssertionError):
            raise SweepError('--search optuna needs Optuna. Fix: pip install -e ".[sweep]" (or pip install optuna)') from None
    if spec.scheduler == "asha":
        from ray.tune.schedulers import ASHAScheduler

        options["scheduler"] = ASHAScheduler(time_attr="epoch", max_t=max_epochs, grace_period=max(1, max_epochs // 4), reduction_factor=3)
    return tune.TuneConfig(**options)


def check_spec_matches(out: Path, spec: SweepSpec) -> None:
    """A sweep folder belongs to one spec; resuming with other settings would mix two sweeps."""
    path = out / SPEC_JSON
    payload = spec.to_json()
    if path.is_file():
        saved = json.loads(path.read_text())
        # a spec written before a setting was renamed (alpha_reg) names it by its alias
        saved["space"] = {ALIASES.get(name, name): values for name, values in saved.get("space", {}).items()}
        if saved != payload:
            changed = sorted(key for key in set(saved) | set(payload) if saved.get(key) != payload.get(key))
            raise SweepError(
                f"{out} holds a sweep with other settings ({', '.join(changed)} differ). "
                "Fix: rerun the same command to resume it, or use another --out for a new sweep"
            )
    else:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, payload)


def run_sweep(
    spec: SweepSpec,
    out: Path,
    data: SweepData,
    address: str | None = None,
    cpus: int | None = None,
    storage: str | None = None,
    log: Log = print,
) -> list[dict[str, Any]]:
    """Run (or resume) the sweep in `out` and write its results; returns one row per trial."""
    out = Path(out).resolve()
    check_spec_matches(out, spec)
    ray = start_ray(address, cpus)
    started_here = ray is not None
    from ray import tune

    try:
        trainable = tune.with_resources(
            tune.with_parameters(sweep_trial, data=data, preset=spec.preset, threads=spec.threads), {"cpu": spec.threads}
        )
        storage_path = storage or str(out / "ray")
        experiment = f"{storage_path.rstrip('/')}/{EXPERIMENT}"
        if tune.Tuner.can_restore(experiment):
            log(f"resuming the sweep in {out}: finished trials are kept, the others run")
            tuner = tune.Tuner.restore(experiment, trainable=trainable, resume_errored=True)
        else:
            max_epochs = max(configs_for(s, spec.seeds[0], spec.preset)[1].epochs for s in (spec.expand() if spec.search != "optuna" else [{}]))
            if spec.search == "optuna" and "epochs" in spec.space:
                values = spec.space["epochs"]
                max_epochs = int(values.high if isinstance(values, Distribution) else max(values))
            tuner = tune.Tuner(
                trainable,
                param_space=param_space(spec),
                tune_config=tune_config(spec, max_epochs),
                run_config=tune.RunConfig(
                    name=EXPERIMENT,
                    storage_path=storage_path,
                    failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                    callbacks=[make_progress_callback(spec.trial_count, log)],
                    verbose=0,
                ),
            )
        results = tuner.fit()
    finally:
        if started_here:
            ray.shutdown()
    rows = rows_from_results(results, spec)
    write_results(out, rows, spec)
    failed = [row for row in rows if row["status"] == "error"]
    if failed:
        raise SweepError(
            f"{len(failed)} of {len(rows)} trials failed after {spec.max_failures} retries (first: {failed[0]['error']}); "
            f"the others' results are in {out}. Fix: rerun the same command to retry the failed trials"
        )
    return rows


def spec_from_args(args: argparse.Namespace) -> SweepSpec:
    space, options = read_toml(args.config) if args.config is not None else ({}, {})
    for text in args.param or []:
        name, values = parse_param(text)
        space[name] = values
    flags = {
        "seeds": tuple(args.seeds) if args.seeds is not None else None, "search": args.search, "samples": args.samples,
        "scheduler": args.scheduler, "preset": args.preset, "validation": args.validation,
        "train_subset": args.train_subset, "test_subset": args.test_subset, "threads": args.threads,
        "max_failures": args.max_failures, "search_seed": args.search_seed,
    }
    known = set(flags)
    unknown = sorted(set(options) - known)
    if unknown:
        raise SweepError(f"{args.config}: unknown [sweep] option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    if "seeds" in options:
        options["seeds"] = tuple(options["seeds"])
    values = {**options, **{key: value for key, value in flags.items() if value is not None}}
    return SweepSpec(space=space, **values)


@writes_output_folder
def run_sweep_command(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    if args.address:
        check_cluster_address(args.address, args.connect_timeout)
    set_ray_environment(embedded=not args.address)
    import_ray()  # a clear error before the data is read
    log = print
    log(f"sweep: {spec.trial_count} trials ({spec.search} search, {len(spec.seeds)} seed(s)), {spec.threads} thread(s) each; "
        f"selected on {spec.validation} validation images; results in {args.out}")
    data = load_sweep_data(spec, args.data_dir, args.download)
    rows = run_sweep(spec, args.out, data, address=args.address, cpus=args.cpus, storage=args.storage, log=log)
    log(f"wrote {len(rows)} trials to {Path(args.out) / 'sweep_results.json'}, .csv, SWEEP.md and sweep.png")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="many train (and post-train) runs, settings x seeds, on Ray Tune (pip install -e '.[sweep]')",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  snn-mnist sweep --param lr=5e-4,1e-3,2e-3 --param lr_schedule=constant,cosine --seeds 0,1,2 --out sweep\n"
            "  snn-mnist sweep --config sweep.toml --search optuna --samples 40 --scheduler asha --seeds 0\n"
            "  snn-mnist sweep --param post_eta=1e-5,1e-4 --param post_rule=covariance,oja --seeds 0-4\n"
            "on a cluster: `ray start --head --port 6379` on one machine, `ray start --address HEAD:6379` on\n"
            "the others, then the same command with --address HEAD:6379 (and --storage on shared storage)."
        ),
    )
    add_common_options(parser, out="sweep", seed=False, threads=False, device=False, backend=False)
    parser.add_argument("--config", type=Path, default=None, help="TOML file with a [space] table (and [sweep] options)")
    parser.add_argument("--param", action="append", metavar="NAME=VALUES",
                        help="a setting to search: NAME=V1,V2,... or NAME=loguniform:LOW:HIGH (uniform, randint); repeatable")
    parser.add_argument("--seeds", type=parse_seeds, default=None, help="seeds every setting runs with: 0,1,2 or 0-4 (default: 0,1,2)")
    parser.add_argument("--search", choices=SEARCHES, default=None, help="grid (default), random (--samples settings), or optuna TPE")
    parser.add_argument("--samples", type=int, default=None, help="settings drawn by random search / trials of optuna (default: 8)")
    parser.add_argument("--scheduler", choices=SCHEDULERS, default=None, help="asha: stop poor trials early (default: none)")
    parser.add_argument("--preset", choices=tuple(PRESETS), default=None, help="the recipe the settings start from (default: study)")
    parser.add_argument("--validation", type=int, default=None, help="validation images carved from the training set (default: 10000)")
    parser.add_argument("--train-subset", type=int, default=None, help="use only the first N training images (before the carve)")
    parser.add_argument("--test-subset", type=int, default=None, help="use only the first N test images")
    parser.add_argument("--threads", type=int, default=None, help="threads per trial (default: 1; one trial per core)")
    parser.add_argument("--cpus", type=int, default=None, help="cores of the embedded Ray (default: all of this machine's)")
    parser.add_argument("--max-failures", type=int, default=None, help="restarts of a trial whose worker dies (default: 2)")
    parser.add_argument("--search-seed", type=int, default=None, help="seed of random / optuna search (default: 0)")
    parser.add_argument("--address", default=None, help="HOST:PORT or auto: run on an existing Ray cluster instead of an embedded one")
    add_connect_timeout_option(parser)
    parser.add_argument("--storage", default=None, help="where Ray keeps trial checkpoints (default: OUT/ray; shared storage on a cluster)")
    parser.set_defaults(handler=run_sweep_command)
