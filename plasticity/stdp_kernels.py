"""Numba kernels for the Diehl & Cook-style STDP network: the fast path.

The readable NumPy reference of every kernel here is in `plasticity.stdp`
(`reference_uniforms`, `reference_present`, `reference_normalise`,
`reference_train`, `reference_respond`); `tests/test_stdp.py` holds them equal,
bit for bit, on small networks.  Both sides do the same float64 operations in
the same order, so equality is exact, not approximate.

One presentation of an image (`present`), per time step t = 0 .. T-1:

    leak      v_n     <- v_rest + (v_n - v_rest) * exp(-dt / tau_m)
              x_post  <- x_post * exp(-dt / tau_post);  x_pre <- x_pre * exp(-dt / tau_pre)
              theta_n <- theta_n * exp(-dt / tau_theta)                 (learning only)
    input     input k spikes with probability p_k = x_k * rate * dt / 1000   (Poisson, rate in Hz)
              I_n = sum over spiking inputs k of w_kn                   (event-driven: only
                                                                         the spiking rows are read)
    depress   for each spiking input k and each neuron n that has fired during this
              presentation (the only ones with x_post_n > 0):
                                         w_kn <- max(w_kn - nu_pre * x_post_n, w_min)
              (x_post from before this step's output spikes: a pre spike that
              drives an output spike in the same step is causal, never depressed)
    x_pre_k   <- 1 for each spiking input k
    integrate for neurons not refractory:
              v_n <- v_n + I_n - w_inh * (number of *other* neurons that fired at t-1)
    fire      candidates: v_n >= v_thresh + theta_n; with one_spike only the
              candidate with the largest margin fires (lowest index on ties)
    on spike  v_n <- v_reset, refractory for refrac steps, x_post_n <- 1,
              theta_n <- theta_n + theta_plus                            (learning only)
    potentiate for each firing neuron n, each input k: w_kn <- min(w_kn + nu_post * x_pre_k, w_max)

After the presentation (while learning) the input weights of every neuron that
fired in it, the only columns the presentation changed, are normalised
(`normalise_columns`); the network's weights are normalised once, whole, when
it is created, so every column always sums to weight_sum.

Cost: the rows of the spiking inputs are read (for the current) but written
only at the neurons that have fired, a handful under strong inhibition; the
neurons are visited once per step (leak, threshold decay, integration and the
threshold test in one loop), and normalisation touches only the changed
columns.  So a presentation costs ~ T * (input spikes per step + 1) * N reads,
instead of the earlier full-row read-and-write plus two passes over the whole
784 x N matrix per image.

Random numbers are counter-based: the uniform for input pixel i at step t of a
presentation with key K is a hash of (K, t * 784 + i) (SplitMix64's
finaliser), so a presentation's input spikes depend on nothing but its key.
No generator state is carried, threads cannot perturb each other, and a
resumed run draws exactly what an uninterrupted one would.

Threads: training is sequential by nature (each image changes the weights the
next one sees) and one image is too small to split across threads per step,
so `train_images` runs on one thread.  `respond_images` (plasticity off) runs
images in parallel with `prange`: each iteration writes only its own row of
the outputs and reads the shared weights, so results do not depend on the
thread count or scheduling.

Everything is float64: theta's per-step decay factor exp(-1 ms / 1e7 ms) =
1 - 1e-7 is not representable in float32 (its spacing below 1 is 6e-8).
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
from numba import prange

N_INPUT = 784

# SplitMix64 constants (Steele, Lea & Flood 2014; Vigna's splitmix64.c).
GOLDEN_GAMMA = np.uint64(0x9E3779B97F4A7C15)
MIX_MULT_1 = np.uint64(0xBF58476D1CE4E5B9)
MIX_MULT_2 = np.uint64(0x94D049BB133111EB)
SHIFT_30 = np.uint64(30)
SHIFT_27 = np.uint64(27)
SHIFT_31 = np.uint64(31)
SHIFT_11 = np.uint64(11)
ONE_U64 = np.uint64(1)
TWO_POW_MINUS_53 = 2.0**-53


class KernelConstants(NamedTuple):
    """Per-step constants the kernels read, precomputed from `StdpConfig` in Python
    (exp() is evaluated once there, so both backends see identical factors)."""

    num_steps: int  # time steps per presentation
    dt_ms: float
    decay_v: float  # exp(-dt / tau_m)
    decay_pre: float  # exp(-dt / tau_pre)
    decay_post: float  # exp(-dt / tau_post)
    decay_theta: float  # exp(-dt / tau_theta), per step
    decay_theta_rest: float  # exp(-rest / tau_theta), once after each presentation
    v_rest: float
    v_reset: float
    v_thresh: float
    refrac_steps: int
    theta_plus: float
    w_inh: float
    one_spike: bool
    nu_pre: float
    nu_post: float
    w_min: float
    w_max: float
    weight_sum: float  # per-neuron sum of input weights after normalisation
    max_rate_hz: float  # input rate of a white pixel (intensity 1)
    rate_step_hz: float  # added to it on each re-presentation
    min_spikes: int  # fewer output spikes than this: present the image again
    max_presentations: int


@numba.njit(inline="always")
def mix64(z):
    """SplitMix64's finaliser: a bijective avalanche hash of a uint64."""
    z = (z ^ (z >> SHIFT_30)) * MIX_MULT_1
    z = (z ^ (z >> SHIFT_27)) * MIX_MULT_2
    return z ^ (z >> SHIFT_31)


@numba.njit(inline="always")
def uniform(key, counter):
    """U[0, 1) from (key, counter): the top 53 bits of mix64(key + (counter + 1) * gamma)."""
    z = mix64(key + (np.uint64(counter) + ONE_U64) * GOLDEN_GAMMA)
    return np.float64(z >> SHIFT_11) * TWO_POW_MINUS_53


@numba.njit(inline="always")
def presentation_key(image_key, attempt):
    """Key of re-presentation `attempt` (0, 1, ...) of an image: mix64(key + attempt * gamma)."""
    return mix64(image_key + np.uint64(attempt) * GOLDEN_GAMMA)


@numba.njit(cache=True)
def uniforms_grid(key, num_steps, pixel_index, out):
    """out[t, k] = uniform(key, t * 784 + pixel_index[k]): the draws `present` compares
    with the spike probabilities.  Exposed for the tests."""
    for t in range(num_steps):
        for k in range(pixel_index.shape[0]):
            out[t, k] = uniform(key, t * N_INPUT + pixel_index[k])


@numba.njit(cache=True)
def present(weights, theta, pixel_index, pixel_value, key, rate_hz, c, learn, counts, fired):
    """Present one image for c.num_steps steps from an exactly reset state (v = v_rest,
    traces 0, nobody refractory); see the module docstring for the equations.

    weights (784, N) and theta (N,) are updated in place when `learn`; otherwise
    they are only read.  pixel_index/pixel_value list the image's non-zero pixels
    (the others never spike).  counts (N,) receives each neuron's spike count
    (overwritten); fired (N,) receives, in the order of their first spike, the
    neurons that fired.  Returns (total number of output spikes, number of
    neurons that fired), so fired[:that number] is meaningful.
    """
    n_active = pixel_index.shape[0]
    prob = np.empty(n_active)
    for k in range(n_active):
        # p_k = x_k * rate * dt / 1000   (rate in Hz, dt in ms)
        prob[k] = pixel_value[k] * rate_hz * c.dt_ms / 1000.0
    no_raster = np.zeros((1, 1), dtype=np.bool_)
    return _simulate(weights, theta, pixel_index, prob, key, no_raster, False, c, learn, counts, fired)


@numba.njit(cache=True)
def present_raster(weights, theta, pixel_index, raster, c, learn, counts, fired):
    """`present` with the input spikes given: raster (c.num_steps, K) bool, raster[t, k]
    True when input pixel_index[k] spikes at step t.  For hand-made test cases."""
    prob = np.zeros(pixel_index.shape[0])
    return _simulate(weights, theta, pixel_index, prob, ONE_U64, raster, True, c, learn, counts, fired)


@numba.njit(inline="always")
def _simulate(weights, theta, pixel_index, prob, key, raster, use_raster, c, learn, counts, fired):
    """The time-step loop of `present`: input spikes drawn (u < p_k), or read from `raster`."""
    n_neurons = weights.shape[1]
    n_active = pixel_index.shape[0]
    v = np.full(n_neurons, c.v_rest)
    refractory = np.zeros(n_neurons, dtype=np.int64)
    post_trace = np.zeros(n_neurons)
    pre_trace = np.zeros(n_active)
    current = np.zeros(n_neurons)
    fired_before = np.zeros(n_neurons, dtype=np.int64)  # 1 where the neuron fired at t-1
    fired_now = np.zeros(n_neurons, dtype=np.int64)
    n_fired_before = 0
    n_fired = 0  # fired[:n_fired]: the neurons that have fired so far, the only ones with x_post > 0
    counts[:] = 0
    total = 0
    for t in range(c.num_steps):
        for j in range(n_fired):
            n = fired[j]
            # x_post <- x_post * exp(-dt / tau_post)   (0 stays 0 for the neurons not in fired)
            post_trace[n] = post_trace[n] * c.decay_post
        for k in range(n_active):
            # x_pre <- x_pre * exp(-dt / tau_pre)
            pre_trace[k] = pre_trace[k] * c.decay_pre

        # Input events: only the rows of inputs that spike now are read.
        for k in range(n_active):
            if use_raster:
                spikes = raster[t, k]
            else:
                spikes = uniform(key, t * N_INPUT + pixel_index[k]) < prob[k]
            if spikes:
                row = weights[pixel_index[k]]
                for n in range(n_neurons):
                    # I_n <- I_n + w_kn
                    current[n] += row[n]
                if learn:
                    for j in range(n_fired):
                        n = fired[j]
                        # w_kn <- max(w_kn - nu_pre * x_post_n, w_min)
                        row[n] = max(row[n] - c.nu_pre * post_trace[n], c.w_min)
                # x_pre_k <- 1
                pre_trace[k] = 1.0

        n_candidates = 0
        best = -1
        best_margin = 0.0
        for n in range(n_neurons):
            # v <- v_rest + (v - v_rest) * exp(-dt / tau_m)
            v[n] = c.v_rest + (v[n] - c.v_rest) * c.decay_v
            if learn:
                # theta <- theta * exp(-dt / tau_theta)
                theta[n] = theta[n] * c.decay_theta
            input_current = current[n]
            current[n] = 0.0  # ready for the next step
            fired_now[n] = 0
            if refractory[n] > 0:
                refractory[n] -= 1
                continue
            # v <- v + I - w_inh * (spikes of the other neurons at t-1)
            v[n] = v[n] + input_current - c.w_inh * (n_fired_before - fired_before[n])
            # fire when v >= v_thresh + theta
            margin = v[n] - (c.v_thresh + theta[n])
            if margin >= 0.0:
                fired_now[n] = 1
                n_candidates += 1
                if best < 0 or margin > best_margin:
                    best = n
                    best_margin = margin
        if c.one_spike and n_candidates > 1:
            # winner-take-all within the step: only the largest margin fires
            for n in range(n_neurons):
                fired_now[n] = 0
            fired_now[best] = 1
            n_candidates = 1

        for n in range(n_neurons):
            if fired_now[n] == 0:
                continue
            if counts[n] == 0:
                fired[n_fired] = n
                n_fired += 1
            v[n] = c.v_reset
            refractory[n] = c.refrac_steps
            post_trace[n] = 1.0
            counts[n] += 1
            if learn:
                # theta <- theta + theta_plus
                theta[n] = theta[n] + c.theta_plus
                for k in range(n_active):
                    i = pixel_index[k]
                    # w_kn <- min(w_kn + nu_post * x_pre_k, w_max)
                    weights[i, n] = min(weights[i, n] + c.nu_post * pre_trace[k], c.w_max)
        total += n_candidates
        fired_before, fired_now = fired_now, fired_before
        n_fired_before = n_candidates
    return total, n_fired


@numba.njit(cache=True)
def normalise(weights, weight_sum):
    """Scale each neuron's input weights so they sum to weight_sum:
    w_kn <- w_kn * weight_sum / sum_k w_kn  (columns summing to 0 are left alone).
    Sums run over rows in order 0..783, as `reference_normalise` does."""
    n_inputs, n_neurons = weights.shape
    sums = np.zeros(n_neurons)
    for i in range(n_inputs):
        for n in range(n_neurons):
            sums[n] += weights[i, n]
    factor = np.ones(n_neurons)
    for n in range(n_neurons):
        if sums[n] > 0.0:
            factor[n] = weight_sum / sums[n]
    for i in range(n_inputs):
        for n in range(n_neurons):
            weights[i, n] = weights[i, n] * factor[n]


@numba.njit(cache=True)
def normalise_columns(weights, weight_sum, columns):
    """`normalise` restricted to the neurons listed in `columns` (the others are left
    as they are); each sum runs over rows in order 0..783, as in `normalise`."""
    n_inputs = weights.shape[0]
    for j in range(columns.shape[0]):
        n = columns[j]
        total = 0.0
        for i in range(n_inputs):
            total += weights[i, n]
        if total > 0.0:
            factor = weight_sum / total
            for i in range(n_inputs):
                weights[i, n] = weights[i, n] * factor


@numba.njit(inline="always")
def _present_until_enough(weights, theta, image, image_key, c, learn, counts):
    """Present an image, and again at a rate c.rate_step_hz higher each time, until it
    draws at least c.min_spikes output spikes or c.max_presentations is reached.
    While learning, theta decays by the rest period and the columns of the neurons
    that fired are normalised after every presentation.  Returns the number of
    presentations."""
    pixel_index = np.nonzero(image)[0]
    pixel_value = image[pixel_index]
    fired = np.empty(weights.shape[1], dtype=np.int64)
    attempt = 0
    while True:
        rate_hz = c.max_rate_hz + attempt * c.rate_step_hz
        key = presentation_key(image_key, attempt)
        total, n_fired = present(weights, theta, pixel_index, pixel_value, key, rate_hz, c, learn, counts, fired)
        if learn:
            for n in range(theta.shape[0]):
                # rest between images: theta <- theta * exp(-rest / tau_theta)
                theta[n] = theta[n] * c.decay_theta_rest
            # only the fired neurons' columns changed
            normalise_columns(weights, c.weight_sum, fired[:n_fired])
        attempt += 1
        if total >= c.min_spikes or attempt >= c.max_presentations:
            return attempt


@numba.njit(cache=True)
def train_images(weights, theta, images, image_keys, c, counts_out, presentations_out):
    """Learn from images (M, 784) in order, updating weights and theta in place.
    counts_out (M, N) gets each image's spike counts (its last presentation),
    presentations_out (M,) how often it was presented.  One thread: see the module
    docstring."""
    for m in range(images.shape[0]):
        presentations_out[m] = _present_until_enough(
            weights, theta, images[m], image_keys[m], c, True, counts_out[m]
        )


@numba.njit(parallel=True, cache=True)
def respond_images(weights, theta, images, image_keys, c, counts_out, presentations_out):
    """Spike counts (M, N) of the frozen network (no plasticity, theta fixed) to images
    (M, 784), in parallel over images; same re-presentation rule as training."""
    for m in prange(images.shape[0]):
        presentations_out[m] = _present_until_enough(
            weights, theta, images[m], image_keys[m], c, False, counts_out[m]
        )
