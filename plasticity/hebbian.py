"""Local, unsupervised weight updates for post-training plasticity.

Notation, for one layer with weights W (n_post, n_pre):

    post_tbi   the layer's output spikes at step t for sample b, (T, B, n_post)
    pre_tbj    its input: for fc1 the image x_bj, the same at every step (B, n_pre);
               for fc2 the hidden spikes, (T, B, n_pre)
    mean[.]    = 1/(T B) sum_t sum_b,  the mean over batch and time
    <x_t>      = 1/B sum_b x_tb,        the batch mean at step t

Rules (one update per batch; then W_ij = clip(W_ij, -1, 1); biases are never touched):

    covariance         dW_ij = eta * mean[(post_tbi - <post_ti>) * (pre_tbj - <pre_tj>)]
    hebb               dW_ij = eta * mean[post_tbi * pre_tbj]
    oja                dW_ij = eta * mean[post_tbi * (pre_tbj - post_tbi * W_ij)]
    covariance_norm    covariance, then W_i. = W_i. * ||W0_i.|| / ||W_i.||
    covariance_meta    covariance, but dW_ij *= 1 - tanh(m * |W_ij|)^2 where W_ij * dW_ij < 0,
                       m = meta_strength / rms(W0)
    covariance_anchor  dW_ij = eta * K_ij - min(eta * lambda * Omega_ij, 1) * (W_ij - W0_ij)

W0 is the trained (pre-plasticity) weight matrix, K_ij the covariance term and
Omega the importance of each weight (mean 1; uniform unless given).  The last
three are the stabilised rules; `docs/plasticity.md` says why these three.

covariance is Hebbian for pairs that fire together more than chance and
anti-Hebbian for pairs that fire together less.  "Chance" is the batch mean at
the same time step: the expected product of two independent units at step t is
<post_ti> <pre_tj>, so activity shared by every input (the onset transient at
t = 0, the common refractory rhythm) does not count as co-firing.  For fc1 the
pre is constant over time, so its batch mean is the batch-mean image at every
step and the rule reduces to the covariance of spike counts with pixels:
dW_ij = eta / (T B) * sum_b (C_bi - <C_i>) (x_bj - <x_j>),  C_bi = sum_t post_tbi.

Usage from a post-training loop (CPU tensors; `weight_view` shares memory):

    rule = PlasticityRule("covariance_meta")
    layers = (model.fc1, model.fc2)
    states = [rule.init_state(weight_view(layer)) for layer in layers]
    for images in batches:
        output = model(images)                      # under torch.no_grad()
        for layer, activity, state in zip(layers, network_activity(images, output), states):
            rule.update(weight_view(layer), activity.pre, activity.post, eta, state)

Backends: "numba" (`plasticity.hebbian_kernels`, parallel over postsynaptic
neurons, independent of the thread count) and "numpy"
(`plasticity.hebbian_reference`, the equations as written).  Both sum in
float64 and round each weight to float32 once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from plasticity import hebbian_kernels, hebbian_reference

RULE_NAMES = (
    "covariance",
    "hebb",
    "oja",
    "covariance_norm",
    "covariance_meta",
    "covariance_anchor",
)
STABILISED_RULES = ("covariance_norm", "covariance_meta", "covariance_anchor")
BACKENDS = ("numba", "numpy")

# Dummies for the kernel arguments a rule does not read; fixed dtypes, so every
# rule runs the one compiled specialisation.
_NO_NORMS = np.zeros(1, dtype=np.float64)
_NO_MATRIX = np.zeros((1, 1), dtype=np.float32)


@dataclass(frozen=True)
class LayerState:
    """What a stabilised rule remembers of one trained layer; made by `PlasticityRule.init_state`.

    trained_weight: W0, (n_post, n_pre) float32, a copy (not a view of the live weights)
    target_norm:    ||W0_i.||, (n_post,) float64                       (covariance_norm)
    meta_scale:     m = meta_strength / rms(W0), 0 for an all-zero W0  (covariance_meta)
    importance:     Omega, (n_post, n_pre) float32, mean 1              (covariance_anchor)
    """

    trained_weight: np.ndarray
    target_norm: np.ndarray
    meta_scale: float
    importance: np.ndarray


def _check_weight(weight: np.ndarray) -> None:
    if not isinstance(weight, np.ndarray) or weight.ndim != 2 or weight.dtype != np.float32:
        raise ValueError(
            "weight must be a 2-D float32 numpy array (n_post, n_pre); for a torch layer "
            "pass weight_view(layer)"
        )
    if not weight.flags.c_contiguous or not weight.flags.writeable:
        raise ValueError("weight must be C-contiguous and writeable: it is updated in place")


def _as_activity(
    weight: np.ndarray, pre: np.ndarray, post: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Check shapes against weight (n_post, n_pre); return float32, C-contiguous pre and post."""
    post = np.ascontiguousarray(post, dtype=np.float32)
    pre = np.ascontiguousarray(pre, dtype=np.float32)
    n_post, n_pre = weight.shape
    if post.ndim != 3 or post.shape[2] != n_post or post.shape[0] < 1 or post.shape[1] < 1:
        raise ValueError(
            f"post must be (T, B, {n_post}) spikes for a weight of shape {weight.shape}, "
            f"got {post.shape}"
        )
    num_steps, batch = post.shape[:2]
    if pre.shape not in ((batch, n_pre), (num_steps, batch, n_pre)):
        raise ValueError(
            f"pre must be ({batch}, {n_pre}) (constant over time) or ({num_steps}, {batch}, "
            f"{n_pre}) to match post {post.shape} and weight {weight.shape}, got {pre.shape}"
        )
    return pre, post


@dataclass(frozen=True)
class PlasticityRule:
    """One local learning rule and its constants (see the module docstring for the equations).

    name:            one of RULE_NAMES
    clip:            c in W = clip(W, -c, c) after every update; None: no clipping
    meta_strength:   covariance_meta's m in units of 1/rms(W0): a weight at the layer's
                     rms keeps 1 - tanh(1)^2 = 42% of an update toward zero at 1.0
    anchor_strength: covariance_anchor's lambda: a weight's pull back toward W0 has rate
                     eta * lambda * Omega per update (never past W0)
    backend:         "numba" (fast) or "numpy" (the reference)
    """

    name: str = "covariance"
    clip: float | None = 1.0
    meta_strength: float = 1.0
    anchor_strength: float = 100.0
    backend: str = "numba"

    def __post_init__(self) -> None:
        if self.name not in RULE_NAMES:
            raise ValueError(f"--rule must be one of {', '.join(RULE_NAMES)}, got {self.name!r}")
        if self.backend not in BACKENDS:
            raise ValueError(
                f"plasticity backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}"
            )
        if self.clip is not None and not (0.0 < self.clip < math.inf):
            raise ValueError(f"clip must be a positive finite bound or None, got {self.clip!r}")
        for label, value in (
            ("meta_strength", self.meta_strength),
            ("anchor_strength", self.anchor_strength),
        ):
            if not (0.0 <= value < math.inf):
                raise ValueError(f"{label} must be a non-negative finite number, got {value!r}")

    @property
    def stabilised(self) -> bool:
        """Whether the rule needs a `LayerState` (the trained weights) to update."""
        return self.name in STABILISED_RULES

    def init_state(self, trained_weight: np.ndarray, importance: np.ndarray | None = None) -> LayerState:
        """Remember the trained layer before any plastic update.

        importance: Omega for covariance_anchor, non-negative, (n_post, n_pre); it is
        rescaled to mean 1 so that anchor_strength means the same for every layer.
        None: uniform (every weight equally anchored).  `coactivity` over the
        training set gives a local estimate (the Hebbian form of Memory Aware Synapses).
        """
        _check_weight(trained_weight)
        w0 = trained_weight.astype(np.float64)
        rms = float(np.sqrt(np.mean(w0 * w0)))
        if importance is None:
            omega = np.ones(trained_weight.shape, dtype=np.float64)
        else:
            omega = np.asarray(importance, dtype=np.float64)
            if omega.shape != trained_weight.shape:
                raise ValueError(
                    f"importance must have the weight's shape {trained_weight.shape}, got {omega.shape}"
                )
            if not np.all(np.isfinite(omega)) or np.any(omega < 0.0):
                raise ValueError("importance must be finite and non-negative")
            mean = omega.mean()
            omega = omega / mean if mean > 0.0 else omega
        return LayerState(
            trained_weight=trained_weight.copy(),
            target_norm=np.sqrt((w0 * w0).sum(axis=1)),
            meta_scale=self.meta_strength / rms if rms > 0.0 else 0.0,
            importance=omega.astype(np.float32),
        )

    def update(
        self,
        weight: np.ndarray,
        pre: np.ndarray,
        post: np.ndarray,
        eta: float,
        state: LayerState | None = None,
    ) -> None:
        """One update of `weight` (n_post, n_pre) float32, in place, from one batch.

        pre: (B, n_pre) held constant over the T steps (fc1: the images) or
        (T, B, n_pre) (fc2: the hidden spikes); post: (T, B, n_post) spikes.
        eta >= 0.  state: from `init_state` on the trained weights; required by
        the stabilised rules, ignored by the others.  eta = 0 leaves weights that
        lie within the clip bound unchanged, bit for bit (covariance_norm: whose
        rows also have their trained norms, as they do from W0 on).
        """
        _check_weight(weight)
        pre, post = _as_activity(weight, pre, post)
        if not (0.0 <= eta < math.inf):
            raise ValueError(f"--eta must be a non-negative finite learning rate, got {eta!r}")
        if self.stabilised:
            if state is None:
                raise ValueError(f"rule {self.name!r} needs the trained weights: pass rule.init_state(W0)")
            if state.trained_weight.shape != weight.shape:
                raise ValueError(
                    f"state was made for weights {state.trained_weight.shape}, not {weight.shape}"
                )
        if self.backend == "numpy":
            hebbian_reference.reference_update(
                weight,
                pre,
                post,
                self.name,
                eta,
                self.clip,
                target_norm=None if state is None else state.target_norm,
                meta_scale=0.0 if state is None else state.meta_scale,
                anchor=None if state is None else state.trained_weight,
                importance=None if state is None else state.importance,
                anchor_strength=self.anchor_strength,
            )
            return
        # state is not None for the stabilised rules (checked above)
        hebbian_kernels.hebbian_update(
            weight,
            pre[None] if pre.ndim == 2 else pre,
            post,
            hebbian_kernels.RULE_CODES[self.name],
            float(eta),
            self.clip is not None,
            float(self.clip or 0.0),
            state.target_norm if self.name == "covariance_norm" else _NO_NORMS,
            float(state.meta_scale) if self.name == "covariance_meta" else 0.0,
            state.trained_weight if self.name == "covariance_anchor" else _NO_MATRIX,
            state.importance if self.name == "covariance_anchor" else _NO_MATRIX,
            float(self.anchor_strength),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.name,
            "clip": self.clip,
            "meta_strength": self.meta_strength,
            "anchor_strength": self.anchor_strength,
            "backend": self.backend,
        }


def coactivity(pre: np.ndarray, post: np.ndarray, backend: str = "numba") -> np.ndarray:
    """H_ij = mean_{t,b} post_tbi * pre_tbj, (n_post, n_pre) float32: the plain Hebbian term.

    Averaged over the training set with the trained weights, it is a local
    importance estimate for `PlasticityRule.init_state`: weights between units
    that are active together matter to what the layer computes.
    """
    post = np.ascontiguousarray(post, dtype=np.float32)
    pre = np.ascontiguousarray(pre, dtype=np.float32)
    if post.ndim != 3 or pre.ndim not in (2, 3):
        raise ValueError(
            "post must be (T, B, n_post) and pre (B, n_pre) or (T, B, n_pre), "
            f"got {post.shape} and {pre.shape}"
        )
    weight = np.zeros((post.shape[2], pre.shape[-1]), dtype=np.float32)
    PlasticityRule("hebb", clip=None, backend=backend).update(weight, pre, post, 1.0)
    return weight


class LayerActivity(NamedTuple):
    """What one layer's update reads: pre (B, n_pre) or (T, B, n_pre), post (T, B, n_post)."""

    pre: np.ndarray
    post: np.ndarray


def network_activity(images: Tensor, output: Any) -> tuple[LayerActivity, LayerActivity]:
    """The (fc1, fc2) activities of one forward pass of a 784-H-10 `training.network.FeedForwardSNN`.

    images: the batch given to the model, (B, 784) or (B, 1, 28, 28); output: its
    `NetworkOutput` (only `hidden_spikes` and `output_spikes`, (T, B, .), are read).
    fc1's pre is the image, constant over time; fc2's pre is the hidden spikes.
    """
    x = images.detach().reshape(images.shape[0], -1).to("cpu", torch.float32).numpy()
    hidden = output.hidden_spikes.detach().to("cpu", torch.float32).numpy()
    spikes = output.output_spikes.detach().to("cpu", torch.float32).numpy()
    return LayerActivity(pre=x, post=hidden), LayerActivity(pre=hidden, post=spikes)


def weight_view(layer: nn.Linear) -> np.ndarray:
    """The numpy array sharing memory with a CPU layer's weight: updating it updates the layer."""
    weight = layer.weight
    if weight.device.type != "cpu" or weight.dtype != torch.float32 or not weight.is_contiguous():
        raise ValueError(
            "plastic updates run on CPU float32 weights: move the model with model.cpu() first"
        )
    return weight.detach().numpy()
