"""`snn-mnist stdp`: train the unsupervised Diehl & Cook-style STDP network, label its
neurons, and measure test accuracy.

    snn-mnist stdp --neurons 400 --epochs 1 --out runs/stdp400

Outputs in --out:
    stdp_config.json              every constant of the network and the run settings
    stdp_accuracy.json            test accuracy (and timings) at every checkpoint
    stdp_assignments.json         the label of each neuron (-1: never fired)
    stdp_receptive_fields.png     each neuron's input weights as a 28x28 image
    stdp_state.npz                weights, thresholds and position: `--resume` continues from it

A checkpoint comes every --checkpoint-every training images and at the end of
every epoch: the network, frozen, answers the first --assign-images training
images (their labels name the neurons) and then the first --test-images test
images (classified by those names).  Test labels are only ever used to score;
nothing is chosen by them.  The last line printed is `test accuracy: NN.NN%`.

Results depend on --seed alone: training runs on one thread, the frozen passes
run images in parallel but each image's input spikes depend only on its own
key, so --threads changes the speed, not the numbers, and a resumed run
reproduces an uninterrupted one exactly.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from experiments.cli import add_common_options
from plasticity.stdp import (
    STREAM_ASSIGN,
    STREAM_TEST,
    STREAM_TRAIN,
    StdpConfig,
    StdpNetwork,
    assign_labels,
    classify,
    image_keys,
    receptive_field_grid,
)
from training.data import NUM_CLASSES, load_mnist
from training.errors import SnnMnistError
from training.progress import ProgressBar, progress_bar
from training.runtime import configure_threads, seed_everything

CONFIG_FILE = "stdp_config.json"
ACCURACY_FILE = "stdp_accuracy.json"
ASSIGNMENTS_FILE = "stdp_assignments.json"
FIGURE_FILE = "stdp_receptive_fields.png"
STATE_FILE = "stdp_state.npz"
STATE_VERSION = 1
TRAIN_SIZE = 60_000
TEST_SIZE = 10_000
CHUNK = 200  # images per kernel call: progress-bar granularity
QUICK = {"train_images": 1000, "assign_images": 500, "test_images": 500, "checkpoint_every": 500}
FULL = {"train_images": TRAIN_SIZE, "assign_images": TRAIN_SIZE, "test_images": TEST_SIZE, "checkpoint_every": 10_000}
# Settings that must match for --resume to continue a run (epochs may grow).
RESUME_KEYS = ("seed", "train_images", "assign_images", "test_images", "checkpoint_every")


class ResumeError(SnnMnistError):
    """The output folder holds a run that cannot be continued with these flags."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "stdp",
        help="unsupervised STDP network (Diehl & Cook 2015 style) with Numba",
        description=(
            "Train a Diehl & Cook (2015)-style spiking network with unsupervised STDP on MNIST, "
            "label its neurons from their responses to training images, and report test accuracy."
        ),
    )
    add_common_options(parser, out="runs/stdp", device=False, backend=False)
    parser.add_argument("--neurons", type=int, default=100, help="excitatory neurons (default: 100)")
    parser.add_argument("--epochs", type=int, default=1, help="passes over the training images (default: 1)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small smoke run: 1000 training, 500 labelling, 500 test images, checkpoint every 500",
    )
    parser.add_argument("--train-images", type=int, default=None, help="training images used (default: all 60000)")
    parser.add_argument(
        "--assign-images",
        type=int,
        default=None,
        help="training images whose responses label the neurons (default: all 60000, as D&C)",
    )
    parser.add_argument("--test-images", type=int, default=None, help="test images scored (default: all 10000)")
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        help="training images between checkpoints (evaluate + save state; default: 10000)",
    )
    parser.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    defaults = StdpConfig()
    parser.add_argument(
        "--inhibition", type=float, default=defaults.w_inh_mv,
        help=f"lateral inhibition per spike in mV (default: {defaults.w_inh_mv})",
    )
    parser.add_argument(
        "--max-rate", type=float, default=defaults.max_rate_hz,
        help=f"input rate of a white pixel in Hz (default: {defaults.max_rate_hz})",
    )
    parser.add_argument(
        "--present-ms", type=float, default=defaults.present_ms,
        help=f"presentation time per image in ms (default: {defaults.present_ms})",
    )
    parser.add_argument("--dt", type=float, default=defaults.dt_ms, help=f"time step in ms (default: {defaults.dt_ms})")
    parser.add_argument(
        "--theta-plus", type=float, default=defaults.theta_plus_mv,
        help=f"threshold increase per spike in mV (default: {defaults.theta_plus_mv})",
    )
    parser.add_argument(
        "--one-spike", action=argparse.BooleanOptionalAction, default=defaults.one_spike,
        help="at most one excitatory spike per time step (default: on)",
    )
    parser.add_argument("--nu-pre", type=float, default=defaults.nu_pre, help=f"STDP depression rate (default: {defaults.nu_pre})")
    parser.add_argument("--nu-post", type=float, default=defaults.nu_post, help=f"STDP potentiation rate (default: {defaults.nu_post})")
    parser.set_defaults(handler=run)


def _positive(name: str, value: int, upper: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or (upper is not None and value > upper):
        valid = f"from 1 to {upper}" if upper is not None else ">= 1"
        raise ValueError(f"{name} must be an integer {valid}, got {value!r}")
    return value


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """Run settings from the flags, --quick filling what was not given."""
    base = QUICK if args.quick else FULL
    pick = lambda name: getattr(args, name) if getattr(args, name) is not None else base[name]  # noqa: E731
    if not isinstance(args.seed, int) or args.seed < 0:
        raise ValueError(f"--seed must be a non-negative integer, got {args.seed!r}")
    return {
        "seed": args.seed,
        "epochs": _positive("--epochs", args.epochs),
        "train_images": _positive("--train-images", pick("train_images"), TRAIN_SIZE),
        "assign_images": _positive("--assign-images", pick("assign_images"), TRAIN_SIZE),
        "test_images": _positive("--test-images", pick("test_images"), TEST_SIZE),
        "checkpoint_every": _positive("--checkpoint-every", pick("checkpoint_every")),
    }


def _config(args: argparse.Namespace) -> StdpConfig:
    _positive("--neurons", args.neurons)
    return StdpConfig(
        n_neurons=args.neurons,
        w_inh_mv=args.inhibition,
        max_rate_hz=args.max_rate,
        present_ms=args.present_ms,
        dt_ms=args.dt,
        theta_plus_mv=args.theta_plus,
        nu_pre=args.nu_pre,
        nu_post=args.nu_post,
        one_spike=args.one_spike,
    )


# ---------------------------------------------------------------------------
# Files


def _write_atomic(path: Path, write: Callable[[Any], None], binary: bool = False) -> None:
    """Write via a temporary file in the same folder and os.replace: a crash leaves the
    old file or the new one, never half of one."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb" if binary else "w") as stream:
            write(stream)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _write_json(path: Path, data: Any) -> None:
    _write_atomic(path, lambda stream: stream.write(json.dumps(data, indent=2) + "\n"))


def _save_state(path: Path, network: StdpNetwork, progress: dict[str, Any], meta: dict[str, Any]) -> None:
    def write(stream: Any) -> None:
        np.savez(
            stream,
            weights=network.weights,
            theta=network.theta,
            meta=np.array(json.dumps({"version": STATE_VERSION, **meta, "progress": progress})),
        )

    _write_atomic(path, write, binary=True)


def _load_state(path: Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return data["weights"], data["theta"], json.loads(str(data["meta"]))
    except (OSError, KeyError, ValueError) as error:
        raise ResumeError(
            f"cannot read the saved state {path}: {error}. Fix: delete it to start over, or pick another --out."
        ) from error


def _check_resumable(meta: dict[str, Any], config: StdpConfig, settings: dict[str, Any], folder: Path) -> None:
    if meta.get("version") != STATE_VERSION:
        raise ResumeError(f"{folder / STATE_FILE} has state version {meta.get('version')!r}, expected {STATE_VERSION}")
    differences = [
        f"{name}: saved {value!r}, now {config.to_json()[name]!r}"
        for name, value in meta["config"].items()
        if config.to_json().get(name) != value
    ]
    differences += [
        f"{name}: saved {meta['settings'][name]!r}, now {settings[name]!r}"
        for name in RESUME_KEYS
        if meta["settings"].get(name) != settings[name]
    ]
    if differences:
        raise ResumeError(
            f"--resume: the run in {folder} was made with other settings ({'; '.join(differences)}). "
            "Fix: repeat the original flags (only --epochs may grow), or pick another --out."
        )


def _files_of_other_commands(folder: Path) -> list[str]:
    """Names of the (non-hidden) files in `folder` that `snn-mnist stdp` does not write."""
    own = {CONFIG_FILE, ACCURACY_FILE, ASSIGNMENTS_FILE, FIGURE_FILE, STATE_FILE}
    return sorted(entry.name for entry in folder.iterdir() if not entry.name.startswith(".") and entry.name not in own)


FIGURE_FULL_COLUMNS = 40  # up to 40 x 40 tiles (1,600 neurons) every tile is drawn with its label
ZOOM_COLUMNS = 10  # larger networks: a downsampled overview plus the first 10 x 10 tiles


def _save_figure(path: Path, network: StdpNetwork, assignments: np.ndarray, title: str) -> None:
    """Every neuron's input weights as a 28x28 tile with its label; above 1,600 neurons an
    overview of all tiles (each 28x28 tile averaged down to 14x14, no labels) beside a
    labelled zoom of the first ZOOM_COLUMNS x ZOOM_COLUMNS neurons."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = network.config.n_neurons
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    vmax = float(np.nanpercentile(network.weights, 99.5)) or 1.0

    def draw(axes: Any, weights: np.ndarray, columns: int, labels: np.ndarray | None) -> Any:
        grid = receptive_field_grid(weights, columns)
        image = axes.imshow(grid, cmap="hot_r", vmin=0.0, vmax=vmax, interpolation="nearest")
        if labels is not None:
            for j, label in enumerate(labels):
                r, c = divmod(j, columns)
                text = "-" if label < 0 else str(int(label))
                axes.text(c * 29 + 1, r * 29 + 1, text, color="tab:blue", fontsize=6, va="top", ha="left")
        axes.set_axis_off()
        return image

    if cols <= FIGURE_FULL_COLUMNS:
        inches = max(6.0, 0.5 * cols)
        figure, axes = plt.subplots(figsize=(inches, inches * rows / cols + 0.5))
        image = draw(axes, network.weights, cols, assignments)
        axes.set_title(title, fontsize=9)
        figure.colorbar(image, ax=axes, fraction=0.03, pad=0.01, label="weight")
        figure.tight_layout()
    else:
        # overview: mean over 2x2 pixel blocks, so an 80 x 80 grid stays a readable size
        small = network.weights.reshape(14, 2, 14, 2, n).mean(axis=(1, 3)).reshape(196, n)
        zoom = min(n, ZOOM_COLUMNS * ZOOM_COLUMNS)
        figure, (left, right) = plt.subplots(1, 2, figsize=(22, 11.5), gridspec_kw={"width_ratios": [1, 1]})
        image = _draw_small_tiles(left, small, cols, vmax)
        left.set_title(f"all {n} neurons (each tile averaged to 14x14)", fontsize=9)
        draw(right, network.weights[:, :zoom], ZOOM_COLUMNS, assignments[:zoom])
        right.set_title(f"zoom: neurons 0-{zoom - 1} with their labels", fontsize=9)
        figure.suptitle(title, fontsize=10)
        figure.colorbar(image, ax=[left, right], fraction=0.02, pad=0.01, label="weight")
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _draw_small_tiles(axes: Any, tiles: np.ndarray, columns: int, vmax: float) -> Any:
    """Tiles (196, N), each a 14x14 image, in a grid `columns` wide with 1-pixel gaps."""
    n = tiles.shape[1]
    rows = int(np.ceil(n / columns))
    grid = np.full((rows * 15 - 1, columns * 15 - 1), np.nan)
    for j in range(n):
        r, c = divmod(j, columns)
        grid[r * 15 : r * 15 + 14, c * 15 : c * 15 + 14] = tiles[:, j].reshape(14, 14)
    image = axes.imshow(grid, cmap="hot_r", vmin=0.0, vmax=vmax, interpolation="nearest")
    axes.set_axis_off()
    return image


# ---------------------------------------------------------------------------
# Training and evaluation


def _respond(network: StdpNetwork, images: np.ndarray, keys: np.ndarray, desc: str) -> np.ndarray:
    """Frozen responses in chunks, with a progress bar (in a log: no summary line, the
    checkpoint line reports the evaluation)."""
    counts = np.zeros((images.shape[0], network.config.n_neurons), dtype=np.int32)
    step = 2000
    with progress_bar(
        total=images.shape[0], desc=desc, unit="img", leave=False, mininterval=1.0, position=1, summary=False
    ) as bar:
        for start in range(0, images.shape[0], step):
            stop = min(start + step, images.shape[0])
            counts[start:stop], _ = network.respond(images[start:stop], keys[start:stop])
            bar.update(stop - start)
    return counts


def _evaluate(
    network: StdpNetwork,
    data: dict[str, np.ndarray],
    seed: int,
) -> tuple[float, np.ndarray, float]:
    """Label neurons from frozen responses to the labelling images, score the test images.
    Returns (test accuracy, assignments, seconds)."""
    started = time.perf_counter()
    assign_keys = image_keys(seed, STREAM_ASSIGN, 0, np.arange(len(data["assign_y"])))
    test_keys = image_keys(seed, STREAM_TEST, 0, np.arange(len(data["test_y"])))
    assign_counts = _respond(network, data["assign_x"], assign_keys, "label neurons")
    assignments = assign_labels(assign_counts, data["assign_y"])
    test_counts = _respond(network, data["test_x"], test_keys, "test")
    accuracy = float(np.mean(classify(test_counts, assignments) == data["test_y"]))
    return accuracy, assignments, time.perf_counter() - started


def _load_data(args: argparse.Namespace, settings: dict[str, Any]) -> dict[str, np.ndarray]:
    train = load_mnist("train", args.data_dir, download=args.download)
    test = load_mnist("test", args.data_dir, download=args.download)
    train_x = train.flat_images.numpy().astype(np.float64)
    train_y = train.labels.numpy()
    return {
        "train_x": train_x[: settings["train_images"]],
        "train_y": train_y[: settings["train_images"]],
        "assign_x": train_x[: settings["assign_images"]],
        "assign_y": train_y[: settings["assign_images"]],
        "test_x": test.flat_images.numpy().astype(np.float64)[: settings["test_images"]],
        "test_y": test.labels.numpy()[: settings["test_images"]],
    }


def epoch_order(seed: int, epoch: int, count: int) -> np.ndarray:
    """The order images are shown in epoch `epoch`: a permutation fixed by (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(count)


def run(args: argparse.Namespace) -> int:
    command_started = time.perf_counter()
    config = _config(args)
    settings = _settings(args)
    threads = configure_threads(args.threads)
    seed_everything(settings["seed"])  # the run itself draws only from explicit generators

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / STATE_FILE
    meta = {"config": config.to_json(), "settings": settings}

    if state_path.exists() and not args.resume:
        raise ResumeError(
            f"{out} already holds an STDP run ({STATE_FILE}). Fix: add --resume to continue it, "
            "or pick another --out."
        )
    resumed = args.resume and state_path.exists()
    if resumed:
        weights, theta, saved = _load_state(state_path)
        _check_resumable(saved, config, settings, out)
        network = StdpNetwork(config, weights, theta)
        progress = saved["progress"]
        if progress["epoch"] >= settings["epochs"]:
            print(f"{out} already holds {progress['epoch']} trained epoch(s); nothing left to train")
        else:
            print(
                f"resuming {out}: epoch {progress['epoch'] + 1}, {progress['position']} images into it, "
                f"{len(progress['history'])} checkpoints so far"
            )
    else:
        if args.resume:
            foreign = _files_of_other_commands(out)
            if foreign:
                raise ResumeError(
                    f"--resume: {out} holds no STDP run ({STATE_FILE}) but another command's files "
                    f"({', '.join(foreign[:4])}{', ...' if len(foreign) > 4 else ''}). "
                    "Fix: point --out at the STDP run's folder, or start a new run in an empty folder without --resume."
                )
            print(f"nothing to resume in {out}: starting a new run")
        network = StdpNetwork.initial(config, np.random.default_rng([settings["seed"], 0x5D9]))
        progress = {"epoch": 0, "position": 0, "train_seconds": 0.0, "images_trained": 0, "history": []}

    _write_json(out / CONFIG_FILE, {**meta, "threads": threads})
    data = _load_data(args, settings)
    count = settings["train_images"]
    every = settings["checkpoint_every"]
    epochs = settings["epochs"]
    print(
        f"STDP network: {config.n_neurons} neurons, {epochs} epoch(s) of {count} images, "
        f"{config.present_ms:g} ms per image at dt {config.dt_ms:g} ms, {threads} thread(s), seed {settings['seed']}"
    )

    total = epochs * count
    done = min(progress["epoch"], epochs) * count + progress["position"]
    # In a log: a heartbeat line a minute, no summary line (the "trained N images" line below is it).
    with progress_bar(total=total, initial=done, desc="stdp train", unit="img", mininterval=1.0, summary=False) as bar:
        while progress["epoch"] < epochs:
            epoch = progress["epoch"]
            order = epoch_order(settings["seed"], epoch, count)
            keys = image_keys(settings["seed"], STREAM_TRAIN, epoch, order)
            finished = False
            while not finished:
                start = progress["position"]
                boundary = min((start // every + 1) * every, count)
                stop = min(start + CHUNK, boundary)
                started = time.perf_counter()
                counts, presentations = network.train(data["train_x"][order[start:stop]], keys[start:stop])
                progress["train_seconds"] += time.perf_counter() - started
                progress["images_trained"] += stop - start
                progress["position"] = stop
                bar.update(stop - start)
                bar.set_postfix(
                    spikes=f"{counts.sum(axis=1).mean():.1f}", shows=f"{presentations.mean():.2f}", refresh=False
                )
                finished = stop == count
                if finished:
                    progress["epoch"], progress["position"] = epoch + 1, 0
                if stop == boundary:
                    _checkpoint(out, network, data, settings, progress, meta, epoch, stop, bar)

    history = progress["history"]
    final = history[-1]
    train_seconds = progress["train_seconds"]
    rate = progress["images_trained"] / train_seconds if train_seconds > 0 else float("nan")
    print(
        f"trained {progress['images_trained']} images in {train_seconds:.1f} s of simulation "
        f"({rate:.1f} images/s; evaluation and file writing excluded, earlier runs of a resumed one included); "
        f"this command took {time.perf_counter() - command_started:.1f} s"
    )
    print(
        "test accuracy by images seen: "
        + ", ".join(f"{entry['images_seen']}: {100 * entry['test_accuracy']:.2f}%" for entry in history)
    )
    print(f"outputs in {out}: {CONFIG_FILE}, {ACCURACY_FILE}, {ASSIGNMENTS_FILE}, {FIGURE_FILE}, {STATE_FILE}")
    print(f"test accuracy: {100 * final['test_accuracy']:.2f}%")
    return 0


def _checkpoint(
    out: Path,
    network: StdpNetwork,
    data: dict[str, np.ndarray],
    settings: dict[str, Any],
    progress: dict[str, Any],
    meta: dict[str, Any],
    epoch: int,
    position: int,
    bar: ProgressBar,
) -> None:
    """Evaluate, then write accuracy, assignments, figure and state (state last)."""
    accuracy, assignments, eval_seconds = _evaluate(network, data, settings["seed"])
    images_seen = epoch * settings["train_images"] + position
    entry = {
        "epoch": epoch + 1,
        "images_in_epoch": position,
        "images_seen": images_seen,
        "test_accuracy": accuracy,
        "assign_images": len(data["assign_y"]),
        "test_images": len(data["test_y"]),
        "train_seconds": round(progress["train_seconds"], 3),
        "train_images_per_second": round(progress["images_trained"] / max(progress["train_seconds"], 1e-9), 2),
        "eval_seconds": round(eval_seconds, 3),
        "mean_theta_mv": float(network.theta.mean()),
    }
    progress["history"].append(entry)
    bar.write(
        f"checkpoint epoch {epoch + 1}, {position} images: test accuracy {100 * accuracy:.2f}% "
        f"(labels from {entry['assign_images']} training images, {entry['test_images']} test images, "
        f"evaluation {eval_seconds:.1f} s)"
    )
    _write_json(out / ACCURACY_FILE, {"checkpoints": progress["history"]})
    per_class = np.bincount(assignments[assignments >= 0], minlength=NUM_CLASSES)
    _write_json(
        out / ASSIGNMENTS_FILE,
        {
            "images_seen": images_seen,
            "assign_images": len(data["assign_y"]),
            "assignments": assignments.tolist(),
            "neurons_per_class": per_class.tolist(),
            "unassigned": int(np.sum(assignments < 0)),
        },
    )
    _save_figure(
        out / FIGURE_FILE,
        network,
        assignments,
        f"input weights of {network.config.n_neurons} neurons after {images_seen} images, "
        f"test accuracy {100 * accuracy:.2f}%\n(blue digit: the neuron's assigned label; -: never fired)",
    )
    _save_state(out / STATE_FILE, network, progress, meta)
