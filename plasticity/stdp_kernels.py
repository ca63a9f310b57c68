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

How the work is arranged (the equations above are unchanged by it):

* Currents ahead of time.  The input spikes of a presentation are drawn first
  (`draw_input_spikes`), then the currents of every neuron are summed
  CHUNK_STEPS steps ahead (`accumulate_currents`), from the weights as they are
  then.  A neuron's column changes only once it has fired (depression needs
  x_post > 0, potentiation a spike), so the sums are exact for every neuron
  that has not fired; the few that have are summed again, step by step, from
  their live weights inside the loop (`run_steps`).  Each sum runs over the
  spiking inputs in ascending order from 0.0, as in the reference, four rows
  per pass, so the bits are the reference's.
* The neuron loop of a step has no branches (a refractory neuron only leaks),
  so it compiles to vector instructions; only in a step with a candidate spike
  are the neurons scanned again to find who fires.
* Plasticity only where it acts: a spiking input's row is written only at the
  neurons that have fired in this presentation, a handful under strong
  inhibition, and normalisation touches only their columns.

Threads: training is sequential by nature (each image changes the weights the
next one sees), so `train_images` takes the images one by one and splits only
the summing of the currents across threads, by blocks of neurons
(`accumulate_currents_parallel`): each sum is still made by one thread, in the
same order, so the bits do not depend on the thread count.  `respond_images`
(plasticity off) runs images in parallel with `prange`: each worker writes only
its images' rows of the outputs and reads the shared weights, so results do not
depend on the thread count or scheduling either.

Random numbers are counter-based: the uniform for input pixel i at step t of a
presentation with key K is a hash of (K, t * 784 + i) (SplitMix64's
finaliser), so a presentation's input spikes depend on nothing but its key.
No generator state is carried, threads cannot perturb each other, and a
resumed run draws exactly what an uninterrupted one would.

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
    step_start, spiking, currents = new_buffers(c.num_steps, weights.shape[1], CHUNK_STEPS)
    draw_input_spikes(pixel_index, pixel_value, key, rate_hz, c, step_start, spiking)
    return run_steps(weights, theta, pixel_index, step_start, spiking, currents, False, c, learn, counts, fired)


@numba.njit(cache=True)
def present_raster(weights, theta, pixel_index, raster, c, learn, counts, fired):
    """`present` with the input spikes given: raster (c.num_steps, K) bool, raster[t, k]
    True when input pixel_index[k] spikes at step t.  For hand-made test cases."""
    step_start, spiking, currents = new_buffers(c.num_steps, weights.shape[1], CHUNK_STEPS)
    position = 0
    for t in range(c.num_steps):
        step_start[t] = position
        for k in range(pixel_index.shape[0]):
            if raster[t, k]:
                spiking[position] = k
                position += 1
    step_start[c.num_steps] = position
    return run_steps(weights, theta, pixel_index, step_start, spiking, currents, False, c, learn, counts, fired)


@numba.njit(inline="always")
def new_buffers(num_steps, n_neurons, chunk_steps):
    """Scratch space of one presentation, allocated once per batch of images (per
    thread in the frozen passes): the input spikes step by step (step_start, spiking;
    see `draw_input_spikes`) and the input currents of every neuron for `chunk_steps`
    steps at a time."""
    step_start = np.zeros(num_steps + 1, dtype=np.int64)
    spiking = np.zeros(num_steps * N_INPUT, dtype=np.int64)
    currents = np.empty((min(chunk_steps, num_steps), n_neurons))
    return step_start, spiking, currents


@numba.njit(inline="always")
def draw_input_spikes(pixel_index, pixel_value, key, rate_hz, c, step_start, spiking):
    """The Poisson input of a presentation, as lists per step: the inputs k (ascending)
    that spike at step t are spiking[step_start[t] : step_start[t + 1]]."""
    position = 0
    for t in range(c.num_steps):
        step_start[t] = position
        for k in range(pixel_index.shape[0]):
            # p_k = x_k * rate * dt / 1000   (rate in Hz, dt in ms); input k spikes when u < p_k
            if uniform(key, t * N_INPUT + pixel_index[k]) < pixel_value[k] * rate_hz * c.dt_ms / 1000.0:
                spiking[position] = k
                position += 1
    step_start[c.num_steps] = position


# Neurons per block when the currents are summed: a block's slice of the active input
# rows and of the (T, N) currents stay in the L2 cache while every step is summed.
CURRENT_BLOCK = 256
# Steps whose currents are summed ahead at a time: 10 x N float64 (0.5 MB at 6,400
# neurons) stays in the cache between the summing and the time-step loop.
CHUNK_STEPS = 10


@numba.njit(inline="always")
def _accumulate_block(weights, pixel_index, step_start, spiking, currents, first_step, first, last):
    """currents[r, first:last] = the current of step first_step + r, for every row r.  Four spiking rows are added per pass
    over the block, left to right, so each sum has the same order (and bits) as adding
    one row at a time, with a quarter of the loads and stores of the partial sums."""
    for r in range(min(currents.shape[0], step_start.shape[0] - 1 - first_step)):
        t = first_step + r
        out = currents[r, first:last]
        out[:] = 0.0
        s = step_start[t]
        stop = step_start[t + 1]
        while s + 4 <= stop:
            a = weights[pixel_index[spiking[s]], first:last]
            b = weights[pixel_index[spiking[s + 1]], first:last]
            c = weights[pixel_index[spiking[s + 2]], first:last]
            d = weights[pixel_index[spiking[s + 3]], first:last]
            for j in range(out.shape[0]):
                # I_n(t) <- I_n(t) + w_kn   for each input k spiking at t, in ascending k
                out[j] = out[j] + a[j] + b[j] + c[j] + d[j]
            s += 4
        while s < stop:
            a = weights[pixel_index[spiking[s]], first:last]
            for j in range(out.shape[0]):
                out[j] = out[j] + a[j]
            s += 1


@numba.njit(cache=True)
def accumulate_currents(weights, pixel_index, step_start, spiking, currents, first_step):
    """currents[r, n] = sum of w_kn over the inputs k that spike at step first_step + r
    (ascending k, from 0.0), for every row r of `currents` (up to the last step) and
    every neuron, from the weights as they are now; one thread."""
    n_neurons = weights.shape[1]
    for first in range(0, n_neurons, CURRENT_BLOCK):
        last = min(first + CURRENT_BLOCK, n_neurons)
        _accumulate_block(weights, pixel_index, step_start, spiking, currents, first_step, first, last)


@numba.njit(parallel=True, cache=True)
def accumulate_currents_parallel(weights, pixel_index, step_start, spiking, currents, first_step):
    """`accumulate_currents` with the blocks of neurons split across threads: each sum
    is still made by one thread in the same order, so the bits do not depend on threads."""
    n_neurons = weights.shape[1]
    n_blocks = (n_neurons + CURRENT_BLOCK - 1) // CURRENT_BLOCK
    for block in prange(n_blocks):
        first = block * CURRENT_BLOCK
        last = min(first + CURRENT_BLOCK, n_neurons)
        _accumulate_block(weights, pixel_index, step_start, spiking, currents, first_step, first, last)


@numba.njit(cache=True)
def run_steps(weights, theta, pixel_index, step_start, spiking, currents, parallel, c, learn, counts, fired):
    """The time-step loop of a presentation, given its input spikes (step_start, spiking).

    The input currents are summed ahead, currents.shape[0] steps at a time (across
    threads when `parallel`), from the weights as they are at the start of those
    steps.  That is exact for every neuron that has not fired yet: nothing changes
    its column until it fires (depression needs x_post > 0, potentiation a spike).  The few neurons that have fired have their current summed here, step by
    step, from their live weights, which are depressed right after being read.

    The pass over all neurons has no branches (a refractory neuron only leaks), so
    the compiler turns it into vector instructions; only in a step with a candidate
    spike are the neurons scanned again to find who fires.
    """
    n_neurons = weights.shape[1]
    n_active = pixel_index.shape[0]
    v = np.full(n_neurons, c.v_rest)
    free_from = np.zeros(n_neurons, dtype=np.int64)  # refractory until step free_from[n]
    post_trace = np.zeros(n_neurons)
    pre_trace = np.zeros(n_active)
    live_current = np.zeros(n_neurons)
    spiked_before = np.zeros(n_neurons)  # 1.0 where the neuron fired at t-1
    spikers_before = np.zeros(n_neurons, dtype=np.int64)  # the neurons that fired at t-1 ...
    spikers_now = np.zeros(n_neurons, dtype=np.int64)  # ... and at t, ascending
    n_before = 0
    n_fired = 0  # fired[:n_fired]: the neurons that have fired so far, the only ones with x_post > 0
    counts[:] = 0
    total = 0
    chunk = currents.shape[0]
    for t in range(c.num_steps):
        if t % chunk == 0:
            if parallel:
                accumulate_currents_parallel(weights, pixel_index, step_start, spiking, currents, t)
            else:
                accumulate_currents(weights, pixel_index, step_start, spiking, currents, t)
        current = currents[t % chunk]
        for j in range(n_fired):
            n = fired[j]
            # x_post <- x_post * exp(-dt / tau_post)   (0 stays 0 for the neurons not in fired)
            post_trace[n] = post_trace[n] * c.decay_post
            live_current[j] = 0.0
        for k in range(n_active):
            # x_pre <- x_pre * exp(-dt / tau_pre)
            pre_trace[k] = pre_trace[k] * c.decay_pre

        # Input events: the neurons that have fired read (then depress) their live weights.
        for s in range(step_start[t], step_start[t + 1]):
            k = spiking[s]
            if learn:
                row = weights[pixel_index[k]]
                for j in range(n_fired):
                    n = fired[j]
                    # I_n <- I_n + w_kn
                    live_current[j] += row[n]
                    # w_kn <- max(w_kn - nu_pre * x_post_n, w_min)
                    row[n] = max(row[n] - c.nu_pre * post_trace[n], c.w_min)
            # x_pre_k <- 1
            pre_trace[k] = 1.0
        if learn:
            for j in range(n_fired):
                current[fired[j]] = live_current[j]

        spikes_before = float(n_before)
        n_candidates = 0
        for n in range(n_neurons):
            # v <- v_rest + (v - v_rest) * exp(-dt / tau_m)
            leaked = c.v_rest + (v[n] - c.v_rest) * c.decay_v
            if learn:
                # theta <- theta * exp(-dt / tau_theta)
                theta[n] = theta[n] * c.decay_theta
            # v <- v + I - w_inh * (spikes of the other neurons at t-1), unless refractory
            integrated = leaked + current[n] - c.w_inh * (spikes_before - spiked_before[n])
            free = t >= free_from[n]
            v[n] = integrated if free else leaked
            # fire when v >= v_thresh + theta
            n_candidates += free & (v[n] - (c.v_thresh + theta[n]) >= 0.0)

        n_now = 0
        if n_candidates > 0:
            best = -1
            best_margin = 0.0
            for n in range(n_neurons):
                margin = v[n] - (c.v_thresh + theta[n])
                if t >= free_from[n] and margin >= 0.0:
                    spikers_now[n_now] = n
                    n_now += 1
                    if best < 0 or margin > best_margin:
                        best = n
                        best_margin = margin
            if c.one_spike and n_now > 1:
                # winner-take-all within the step: only the largest margin fires (lowest index on ties)
                spikers_now[0] = best
                n_now = 1

        for j in range(n_now):
            n = spikers_now[j]
            if counts[n] == 0:
                fired[n_fired] = n
                n_fired += 1
            v[n] = c.v_reset
            free_from[n] = t + c.refrac_steps + 1  # refractory for refrac_steps steps
            post_trace[n] = 1.0
            counts[n] += 1
            if learn:
                # theta <- theta + theta_plus
                theta[n] = theta[n] + c.theta_plus
                for k in range(n_active):
                    i = pixel_index[k]
                    # w_kn <- min(w_kn + nu_post * x_pre_k, w_max)
                    weights[i, n] = min(weights[i, n] + c.nu_post * pre_trace[k], c.w_max)
        total += n_now
        for j in range(n_before):
            spiked_before[spikers_before[j]] = 0.0
        for j in range(n_now):
            spiked_before[spikers_now[j]] = 1.0
        spikers_before, spikers_now = spikers_now, spikers_before
        n_before = n_now
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
def _present_until_enough(weights, theta, image, image_key, c, learn, counts, step_start, spiking, currents, parallel):
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
        draw_input_spikes(pixel_index, pixel_value, key, rate_hz, c, step_start, spiking)
        total, n_fired = run_steps(
            weights, theta, pixel_index, step_start, spiking, currents, parallel, c, learn, counts, fired
        )
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
    presentations_out (M,) how often it was presented.  The images go one after the
    other (each changes the weights the next one sees); only the summing of each
    presentation's currents is split across threads (see the module docstring)."""
    step_start, spiking, currents = new_buffers(c.num_steps, weights.shape[1], CHUNK_STEPS)
    for m in range(images.shape[0]):
        presentations_out[m] = _present_until_enough(
            weights, theta, images[m], image_keys[m], c, True, counts_out[m], step_start, spiking, currents, True
        )


@numba.njit(parallel=True, cache=True)
def respond_images(weights, theta, images, image_keys, c, counts_out, presentations_out, n_workers):
    """Spike counts (M, N) of the frozen network (no plasticity, theta fixed) to images
    (M, 784), in parallel over images: worker w of n_workers (one per thread) takes
    images w, w + n_workers, ... with its own scratch buffers.  Same re-presentation
    rule as training."""
    n_images = images.shape[0]
    for worker in prange(n_workers):
        step_start, spiking, currents = new_buffers(c.num_steps, weights.shape[1], CHUNK_STEPS)
        for m in range(worker, n_images, n_workers):
            presentations_out[m] = _present_until_enough(
                weights, theta, images[m], image_keys[m], c, False, counts_out[m], step_start, spiking, currents, False
            )
