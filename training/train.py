"""The trainer: surrogate-gradient BPTT of any `FeedForwardSNN`, and its evaluation.

The loss is the network's own (`training.network.network_loss`); for the study's network,
cross-entropy on the output spike counts summed over time plus a penalty on hidden spiking,

    L = CE( sum_t S2_t , y ) + activity_penalty * mean_{b, n} sum_t S1_t[b, n]

i.e. the penalty's weight (the study's alpha_reg, 1e-4) times the mean number of spikes a
hidden neuron fires per image.  Adam (lr 1e-3), batch 128, 10 epochs; after every optimiser
step every weight matrix is clamped to [-1, 1] (biases are not): `TrainConfig`'s defaults.

Reproducibility: weights come from torch's generator seeded with `seed` before
the model is built; epoch e visits the training images in the order
`randperm(N)` drawn from a generator seeded with (seed, e), so the order does
not depend on what ran before and a resumed run sees exactly the batches an
uninterrupted one would.  A rate-coded network draws epoch e's input spikes from a
generator seeded with (input_seed, e) (`input_generator`), and evaluates on draws seeded
with input_seed alone, for the same reason.  With `augment_shift` k > 0 (not the study's),
each training image is moved by (dy, dx) drawn uniformly from [-k, k]^2, from a generator
seeded with (seed, e) as well; `weight_decay` adds Adam's L2 term.

Artifacts (all written atomically, after every completed epoch):
    supervised_snn_baseline_state_dict.pt   model state_dict (snnTorch-compatible)
    training_state.pt                       weights + optimiser state + histories, for --resume
    training_curves.csv / .json             train and test accuracy per epoch, percent
    experiment_config.json                  every setting, the seed, library versions
Train accuracy is measured on the fly over each epoch's batches (as the weights
move), test accuracy on the whole test split after each epoch.
"""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numba
import numpy as np
import torch
from torch import Tensor, nn

from lif_core.backend import BACKENDS
from training.checkpoint import (
    CheckpointError,
    atomic_torch_save,
    atomic_write_json,
    atomic_write_text,
    save_model,
)
from training.data import MnistSplit, translate
from training.errors import SnnMnistError
from training.network import FeedForwardSNN, LossTerms, NetworkConfig, study_network_config
from training.progress import progress_bar
from training.runtime import machine_description

MODEL_FILE = "supervised_snn_baseline_state_dict.pt"
STATE_FILE = "training_state.pt"
CURVES_CSV = "training_curves.csv"
CURVES_JSON = "training_curves.json"
CONFIG_JSON = "experiment_config.json"
# Inference batch: at 250 images the (T, B, 512) hidden spikes (12.8 MB) stay in cache;
# at 1,000 they do not, and a pass over the test set was 1.6x slower on 2 cores.
EVAL_BATCH = 250
LR_SCHEDULES = ("constant", "cosine")
MAX_SHIFT = 8  # a larger move takes most digits off the 28x28 image


class TrainingDivergedError(SnnMnistError):
    """The loss became NaN or infinite; the last good checkpoint was kept."""


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings, and how the network is computed; defaults are the study's."""

    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_clip: float = 1.0
    seed: int = 0
    eval_batch_size: int = EVAL_BATCH
    lr_schedule: str = "constant"  # "constant" (the study), or "cosine" decay to 0 over the run
    augment_shift: int = 0  # move each training image by up to this many pixels (0: the study, no augmentation)
    weight_decay: float = 0.0  # Adam's L2 term, weight_decay * w added to the gradient (0: the study)
    input_seed: int | None = None  # seed of a rate-coded network's input draws (None: `seed`)
    backend: str = "auto"  # where the neurons run (lif_core.backend); the same maths
    fused: bool = True  # the fast kernels where the network allows them (fused / fast path); the same sums in another order

    def __post_init__(self) -> None:
        for name, flag in (("epochs", "--epochs"), ("batch_size", "--batch-size"), ("eval_batch_size", "--eval-batch-size")):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{flag} must be a positive integer, got {value!r}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"--lr must be a positive finite number, got {self.learning_rate!r}")
        if not (self.weight_clip > 0):
            raise ValueError(f"--weight-clip must be positive, got {self.weight_clip!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"--seed must be a non-negative integer, got {self.seed!r}")
        if not isinstance(self.augment_shift, int) or isinstance(self.augment_shift, bool) or not 0 <= self.augment_shift <= MAX_SHIFT:
            raise ValueError(f"--augment-shift must be a whole number of pixels from 0 to {MAX_SHIFT}, got {self.augment_shift!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"--weight-decay must be a non-negative finite number, got {self.weight_decay!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if self.input_seed is not None and (not isinstance(self.input_seed, int) or self.input_seed < 0):
            raise ValueError(f"input_seed must be a non-negative integer or None, got {self.input_seed!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if not isinstance(self.fused, bool):
            raise ValueError(f"fused must be True or False, got {self.fused!r}")

    @property
    def draws_seed(self) -> int:
        """The seed of the rate-coded input's draws: input_seed, or seed when that is None."""
        return self.seed if self.input_seed is None else self.input_seed

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> TrainConfig:
        """Inverse of `to_json`; settings added since a run was saved take their defaults."""
        return cls(**payload)

    def learning_rate_at(self, step: int, steps_per_epoch: int) -> float:
        """The learning rate of optimiser step `step` (0-based) of the whole run.

            constant:  lr_k = lr
            cosine:    lr_k = lr * (1 + cos(pi * k / K)) / 2,   K = epochs * steps_per_epoch
        """
        if self.lr_schedule == "constant":
            return self.learning_rate
        total = self.epochs * steps_per_epoch
        return self.learning_rate * 0.5 * (1.0 + math.cos(math.pi * step / total))


# What a training run holds besides its sizes: the interpreter, torch, Numba and their kernels.
BASE_BYTES = 400 << 20
# Float32 tensors of shape (B, N) that BPTT keeps per time step and layer for the backward pass
# (input current, membrane, spikes, surrogate terms and their gradients), counted generously.
SAVED_PER_STEP = 8


def estimate_training_bytes(
    network_config: NetworkConfig, train_config: TrainConfig, train_examples: int = 60_000, test_examples: int = 10_000
) -> int:
    """A generous estimate of a training run's peak memory, from its sizes alone (nothing is
    allocated): the images as float32, the weights with their gradients and Adam's two moments,
    and the (T, B, N) activations BPTT keeps, for a training and an evaluation batch."""
    sizes = network_config.layer_sizes
    neurons = sum(sizes[1:])
    parameters = sum(inputs * outputs + outputs for inputs, outputs in zip(sizes[:-1], sizes[1:]))
    steps = network_config.num_steps
    rate_input = sizes[0] if network_config.input_coding == "rate" else 0
    activations = 4 * steps * train_config.batch_size * (SAVED_PER_STEP * neurons + rate_input)
    evaluation = 4 * steps * train_config.eval_batch_size * (2 * neurons + rate_input)
    images = 4 * (train_examples + test_examples) * sizes[0]
    return BASE_BYTES + images + 4 * 4 * parameters + activations + evaluation


def epoch_order(num_examples: int, seed: int, epoch: int) -> Tensor:
    """The shuffled visiting order of epoch `epoch` (0-based), a function of (seed, epoch) only."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(num_examples, generator=generator)


def epoch_offsets(num_examples: int, seed: int, epoch: int, max_shift: int) -> Tensor:
    """(N, 2) pixel offsets (dy, dx), uniform in [-max_shift, max_shift], for the images of
    epoch `epoch` in visiting order; like the order, a function of (seed, epoch) only."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch + 50_000_017)
    return torch.randint(-max_shift, max_shift + 1, (num_examples, 2), generator=generator)


def input_stream_seed(input_seed: int, epoch: int | None) -> int:
    """The seed of a rate-coded network's input spikes: training epoch `epoch` (0-based) draws
    from (input_seed, epoch), evaluation (epoch None) from input_seed alone."""
    return input_seed if epoch is None else input_seed * 100_003 + epoch


def input_generator(input_seed: int, epoch: int | None) -> torch.Generator:
    """A generator seeded with `input_stream_seed(input_seed, epoch)`."""
    return torch.Generator().manual_seed(input_stream_seed(input_seed, epoch))


def iterate_batches(order: Tensor, batch_size: int) -> Iterator[Tensor]:
    """Index tensors of consecutive batches of `order`; the last one may be short."""
    for start in range(0, order.shape[0], batch_size):
        yield order[start : start + batch_size]


def build_optimizer(model: nn.Module, learning_rate: float, weight_decay: float = 0.0) -> torch.optim.Adam:
    """Adam over all parameters (with its L2 term, g + weight_decay * w, when weight_decay > 0).
    The fused kernel (one pass over all tensors) is the same update as the default loop to
    float rounding, and 5x faster on CPU."""
    fused = all(p.device.type in ("cpu", "cuda") for p in model.parameters())
    return torch.optim.Adam(model.parameters(), lr=learning_rate, weight_decay=weight_decay, fused=fused)


def train_step(
    model: FeedForwardSNN,
    optimizer: torch.optim.Optimizer,
    images: Tensor,
    labels: Tensor,
    config: TrainConfig,
    generator: torch.Generator | None = None,
) -> tuple[LossTerms, Tensor]:
    """One BPTT step: forward, loss, backward, Adam, clip. Returns the loss terms
    (detached) and the batch's predictions (argmax of output spike counts).
    `generator` draws a rate-coded network's input spikes."""
    output = model(images, generator)
    loss = model.loss(output, labels)
    optimizer.zero_grad(set_to_none=True)
    loss.total.backward()
    optimizer.step()
    model.clip_weights(config.weight_clip)
    predictions = output.output_counts.detach().argmax(dim=1)
    return LossTerms(*(term.detach() for term in loss)), predictions


class Evaluation(NamedTuple):
    accuracy: float  # percent
    predictions: Tensor  # (N,) int64
    output_counts: Tensor  # (N, 10)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    split: MnistSplit,
    batch_size: int = EVAL_BATCH,
    progress: bool = False,
    generator: torch.Generator | None = None,
) -> Evaluation:
    """Accuracy (percent), predictions and output spike counts over a whole split.

    `model` is a FeedForwardSNN (or any model called as model(images, generator) whose output
    has `output_counts`); `generator` draws a rate-coded network's input spikes."""
    if batch_size < 1:
        raise ValueError(f"evaluation batch size must be a positive integer, got {batch_size}")
    device = next(model.parameters()).device
    predictions, counts = [], []
    images = split.flat_images
    batches = range(0, len(split), batch_size)
    for start in progress_bar(batches, desc="evaluate", unit="batch", disable=not progress, leave=False):
        batch = images[start : start + batch_size].to(device)
        output = model(batch, generator)
        counts.append(output.output_counts.cpu())
        predictions.append(output.output_counts.argmax(dim=1).cpu())
    prediction_tensor = torch.cat(predictions)
    correct = (prediction_tensor == split.labels).sum().item()
    return Evaluation(100.0 * correct / len(split), prediction_tensor, torch.cat(counts))


@dataclass
class TrainHistory:
    train_acc_history: list[float] = field(default_factory=list)
    test_acc_history: list[float] = field(default_factory=list)
    loss_history: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)  # each epoch's training and evaluation
    val_acc_history: list[float] = field(default_factory=list)  # empty without a validation split
    train_seconds: list[float] = field(default_factory=list)  # each epoch's training alone


def library_versions() -> dict[str, str]:
    """Versions and the threading settings that affect speed (not results)."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numba": numba.__version__,
        "numpy": np.__version__,
        "numba_threading_layer": str(numba.config.THREADING_LAYER),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset: the OpenMP default)"),
    }


def _write_curves(out_dir: Path, history: TrainHistory) -> None:
    with_validation = bool(history.val_acc_history)
    rows = ["epoch,train_acc,test_acc" + (",val_acc" if with_validation else "")]
    for epoch, (train_acc, test_acc) in enumerate(zip(history.train_acc_history, history.test_acc_history), 1):
        validation = f",{history.val_acc_history[epoch - 1]:.4f}" if with_validation else ""
        rows.append(f"{epoch},{train_acc:.4f},{test_acc:.4f}{validation}")
    atomic_write_text(out_dir / CURVES_CSV, "\n".join(rows) + "\n")
    curves: dict[str, Any] = {
        "train_acc_history": history.train_acc_history,
        "test_acc_history": history.test_acc_history,
        "loss_history": history.loss_history,
    }
    if with_validation:
        curves["val_acc_history"] = history.val_acc_history
    atomic_write_json(out_dir / CURVES_JSON, curves)


def _run_settings(config: NetworkConfig, train_config: TrainConfig, extra: dict[str, Any]) -> dict[str, Any]:
    return {"network": config.to_json(), "training": train_config.to_json(), **extra}


def _json_differences(saved: Any, now: Any, where: str) -> list[str]:
    """'where.key: saved X, now Y' for every leaf of two JSON values that differs."""
    if isinstance(saved, dict) and isinstance(now, dict):
        return [
            difference
            for key in dict.fromkeys([*saved, *now])
            for difference in _json_differences(saved.get(key), now.get(key), f"{where}.{key}" if where else key)
        ]
    if isinstance(saved, list) and isinstance(now, list) and len(saved) == len(now) and len(saved) <= 16:
        return [
            difference
            for index, (old, new) in enumerate(zip(saved, now))
            for difference in _json_differences(old, new, f"{where}[{index}]")
        ]
    if saved != now:
        shown = [value if not (isinstance(value, list) and len(value) > 4) else f"{len(value)} values" for value in (saved, now)]
        return [f"{where}: saved {shown[0]!r}, now {shown[1]!r}"]
    return []


def _legacy_settings(saved: dict[str, Any]) -> tuple[NetworkConfig, TrainConfig]:
    """The configs of a run saved before the network had a NetworkConfig (snn-mnist 0.1's
    "model" settings of the study's network, and the activity penalty as training.alpha_reg)."""
    from training.presets import network_with  # presets builds on this module

    model, training = dict(saved["model"]), dict(saved["training"])
    network = network_with(
        study_network_config(),
        {
            "hidden_size": model["hidden_size"],
            "beta": model["beta"],
            "threshold": model["threshold"],
            "num_steps": model["num_steps"],
            "surrogate": model["surrogate"],
            "surrogate_scale": model.get("surrogate_scale"),
            "activity_penalty": training.pop("alpha_reg"),
        },
    )
    compute = {"backend": model.get("backend", "auto"), "fused": model.get("fused", True)}
    return network, TrainConfig.from_json({**training, **compute})


# Run settings that older versions did not record: the data files' checksums (issue 31).
RECORDED_SINCE = ("data_sha256",)


def _differences(saved: dict[str, Any], settings: dict[str, Any]) -> list[str]:
    """What differs between a saved run's settings and these, as 'what: saved X, now Y'.  The
    configs are read back as configs first (a setting added since the run was saved takes its
    default); a finished run may be extended with more epochs, unless the learning rate
    schedule depends on their number."""
    try:
        network = NetworkConfig.from_json(saved["network"]).to_json()
        training = TrainConfig.from_json(saved["training"]).to_json()
    except (KeyError, TypeError, ValueError):
        try:
            network, training = (config.to_json() for config in _legacy_settings(saved))
        except (KeyError, TypeError, ValueError):
            return ["the saved settings are not those of a network of this version (saved by an older snn-mnist?)"]
    if settings["training"]["lr_schedule"] == "constant":
        training["epochs"] = settings["training"]["epochs"]
    # a setting recorded only since a run was saved is not compared (the run predates it)
    others = {
        key: saved.get(key)
        for key in settings
        if key not in ("network", "training") and (key in saved or key not in RECORDED_SINCE)
    }
    settings = {key: value for key, value in settings.items() if key in others or key in ("network", "training")}
    return _json_differences({"network": network, "training": training, **others}, settings, "")


def _load_resume_state(out_dir: Path, settings: dict[str, Any]) -> dict[str, Any]:
    state_path = out_dir / STATE_FILE
    if not state_path.is_file():
        present = sorted(entry.name for entry in out_dir.iterdir() if not entry.name.startswith(".")) if out_dir.is_dir() else []
        holds = f"; the folder holds {', '.join(present[:4])}{', ...' if len(present) > 4 else ''}" if present else ""
        raise CheckpointError(
            f"--resume: no completed epoch to resume from in {out_dir} (no {STATE_FILE}{holds}). "
            "Fix: run without --resume, or point --out at the interrupted run's folder."
        )
    try:
        state = torch.load(state_path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(
            f"--resume: cannot read {state_path} ({error.__class__.__name__}); it is corrupt. "
            "Fix: start again without --resume."
        ) from error
    missing = [key for key in ("model", "optimizer", "history", "settings") if not isinstance(state, dict) or key not in state]
    if missing:
        raise CheckpointError(
            f"--resume: {state_path} is not a training state written by `snn-mnist train` "
            f"(it lacks {', '.join(missing)}). Fix: start again without --resume, or in a new --out folder."
        )
    differences = _differences(state.get("settings", {}), settings)
    if differences:
        raise CheckpointError(
            "--resume: the settings differ from the interrupted run's, so resuming would not "
            "give the same result: " + "; ".join(differences) + ". Fix: use the same flags, or start a new --out folder."
        )
    done, asked = len(state["history"].get("test_acc_history", [])), settings["training"]["epochs"]
    if done > asked:
        raise CheckpointError(
            f"--resume: the run in {out_dir} has already completed {done} epochs, more than the {asked} asked for, "
            f"so it cannot end after {asked}. Fix: pass --epochs {done} or more to continue it, or start a new --out folder."
        )
    return state


def train(
    train_split: MnistSplit,
    test_split: MnistSplit,
    network_config: NetworkConfig,
    train_config: TrainConfig,
    out_dir: Path,
    resume: bool = False,
    device: torch.device | None = None,
    extra_settings: dict[str, Any] | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    validation_split: MnistSplit | None = None,
    on_epoch: Callable[[int, TrainHistory], None] | None = None,
    initial_state: Mapping[str, Tensor] | None = None,
    on_step: Callable[[int, int, float], None] | None = None,
) -> tuple[FeedForwardSNN, TrainHistory]:
    """Train from scratch (or resume) and write the artifacts to `out_dir` after each epoch.

    validation_split: images held out of `train_split` (`training.data.carve_validation`);
    its accuracy is recorded after every epoch in `history.val_acc_history`, for choosing
    settings without looking at the test set.  on_epoch(epoch, history) is called after each
    epoch's artifacts are written (epoch 1-based), e.g. to report to a sweep, and
    on_step(epoch, step, loss) after each optimiser step (both 0-based).  initial_state: the
    weights to start from (the model's own keys, loaded with strict=True) instead of those
    the seed draws, e.g. a snnTorch checkpoint's; it is part of the run's settings only
    through what `extra_settings` says about it."""
    device = device if device is not None else torch.device("cpu")
    out_dir = Path(out_dir)
    settings = _run_settings(network_config, train_config, extra_settings or {})
    history = TrainHistory()
    state = _load_resume_state(out_dir, settings) if resume else None
    torch.manual_seed(train_config.seed)  # the initial weights
    model = FeedForwardSNN(network_config, train_config.backend, train_config.fused)  # type: ignore[arg-type]
    start = state["model"] if state is not None else initial_state
    if start is not None:
        model.load_state_dict(start, strict=True)
    model = model.to(device)
    optimizer = build_optimizer(model, train_config.learning_rate, train_config.weight_decay)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        history = TrainHistory(**state["history"])
        log(f"resuming after epoch {len(history.test_acc_history)} from {out_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        out_dir / CONFIG_JSON,
        {
            **settings,
            "architecture": network_config.describe(),
            # "fused", "fast" or "exact" (see training.network): which kernels this run's numbers come from
            "compute_path": model.compute_path(device),
            "versions": library_versions(),
            "machine": machine_description(),
        },
    )

    images, labels = train_split.flat_images, train_split.labels
    rate_coded = network_config.input_coding == "rate"

    def evaluation_draws() -> torch.Generator | None:
        return input_generator(train_config.draws_seed, None) if rate_coded else None

    start_epoch = len(history.test_acc_history)
    for epoch in range(start_epoch, train_config.epochs):
        started = time.perf_counter()
        order = epoch_order(len(train_split), train_config.seed, epoch)
        # with augment_shift: each image's move this epoch, in visiting order, batched like the order
        offsets = None
        if train_config.augment_shift:
            moves = epoch_offsets(len(train_split), train_config.seed, epoch, train_config.augment_shift)
            offsets = iterate_batches(moves, train_config.batch_size)
        # a rate-coded network's input spikes this epoch, from (input_seed, epoch)
        draws = input_generator(train_config.draws_seed, epoch) if rate_coded else None
        correct, seen, loss_sum = 0, 0, 0.0
        model.train()
        # No summary line from the bar: the epoch line logged below carries its figures.
        bar = progress_bar(
            total=len(train_split),
            desc=f"epoch {epoch + 1}/{train_config.epochs}",
            unit="img",
            disable=not progress,
            leave=False,
            summary=False,
        )
        steps_per_epoch = math.ceil(len(train_split) / train_config.batch_size)
        for step, batch in enumerate(iterate_batches(order, train_config.batch_size)):
            for group in optimizer.param_groups:
                group["lr"] = train_config.learning_rate_at(epoch * steps_per_epoch + step, steps_per_epoch)
            if offsets is None:
                batch_images = images[batch]
            else:
                # x'[b, i, j] = x[b, i - dy_b, j - dx_b]: this epoch's move of each image
                batch_images = translate(train_split.images[batch], next(offsets)).reshape(batch.shape[0], -1)
            batch_images, batch_labels = batch_images.to(device), labels[batch].to(device)
            loss, predictions = train_step(model, optimizer, batch_images, batch_labels, train_config, draws)
            loss_value = float(loss.total)
            if not math.isfinite(loss_value):
                raise TrainingDivergedError(
                    f"loss became {loss_value} at epoch {epoch + 1}, batch {step + 1}; training stopped. "
                    f"The last good checkpoint (after epoch {epoch}) is kept in {out_dir}. "
                    "Fix: lower --lr, or check the input data for NaNs."
                )
            if on_step is not None:
                on_step(epoch, step, loss_value)
            correct += int((predictions == batch_labels).sum())
            seen += int(batch.shape[0])
            loss_sum += loss_value * int(batch.shape[0])
            bar.update(int(batch.shape[0]))
            if step % 20 == 0:
                rate = seen / max(time.perf_counter() - started, 1e-9)
                bar.set_postfix(loss=f"{loss_value:.3f}", acc=f"{100 * correct / seen:.2f}%", img_s=f"{rate:.0f}")
        bar.close()
        train_seconds = time.perf_counter() - started
        model.eval()
        test = evaluate(model, test_split, train_config.eval_batch_size, generator=evaluation_draws())
        if validation_split is not None:
            validation = evaluate(model, validation_split, train_config.eval_batch_size, generator=evaluation_draws())
            history.val_acc_history.append(validation.accuracy)
        history.train_acc_history.append(100.0 * correct / seen)
        history.test_acc_history.append(test.accuracy)
        history.loss_history.append(loss_sum / seen)
        history.epoch_seconds.append(time.perf_counter() - started)
        history.train_seconds.append(train_seconds)
        # The resume state carries its own copy of the weights, so it is consistent
        # on its own whichever of the two files an interruption hits.
        save_model(model, out_dir / MODEL_FILE)
        atomic_torch_save(
            out_dir / STATE_FILE,
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "history": asdict(history),
                "settings": settings,
            },
        )
        _write_curves(out_dir, history)
        shown = f"  validation {history.val_acc_history[-1]:.2f}%" if validation_split is not None else ""
        log(
            f"epoch {epoch + 1}/{train_config.epochs}: loss {history.loss_history[-1]:.4f}  "
            f"train {history.train_acc_history[-1]:.2f}%{shown}  test {test.accuracy:.2f}%  "
            f"({history.epoch_seconds[-1]:.1f} s, {seen / max(train_seconds, 1e-9):.0f} img/s)"
        )
        if on_epoch is not None:
            on_epoch(epoch + 1, history)
    return model, history
