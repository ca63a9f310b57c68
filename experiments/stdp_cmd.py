"""`snn-mnist stdp`: train the unsupervised Diehl & Cook-style STDP network, label its
neurons, and measure test accuracy.

    snn-mnist stdp --neurons 400 --epochs 1 --out runs/stdp400

Outputs in --out:
    stdp_config.json              every constant of the network and the run settings
    stdp_accuracy.json            test accuracy (and timings) at every checkpoint
    stdp_assignments.json         the label of each neuron (-1: never fired)
    stdp_receptive_fields.png     each neuron's input weights as a 28x28 image
    stdp_state.npz                weights, thresholds and position: `--resume` continues from it
    stdp_evaluations.json         scores of `--evaluate-only` runs (other readout settings)

A checkpoint comes every --checkpoint-every training images and at the end of
every epoch: the network, frozen, answers the first --assign-images training
images (their labels name the neurons) and then the first --test-images test
images (classified by those names), once per readout (--readout:
`learned`, D&C's thresholds as trained, and `equal_norm`, every neuron's
weights rescaled to one Euclidean norm under one threshold; see
plasticity.stdp_readout).  --validation N holds N training images out of
training and labelling and scores them too, for choosing settings; test labels
are only ever used to score.  The last line printed is `test accuracy: NN.NN%`
(the equal_norm readout's when it is evaluated).  --evaluate-only scores a saved
network again with other readout settings.

Results depend on --seed alone: training takes the images one by one (threads
only split the summing of currents, each sum on one thread in a fixed order),
the frozen passes run images in parallel but each image's input spikes depend
only on its own key, so --threads changes the speed, not the numbers, and a
resumed run reproduces an uninterrupted one exactly.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from experiments.cli import add_common_options, check_fits_in_memory
from experiments.run_folder import writes_output_folder
from experiments.stdp_figure import save_receptive_fields
from plasticity.stdp import (
    STREAM_ASSIGN,
    STREAM_TEST,
    STREAM_TRAIN,
    STREAM_VALIDATION,
    StdpConfig,
    StdpNetwork,
    image_keys,
    size_scaled_homeostasis,
)
from plasticity.stdp_readout import (
    READOUT_NAMES,
    EqualNormReadout,
    class_count_sums,
    classify,
    equal_norm_readout,
    labels_from_rates,
    rates_from_sums,
)
from training.checkpoint import default_file_mode
from training.data import NUM_CLASSES, carve_validation, load_mnist
from training.errors import SnnMnistError
from training.progress import ProgressBar, progress_bar
from training.runtime import configure_threads, seed_everything

CONFIG_FILE = "stdp_config.json"
ACCURACY_FILE = "stdp_accuracy.json"
ASSIGNMENTS_FILE = "stdp_assignments.json"
FIGURE_FILE = "stdp_receptive_fields.png"
STATE_FILE = "stdp_state.npz"
EVALUATIONS_FILE = "stdp_evaluations.json"
STATE_VERSION = 1
TRAIN_SIZE = 60_000
TEST_SIZE = 10_000
CHUNK = 200  # training images per kernel call: progress-bar granularity
RESPOND_CHUNK = 2000  # frozen responses held at a time
QUICK = {"train_images": 1000, "assign_images": 500, "test_images": 500, "checkpoint_every": 500}
FULL = {"train_images": TRAIN_SIZE, "assign_images": TRAIN_SIZE, "test_images": TEST_SIZE, "checkpoint_every": 10_000}
# Settings that must match for --resume to continue a run (epochs may grow).
RESUME_KEYS = ("seed", "train_images", "assign_images", "test_images", "checkpoint_every", "validation")
RESUME_DEFAULTS = {"validation": 0}  # settings that runs saved before they existed had at this value


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
        "--validation", type=int, default=0, metavar="N",
        help="hold N random training images out of training and labelling (a fixed draw) and score them at "
        "every checkpoint, for choosing settings without the test set (default: 0, none)",
    )
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        help="training images between checkpoints (evaluate + save state; default: 10000)",
    )
    parser.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    parser.add_argument(
        "--evaluate-only", action="store_true",
        help="score the network saved in --out again with the --readout flags given (its own network and "
        f"run settings are used; nothing is trained and its files are left as they are); appends to {EVALUATIONS_FILE}",
    )
    readout = EqualNormReadout()
    parser.add_argument(
        "--readout", choices=(*READOUT_NAMES, "both"), default="both",
        help="how the frozen network answers at each checkpoint: learned (D&C: the thresholds as trained), "
        "equal_norm (every neuron's weights rescaled to one Euclidean norm, one threshold for all; see "
        "docs/stdp.md), or both (default; the last line reports equal_norm)",
    )
    parser.add_argument(
        "--readout-norm", type=float, default=readout.norm,
        help=f"equal_norm readout: Euclidean norm of every neuron's input weights (default: {readout.norm:g})",
    )
    parser.add_argument(
        "--readout-theta", type=float, default=readout.theta_mv,
        help=f"equal_norm readout: the threshold above v_thresh shared by all neurons, in mV (default: {readout.theta_mv:g})",
    )
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
        "--theta-plus", type=float, default=None,
        help=f"threshold increase per spike in mV (default: by network size: D&C's {defaults.theta_plus_mv} up to "
        "400 neurons, growing with N to 0.2 at 1,600 and above; see docs/stdp.md)",
    )
    parser.add_argument(
        "--tau-theta", type=float, default=None,
        help=f"time constant of the threshold's decay in ms (default: by network size: D&C's {defaults.tau_theta_ms:g} "
        "up to 1,600 neurons, growing with N above: 4e7 at 6,400; see docs/stdp.md)",
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
    if not isinstance(args.seed, int) or args.seed < 0:
        raise ValueError(f"--seed must be a non-negative integer, got {args.seed!r}")
    validation = args.validation
    if isinstance(validation, bool) or not isinstance(validation, int) or not 0 <= validation < TRAIN_SIZE:
        raise ValueError(f"--validation must be a whole number of images from 0 to {TRAIN_SIZE - 1}, got {validation!r}")
    available = TRAIN_SIZE - validation  # the training images left for training and labelling

    def pick(name: str) -> int:
        given = getattr(args, name)
        return given if given is not None else min(base[name], available if name != "test_images" else TEST_SIZE)

    return {
        "seed": args.seed,
        "epochs": _positive("--epochs", args.epochs),
        "train_images": _positive("--train-images", pick("train_images"), available),
        "assign_images": _positive("--assign-images", pick("assign_images"), available),
        "test_images": _positive("--test-images", pick("test_images"), TEST_SIZE),
        "checkpoint_every": _positive("--checkpoint-every", pick("checkpoint_every")),
        "validation": validation,
        **_readout_settings(args),
    }


def _scores(result: dict[str, Any]) -> str:
    """'validation V%, test T%' of one readout's result (validation only when held out)."""
    validation = f"validation {100 * result['validation_accuracy']:.2f}%, " if "validation_accuracy" in result else ""
    return f"{validation}test {100 * result['test_accuracy']:.2f}%"


def primary_readout(readouts: Any) -> str:
    """The readout a run's headline accuracy is: equal_norm when it was evaluated, else learned."""
    return "equal_norm" if "equal_norm" in readouts else "learned"


def _readout_settings(args: argparse.Namespace) -> dict[str, Any]:
    """How checkpoints read the network (may change on --resume: training does not depend on it)."""
    return {
        "readouts": list(READOUT_NAMES) if args.readout == "both" else [args.readout],
        "equal_norm_readout": asdict(EqualNormReadout(args.readout_norm, args.readout_theta)),
    }


def estimate_stdp_bytes(neurons: int) -> int:
    """A generous estimate of an STDP run's peak memory from its size alone: MNIST as float64
    (training and test images), and per neuron its 784 float64 input weights a few times over
    (the weights, their traces and updates, a checkpoint's copy) plus its labelling sums."""
    images = 8 * 70_000 * 784
    return (400 << 20) + images + neurons * (4 * 8 * 784 + 8 * 64)


def _config(args: argparse.Namespace) -> StdpConfig:
    _positive("--neurons", args.neurons)
    scaled_theta_plus, scaled_tau_theta = size_scaled_homeostasis(args.neurons)
    return StdpConfig(
        n_neurons=args.neurons,
        w_inh_mv=args.inhibition,
        max_rate_hz=args.max_rate,
        present_ms=args.present_ms,
        dt_ms=args.dt,
        theta_plus_mv=scaled_theta_plus if args.theta_plus is None else args.theta_plus,
        tau_theta_ms=scaled_tau_theta if args.tau_theta is None else args.tau_theta,
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
        os.chmod(temporary, default_file_mode())
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
    saved_settings = {**RESUME_DEFAULTS, **meta["settings"]}
    differences += [
        f"{name}: saved {saved_settings.get(name)!r}, now {settings[name]!r}"
        for name in RESUME_KEYS
        if saved_settings.get(name) != settings[name]
    ]
    if differences:
        raise ResumeError(
            f"--resume: the run in {folder} was made with other settings ({'; '.join(differences)}). "
            "Fix: repeat the original flags (only --epochs may grow), or pick another --out."
        )


def _files_of_other_commands(folder: Path) -> list[str]:
    """Names of the (non-hidden) files in `folder` that `snn-mnist stdp` does not write."""
    own = {CONFIG_FILE, ACCURACY_FILE, ASSIGNMENTS_FILE, FIGURE_FILE, STATE_FILE, EVALUATIONS_FILE}
    return sorted(entry.name for entry in folder.iterdir() if not entry.name.startswith(".") and entry.name not in own)


# ---------------------------------------------------------------------------
# Training and evaluation


def _respond_in_chunks(
    network: StdpNetwork, images: np.ndarray, keys: np.ndarray, desc: str
) -> Iterator[tuple[slice, np.ndarray]]:
    """Frozen responses, RESPOND_CHUNK images at a time: (their slice, counts), with a
    progress bar (in a log: no summary line, the checkpoint line reports the evaluation).
    Chunks keep memory small: all 60,000 labelling responses of 6,400 neurons would
    take 1.5 GB as int32."""
    with progress_bar(
        total=images.shape[0], desc=desc, unit="img", leave=False, mininterval=1.0, position=1, summary=False
    ) as bar:
        for start in range(0, images.shape[0], RESPOND_CHUNK):
            chunk = slice(start, min(start + RESPOND_CHUNK, images.shape[0]))
            counts, _ = network.respond(images[chunk], keys[chunk])
            yield chunk, counts
            bar.update(chunk.stop - chunk.start)


def _label_neurons(network: StdpNetwork, images: np.ndarray, labels: np.ndarray, keys: np.ndarray, desc: str) -> np.ndarray:
    """D&C's labels from the frozen responses, the per-class spike sums added up chunk by chunk."""
    sums = np.zeros((NUM_CLASSES, network.config.n_neurons))
    for chunk, counts in _respond_in_chunks(network, images, keys, desc):
        sums += class_count_sums(counts, labels[chunk])
    return labels_from_rates(rates_from_sums(sums, np.bincount(labels, minlength=NUM_CLASSES)))


def _score(
    network: StdpNetwork, images: np.ndarray, labels: np.ndarray, keys: np.ndarray, assignments: np.ndarray, desc: str
) -> float:
    """Fraction of images whose D&C class (from the frozen responses) is their label."""
    correct = 0
    for chunk, counts in _respond_in_chunks(network, images, keys, desc):
        correct += int(np.sum(classify(counts, assignments) == labels[chunk]))
    return correct / len(labels)


def _evaluate(
    network: StdpNetwork,
    data: dict[str, np.ndarray],
    settings: dict[str, Any],
) -> dict[str, dict[str, Any]]:
    """For each readout of the run: label the neurons from the frozen network's responses
    to the labelling images, then score the test images (and the validation images, when
    held out).  Returns {readout: {"test_accuracy", ["validation_accuracy",]
    "assignments", "eval_seconds"}}."""
    seed = settings["seed"]
    assign_keys = image_keys(seed, STREAM_ASSIGN, 0, np.arange(len(data["assign_y"])))
    results = {}
    for readout in settings["readouts"]:
        started = time.perf_counter()
        if readout == "equal_norm":
            answering = equal_norm_readout(network, EqualNormReadout(**settings["equal_norm_readout"]))
        else:
            answering = network
        assignments = _label_neurons(answering, data["assign_x"], data["assign_y"], assign_keys, f"{readout}: label neurons")
        result: dict[str, Any] = {"assignments": assignments}
        for split, stream in (("validation", STREAM_VALIDATION), ("test", STREAM_TEST)):
            if len(data[f"{split}_y"]) == 0:
                continue
            keys = image_keys(seed, stream, 0, np.arange(len(data[f"{split}_y"])))
            images, labels = data[f"{split}_x"], data[f"{split}_y"]
            result[f"{split}_accuracy"] = _score(answering, images, labels, keys, assignments, f"{readout}: {split}")
        result["eval_seconds"] = round(time.perf_counter() - started, 3)
        results[readout] = result
    return results


def _load_data(args: argparse.Namespace, settings: dict[str, Any]) -> dict[str, np.ndarray]:
    train = load_mnist("train", args.data_dir, download=args.download)
    test = load_mnist("test", args.data_dir, download=args.download)
    validation_x, validation_y = np.zeros((0, 784)), np.zeros(0, dtype=np.int64)
    if settings["validation"]:
        train, held_out = carve_validation(train, settings["validation"])
        validation_x, validation_y = held_out.flat_images.numpy().astype(np.float64), held_out.labels.numpy()
    train_x = train.flat_images.numpy().astype(np.float64)
    train_y = train.labels.numpy()
    return {
        "validation_x": validation_x,
        "validation_y": validation_y,
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


def evaluate_saved(args: argparse.Namespace) -> int:
    """--evaluate-only: the saved network, frozen, scored with the readouts asked for."""
    out: Path = args.out
    state_path = out / STATE_FILE
    if not state_path.exists():
        raise ResumeError(f"--evaluate-only: {out} holds no STDP run ({STATE_FILE}). Fix: point --out at a run's folder.")
    readouts = _readout_settings(args)
    threads = configure_threads(args.threads)
    weights, theta, saved = _load_state(state_path)
    config = StdpConfig.from_json(saved["config"])
    settings = {**RESUME_DEFAULTS, **saved["settings"], **readouts}
    history = saved["progress"]["history"]
    images_seen = history[-1]["images_seen"] if history else 0
    print(f"evaluating {out}: {config.n_neurons} neurons after {images_seen} training images, {threads} thread(s)")
    results = _evaluate(StdpNetwork(config, weights, theta), _load_data(args, settings), settings)
    entry = {
        "images_seen": images_seen,
        **readouts,
        "readout_results": {
            name: {key: value for key, value in result.items() if key != "assignments"} for name, result in results.items()
        },
    }
    path = out / EVALUATIONS_FILE
    earlier = json.loads(path.read_text())["evaluations"] if path.exists() else []
    _write_json(path, {"evaluations": [*earlier, entry]})
    for name, result in results.items():
        print(f"{name} readout: {_scores(result)}")
    primary = primary_readout(results)
    print(f"test accuracy: {100 * results[primary]['test_accuracy']:.2f}%")
    return 0


@writes_output_folder
def run(args: argparse.Namespace) -> int:
    if args.evaluate_only:
        if args.resume:
            raise ValueError("--evaluate-only and --resume exclude each other. Fix: drop one of them.")
        return evaluate_saved(args)
    command_started = time.perf_counter()
    config = _config(args)
    settings = _settings(args)
    check_fits_in_memory("stdp", estimate_stdp_bytes(config.n_neurons), f"--neurons {config.n_neurons}")
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
        f"test accuracy by images seen ({final.get('readout', 'learned')} readout): "
        + ", ".join(f"{entry['images_seen']}: {100 * entry['test_accuracy']:.2f}%" for entry in history)
    )
    print(f"outputs in {out}: {CONFIG_FILE}, {ACCURACY_FILE}, {ASSIGNMENTS_FILE}, {FIGURE_FILE}, {STATE_FILE}")
    for name, result in final.get("readouts", {}).items():
        print(f"{name} readout: {_scores(result)}")
    if "validation_accuracy" in final:
        print(f"validation accuracy: {100 * final['validation_accuracy']:.2f}%")
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
    """Evaluate, then write accuracy, assignments, figure and state (state last).

    The entry's test_accuracy (and validation_accuracy) are the primary readout's:
    equal_norm when it is evaluated, else learned; `readouts` holds every readout's."""
    results = _evaluate(network, data, settings)
    primary = primary_readout(results)
    images_seen = epoch * settings["train_images"] + position
    accuracy_keys = ("test_accuracy", "validation_accuracy")
    entry = {
        "epoch": epoch + 1,
        "images_in_epoch": position,
        "images_seen": images_seen,
        **{key: results[primary][key] for key in accuracy_keys if key in results[primary]},
        "readout": primary,
        "readouts": {
            name: {
                **{key: result[key] for key in accuracy_keys if key in result},
                "unassigned_neurons": int(np.sum(result["assignments"] < 0)),
                "eval_seconds": result["eval_seconds"],
            }
            for name, result in results.items()
        },
        "assign_images": len(data["assign_y"]),
        "test_images": len(data["test_y"]),
        "validation_images": len(data["validation_y"]),
        "train_seconds": round(progress["train_seconds"], 3),
        "train_images_per_second": round(progress["images_trained"] / max(progress["train_seconds"], 1e-9), 2),
        "eval_seconds": round(sum(result["eval_seconds"] for result in results.values()), 3),
        "mean_theta_mv": float(network.theta.mean()),
    }
    progress["history"].append(entry)

    bar.write(
        f"checkpoint epoch {epoch + 1}, {position} images: "
        + "; ".join(f"{name} readout {_scores(result)}" for name, result in results.items())
        + f" (labels from {entry['assign_images']} training images, {entry['test_images']} test images, "
        f"evaluation {entry['eval_seconds']:.1f} s)"
    )
    _write_json(out / ACCURACY_FILE, {"checkpoints": progress["history"]})
    assignments = results[primary]["assignments"]
    _write_json(
        out / ASSIGNMENTS_FILE,
        {
            "images_seen": images_seen,
            "assign_images": len(data["assign_y"]),
            "readout": primary,
            "assignments": assignments.tolist(),
            "neurons_per_class": np.bincount(assignments[assignments >= 0], minlength=NUM_CLASSES).tolist(),
            "unassigned": int(np.sum(assignments < 0)),
            "by_readout": {name: result["assignments"].tolist() for name, result in results.items()},
        },
    )
    save_receptive_fields(
        out / FIGURE_FILE,
        network,
        assignments,
        f"input weights of {network.config.n_neurons} neurons after {images_seen} images, "
        f"test accuracy {100 * entry['test_accuracy']:.2f}% ({primary} readout)\n"
        "(blue digit: the neuron's assigned label; -: never fired)",
    )
    _save_state(out / STATE_FILE, network, progress, meta)
