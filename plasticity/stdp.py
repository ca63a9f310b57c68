"""Unsupervised STDP on MNIST: a Diehl & Cook (2015)-style network, its readable
NumPy reference, label assignment and classification.

The network (see docs/stdp.md for the full story and every source):

    784 Poisson inputs (rate proportional to pixel intensity)
      --(plastic weights w, 784 x N, pair STDP, each neuron's column normalised)-->
    N excitatory LIF neurons with adaptive thresholds (theta, homeostasis)
      --(lateral inhibition: every spike lowers every *other* neuron by w_inh one
         step later; the direct equivalent of Diehl & Cook's one-to-one
         excitatory -> inhibitory -> all-other-excitatory loop)

Each image is shown for `present_ms` from an exactly reset state, and shown
again at a higher input rate while it draws fewer than `min_spikes` spikes.
How the trained network's spikes are read as classes (labels, classification,
the two readouts) is in `plasticity.stdp_readout`.

The fast simulation is in `plasticity.stdp_kernels` (Numba); the functions
named `reference_*` here do the same float64 operations in the same order with
NumPy, step by step and easy to read, and the tests hold the two equal.
`StdpNetwork` holds weights and thresholds and runs either backend.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import numba
import numpy as np

from plasticity import stdp_kernels as kernels
from plasticity.stdp_kernels import N_INPUT, KernelConstants

Backend = Literal["numba", "reference"]
BACKEND_NAMES: tuple[str, ...] = ("numba", "reference")

# Random streams: the input spikes of training, label-assignment, test and
# validation presentations are drawn from separate, non-overlapping key families.
STREAM_TRAIN = 1
STREAM_ASSIGN = 2
STREAM_TEST = 3
STREAM_VALIDATION = 4

_MASK64 = (1 << 64) - 1

# The command-line flag that sets each configuration field, for error messages.
FLAG_NAMES: dict[str, str] = {
    "n_neurons": "--neurons",
    "dt_ms": "--dt",
    "present_ms": "--present-ms",
    "max_rate_hz": "--max-rate",
    "w_inh_mv": "--inhibition",
    "theta_plus_mv": "--theta-plus",
    "tau_theta_ms": "--tau-theta",
    "nu_pre": "--nu-pre",
    "nu_post": "--nu-post",
}

DC_THETA_PLUS_MV = 0.05  # D&C and BindsNET: threshold increase per spike
DC_TAU_THETA_MS = 1e7  # D&C and BindsNET: threshold decay time constant


@dataclass(frozen=True)
class StdpConfig:
    """Every constant of the network, with its source.

    "D&C" is Diehl & Cook (2015), "Unsupervised learning of digit recognition
    using spike-timing-dependent plasticity", Front. Comput. Neurosci. 9:99, and
    their published Brian code; "BindsNET" is the DiehlAndCook2015 model and its
    `examples/mnist/eth_mnist.py` script in BindsNET (Hazan et al. 2018), whose
    current-based formulation (weights add directly to the membrane, in mV) is
    the one used here.  "Ours" marks choices made for this implementation; each
    is justified and measured in docs/stdp.md.
    """

    n_neurons: int = 100  # excitatory neurons; D&C used 100, 400, 1600, 6400

    # Time
    dt_ms: float = 1.0  # BindsNET eth_mnist (--dt 1.0); D&C simulated at 0.5 ms
    present_ms: float = 250.0  # BindsNET eth_mnist (--time 250); D&C showed images for 350 ms
    rest_ms: float = 150.0  # D&C's rest between images; here only theta's decay over it (state is reset exactly)

    # Input
    max_rate_hz: float = 63.75  # D&C: rate = pixel/255 * 255/4 Hz (pixel / 8 * input_intensity 2)
    rate_step_hz: float = 31.875  # D&C: input_intensity += 1 on re-presentation, i.e. +255/8 Hz
    min_spikes: int = 5  # D&C: re-present while fewer than 5 excitatory spikes
    max_presentations: int = 10  # ours: a cap, so a blank image cannot loop forever

    # Excitatory neurons (BindsNET DiehlAndCookNodes as configured in DiehlAndCook2015)
    v_rest_mv: float = -65.0  # D&C and BindsNET
    v_reset_mv: float = -60.0  # BindsNET (D&C reset to -65 mV)
    v_thresh_mv: float = -52.0  # D&C and BindsNET; the threshold is v_thresh + theta
    tau_m_ms: float = 100.0  # D&C and BindsNET, excitatory membrane time constant
    refrac_ms: float = 5.0  # D&C and BindsNET, excitatory refractory period
    theta_plus_mv: float = DC_THETA_PLUS_MV  # D&C, BindsNET (the CLI scales it: size_scaled_homeostasis)
    tau_theta_ms: float = DC_TAU_THETA_MS  # D&C, BindsNET (the CLI scales it: size_scaled_homeostasis)
    one_spike: bool = True  # BindsNET DiehlAndCookNodes(one_spike=True): at most one spike per step

    # Lateral inhibition
    w_inh_mv: float = 120.0  # BindsNET eth_mnist (--inh 120); its DiehlAndCook2015 default is 17.5

    # STDP on input -> excitatory weights (pair rule, BindsNET PostPre)
    nu_pre: float = 1e-4  # D&C and BindsNET, depression rate (on presynaptic spikes)
    nu_post: float = 1e-2  # D&C and BindsNET, potentiation rate (on postsynaptic spikes)
    tau_pre_ms: float = 20.0  # D&C and BindsNET, presynaptic trace time constant
    tau_post_ms: float = 20.0  # D&C and BindsNET, postsynaptic trace time constant
    w_min: float = 0.0  # D&C and BindsNET
    w_max: float = 1.0  # D&C and BindsNET
    w_init_max: float = 0.3  # BindsNET: w ~ 0.3 * U[0, 1)  (D&C: 0.3 * (U[0, 1) + 0.01))
    weight_sum: float = 78.4  # BindsNET norm=78.4 = 0.1 * 784 (D&C: 78)

    def __post_init__(self) -> None:
        def bad(field_name: str, rule: str) -> ValueError:
            flag = FLAG_NAMES.get(field_name)
            where = f"{flag} ({field_name})" if flag else field_name
            return ValueError(f"{where} must be {rule}, got {getattr(self, field_name)!r}")

        for name in ("n_neurons", "min_spikes", "max_presentations"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise bad(name, "an integer")
        if self.n_neurons < 1:
            raise bad("n_neurons", "a positive integer (>= 1)")
        if self.min_spikes < 0:
            raise bad("min_spikes", "a non-negative integer")
        if self.max_presentations < 1:
            raise bad("max_presentations", "a positive integer")
        for item in fields(self):
            value = getattr(self, item.name)
            if item.type == "float" and not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise bad(item.name, "a finite number")
        for name in ("dt_ms", "present_ms", "tau_m_ms", "tau_theta_ms", "tau_pre_ms", "tau_post_ms"):
            if getattr(self, name) <= 0:
                raise bad(name, "a positive number of milliseconds")
        if self.present_ms < self.dt_ms:
            raise bad("present_ms", f"at least one time step (--dt = {self.dt_ms} ms)")
        for name in ("rest_ms", "refrac_ms", "theta_plus_mv", "w_inh_mv", "nu_pre", "nu_post", "rate_step_hz"):
            if getattr(self, name) < 0:
                raise bad(name, "non-negative")
        if self.max_rate_hz <= 0:
            raise bad("max_rate_hz", "a positive rate in Hz")
        top_rate = self.max_rate_hz + (self.max_presentations - 1) * self.rate_step_hz
        if top_rate * self.dt_ms / 1000.0 > 1.0:
            raise bad(
                "max_rate_hz",
                f"low enough that a spike probability per step stays <= 1 (the highest rate, "
                f"{top_rate:g} Hz after re-presentations, times --dt {self.dt_ms} ms exceeds 1000)",
            )
        if not self.v_reset_mv < self.v_thresh_mv:
            raise bad("v_reset_mv", f"below v_thresh_mv ({self.v_thresh_mv})")
        if not (0.0 <= self.w_min < self.w_max):
            raise bad("w_min", f"in [0, w_max = {self.w_max})")
        if not (0.0 < self.w_init_max <= self.w_max):
            raise bad("w_init_max", f"in (0, w_max = {self.w_max}]")
        if not (0.0 < self.weight_sum <= N_INPUT * self.w_max):
            raise bad("weight_sum", f"in (0, 784 * w_max = {N_INPUT * self.w_max:g}]")

    @property
    def num_steps(self) -> int:
        """Time steps per presentation: round(present_ms / dt_ms)."""
        return max(1, int(round(self.present_ms / self.dt_ms)))

    @property
    def refrac_steps(self) -> int:
        """Refractory period in steps: round(refrac_ms / dt_ms)."""
        return int(round(self.refrac_ms / self.dt_ms))

    def kernel_constants(self) -> KernelConstants:
        """The per-step factors both backends use (each exp() evaluated once, here)."""
        return KernelConstants(
            num_steps=self.num_steps,
            dt_ms=float(self.dt_ms),
            decay_v=math.exp(-self.dt_ms / self.tau_m_ms),
            decay_pre=math.exp(-self.dt_ms / self.tau_pre_ms),
            decay_post=math.exp(-self.dt_ms / self.tau_post_ms),
            decay_theta=math.exp(-self.dt_ms / self.tau_theta_ms),
            decay_theta_rest=math.exp(-self.rest_ms / self.tau_theta_ms),
            v_rest=float(self.v_rest_mv),
            v_reset=float(self.v_reset_mv),
            v_thresh=float(self.v_thresh_mv),
            refrac_steps=self.refrac_steps,
            theta_plus=float(self.theta_plus_mv),
            w_inh=float(self.w_inh_mv),
            one_spike=bool(self.one_spike),
            nu_pre=float(self.nu_pre),
            nu_post=float(self.nu_post),
            w_min=float(self.w_min),
            w_max=float(self.w_max),
            weight_sum=float(self.weight_sum),
            max_rate_hz=float(self.max_rate_hz),
            rate_step_hz=float(self.rate_step_hz),
            min_spikes=int(self.min_spikes),
            max_presentations=int(self.max_presentations),
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StdpConfig:
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown STDP config fields {unknown}; known: {sorted(known)}")
        return cls(**data)


DC_NEURONS = 400  # the size D&C's theta_plus and tau_theta are kept up to
SCALED_THETA_UNTIL = 1600  # theta_plus grows with N up to this size, tau_theta beyond it


def size_scaled_homeostasis(n_neurons: int) -> tuple[float, float]:
    """(theta_plus_mv, tau_theta_ms) for a network of `n_neurons`: D&C's 0.05 mV and 1e7 ms
    up to 400 neurons; from 400 to 1,600 theta_plus grows in proportion to N (0.2 mV at
    1,600); beyond 1,600 tau_theta grows in proportion to N instead (4e7 ms at 6,400).

    Each neuron wins about 1/N of the images, and between its wins its threshold decays
    for about N images (0.4 s each) out of tau_theta.  Its threshold settles at about
    theta_plus * spikes per win * tau_theta / (N * 0.4 s): with D&C's constants that
    level falls as N grows, until the neurons that have learned a digit no longer
    out-threshold the untrained ones and half of 1,600 neurons never win (measured in
    docs/stdp.md).  Scaling theta_plus keeps the level; but each win then raises the
    threshold by a larger part of it (the jump relative to the level is N * 0.4 s /
    tau_theta), and at 6,400 neurons more than half of them then stayed silent in
    the frozen network.  Scaling tau_theta instead keeps both the level and the relative jump
    of 1,600 neurons."""
    scale = n_neurons / DC_NEURONS
    theta_plus = DC_THETA_PLUS_MV * min(max(scale, 1.0), SCALED_THETA_UNTIL / DC_NEURONS)
    tau_theta = DC_TAU_THETA_MS * max(n_neurons / SCALED_THETA_UNTIL, 1.0)
    return theta_plus, tau_theta


# ---------------------------------------------------------------------------
# Random keys (counter-based; see plasticity.stdp_kernels)


def _mix64_int(z: int) -> int:
    """SplitMix64's finaliser on a Python int (the same bijection as `kernels.mix64`)."""
    z &= _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def reference_mix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on a uint64 array (NumPy wraps uint64 arrays modulo 2^64)."""
    z = np.asarray(z, dtype=np.uint64)
    z = (z ^ (z >> np.uint64(30))) * kernels.MIX_MULT_1
    z = (z ^ (z >> np.uint64(27))) * kernels.MIX_MULT_2
    return z ^ (z >> np.uint64(31))


def image_keys(seed: int, stream: int, epoch: int, indices: np.ndarray) -> np.ndarray:
    """One uint64 key per image: a hash of (seed, stream, epoch, dataset index).

    The input spikes of a presentation depend on its key alone, so they are the
    same whatever order, batch or thread the image is processed in.
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"--seed must be a non-negative integer, got {seed!r}")
    gamma = int(kernels.GOLDEN_GAMMA)
    base = _mix64_int(_mix64_int(seed * gamma + stream) + (epoch + 1) * gamma)
    counters = np.asarray(indices, dtype=np.uint64) + np.uint64(1)
    return reference_mix64(np.uint64(base) + counters * kernels.GOLDEN_GAMMA)


def reference_presentation_key(image_key: np.uint64, attempt: int) -> np.uint64:
    """mix64(key + attempt * gamma), as `kernels.presentation_key`."""
    offset = np.array([attempt], dtype=np.uint64) * kernels.GOLDEN_GAMMA
    return reference_mix64(np.array([image_key], dtype=np.uint64) + offset)[0]


def reference_uniforms(key: np.uint64, num_steps: int, pixel_index: np.ndarray) -> np.ndarray:
    """(T, K) uniforms: u[t, k] = top 53 bits of mix64(key + (t * 784 + i_k + 1) * gamma) / 2^53."""
    steps = np.arange(num_steps, dtype=np.uint64)[:, None]
    counters = steps * np.uint64(N_INPUT) + np.asarray(pixel_index, dtype=np.uint64)[None, :]
    z = reference_mix64(np.uint64(key) + (counters + np.uint64(1)) * kernels.GOLDEN_GAMMA)
    return (z >> np.uint64(11)).astype(np.float64) * kernels.TWO_POW_MINUS_53


# ---------------------------------------------------------------------------
# Readable reference simulation (NumPy), operation for operation as the kernels


def reference_present(
    weights: np.ndarray,
    theta: np.ndarray,
    pixel_index: np.ndarray,
    pixel_value: np.ndarray,
    key: np.uint64,
    rate_hz: float,
    c: KernelConstants,
    learn: bool,
) -> tuple[np.ndarray, int]:
    """One presentation from an exactly reset state; returns (spike counts (N,), total).

    weights (784, N) and theta (N,) change in place when `learn`.
    """
    # p_k = x_k * rate * dt / 1000
    prob = pixel_value * rate_hz * c.dt_ms / 1000.0
    # Poisson input: input k spikes at step t when u[t, k] < p_k
    raster = reference_uniforms(key, c.num_steps, pixel_index) < prob
    return reference_present_raster(weights, theta, pixel_index, raster, c, learn)


def reference_present_raster(
    weights: np.ndarray,
    theta: np.ndarray,
    pixel_index: np.ndarray,
    raster: np.ndarray,
    c: KernelConstants,
    learn: bool,
) -> tuple[np.ndarray, int]:
    """`reference_present` with the input spikes given: raster (T, K) bool, raster[t, k]
    True when input pixel_index[k] spikes at step t."""
    n_neurons = weights.shape[1]
    v = np.full(n_neurons, c.v_rest)
    refractory = np.zeros(n_neurons, dtype=np.int64)
    post_trace = np.zeros(n_neurons)
    pre_trace = np.zeros(len(pixel_index))
    fired_before = np.zeros(n_neurons, dtype=np.int64)
    counts = np.zeros(n_neurons, dtype=np.int64)
    total = 0
    for t in range(c.num_steps):
        # the neurons that have fired during this presentation: the only ones with x_post > 0
        has_fired = counts > 0
        # v <- v_rest + (v - v_rest) * exp(-dt / tau_m)
        v = c.v_rest + (v - c.v_rest) * c.decay_v
        # x_post <- x_post * exp(-dt / tau_post)
        post_trace = post_trace * c.decay_post
        if learn:
            # theta <- theta * exp(-dt / tau_theta)
            theta *= c.decay_theta
        # x_pre <- x_pre * exp(-dt / tau_pre)
        pre_trace = pre_trace * c.decay_pre

        spiking = np.flatnonzero(raster[t])
        current = np.zeros(n_neurons)
        for k in spiking:
            row = weights[pixel_index[k]]
            # I <- I + w_k
            current = current + row
            if learn:
                # w_kn <- max(w_kn - nu_pre * x_post_n, w_min) for the neurons n that have fired
                # (x_post before this step's spikes)
                row[has_fired] = np.maximum(row[has_fired] - c.nu_pre * post_trace[has_fired], c.w_min)
        # x_pre_k <- 1 for the inputs that spiked
        pre_trace[spiking] = 1.0

        free = refractory == 0
        refractory[~free] -= 1
        # v <- v + I - w_inh * (spikes of the *other* neurons at t-1)
        inhibition = c.w_inh * (fired_before.sum() - fired_before)
        v[free] = v[free] + current[free] - inhibition[free]
        # fire when v >= v_thresh + theta
        margin = v - (c.v_thresh + theta)
        candidates = free & (margin >= 0.0)
        if c.one_spike and candidates.sum() > 1:
            # winner-take-all within the step: the largest margin (lowest index on ties)
            winner = int(np.argmax(np.where(candidates, margin, -np.inf)))
            candidates = np.zeros(n_neurons, dtype=bool)
            candidates[winner] = True
        fired = np.flatnonzero(candidates)

        v[fired] = c.v_reset
        refractory[fired] = c.refrac_steps
        post_trace[fired] = 1.0
        counts[fired] += 1
        if learn:
            for n in fired:
                # theta <- theta + theta_plus
                theta[n] = theta[n] + c.theta_plus
                # w_kn <- min(w_kn + nu_post * x_pre_k, w_max)
                weights[pixel_index, n] = np.minimum(
                    weights[pixel_index, n] + c.nu_post * pre_trace, c.w_max
                )
        total += len(fired)
        fired_before = candidates.astype(np.int64)
    return counts, total


def reference_normalise(weights: np.ndarray, weight_sum: float, columns: np.ndarray | None = None) -> None:
    """w_kn <- w_kn * weight_sum / sum_k w_kn for every neuron n in `columns` (default:
    all), in place (columns summing to 0 are left alone); the sums run over rows in
    order, as the kernel's."""
    columns = np.arange(weights.shape[1]) if columns is None else np.asarray(columns, dtype=np.int64)
    sums = np.zeros(len(columns))
    for row in weights:
        sums = sums + row[columns]
    factor = np.ones(len(columns))
    positive = sums > 0.0
    factor[positive] = weight_sum / sums[positive]
    weights[:, columns] *= factor


def _reference_present_until_enough(
    weights: np.ndarray,
    theta: np.ndarray,
    image: np.ndarray,
    image_key: np.uint64,
    c: KernelConstants,
    learn: bool,
) -> tuple[np.ndarray, int]:
    """Present, and re-present `c.rate_step_hz` faster, until >= c.min_spikes spikes or
    c.max_presentations; returns (counts of the last presentation, presentations)."""
    pixel_index = np.flatnonzero(image)
    pixel_value = image[pixel_index]
    attempt = 0
    while True:
        rate_hz = c.max_rate_hz + attempt * c.rate_step_hz
        key = reference_presentation_key(image_key, attempt)
        counts, total = reference_present(
            weights, theta, pixel_index, pixel_value, key, rate_hz, c, learn
        )
        if learn:
            # rest between images: theta <- theta * exp(-rest / tau_theta)
            theta *= c.decay_theta_rest
            # the presentation changed only the columns of the neurons that fired
            reference_normalise(weights, c.weight_sum, np.flatnonzero(counts))
        attempt += 1
        if total >= c.min_spikes or attempt >= c.max_presentations:
            return counts, attempt


def reference_train(
    weights: np.ndarray, theta: np.ndarray, images: np.ndarray, image_keys: np.ndarray, c: KernelConstants
) -> tuple[np.ndarray, np.ndarray]:
    """Learn from images (M, 784) in order; returns (counts (M, N), presentations (M,))."""
    results = [
        _reference_present_until_enough(weights, theta, image, key, c, True)
        for image, key in zip(images, image_keys)
    ]
    return _stack(results, weights.shape[1])


def reference_respond(
    weights: np.ndarray, theta: np.ndarray, images: np.ndarray, image_keys: np.ndarray, c: KernelConstants
) -> tuple[np.ndarray, np.ndarray]:
    """Frozen network's counts (M, N) and presentations (M,); nothing is modified."""
    results = [
        _reference_present_until_enough(weights, theta, image, key, c, False)
        for image, key in zip(images, image_keys)
    ]
    return _stack(results, weights.shape[1])


def _stack(results: list[tuple[np.ndarray, int]], n_neurons: int) -> tuple[np.ndarray, np.ndarray]:
    counts = np.zeros((len(results), n_neurons), dtype=np.int32)
    presentations = np.zeros(len(results), dtype=np.int64)
    for m, (row, attempts) in enumerate(results):
        counts[m] = row
        presentations[m] = attempts
    return counts, presentations


# ---------------------------------------------------------------------------
# The network: state plus either backend


class StdpNetwork:
    """Input -> excitatory weights (784, N) and adaptive thresholds theta (N,), in mV."""

    def __init__(
        self,
        config: StdpConfig,
        weights: np.ndarray,
        theta: np.ndarray,
        backend: Backend = "numba",
    ) -> None:
        if backend not in BACKEND_NAMES:
            raise ValueError(f"STDP backend must be one of {', '.join(BACKEND_NAMES)}, got {backend!r}")
        n = config.n_neurons
        weights = np.ascontiguousarray(weights, dtype=np.float64)
        theta = np.ascontiguousarray(theta, dtype=np.float64)
        if weights.shape != (N_INPUT, n):
            raise ValueError(f"weights must have shape (784, {n}) for {n} neurons, got {weights.shape}")
        if theta.shape != (n,):
            raise ValueError(f"theta must have shape ({n},), got {theta.shape}")
        self.config = config
        self.weights = weights
        self.theta = theta
        self.backend: Backend = backend
        self._constants = config.kernel_constants()

    @classmethod
    def initial(cls, config: StdpConfig, rng: np.random.Generator, backend: Backend = "numba") -> StdpNetwork:
        """w ~ w_init_max * U[0, 1) (BindsNET), each neuron's column then normalised to
        weight_sum (D&C normalise before every presentation, the first included), theta = 0.

        From then on learning renormalises only the columns a presentation changed,
        so every column sums to weight_sum throughout."""
        weights = config.w_init_max * rng.random((N_INPUT, config.n_neurons))
        reference_normalise(weights, config.weight_sum)
        return cls(config, weights, np.zeros(config.n_neurons), backend)

    @staticmethod
    def _images(images: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        images = np.ascontiguousarray(images, dtype=np.float64)
        if images.ndim != 2 or images.shape[1] != N_INPUT:
            raise ValueError(f"images must have shape (M, 784), got {images.shape}")
        if images.size and (images.min() < 0.0 or images.max() > 1.0):
            raise ValueError("image intensities must lie in [0, 1] (spike rate = intensity * --max-rate)")
        keys = np.ascontiguousarray(keys, dtype=np.uint64)
        if keys.shape != (images.shape[0],):
            raise ValueError(f"need one key per image: {images.shape[0]} images, keys of shape {keys.shape}")
        return images, keys

    def train(self, images: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Learn from images (M, 784) in order; returns (counts (M, N), presentations (M,))."""
        images, keys = self._images(images, keys)
        if self.backend == "reference":
            return reference_train(self.weights, self.theta, images, keys, self._constants)
        counts = np.zeros((images.shape[0], self.config.n_neurons), dtype=np.int32)
        presentations = np.zeros(images.shape[0], dtype=np.int64)
        kernels.train_images(self.weights, self.theta, images, keys, self._constants, counts, presentations)
        return counts, presentations

    def respond(self, images: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Spike counts (M, N) of the frozen network (no STDP, theta fixed), and presentations."""
        images, keys = self._images(images, keys)
        if self.backend == "reference":
            return reference_respond(self.weights, self.theta, images, keys, self._constants)
        counts = np.zeros((images.shape[0], self.config.n_neurons), dtype=np.int32)
        presentations = np.zeros(images.shape[0], dtype=np.int64)
        workers = max(1, min(numba.get_num_threads(), images.shape[0]))
        kernels.respond_images(self.weights, self.theta, images, keys, self._constants, counts, presentations, workers)
        return counts, presentations


def receptive_field_grid(weights: np.ndarray, columns: int | None = None, gap: int = 1) -> np.ndarray:
    """Tile each neuron's 784 input weights as a 28x28 image into one 2-D array
    (NaN in the gaps and unused tiles), `columns` tiles wide (default ceil(sqrt(N)))."""
    n = weights.shape[1]
    cols = columns or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    size = 28 + gap
    grid = np.full((rows * size - gap, cols * size - gap), np.nan)
    for j in range(n):
        r, col = divmod(j, cols)
        grid[r * size : r * size + 28, col * size : col * size + 28] = weights[:, j].reshape(28, 28)
    return grid
