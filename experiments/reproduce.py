"""`snn-mnist reproduce`: the whole study over several seeds, measured end to end.

For each seed S (default 0, 1, 2), into --out/seed_S/ (default results/seed_S/):

    train        supervised BPTT baseline (training.train), the study's recipe with seed S
    plasticity   post-training from that baseline: the study's rule (covariance) and the
                 anchored rule by default (--rules: any), at the study's two etas,
                 with post-training seed S (plasticity.posttrain)
    analysis     confusion matrices, per-class metrics, the figures of that seed

then, in --out itself:

    the first seed's files under the study's own names (so results/ reads as the study's
                 folder; seed_S/ holds each seed's)
    REPORT.md    every number as mean ± sd over the seeds (n), beside the study's published
                 value, with where the study's value lies relative to our spread
    seeds.json   the same numbers, machine-readable; seeds_summary.png their curves

Each stage of each seed is one task; tasks of all seeds run side by side in `--jobs`
worker processes on `--threads` threads each, so a stage's numbers depend on the seed
and the thread count, never on how many ran at once.  Every seed folder's
`stages.json` records, for each completed stage, its settings, the SHA-256 of each file
it wrote, and its wall time.  A re-run into the same folder reuses a stage when its
settings are unchanged, every file it wrote is still there with the same hash, and the
stages before it were reused too; otherwise the stage (and everything after it) is
rebuilt.  A file that was truncated or edited after the run is therefore detected and
rebuilt, never trusted.  --force rebuilds everything.  An interrupted training stage
resumes from its last completed epoch.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from experiments import figures
from experiments.cli import add_common_options
from experiments.cluster import add_connect_timeout_option, check_cluster_address
from experiments.posttrain_cmd import (
    ACCURACY_JSON,
    POST_TRAINED_FILE,
    STUDY_JSON,
    STUDY_MARKDOWN,
    STUDY_RULES,
    check_etas,
    study_markdown,
    study_row,
)
from experiments.run_folder import writes_output_folder
from experiments.seeds import seed_folder, study_baseline
from experiments.train_cmd import load_splits, prepare_runtime
from experiments.reproduce_report import (
    FIGURES,
    GENTLE_KEY,
    METRICS_JSON,
    REPORT,
    RUNS_DIR,
    STAGES,
    STRONG_KEY,
    write_report,
)
from experiments.workers import TaskPool
from lif_core.backend import Backend
from plasticity.posttrain import PostTrainConfig, load_post_trainable, post_train, trajectory_key
from training.checkpoint import atomic_write, atomic_write_json, atomic_write_text, save_model
from training.data import MnistSplit
from training.metrics import classification_report, confusion_matrix
from training.network import FeedForwardSNN, NetworkConfig, study_network_config
from training.presets import network_with
from training.runtime import available_threads, configure_threads
from training.snntorch_checkpoint import load_network
from training.train import CONFIG_JSON, CURVES_CSV, CURVES_JSON, MODEL_FILE, STATE_FILE, evaluate

MANIFEST = "stages.json"


@dataclass(frozen=True)
class ReproduceConfig:
    """Everything that decides the numbers; a change rebuilds the stages it touches."""

    epochs: int = 10
    post_epochs: int = 3
    etas: tuple[float, ...] = (1e-5, 1e-4)
    # the study's rule and the stabilised rule that holds; every rule: --rules (or the dose-response study)
    rules: tuple[str, ...] = ("covariance", "covariance_anchor")
    train_subset: int | None = None
    test_subset: int | None = None
    seeds: tuple[int, ...] = (0, 1, 2)
    surrogate: str = "fast_sigmoid"
    backend: Backend = "auto"
    threads: int = 1  # per task

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.post_epochs < 1:
            raise ValueError("--epochs and --post-epochs must be positive integers")
        check_etas(self.etas)
        if 1e-5 not in self.etas or 1e-4 not in self.etas:
            raise ValueError("--etas must include the study's 1e-5 (gentle) and 1e-4 (strong)")
        if "covariance" not in self.rules:
            raise ValueError("--rules must include the study's default rule, covariance")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or any(seed < 0 for seed in self.seeds):
            raise ValueError(f"--seeds must give one or more distinct seeds, got {self.seeds!r}")

    @classmethod
    def quick(cls, **overrides: Any) -> ReproduceConfig:
        """A smoke-test run: 2,000 training and 1,000 test images, one epoch of each kind, two seeds."""
        settings = dict(epochs=1, post_epochs=1, train_subset=2000, test_subset=1000, seeds=(0, 1))
        settings.update(overrides)
        return cls(**settings)

    def to_json(self) -> dict[str, Any]:
        payload = asdict(self)
        for key in ("etas", "rules", "seeds"):
            payload[key] = list(payload[key])
        return payload

    def stage_settings(self, name: str, seed: int) -> dict[str, Any]:
        """What decides the numbers of one stage of one seed."""
        settings = {key: value for key, value in self.to_json().items() if key != "seeds"}
        settings["seed"] = seed
        if name == "train":
            keep = ("epochs", "seed", "surrogate", "train_subset", "test_subset", "threads")
            return {key: settings[key] for key in keep}
        return settings


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Manifest:
    """stages.json: what each completed stage wrote, so a re-run can trust or rebuild it."""

    path: Path
    stages: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Manifest:
        try:
            return cls(path, json.loads(path.read_text())["stages"])
        except (OSError, ValueError, KeyError, TypeError):
            return cls(path)  # absent or unreadable: every stage runs

    def valid(self, name: str, settings: dict[str, Any], out: Path) -> bool:
        entry = self.stages.get(name)
        if not entry or entry.get("settings") != settings:
            return False
        for relative, digest in entry.get("outputs", {}).items():
            file = out / relative
            if not file.is_file() or sha256(file) != digest:
                return False
        return True

    def record(self, name: str, settings: dict[str, Any], out: Path, outputs: Sequence[str], seconds: float) -> None:
        self.stages[name] = {
            "settings": settings,
            "outputs": {relative: sha256(out / relative) for relative in outputs},
            "seconds": seconds,
            "completed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        atomic_write_json(self.path, {"stages": self.stages})

    def forget(self, names: Sequence[str]) -> None:
        for name in names:
            self.stages.pop(name, None)
        atomic_write_json(self.path, {"stages": self.stages})

    def digest(self, name: str) -> dict[str, str]:
        return dict(self.stages.get(name, {}).get("outputs", {}))



def network_config(config: ReproduceConfig) -> NetworkConfig:
    """The study's network with the run's surrogate (its default shape: fast_sigmoid 25, atan 2)."""
    return network_with(study_network_config(), {"surrogate": config.surrogate})


def load_seed_model(config: ReproduceConfig, path: Path) -> FeedForwardSNN:
    """A checkpoint of this run's network, its neurons on the run's backend, in eval mode."""
    return load_network(path, network_config(config), backend=config.backend).model.eval()


def _log_for(seed: int) -> Callable[[str], None]:
    return lambda line: print(f"seed {seed}: {line}", flush=True)


def stage_train(config: ReproduceConfig, seed: int, out: Path, train_split: MnistSplit, test_split: MnistSplit, progress: bool) -> list[str]:
    """The study's recipe with this seed (resumed after an interruption)."""
    study_baseline(
        out, seed, train_split, test_split, config.threads, network_config(config), config.epochs,
        progress=progress, log=_log_for(seed), backend=config.backend,
    )
    return [MODEL_FILE, CURVES_CSV, CURVES_JSON, CONFIG_JSON]


def plasticity_run(
    config: ReproduceConfig, seed: int, out: Path, rule: str, eta: float, train_split: MnistSplit, test_split: MnistSplit
) -> dict[str, Any]:
    """One (rule, eta) from this seed's baseline: its weights to post_trained/<key>.pt (and, for
    the study's gentle run, to the post-trained file), its table row returned."""
    post_config = PostTrainConfig(epochs=config.post_epochs, seed=seed, rule=rule, eta=eta)
    model = load_post_trainable(out / MODEL_FILE, config.backend)
    result = post_train(model, train_split, test_split, post_config, progress=False, log=lambda _: None)
    key = trajectory_key(rule, eta, post_config.plastic_layers)
    save_model(model, out / RUNS_DIR / f"{key}.pt")
    if key == GENTLE_KEY:
        save_model(model, out / POST_TRAINED_FILE)
    return study_row(key, result, test_split.labels)


def write_plasticity(out: Path, rows: Sequence[dict[str, Any]]) -> list[str]:
    """The seed's trajectories file and rule x eta table, from its runs' rows."""
    accuracy: dict[str, Any] = {row["key"]: row["test_accuracy"] for row in rows}
    accuracy["weight_drift"] = {row["key"]: row["weight_drift"] for row in rows}
    atomic_write_json(out / ACCURACY_JSON, accuracy)
    atomic_write_json(out / STUDY_JSON, {"baseline": str(out / MODEL_FILE), "runs": list(rows)})
    atomic_write_text(out / STUDY_MARKDOWN, study_markdown(rows))
    return [ACCURACY_JSON, STUDY_JSON, STUDY_MARKDOWN, POST_TRAINED_FILE] + [f"{RUNS_DIR}/{row['key']}.pt" for row in rows]


def stage_analysis(config: ReproduceConfig, seed: int, out: Path, train_split: MnistSplit, test_split: MnistSplit, progress: bool) -> list[str]:
    """Metrics and figures of one seed's baseline and post-trained networks."""
    test = test_split
    baseline = load_seed_model(config, out / MODEL_FILE)
    post_trained = load_seed_model(config, out / POST_TRAINED_FILE)
    strong = load_seed_model(config, out / RUNS_DIR / f"{STRONG_KEY}.pt")
    baseline_eval, post_eval = evaluate(baseline, test), evaluate(post_trained, test)
    baseline_matrix = confusion_matrix(test.labels, baseline_eval.predictions)
    post_matrix = confusion_matrix(test.labels, post_eval.predictions)
    baseline_report, post_report = classification_report(baseline_matrix), classification_report(post_matrix)
    atomic_write_json(
        out / METRICS_JSON,
        {
            "baseline": baseline_report.to_json(),
            "post_trained": post_report.to_json(),
            "post_trained_run": GENTLE_KEY,
            "confusion_matrix_baseline": baseline_matrix.tolist(),
            "confusion_matrix_post_trained": post_matrix.tolist(),
        },
    )

    curves = json.loads((out / CURVES_JSON).read_text())
    figures.plot_training_curves(curves["train_acc_history"], curves["test_acc_history"], out / FIGURES["curves"])
    figures.plot_confusion_matrix(baseline_matrix, "Supervised SNN (baseline)", out / FIGURES["cm_baseline"])
    figures.plot_confusion_matrix(post_matrix, "After gentle post-training (covariance, eta = 1e-5)", out / FIGURES["cm_post"])
    for layer, name in (("fc1", "hist1"), ("fc2", "hist2")):
        figures.plot_weight_histograms(
            getattr(baseline, layer).weight.detach().numpy(),
            {
                "after gentle (eta 1e-5)": getattr(post_trained, layer).weight.detach().numpy(),
                "after strong (eta 1e-4)": getattr(strong, layer).weight.detach().numpy(),
            },
            f"Layer {layer[-1]} ({layer})",
            out / FIGURES[name],
        )
    runs = json.loads((out / STUDY_JSON).read_text())["runs"]
    baseline_acc = baseline_eval.accuracy
    for eta, name, label in ((1e-4, "strong", "strong"), (1e-5, "gentle", "gentle")):
        figures.plot_accuracy_trajectories(
            {row["rule"]: row["test_accuracy"] for row in runs if row["eta"] == eta},
            f"Post-training, {label} learning rate (eta = {eta:g})\nmeasured test accuracy of every rule",
            out / FIGURES[name],
            baseline=baseline_acc,
        )
    figures.plot_rule_comparison(runs, out / FIGURES["rules"], baseline=baseline_acc)

    example = 0
    with torch.no_grad():
        output = post_trained(test.flat_images[example : example + 1])
    figures.plot_spike_heatmaps(
        test.images[example].numpy(),
        output.hidden_spikes[:, 0].numpy(),
        output.output_spikes[:, 0].numpy(),
        int(test.labels[example]),
        int(output.output_counts[0].argmax()),
        out / FIGURES["heatmaps"],
    )
    figures.plot_hidden_activity(output.hidden_spikes[:, 0].numpy(), int(test.labels[example]), out / FIGURES["hidden"])
    return [METRICS_JSON, *FIGURES.values()]


def archive(out: Path) -> Path:
    """Pack the results folder into <out>.zip (written atomically beside it)."""
    target = out.with_suffix(".zip") if out.suffix == "" else out.parent / (out.name + ".zip")

    def write(temp: Path) -> None:
        with zipfile.ZipFile(temp, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
            for file in sorted(out.rglob("*")):
                if file.is_file() and not file.name.startswith(".") and file.name != STATE_FILE:
                    bundle.write(file, Path(out.name) / file.relative_to(out))

    atomic_write(target, write)
    return target


@dataclass
class SeedRun:
    """One seed's folder and manifest, where its stages stand, and what this invocation reused."""

    seed: int
    folder: Path
    manifest: Manifest
    next_stage: int = 0
    reused: dict[str, bool] = field(default_factory=dict)
    stale: bool = False  # an earlier stage ran again: every later stage runs too
    started: float = 0.0  # when the running stage started
    rows: dict[int, dict[str, Any]] = field(default_factory=dict)  # plasticity runs done so far


class Scheduler:
    """Every stage of every seed as tasks on one TaskPool: a seed's next stage starts as soon as
    its previous one is recorded, so one seed's post-training fills the cores while another
    seed still trains."""

    def __init__(
        self, config: ReproduceConfig, pool: TaskPool, train_split: MnistSplit, test_split: MnistSplit,
        show_bars: bool, log: Callable[[str], None],
    ) -> None:
        self.config, self.pool, self.train_split, self.test_split = config, pool, train_split, test_split
        self.show_bars, self.log = show_bars, log
        self.tasks: dict[int, tuple[SeedRun, str, tuple[str, float] | None]] = {}

    def run(self, runs: Sequence[SeedRun]) -> None:
        for run in runs:
            self.advance(run)
        while len(self.pool):
            number, result = self.pool.next_done()
            run, name, grid_point = self.tasks.pop(number)
            if name == "plasticity":
                run.rows[number] = result
                self.log(f"seed {run.seed}: {result['rule']} eta={result['eta']:g}: " + " -> ".join(f"{v:.2f}%" for v in result["test_accuracy"]))
                if len(run.rows) < len(self.config.rules) * len(self.config.etas):
                    continue
                result = write_plasticity(run.folder, [run.rows[key] for key in sorted(run.rows)])
            seconds = time.perf_counter() - run.started
            run.manifest.record(name, self.settings(run, name), run.folder, result, seconds)
            self.log(f"seed {run.seed}: stage {name}: done in {seconds:.1f} s")
            run.next_stage += 1
            self.advance(run)

    def settings(self, run: SeedRun, name: str) -> dict[str, Any]:
        # a stage depends on the exact files the stages before it wrote
        upstream = {earlier: run.manifest.digest(earlier) for earlier in STAGES[: STAGES.index(name)]}
        return {**self.config.stage_settings(name, run.seed), "upstream": upstream}

    def advance(self, run: SeedRun) -> None:
        """Reuse the seed's next stages while they hold; submit the tasks of the first that must run."""
        while run.next_stage < len(STAGES):
            name = STAGES[run.next_stage]
            if not run.stale and run.manifest.valid(name, self.settings(run, name), run.folder):
                self.log(f"seed {run.seed}: stage {name}: reused (outputs intact since {run.manifest.stages[name]['completed_at']})")
                run.reused[name] = True
                run.next_stage += 1
                continue
            if name in run.manifest.stages:
                self.log(f"seed {run.seed}: stage {name}: outputs missing, changed, or made with other settings; rebuilding")
                run.manifest.forget([name])
                if name == "train":
                    (run.folder / STATE_FILE).unlink(missing_ok=True)  # nothing to resume: start clean
            self.log(f"seed {run.seed}: stage {name}: running")
            run.reused[name], run.stale, run.started = False, True, time.perf_counter()
            data = (self.train_split, self.test_split)
            if name == "plasticity":
                for stale in (ACCURACY_JSON, STUDY_JSON, STUDY_MARKDOWN):
                    (run.folder / stale).unlink(missing_ok=True)
                run.rows = {}
                for rule in self.config.rules:  # one task per (rule, eta)
                    for eta in self.config.etas:
                        number = self.pool.submit(plasticity_run, self.config, run.seed, run.folder, rule, eta, *data)
                        self.tasks[number] = (run, name, (rule, eta))
            else:
                function = stage_train if name == "train" else stage_analysis
                number = self.pool.submit(function, self.config, run.seed, run.folder, *data, self.show_bars)
                self.tasks[number] = (run, name, None)
            return


def publish_first_seed(out: Path, run: SeedRun) -> list[str]:
    """Copy the first seed's files to `out` under the study's names (only those that changed)."""
    published = []
    for stage in STAGES:
        for relative in run.manifest.stages[stage]["outputs"]:
            source, target = run.folder / relative, out / relative
            if not target.is_file() or sha256(target) != run.manifest.stages[stage]["outputs"][relative]:
                atomic_write(target, lambda temp, source=source: shutil.copyfile(source, temp))
            published.append(relative)
    return published


def reproduce(
    config: ReproduceConfig,
    out: Path,
    train_split: MnistSplit,
    test_split: MnistSplit,
    force: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    jobs: int = 1,
    address: str | None = None,
) -> dict[str, bool]:
    """Run (or reuse) every stage of every seed and write REPORT.md; returns
    {"<stage> seed <S>": reused}.  With a Ray `address` (or "local"), the tasks run as Ray
    tasks there; `out` must then be on storage every node mounts."""
    started = time.perf_counter()
    out = Path(out).resolve()  # workers elsewhere (Ray) do not share this working directory
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for seed in config.seeds:
        folder = seed_folder(out, seed)
        folder.mkdir(parents=True, exist_ok=True)
        manifest = Manifest.load(folder / MANIFEST)
        if force:
            manifest.forget(list(manifest.stages))
            (folder / STATE_FILE).unlink(missing_ok=True)
        runs.append(SeedRun(seed, folder, manifest))
    with TaskPool(jobs, config.threads, address) as pool:
        Scheduler(config, pool, train_split, test_split, progress and jobs == 1 and address is None, log).run(runs)
    publish_first_seed(out, runs[0])
    write_report(config, out, [(run.seed, run.folder, run.manifest.stages) for run in runs], jobs, time.perf_counter() - started)
    return {f"{name} seed {run.seed}": reused for run in runs for name, reused in run.reused.items()}


def default_jobs(threads: int) -> int:
    """As many side-by-side tasks as the cores hold at `threads` threads each."""
    return max(1, available_threads() // threads)


@writes_output_folder
def run(args: argparse.Namespace) -> int:
    threads = configure_threads(args.threads if args.threads is not None else 1)  # validates it
    jobs = args.jobs if args.jobs is not None else default_jobs(threads)
    if jobs < 1:
        raise ValueError(f"--jobs must be a positive integer, got {jobs!r}")
    if threads * jobs > available_threads():
        raise ValueError(
            f"--jobs {jobs} x --threads {threads} asks for more than the {available_threads()} cores here. Fix: lower --jobs or --threads"
        )
    if args.seeds is not None and args.seeds < 1:
        raise ValueError(f"--seeds must be a positive number of seeds, got {args.seeds!r}")
    overrides: dict[str, Any] = {"surrogate": args.surrogate, "backend": args.backend, "threads": threads}
    if args.etas is not None:
        overrides["etas"] = args.etas
    if args.rules is not None:
        overrides["rules"] = args.rules
    base = ReproduceConfig.quick(**overrides) if args.quick else ReproduceConfig(**overrides)
    count = args.seeds if args.seeds is not None else len(base.seeds)
    config = replace(base, seeds=tuple(range(args.seed, args.seed + count)))
    if args.address is not None and args.address != "local":
        check_cluster_address(args.address, args.connect_timeout)
    args.threads = threads
    prepare_runtime(args)
    args.train_subset, args.test_subset = config.train_subset, config.test_subset
    train_split, test_split = load_splits(args)
    assert train_split is not None
    started = time.perf_counter()
    out = Path(args.out)
    reuse = reproduce(
        config, out, train_split, test_split, force=args.force, progress=not args.no_progress, jobs=jobs, address=args.address
    )
    print(
        f"wrote {out / REPORT} ({sum(reuse.values())} of {len(reuse)} stages reused; seeds {', '.join(map(str, config.seeds))}; "
        f"{jobs} job(s) x {threads} thread(s)) in {time.perf_counter() - started:.1f} s"
    )
    if args.archive:
        print(f"archived {archive(out)}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from experiments.posttrain_cmd import parse_floats, parse_rules

    parser = subparsers.add_parser(
        "reproduce",
        help="the whole study over seeds: train, post-train every rule, analyse, report (results/REPORT.md)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_options(parser, device=False)
    threads_option = next(action for action in parser._actions if "--threads" in action.option_strings)
    threads_option.help = "threads of each task, torch and Numba together (default: 1)"
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds, from --seed on (default: 3; --quick: 2)")
    parser.add_argument("--jobs", type=int, default=None, help="tasks side by side, each on --threads threads (default: cores / threads)")
    parser.add_argument(
        "--address", default=None, metavar="HOST:PORT",
        help="run the tasks on a Ray cluster (pip install -e \".[sweep]\"; --out on storage every node mounts), "
        "or 'local' for an embedded Ray here; default: local worker processes",
    )
    add_connect_timeout_option(parser)
    parser.add_argument("--surrogate", choices=("fast_sigmoid", "atan"), default="fast_sigmoid", help="surrogate gradient (default: fast_sigmoid)")
    parser.add_argument("--etas", type=parse_floats, default=None, help="post-training learning rates (default: 1e-5,1e-4)")
    parser.add_argument(
        "--rules", type=parse_rules, default=None,
        help=f"post-training rules (default: covariance,covariance_anchor; every rule: {','.join(STUDY_RULES)})",
    )
    parser.add_argument("--quick", action="store_true", help="smoke test: small subset, one epoch of each kind, two seeds (well under a minute)")
    parser.add_argument("--force", action="store_true", help="rebuild every stage even if its outputs are intact")
    parser.add_argument("--archive", action="store_true", help="also pack the results folder into one .zip beside it")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(handler=run)
