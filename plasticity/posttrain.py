"""Unsupervised post-training: the trained network keeps learning from images alone.

One epoch is one pass over the training images in the order `epoch_order(seed,
epoch)`, without labels.  For every batch:

    spikes = the network's hidden and output spikes under the *current* weights
    W1 <- rule(W1, pre = images,        post = hidden spikes)     (if fc1 is plastic)
    W2 <- rule(W2, pre = hidden spikes, post = output spikes)     (if fc2 is plastic)

each followed by clipping to [-1, 1]; biases never change.  Test accuracy is
measured before the first epoch and after every epoch, so a run of E epochs
gives a trajectory of E + 1 accuracies.  Weight drift per layer:

    relative change  = ||W - W0||_F / ||W0||_F
    fraction at clip = share of weights with |W| >= clip bound

The network is the study's kind (`check_post_trainable`): 784-H-10, two layers fc1 and
fc2, the image as a constant current, so that fc1's pre is the image itself.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lif_core.backend import Backend
from plasticity.hebbian import LayerState, PlasticityRule, network_activity, weight_view
from training.data import INPUT_SIZE, NUM_CLASSES, MnistSplit
from training.network import FeedForwardSNN, NetworkConfig, study_network_config
from training.progress import progress_bar
from training.snntorch_checkpoint import load_network
from training.train import EVAL_BATCH, Evaluation, epoch_order, evaluate, iterate_batches

PLASTIC_LAYERS = ("fc1", "fc2")
# What eta multiplies.  The rules' kernels take the mean over the batch's B images and the
# T time steps; a rule written as a sum over one or both takes eta times B, T or T*B there.
ETA_SCALES = ("mean", "sum_time", "sum_batch", "sum")


def eta_factor(eta_scale: str, num_steps: int, batch_images: int) -> int:
    """The factor that turns an eta of `eta_scale` into the kernels' mean-normalised eta."""
    return {"mean": 1, "sum_time": num_steps, "sum_batch": batch_images, "sum": num_steps * batch_images}[eta_scale]


@dataclass(frozen=True)
class PostTrainConfig:
    """Settings of one post-training run; defaults are the study's gentle run."""

    rule: str = "covariance"
    eta: float = 1e-5
    epochs: int = 3
    batch_size: int = 128
    plastic_layers: tuple[str, ...] = PLASTIC_LAYERS
    seed: int = 0
    meta_strength: float = 1.0
    anchor_strength: float = 100.0
    kernel_backend: str = "numba"
    eval_batch_size: int = EVAL_BATCH
    eta_scale: str = "mean"  # ETA_SCALES: what eta multiplies (a mean over batch and time by default)

    def __post_init__(self) -> None:
        if self.eta_scale not in ETA_SCALES:
            raise ValueError(f"--eta-scale must be one of {', '.join(ETA_SCALES)}, got {self.eta_scale!r}")
        if not (math.isfinite(self.eta) and self.eta >= 0):
            raise ValueError(f"--eta must be a non-negative finite learning rate, got {self.eta!r}")
        for name, flag in (("epochs", "--epochs"), ("batch_size", "--batch-size"), ("eval_batch_size", "--eval-batch-size")):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{flag} must be a positive integer, got {value!r}")
        unknown = [layer for layer in self.plastic_layers if layer not in PLASTIC_LAYERS]
        if unknown or not self.plastic_layers:
            raise ValueError(
                f"--plastic-layers must name one or both of {', '.join(PLASTIC_LAYERS)}, got {self.plastic_layers!r}"
            )
        self.make_rule()  # validates rule name, strengths and kernel backend

    def make_rule(self) -> PlasticityRule:
        return PlasticityRule(
            name=self.rule,
            meta_strength=self.meta_strength,
            anchor_strength=self.anchor_strength,
            backend=self.kernel_backend,
        )

    def to_json(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["plastic_layers"] = list(self.plastic_layers)
        return payload


@dataclass
class LayerDrift:
    relative_change: float
    fraction_at_clip: float


@dataclass
class PostTrainResult:
    config: PostTrainConfig
    test_accuracy: list[float] = field(default_factory=list)  # before, then after each epoch
    drift: dict[str, LayerDrift] = field(default_factory=dict)
    seconds: float = 0.0
    final_evaluation: Evaluation | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "config": self.config.to_json(),
            "test_accuracy": self.test_accuracy,
            "weight_drift": {name: asdict(drift) for name, drift in self.drift.items()},
            "seconds": self.seconds,
        }


def check_post_trainable(config: NetworkConfig, what: str = "this network") -> None:
    """Refuse, with a one-line ValueError naming the problem and the fix, a network that
    post-training does not handle: it needs 784-H-10 (one hidden layer: fc1 and fc2) and the
    image as a constant current ("current" input coding), fc1's pre.  `what` names the
    network in the message (e.g. "checkpoint PATH")."""
    sizes = config.layer_sizes
    if len(sizes) != 3 or sizes[0] != INPUT_SIZE or sizes[-1] != NUM_CLASSES:
        raise ValueError(
            f"post-training needs a {INPUT_SIZE}-H-{NUM_CLASSES} network with one hidden layer "
            f"({', '.join(PLASTIC_LAYERS)}); {what} has layers {'-'.join(map(str, sizes))}. "
            f"Fix: post-train a checkpoint of a {INPUT_SIZE}-H-{NUM_CLASSES} network "
            "(`snn-mnist train` writes one by default, or with --hidden H)"
        )
    if config.input_coding != "current":
        raise ValueError(
            "post-training needs the image as a constant current (input coding \"current\"), which is "
            f"fc1's pre in every rule; {what} has input coding {config.input_coding!r}. "
            "Fix: post-train a network with current input (`snn-mnist train` without --input rate)"
        )


def load_post_trainable(path: Path, backend: Backend = "auto") -> FeedForwardSNN:
    """The network of a checkpoint file, read as the study's (`load_network` with
    `study_network_config()` for what a state_dict does not hold), checked by
    `check_post_trainable`.  A bad file raises CheckpointError, a network of another
    kind ValueError, each as one line naming the fix."""
    model = load_network(Path(path), study_network_config(), backend=backend).model
    check_post_trainable(model.config, f"checkpoint {path}")
    return model


def weight_drift(current: np.ndarray, trained: np.ndarray, clip: float = 1.0) -> LayerDrift:
    """||W - W0||_F / ||W0||_F and the share of |W| at the clip bound."""
    trained64 = trained.astype(np.float64)
    difference = current.astype(np.float64) - trained64
    # sums of squares by numpy's pairwise summation, not a BLAS dot (np.linalg.norm): the
    # same bits whatever number of threads the BLAS library was started with
    change = math.sqrt(float(np.sum(difference * difference))) / max(math.sqrt(float(np.sum(trained64 * trained64))), 1e-30)
    return LayerDrift(relative_change=float(change), fraction_at_clip=float(np.mean(np.abs(current) >= clip)))


def post_train(
    model: FeedForwardSNN,
    train_split: MnistSplit,
    test_split: MnistSplit,
    config: PostTrainConfig,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> PostTrainResult:
    """Apply the rule to `model` (a network `check_post_trainable` accepts) in place (CPU) and
    measure test accuracy along the way."""
    check_post_trainable(model.config)
    started = time.perf_counter()
    rule = config.make_rule()
    layers = {"fc1": model.fc1, "fc2": model.fc2}
    trained = {name: weight_view(layer).copy() for name, layer in layers.items()}
    states: dict[str, LayerState] = {name: rule.init_state(trained[name]) for name in config.plastic_layers}
    result = PostTrainResult(config=config)
    model.eval()
    evaluation = evaluate(model, test_split, config.eval_batch_size)
    result.test_accuracy.append(evaluation.accuracy)
    images = train_split.flat_images
    for epoch in range(config.epochs):
        order = epoch_order(len(train_split), config.seed, epoch)
        epoch_started = time.perf_counter()
        # No summary line from the bar: the epoch line logged below carries its figures.
        bar = progress_bar(
            total=len(train_split),
            desc=f"{config.rule} eta={config.eta:g} epoch {epoch + 1}/{config.epochs}",
            unit="img",
            disable=not progress,
            leave=False,
            summary=False,
        )
        for batch in iterate_batches(order, config.batch_size):
            batch_images = images[batch]
            with torch.no_grad():
                output = model(batch_images)
            fc1_activity, fc2_activity = network_activity(batch_images, output)
            activities = {"fc1": fc1_activity, "fc2": fc2_activity}
            # the kernels' eta multiplies a mean over the batch and time steps
            eta = config.eta * eta_factor(config.eta_scale, model.num_steps, int(batch.shape[0]))
            for name in config.plastic_layers:
                activity = activities[name]
                rule.update(weight_view(layers[name]), activity.pre, activity.post, eta, states[name])
            bar.update(int(batch.shape[0]))
        bar.close()
        images_per_second = len(train_split) / max(time.perf_counter() - epoch_started, 1e-9)
        evaluation = evaluate(model, test_split, config.eval_batch_size)
        result.test_accuracy.append(evaluation.accuracy)
        log(
            f"{config.rule} eta={config.eta:g}: epoch {epoch + 1}/{config.epochs} test accuracy {evaluation.accuracy:.2f}% "
            f"({images_per_second:.0f} img/s)"
        )
    result.drift = {
        name: weight_drift(weight_view(layer), trained[name], rule.clip or 1.0) for name, layer in layers.items()
    }
    result.final_evaluation = evaluation
    result.seconds = time.perf_counter() - started
    return result


def trajectory_key(rule: str, eta: float, plastic_layers: tuple[str, ...] = PLASTIC_LAYERS) -> str:
    """The key a run's trajectory gets in post_training_accuracy.json.

    The study's two keys for the default rule: gentle_lr_eta_1e-5 and strong_lr_eta_1e-4;
    every other run: <rule>[_<layers>]_eta_<eta>."""
    layers = "" if tuple(plastic_layers) == PLASTIC_LAYERS else "_" + "_".join(plastic_layers) + "_only"
    if rule == "covariance" and not layers:
        if eta == 1e-5:
            return "gentle_lr_eta_1e-5"
        if eta == 1e-4:
            return "strong_lr_eta_1e-4"
    return f"{rule}{layers}_eta_{eta:g}"
