"""Plain NumPy reference for the local weight updates: each equation as written.

Slow, but obviously correct: the yardstick that `plasticity.hebbian_kernels` is
tested against.  Everything is computed in float64 on the full (T, B, .) arrays
(a time-constant pre is repeated over T explicitly) and the new weights are
rounded to float32 once at the end, as the kernel does.  See `plasticity.hebbian`
for the notation and for what each rule is for.
"""

from __future__ import annotations

import numpy as np


def _over_time(pre: np.ndarray, num_steps: int) -> np.ndarray:
    """pre as (T, B, n_pre) float64: a (B, n_pre) pre is held constant for T steps."""
    pre = np.asarray(pre, dtype=np.float64)
    if pre.ndim == 2:
        return np.broadcast_to(pre, (num_steps, *pre.shape))
    return pre


def _mean_outer(post: np.ndarray, pre: np.ndarray) -> np.ndarray:
    """mean_{t,b} post_tbi * pre_tbj, (n_post, n_pre)."""
    num_steps, batch, n_post = post.shape
    flat_post = post.reshape(num_steps * batch, n_post)
    flat_pre = pre.reshape(num_steps * batch, pre.shape[-1])
    return flat_post.T @ flat_pre / (num_steps * batch)


def coactivity(pre: np.ndarray, post: np.ndarray) -> np.ndarray:
    """H_ij = mean_{t,b} post_tbi * pre_tbj: the plain Hebbian term, float64."""
    post = np.asarray(post, dtype=np.float64)
    return _mean_outer(post, _over_time(pre, post.shape[0]))


def covariance(pre: np.ndarray, post: np.ndarray) -> np.ndarray:
    """K_ij = mean_{t,b} (post_tbi - <post_ti>) * (pre_tbj - <pre_tj>), float64,
    with <x_t> = mean_b x_tb the batch mean at each time step."""
    post = np.asarray(post, dtype=np.float64)
    pre = _over_time(pre, post.shape[0])
    centred_post = post - post.mean(axis=1, keepdims=True)
    centred_pre = pre - pre.mean(axis=1, keepdims=True)
    return _mean_outer(centred_post, centred_pre)


def post_power(post: np.ndarray) -> np.ndarray:
    """mean_{t,b} post_tbi^2, (n_post,) float64: Oja's decay factor."""
    post = np.asarray(post, dtype=np.float64)
    return (post * post).mean(axis=(0, 1))


def reference_update(
    weight: np.ndarray,
    pre: np.ndarray,
    post: np.ndarray,
    rule: str,
    eta: float,
    clip: float | None,
    target_norm: np.ndarray | None = None,
    meta_scale: float = 0.0,
    anchor: np.ndarray | None = None,
    importance: np.ndarray | None = None,
    anchor_strength: float = 0.0,
) -> None:
    """Apply one update of `rule` to weight (n_post, n_pre) in place.

    pre: (B, n_pre) constant over time, or (T, B, n_pre); post: (T, B, n_post).
    """
    w = weight.astype(np.float64)
    if rule == "hebb":
        # dW_ij = eta * mean[post_i * pre_j]
        new = w + eta * coactivity(pre, post)
    elif rule == "oja":
        # dW_ij = eta * mean[post_i * (pre_j - post_i * W_ij)]
        new = w + eta * (coactivity(pre, post) - post_power(post)[:, None] * w)
    elif rule in ("covariance", "covariance_norm"):
        # dW_ij = eta * mean[(post_i - <post_i>) * (pre_j - <pre_j>)]
        new = w + eta * covariance(pre, post)
        if rule == "covariance_norm":
            # W_i. *= ||W0_i.|| / ||W_i.||   (rows that are all zero stay zero)
            norm = np.sqrt((new * new).sum(axis=1))
            safe = np.where(norm > 0.0, norm, 1.0)
            new = new * np.where(norm > 0.0, np.asarray(target_norm) / safe, 1.0)[:, None]
    elif rule == "covariance_meta":
        delta = eta * covariance(pre, post)
        # toward zero (W_ij * dW_ij < 0): dW_ij *= 1 - tanh(m * |W_ij|)^2
        gate = 1.0 - np.tanh(meta_scale * w) ** 2
        new = w + np.where(w * delta < 0.0, delta * gate, delta)
    elif rule == "covariance_anchor":
        # dW_ij = eta * K_ij - min(eta * lambda * Omega_ij, 1) * (W_ij - W0_ij)
        pull = np.minimum(eta * anchor_strength * np.asarray(importance, dtype=np.float64), 1.0)
        new = w + (eta * covariance(pre, post) - pull * (w - np.asarray(anchor, dtype=np.float64)))
    else:
        raise ValueError(f"unknown plasticity rule {rule!r}")
    if clip is not None:
        # W_ij = clip(W_ij, -c, c)
        new = np.clip(new, -clip, clip)
    weight[...] = new.astype(weight.dtype)
