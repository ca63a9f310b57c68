"""Numba CPU kernel for the local weight updates: the fast path of `plasticity.hebbian`.

One kernel serves every rule (selected by `rule_code`, as `lif_core.sequence_kernels`
selects its surrogate).  Per postsynaptic neuron i it first forms the Hebbian
sum over the batch and time, then applies the rule to row i of W:

    A_ij = sum_{t,b} post_tbi * pre_tbj  -  [centred] sum_t postmean_ti * presum_tj
    P_i  = sum_{t,b} post_tbi^2                                   (Oja's decay)
    r_ij = A_ij / (T * B)                       mean over batch and time
    postmean_ti = (1/B) sum_b post_tbi,   presum_tj = sum_b pre_tbj

The centred sum equals sum_{t,b} (post_tbi - <post_ti>) (pre_tbj - <pre_tj>),
the covariance form written out in `plasticity.hebbian_reference`, because
sum_b (post_tbi - <post_ti>) = 0 removes the pre mean.  Written this way only
the spikes that occurred cost work, and the centring is a rank-T correction:
each row i first lists where neuron i fired, then adds up the pre rows there,
four at a time (`_accumulate`).

A time-constant pre (layer 1: the image drives the hidden layer at every step)
arrives as (1, B, n_pre) and is read once per sample: with the spike count
C_bi = sum_t post_tbi,

    sum_{t,b} post_tbi * x_bj = sum_b C_bi * x_bj,    sum_t postmean_ti = (1/B) sum_b C_bi,

so the T-fold repetition of x is never formed and only samples where neuron i
fired at all are visited.  The counts come from one contiguous pass over the
spikes, split over samples, before the per-row work.

Sums are accumulated in float64 (the weights stay float32 and each is rounded
once when stored).  With 0/1 spikes, pixels k/255 and B a power of two these
sums are exact, so the kernel and the NumPy reference agree to the last float32
bit up to the final rounding, whatever the summation order.  Work is split over
postsynaptic neurons with `prange`: each thread owns whole rows of W and sums
each row in a fixed order, so the result does not depend on the thread count.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

HEBB = 0
COVARIANCE = 1
OJA = 2
COVARIANCE_NORM = 3
COVARIANCE_META = 4
COVARIANCE_ANCHOR = 5
RULE_CODES = {
    "hebb": HEBB,
    "covariance": COVARIANCE,
    "oja": OJA,
    "covariance_norm": COVARIANCE_NORM,
    "covariance_meta": COVARIANCE_META,
    "covariance_anchor": COVARIANCE_ANCHOR,
}


@numba.njit(cache=True)
def _accumulate(acc, rows, active, values, count):
    """acc_j += sum_k values_k * rows[active_k, j] over the first `count` entries, in that order.

    Four rows per pass over acc, so acc is loaded and stored once per four
    multiply-adds; the order of the terms is fixed, so the result is too."""
    n = acc.shape[0]
    k = 0
    while k + 4 <= count:
        v0, v1, v2, v3 = values[k], values[k + 1], values[k + 2], values[k + 3]
        r0, r1, r2, r3 = rows[active[k]], rows[active[k + 1]], rows[active[k + 2]], rows[active[k + 3]]
        for j in range(n):
            acc[j] += v0 * r0[j] + v1 * r1[j] + v2 * r2[j] + v3 * r3[j]
        k += 4
    while k < count:
        v0 = values[k]
        r0 = rows[active[k]]
        for j in range(n):
            acc[j] += v0 * r0[j]
        k += 1


@numba.njit(parallel=True, cache=True)
def hebbian_update(
    weight,
    pre,
    post,
    rule_code,
    eta,
    has_clip,
    clip,
    target_norm,
    meta_scale,
    anchor,
    importance,
    anchor_strength,
):
    """Update weight (n_post, n_pre), float32, in place.

    pre: (1, B, n_pre) held constant over time, or (T, B, n_pre); post: (T, B, n_post).
    target_norm (n_post,), anchor and importance (n_post, n_pre) are read only by
    the rules that use them and may be (1,) / (1, 1) dummies otherwise.  The
    scalars are float64; see `plasticity.hebbian` for each rule's equation.
    """
    num_steps, batch, n_post = post.shape
    pre_steps = pre.shape[0]
    n_pre = weight.shape[1]
    constant_pre = pre_steps == 1
    centred = rule_code != HEBB and rule_code != OJA
    oja = rule_code == OJA

    # Per-sample pass (each thread owns whole samples b), constant pre only:
    #   C_bi = sum_t post_tbi,  Q_bi = sum_t post_tbi^2,  x_bj as float64
    counts = np.zeros((batch if constant_pre else 0, n_post))
    squares = np.zeros((batch if constant_pre and oja else 0, n_post))
    pre64 = np.empty((batch if constant_pre else 0, n_pre))
    if constant_pre:
        for b in prange(batch):
            for j in range(n_pre):
                pre64[b, j] = pre[0, b, j]
            for t in range(num_steps):
                row = post[t, b]
                for i in range(n_post):
                    counts[b, i] += row[i]
                if oja:
                    for i in range(n_post):
                        spike = np.float64(row[i])
                        squares[b, i] += spike * spike

    # presum_tj = sum_b pre_tbj   (each thread owns whole time steps)
    pre_sum = np.zeros((pre_steps, n_pre))
    if centred:
        for t in prange(pre_steps):
            for b in range(batch):
                row = pre[t, b]
                for j in range(n_pre):
                    pre_sum[t, j] += row[j]

    flat_pre = pre.reshape((pre_steps * batch, n_pre))
    inv_count = 1.0 / (num_steps * batch)
    for i in prange(n_post):
        acc = np.zeros(n_pre)  # A_i., then the new row of W
        power = 0.0  # P_i = sum_{t,b} post_tbi^2
        if constant_pre:
            # the samples where neuron i fired, and its counts C_bi there
            active = np.empty(batch, dtype=np.int64)
            values = np.empty(batch)
            fired = 0
            total = 0.0  # sum_b C_bi
            for b in range(batch):
                count = counts[b, i]
                if oja:
                    power += squares[b, i]
                if count != 0.0:
                    active[fired] = b
                    values[fired] = count
                    fired += 1
                    total += count
            # A_ij = sum_b C_bi * x_bj
            _accumulate(acc, pre64, active, values, fired)
            if centred and total != 0.0:
                mean = total / batch
                # A_ij -= (1/B) sum_b C_bi * sum_b x_bj
                for j in range(n_pre):
                    acc[j] -= mean * pre_sum[0, j]
        else:
            # the (t, b) where neuron i fired, as flat indices t*B + b
            active = np.empty(num_steps * batch, dtype=np.int64)
            values = np.empty(num_steps * batch)
            column = np.zeros(num_steps)  # sum_b post_tbi
            fired = 0
            for t in range(num_steps):
                for b in range(batch):
                    s = np.float64(post[t, b, i])
                    if s != 0.0:
                        active[fired] = t * batch + b
                        values[fired] = s
                        fired += 1
                        column[t] += s
                        power += s * s
            # A_ij = sum_{t,b} post_tbi * pre_tbj
            _accumulate(acc, flat_pre, active, values, fired)
            if centred:
                for t in range(num_steps):
                    if column[t] != 0.0:
                        mean = column[t] / batch
                        # A_ij -= postmean_ti * presum_tj
                        for j in range(n_pre):
                            acc[j] -= mean * pre_sum[t, j]

        # One loop per rule, so the plain ones vectorise.  acc becomes the new row.
        if rule_code == OJA:
            decay = power * inv_count  # mean_{t,b} post_tbi^2
            for j in range(n_pre):
                w = np.float64(weight[i, j])
                # dW_ij = eta * (r_ij - mean(post_i^2) * W_ij),  r_ij = A_ij / (T B)
                acc[j] = w + eta * (acc[j] * inv_count - decay * w)
        elif rule_code == COVARIANCE_META:
            for j in range(n_pre):
                w = np.float64(weight[i, j])
                delta = eta * (acc[j] * inv_count)
                # 1 - tanh(m |W_ij|)^2 = 4 e / (1 + e)^2,  e = exp(-2 m |W_ij|): one exp, no
                # tanh, and computed for every weight so the loop has no branch but the select
                e = math.exp(-2.0 * meta_scale * abs(w))
                gate = 4.0 * e / ((1.0 + e) * (1.0 + e))
                # toward zero (W_ij * dW_ij < 0): dW_ij *= 1 - tanh(m |W_ij|)^2
                acc[j] = w + (delta * gate if w * delta < 0.0 else delta)
        elif rule_code == COVARIANCE_ANCHOR:
            for j in range(n_pre):
                w = np.float64(weight[i, j])
                # dW_ij = eta * r_ij - min(eta * lambda * Omega_ij, 1) * (W_ij - W0_ij)
                pull = min(eta * anchor_strength * importance[i, j], 1.0)
                acc[j] = w + (eta * (acc[j] * inv_count) - pull * (w - anchor[i, j]))
        else:
            for j in range(n_pre):
                # dW_ij = eta * r_ij
                acc[j] = np.float64(weight[i, j]) + eta * (acc[j] * inv_count)

        if rule_code == COVARIANCE_NORM:
            norm_sq = 0.0
            for j in range(n_pre):
                norm_sq += acc[j] * acc[j]
            if norm_sq > 0.0:
                # W_i. *= ||W0_i.|| / ||W_i.||
                scale = target_norm[i] / math.sqrt(norm_sq)
                for j in range(n_pre):
                    acc[j] *= scale

        if has_clip:
            for j in range(n_pre):
                # W_ij = clip(W_ij, -c, c)
                weight[i, j] = min(max(acc[j], -clip), clip)
        else:
            for j in range(n_pre):
                weight[i, j] = acc[j]
