"""Tests for the unsupervised STDP network (plasticity.stdp, plasticity.stdp_kernels,
plasticity.stdp_readout, `snn-mnist stdp`).

    kernels == NumPy reference, bit for bit, on small networks and real images
    STDP sign and trace decay on hand-made spike trains (both backends)
    neuron dynamics on hand cases: refractoriness, one-spike WTA, lateral inhibition
    normalisation keeps every neuron's weight sum
    label assignment and classification on hand-made counts; the equal-norm readout
    determinism: same seed -> same weights whatever the thread count; resume == no interruption
    it learns: a quick run on real MNIST beats chance and the untrained network
    bad flags -> one clear error naming the flag

Data tests read real MNIST from $SNN_MNIST_DATA or <repo>/../shared/data/mnist
and fail (not skip) when it is absent.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from experiments import stdp_cmd
from experiments.cli import build_parser, main
from plasticity import stdp_kernels as kernels
from plasticity.stdp import (
    STREAM_TEST,
    STREAM_TRAIN,
    StdpConfig,
    StdpNetwork,
    image_keys,
    reference_normalise,
    reference_present_raster,
    reference_presentation_key,
    reference_uniforms,
    size_scaled_homeostasis,
)
from plasticity.stdp_readout import EqualNormReadout, assign_labels, class_scores, classify, equal_norm_readout
from training.data import load_mnist

REPO = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    folder = Path(os.environ.get("SNN_MNIST_DATA") or REPO.parent / "shared" / "data" / "mnist")
    assert folder.is_dir(), f"MNIST not found at {folder}: set SNN_MNIST_DATA to the folder of the IDX files"
    return folder


@pytest.fixture(scope="module")
def mnist() -> dict[str, np.ndarray]:
    train = load_mnist("train", data_dir()).subset(2000)
    test = load_mnist("test", data_dir()).subset(500)
    return {
        "train_x": train.flat_images.numpy().astype(np.float64),
        "train_y": train.labels.numpy(),
        "test_x": test.flat_images.numpy().astype(np.float64),
        "test_y": test.labels.numpy(),
    }


# ---------------------------------------------------------------------------
# Helpers: one presentation with given input spikes, on either backend


def run_raster(backend: str, weights, theta, pixel_index, raster, config: StdpConfig, learn: bool = True):
    """Returns (counts, total); weights and theta change in place."""
    c = config.kernel_constants()
    pixel_index = np.asarray(pixel_index, dtype=np.int64)
    raster = np.ascontiguousarray(raster, dtype=np.bool_)
    if backend == "reference":
        return reference_present_raster(weights, theta, pixel_index, raster, c, learn)
    counts = np.zeros(weights.shape[1], dtype=np.int64)
    fired = np.zeros(weights.shape[1], dtype=np.int64)
    total, n_fired = kernels.present_raster(weights, theta, pixel_index, raster, c, learn, counts, fired)
    # fired lists the neurons that fired, each once, in the order of their first spike
    assert sorted(fired[:n_fired].tolist()) == np.flatnonzero(counts).tolist()
    return counts, total


def spike_train(steps: int, *times_per_input: list[int]) -> np.ndarray:
    raster = np.zeros((steps, len(times_per_input)), dtype=bool)
    for k, times in enumerate(times_per_input):
        raster[times, k] = True
    return raster


BACKENDS = ("numba", "reference")

# One neuron, input A (pixel 0) weak, input B (pixel 1) strong enough to fire it
# at once: -65 + 20 = -45 mV >= -52 mV.  w_max is raised so B's weight is legal.
HAND = dict(n_neurons=1, present_ms=30.0, w_max=50.0, w_init_max=1.0, tau_pre_ms=10.0, tau_post_ms=30.0)
W_A, W_B = 0.5, 20.0


def hand_weights() -> np.ndarray:
    weights = np.zeros((784, 1))
    weights[0, 0], weights[1, 0] = W_A, W_B
    return weights


# ---------------------------------------------------------------------------
# STDP on hand cases


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("gap", [0, 1, 3, 10])
def test_pre_before_post_potentiates_by_decayed_pre_trace(backend: str, gap: int) -> None:
    config = StdpConfig(**HAND)
    weights, theta = hand_weights(), np.zeros(1)
    t_post = 15
    counts, _ = run_raster(backend, weights, theta, [0, 1], spike_train(30, [t_post - gap], [t_post]), config)
    assert counts.tolist() == [1]
    # dw = nu_post * x_pre(t_post) = nu_post * exp(-gap * dt / tau_pre)
    expected = W_A + config.nu_post * math.exp(-gap * config.dt_ms / config.tau_pre_ms)
    assert weights[0, 0] == pytest.approx(expected, rel=1e-12)
    assert weights[0, 0] > W_A
    # B spiked with its own post spike: x_pre = 1, no depression (x_post was 0 before)
    assert weights[1, 0] == pytest.approx(W_B + config.nu_post, rel=1e-12)
    # theta grew by theta_plus (and decayed negligibly, tau_theta = 1e7 ms)
    assert theta[0] == pytest.approx(config.theta_plus_mv, rel=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("gap", [1, 3, 10])
def test_post_before_pre_depresses_by_decayed_post_trace(backend: str, gap: int) -> None:
    config = StdpConfig(**HAND)
    weights, theta = hand_weights(), np.zeros(1)
    t_post = 5
    counts, _ = run_raster(backend, weights, theta, [0, 1], spike_train(30, [t_post + gap], [t_post]), config)
    assert counts.tolist() == [1]
    # dw = -nu_pre * x_post(t_pre) = -nu_pre * exp(-gap * dt / tau_post)
    expected = W_A - config.nu_pre * math.exp(-gap * config.dt_ms / config.tau_post_ms)
    assert weights[0, 0] == pytest.approx(expected, rel=1e-12)
    assert weights[0, 0] < W_A


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_plasticity_without_learning_and_weights_stay_in_bounds(backend: str) -> None:
    config = StdpConfig(**HAND)
    weights, theta = hand_weights(), np.zeros(1)
    run_raster(backend, weights, theta, [0, 1], spike_train(30, [4, 9], [5]), config, learn=False)
    assert np.array_equal(weights, hand_weights()) and theta[0] == 0.0
    # depression stops at w_min, potentiation at w_max
    config = StdpConfig(**{**HAND, "nu_pre": 10.0, "nu_post": 100.0})
    weights = hand_weights()
    run_raster(backend, weights, np.zeros(1), [0, 1], spike_train(30, [6], [5]), config)
    assert weights[0, 0] == config.w_min
    weights = hand_weights()
    run_raster(backend, weights, np.zeros(1), [0, 1], spike_train(30, [4], [5]), config)
    assert weights[0, 0] == config.w_max


# ---------------------------------------------------------------------------
# Neuron dynamics on hand cases


@pytest.mark.parametrize("backend", BACKENDS)
def test_refractory_period_spaces_spikes(backend: str) -> None:
    # B every step: fire at 0, then 5 refractory steps, fire at 6, 12, 18, 24
    config = StdpConfig(**HAND)
    counts, total = run_raster(
        backend, hand_weights(), np.zeros(1), [1], np.ones((30, 1), dtype=bool), config, learn=False
    )
    assert counts.tolist() == [5] and total == 5


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_spike_per_step_and_lateral_inhibition(backend: str) -> None:
    base = dict(HAND, n_neurons=2, present_ms=12.0)
    weights = np.zeros((784, 2))
    weights[1, :] = W_B  # both neurons cross threshold on the same step
    raster = spike_train(12, [2, 8])
    # one_spike: only the lowest index of a tie fires; without it both do
    counts, _ = run_raster(backend, weights.copy(), np.zeros(2), [1], raster[:, :1], StdpConfig(**base, w_inh_mv=0.0, one_spike=False), False)
    assert counts.tolist() == [2, 2]
    counts, _ = run_raster(backend, weights.copy(), np.zeros(2), [1], raster[:, :1], StdpConfig(**base, w_inh_mv=0.0, one_spike=True), False)
    assert counts[0] == 2 and counts[1] >= 1  # the loser is still above threshold next step
    # strong inhibition one step after the winner's spike keeps the loser silent
    counts, _ = run_raster(backend, weights.copy(), np.zeros(2), [1], raster[:, :1], StdpConfig(**base, w_inh_mv=100.0, one_spike=True), False)
    assert counts.tolist() == [2, 0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_weight_learned_mid_presentation_drives_the_next_spike(backend: str) -> None:
    # B (weight 5) spikes at 0, A (20) at 1 fires the neuron; with nu_post 10 that spike
    # raises w_B by 10 * exp(-1/10) = 9.05 to 14.05, so B alone fires it at 8 (after the
    # refractory steps 2-6).  With the weight from before the spike B would leave it at
    # -60.3 + 5 = -55.3 mV, below -52.  The kernel sums currents CHUNK_STEPS steps ahead:
    # within one chunk, the neuron that fired must read its live weights.
    assert kernels.CHUNK_STEPS > 8, "the case needs both spikes within one chunk of steps"
    config = StdpConfig(**dict(HAND, present_ms=12.0, nu_post=10.0))
    weights = np.zeros((784, 1))
    weights[0, 0], weights[1, 0] = 20.0, 5.0
    counts, _ = run_raster(backend, weights, np.zeros(1), [0, 1], spike_train(12, [1], [0, 8]), config)
    assert counts.tolist() == [2]
    assert weights[1, 0] > 14.0


# ---------------------------------------------------------------------------
# Kernels == reference, bit for bit


@pytest.mark.parametrize("one_spike", [True, False])
@pytest.mark.parametrize("w_inh", [0.0, 3.0, 40.0])
@pytest.mark.parametrize("learn", [True, False])
def test_present_raster_kernel_equals_reference(one_spike: bool, w_inh: float, learn: bool) -> None:
    rng = np.random.default_rng(7)
    config = StdpConfig(n_neurons=6, present_ms=40.0, w_inh_mv=w_inh, one_spike=one_spike, theta_plus_mv=0.5)
    pixel_index = np.sort(rng.choice(784, size=40, replace=False))
    raster = rng.random((config.num_steps, 40)) < 0.15
    weights = rng.random((784, 6)) * 0.8
    theta = rng.random(6)
    results = []
    for backend in BACKENDS:
        w, th = weights.copy(), theta.copy()
        counts, total = run_raster(backend, w, th, pixel_index, raster, config, learn)
        results.append((counts, total, w, th))
    (c1, t1, w1, th1), (c2, t2, w2, th2) = results
    assert c1.sum() > 0, "the case should make neurons fire"
    assert np.array_equal(c1, c2) and t1 == t2 == c1.sum()
    assert np.array_equal(w1, w2) and np.array_equal(th1, th2)
    assert learn == (not np.array_equal(w1, weights))


def test_uniforms_and_keys_match_reference() -> None:
    pixel_index = np.array([0, 5, 300, 783], dtype=np.int64)
    key = np.uint64(0xDEADBEEF12345678)
    grid = np.empty((9, 4))
    kernels.uniforms_grid(key, 9, pixel_index, grid)
    assert np.array_equal(grid, reference_uniforms(key, 9, pixel_index))
    assert grid.min() >= 0.0 and grid.max() < 1.0
    for attempt in range(4):
        assert kernels.presentation_key(key, attempt) == reference_presentation_key(key, attempt)
    keys = image_keys(3, STREAM_TRAIN, 0, np.arange(1000))
    assert len(set(keys.tolist())) == 1000
    assert np.array_equal(keys, image_keys(3, STREAM_TRAIN, 0, np.arange(1000)))
    assert not np.array_equal(keys, image_keys(3, STREAM_TEST, 0, np.arange(1000)))
    assert not np.array_equal(keys, image_keys(3, STREAM_TRAIN, 1, np.arange(1000)))
    assert not np.array_equal(keys, image_keys(4, STREAM_TRAIN, 0, np.arange(1000)))


def test_poisson_input_has_the_asked_rate() -> None:
    # a white pixel at 63.75 Hz, dt = 1 ms: p = 0.06375 per step
    grid = np.empty((250, 784))
    kernels.uniforms_grid(np.uint64(99), 250, np.arange(784, dtype=np.int64), grid)
    p = 63.75 * 1.0 / 1000.0
    rate = float(np.mean(grid < p))
    sigma = math.sqrt(p * (1 - p) / grid.size)
    assert abs(rate - p) < 5 * sigma
    assert abs(grid.mean() - 0.5) < 0.005


def test_normalise_kernel_equals_reference_and_keeps_weight_sum() -> None:
    rng = np.random.default_rng(3)
    weights = rng.random((784, 9)) * 0.3
    weights[:, 4] = 0.0  # an all-zero column is left alone
    expected = weights.copy()
    reference_normalise(expected, 78.4)
    kernels.normalise(weights, 78.4)
    assert np.array_equal(weights, expected)
    sums = weights.sum(axis=0)
    assert sums[4] == 0.0
    assert np.allclose(np.delete(sums, 4), 78.4, rtol=1e-12, atol=0)


def test_normalise_columns_touches_only_the_listed_columns() -> None:
    rng = np.random.default_rng(4)
    weights = rng.random((784, 9)) * 0.3
    weights[:, 6] = 0.0
    columns = np.array([7, 2, 6], dtype=np.int64)
    expected = weights.copy()
    reference_normalise(expected, 78.4, columns)
    before = weights.copy()
    kernels.normalise_columns(weights, 78.4, columns)
    assert np.array_equal(weights, expected)
    untouched = [0, 1, 3, 4, 5, 8]
    assert np.array_equal(weights[:, untouched], before[:, untouched])
    # a listed column is scaled exactly as the whole-matrix normalisation scales it
    whole = before.copy()
    kernels.normalise(whole, 78.4)
    assert np.array_equal(weights[:, columns], whole[:, columns])


@pytest.mark.parametrize("backend", BACKENDS)
def test_depression_reaches_only_neurons_that_have_fired(backend: str) -> None:
    # Two neurons; only neuron 0 gets the strong input and fires.  Input A (pixel 0) spikes
    # afterwards: neuron 0's weight from A is depressed, neuron 1's (below w_min, as it may be
    # after normalisation) is not touched: x_post = 0 means no depression, not a clamp.
    config = StdpConfig(**{**HAND, "n_neurons": 2, "w_min": 0.2})
    weights = np.zeros((784, 2))
    weights[0] = [0.5, 0.1]
    weights[1] = [W_B, 0.3]
    theta = np.zeros(2)
    counts, _ = run_raster(backend, weights, theta, [0, 1], spike_train(30, [8], [5]), config)
    assert counts.tolist() == [1, 0]
    assert weights[0, 0] == pytest.approx(0.5 - config.nu_pre * math.exp(-3 / config.tau_post_ms), rel=1e-12)
    assert weights[0, 1] == 0.1


@pytest.mark.parametrize("one_spike", [True, False])
def test_train_and_respond_kernels_equal_reference_with_representations(mnist, one_spike: bool) -> None:
    # a low input rate and a high spike quota force re-presentations
    config = StdpConfig(
        n_neurons=5, present_ms=40.0, max_rate_hz=40.0, min_spikes=4, one_spike=one_spike, w_inh_mv=10.0
    )
    images = mnist["train_x"][:6]
    keys = image_keys(11, STREAM_TRAIN, 0, np.arange(6))
    fast = StdpNetwork.initial(config, np.random.default_rng(5))
    slow = StdpNetwork(config, fast.weights.copy(), fast.theta.copy(), backend="reference")
    counts_fast, shows_fast = fast.train(images, keys)
    counts_slow, shows_slow = slow.train(images, keys)
    assert shows_fast.max() > 1, "the case should exercise re-presentation"
    assert np.array_equal(counts_fast, counts_slow) and np.array_equal(shows_fast, shows_slow)
    assert np.array_equal(fast.weights, slow.weights) and np.array_equal(fast.theta, slow.theta)
    # normalised after every presentation
    assert np.allclose(fast.weights.sum(axis=0), config.weight_sum, rtol=1e-12, atol=0)

    test_keys = image_keys(11, STREAM_TEST, 0, np.arange(6))
    frozen = fast.weights.copy(), fast.theta.copy()
    counts_fast, shows_fast = fast.respond(mnist["test_x"][:6], test_keys)
    counts_slow, shows_slow = slow.respond(mnist["test_x"][:6], test_keys)
    assert np.array_equal(counts_fast, counts_slow) and np.array_equal(shows_fast, shows_slow)
    assert np.array_equal(fast.weights, frozen[0]) and np.array_equal(fast.theta, frozen[1])
    # the response of an image does not depend on its batch
    alone, _ = fast.respond(mnist["test_x"][3:4], test_keys[3:4])
    assert np.array_equal(alone[0], counts_fast[3])


def test_kernel_equals_reference_across_neuron_blocks_chunks_and_threads(mnist) -> None:
    # the currents are summed in blocks of CURRENT_BLOCK neurons, CHUNK_STEPS steps ahead,
    # split across threads while learning: a network one block and a bit wide, a
    # presentation ending mid-chunk, and 1 or 2 threads must all give the reference's bits
    import numba

    config = StdpConfig(
        n_neurons=kernels.CURRENT_BLOCK + 44,
        present_ms=float(3 * kernels.CHUNK_STEPS + 7),
        max_rate_hz=200.0,
        w_inh_mv=5.0,
        theta_plus_mv=0.5,
    )
    images = mnist["train_x"][:4]
    keys = image_keys(3, STREAM_TRAIN, 0, np.arange(4))
    start = StdpNetwork.initial(config, np.random.default_rng(8))
    slow = StdpNetwork(config, start.weights.copy(), start.theta.copy(), backend="reference")
    counts_slow, _ = slow.train(images, keys)
    assert (counts_slow > 0).sum() >= 3, "several neurons should fire, so live and precomputed currents both matter"
    threads_before = numba.get_num_threads()
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            fast = StdpNetwork(config, start.weights.copy(), start.theta.copy())
            counts_fast, _ = fast.train(images, keys)
            assert np.array_equal(counts_fast, counts_slow)
            assert np.array_equal(fast.weights, slow.weights) and np.array_equal(fast.theta, slow.theta)
            frozen_fast, _ = fast.respond(mnist["test_x"][:4], keys)
            frozen_slow, _ = slow.respond(mnist["test_x"][:4], keys)
            assert np.array_equal(frozen_fast, frozen_slow)
    finally:
        numba.set_num_threads(threads_before)


# ---------------------------------------------------------------------------
# Labels and classification


def test_assignment_and_classification_by_hand() -> None:
    # neuron 0 fires for class 0, neuron 1 for class 1 (and some for 0), neuron 2 never
    counts = np.array([[4, 1, 0], [6, 0, 0], [0, 5, 0], [1, 3, 0]])
    labels = np.array([0, 0, 1, 1])
    assignments = assign_labels(counts, labels, n_classes=3)
    assert assignments.tolist() == [0, 1, -1]
    scores = class_scores(counts, assignments, n_classes=3)
    assert scores[:, 2].tolist() == [-1.0] * 4  # nobody assigned to class 2: never wins
    assert classify(counts, assignments, n_classes=3).tolist() == [0, 0, 1, 1]
    # two neurons for one class vote by their mean, not their sum: 3 > (4 + 0) / 2
    assert classify(np.array([[3, 4, 0]]), np.array([0, 1, 1]), 2).tolist() == [0]
    assert classify(np.array([[3, 4, 4]]), np.array([0, 1, 1]), 2).tolist() == [1]


# ---------------------------------------------------------------------------
# Learning on real MNIST


def test_equal_norm_readout_rescales_a_copy() -> None:
    network = StdpNetwork.initial(StdpConfig(n_neurons=7), np.random.default_rng(2))
    network.theta[:] = np.arange(7.0)
    before = network.weights.copy(), network.theta.copy()
    readout = equal_norm_readout(network, EqualNormReadout(norm=4.0, theta_mv=30.0))
    assert np.allclose(np.linalg.norm(readout.weights, axis=0), 4.0, rtol=1e-12)
    assert np.all(readout.theta == 30.0)
    # each column is only rescaled: same direction
    cosine = (readout.weights * network.weights).sum(0) / (4.0 * np.linalg.norm(network.weights, axis=0))
    assert np.allclose(cosine, 1.0, rtol=1e-12)
    assert np.array_equal(network.weights, before[0]) and np.array_equal(network.theta, before[1])
    with pytest.raises(ValueError, match="--readout-norm"):
        EqualNormReadout(norm=0.0)
    with pytest.raises(ValueError, match="--readout-theta"):
        EqualNormReadout(theta_mv=-1.0)


def test_equal_norm_readout_picks_the_most_similar_neuron_not_the_largest_overlap() -> None:
    # The image lights pixels 0-9.  Neuron 0 puts 1.0 on pixels 0-5 (overlap 6, cosine 0.77),
    # neuron 1 puts 0.45 on pixels 0-9 (overlap 4.5, cosine 1); both have the same threshold.
    # The learned readout lets the larger overlap fire first; the equal-norm readout (same
    # norm for both, so the overlap is the cosine) lets the more similar one fire.
    config = StdpConfig(n_neurons=2, w_inh_mv=120.0, max_rate_hz=200.0)
    weights = np.zeros((784, 2))
    weights[:6, 0] = 1.0
    weights[:10, 1] = 0.45
    network = StdpNetwork(config, weights, np.full(2, 50.0))
    image = np.zeros((40, 784))
    image[:, :10] = 1.0
    keys = image_keys(0, STREAM_TEST, 0, np.arange(40))
    learned, _ = network.respond(image, keys)
    equal, _ = equal_norm_readout(network, EqualNormReadout(norm=3.0, theta_mv=50.0)).respond(image, keys)
    assert (learned.argmax(1) == 0).mean() >= 0.9, learned
    assert (equal.argmax(1) == 1).mean() >= 0.9, equal


def test_quick_training_learns(mnist) -> None:
    config = StdpConfig(n_neurons=50)
    rng = np.random.default_rng(0)
    network = StdpNetwork.initial(config, rng)
    untrained = StdpNetwork(config, network.weights.copy(), network.theta.copy())
    assign_x, assign_y = mnist["train_x"][:500], mnist["train_y"][:500]
    assign_keys = image_keys(0, 2, 0, np.arange(500))
    test_keys = image_keys(0, STREAM_TEST, 0, np.arange(500))

    def accuracy(net: StdpNetwork) -> float:
        assignments = assign_labels(net.respond(assign_x, assign_keys)[0], assign_y)
        return float(np.mean(classify(net.respond(mnist["test_x"], test_keys)[0], assignments) == mnist["test_y"]))

    network.train(mnist["train_x"][:1500], image_keys(0, STREAM_TRAIN, 0, np.arange(1500)))
    trained, baseline = accuracy(network), accuracy(untrained)
    # The STDP simulation is float64 Numba and NumPy without torch's float32 products: seed 0
    # gives the same 0.490 (untrained 0.194) natively and with NUMBA_CPU_NAME=haswell. Seeds
    # 0-9 of this test gave 0.342-0.532 trained and 0.136-0.222 untrained (docs/portability.md),
    # so the bounds below hold for the seed used with a margin, and would for most other seeds.
    assert trained > 0.4, f"a 50-neuron network after 1500 images should beat 40% (chance 10%), got {trained:.3f}"
    assert trained > baseline + 0.1, f"training should beat the untrained network: {trained:.3f} vs {baseline:.3f}"
    assert np.allclose(network.weights.sum(axis=0), config.weight_sum, rtol=1e-12, atol=0)


# ---------------------------------------------------------------------------
# The command: outputs, determinism, resume, errors

QUICK_FLAGS = ["--quick", "--neurons", "16", "--train-images", "400", "--assign-images", "300",
               "--test-images", "300", "--checkpoint-every", "200"]


def run_cli(out: Path, *extra: str, threads: int = 1) -> int:
    return main(["stdp", *QUICK_FLAGS, "--data-dir", str(data_dir()), "--out", str(out),
                 "--threads", str(threads), *extra])


def saved(out: Path) -> tuple[np.ndarray, np.ndarray, list[float]]:
    with np.load(out / "stdp_state.npz") as state:
        weights, theta = state["weights"], state["theta"]
    history = json.loads((out / "stdp_accuracy.json").read_text())["checkpoints"]
    return weights, theta, [(entry["images_seen"], entry["test_accuracy"]) for entry in history]


def test_cli_outputs_and_final_line(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert run_cli(out) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("test accuracy: ") and lines[-1].endswith("%")
    for name in ("stdp_config.json", "stdp_accuracy.json", "stdp_assignments.json",
                 "stdp_receptive_fields.png", "stdp_state.npz"):
        assert (out / name).is_file(), name
    config = json.loads((out / "stdp_config.json").read_text())
    assert config["config"]["n_neurons"] == 16 and config["settings"]["train_images"] == 400
    assert (config["config"]["theta_plus_mv"], config["config"]["tau_theta_ms"]) == size_scaled_homeostasis(16)
    _, _, history = saved(out)
    assert [images for images, _ in history] == [200, 400]
    assert lines[-1] == f"test accuracy: {100 * history[-1][1]:.2f}%"
    assignments = json.loads((out / "stdp_assignments.json").read_text())
    assert len(assignments["assignments"]) == 16
    # a second run into the same folder must not overwrite it silently
    assert run_cli(out) == 2
    assert "--resume" in capsys.readouterr().err


def test_cli_readouts_validation_and_tau_theta(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert run_cli(out, "--validation", "500", "--tau-theta", "2e7", "--readout", "both") == 0
    lines = capsys.readouterr().out.strip().splitlines()
    history = json.loads((out / "stdp_accuracy.json").read_text())["checkpoints"]
    final = history[-1]
    assert final["readout"] == "equal_norm" and set(final["readouts"]) == {"learned", "equal_norm"}
    assert final["test_accuracy"] == final["readouts"]["equal_norm"]["test_accuracy"]
    assert final["validation_images"] == 500 and "validation_accuracy" in final["readouts"]["learned"]
    assert lines[-1] == f"test accuracy: {100 * final['test_accuracy']:.2f}%"
    assert lines[-2] == f"validation accuracy: {100 * final['validation_accuracy']:.2f}%"
    config = json.loads((out / "stdp_config.json").read_text())
    assert config["config"]["tau_theta_ms"] == 2e7 and config["settings"]["validation"] == 500
    # the held-out images are neither trained on nor used for labels: 59,500 remain
    assert config["settings"]["train_images"] == 400  # --train-images still picks among them
    # learned only: D&C's readout is the primary one
    assert run_cli(tmp_path / "learned", "--readout", "learned") == 0
    only = json.loads((tmp_path / "learned" / "stdp_accuracy.json").read_text())["checkpoints"][-1]
    assert only["readout"] == "learned" and list(only["readouts"]) == ["learned"]
    # the readout does not touch training: same weights either way
    assert run_cli(tmp_path / "plain") == 0
    assert np.array_equal(saved(tmp_path / "learned")[0], saved(tmp_path / "plain")[0])


def test_cli_evaluate_only_rescores_without_touching_the_run(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert run_cli(out, "--readout", "learned") == 0
    before = {name: (out / name).read_bytes() for name in ("stdp_state.npz", "stdp_accuracy.json")}
    capsys.readouterr()
    evaluate = ["stdp", "--evaluate-only", "--data-dir", str(data_dir()), "--out", str(out), "--threads", "1"]
    assert main([*evaluate, "--readout", "equal_norm", "--readout-theta", "40"]) == 0
    assert main([*evaluate, "--readout", "learned"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    evaluations = json.loads((out / "stdp_evaluations.json").read_text())["evaluations"]
    assert [list(entry["readout_results"]) for entry in evaluations] == [["equal_norm"], ["learned"]]
    assert evaluations[0]["equal_norm_readout"]["theta_mv"] == 40.0
    # the learned readout of the saved network is what the run's last checkpoint scored
    final = json.loads(before["stdp_accuracy.json"])["checkpoints"][-1]
    assert evaluations[1]["readout_results"]["learned"]["test_accuracy"] == final["test_accuracy"]
    assert lines[-1] == f"test accuracy: {100 * final['test_accuracy']:.2f}%"
    assert all((out / name).read_bytes() == content for name, content in before.items())
    # nothing to evaluate, or asked to train at the same time: one-line errors
    assert main([*evaluate[:-4], "--out", str(tmp_path / "empty")]) == 2
    assert main([*evaluate, "--resume"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert "holds no STDP run" in errors[0] and "--resume" in errors[1]


def test_large_network_figure_is_an_overview_and_a_zoom(tmp_path: Path, monkeypatch) -> None:
    # above FIGURE_FULL_COLUMNS tiles a side the figure is a downsampled overview beside a
    # labelled zoom; lowered here so a 25-neuron network takes that path
    from experiments import stdp_figure

    monkeypatch.setattr(stdp_figure, "FIGURE_FULL_COLUMNS", 3)
    network = StdpNetwork.initial(StdpConfig(n_neurons=25), np.random.default_rng(0))
    assignments = np.arange(25) % 11 - 1
    path = tmp_path / "fields.png"
    stdp_figure.save_receptive_fields(path, network, assignments, "title")
    assert path.stat().st_size > 0


def test_cli_same_seed_same_result_whatever_the_threads(tmp_path: Path) -> None:
    assert run_cli(tmp_path / "a", threads=1) == 0
    assert run_cli(tmp_path / "b", threads=2) == 0
    assert run_cli(tmp_path / "c", "--seed", "1") == 0
    wa, ta, ha = saved(tmp_path / "a")
    wb, tb, hb = saved(tmp_path / "b")
    wc, _, _ = saved(tmp_path / "c")
    assert np.array_equal(wa, wb) and np.array_equal(ta, tb) and ha == hb
    assert not np.array_equal(wa, wc)


def test_cli_resume_equals_uninterrupted(tmp_path: Path, capsys) -> None:
    assert run_cli(tmp_path / "straight", "--epochs", "2") == 0
    assert run_cli(tmp_path / "resumed", "--epochs", "1") == 0
    # different settings refuse to resume
    assert run_cli(tmp_path / "resumed", "--epochs", "2", "--resume", "--inhibition", "50") == 2
    assert "--resume" in capsys.readouterr().err
    assert run_cli(tmp_path / "resumed", "--epochs", "2", "--resume") == 0
    ws, ts, hs = saved(tmp_path / "straight")
    wr, tr, hr = saved(tmp_path / "resumed")
    assert np.array_equal(ws, wr) and np.array_equal(ts, tr) and hs == hr
    assert len(hs) == 4


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--neurons", "0"], "--neurons"),
        (["--epochs", "0"], "--epochs"),
        (["--max-rate", "-5"], "--max-rate"),
        (["--inhibition", "-1"], "--inhibition"),
        (["--dt", "0"], "--dt"),
        (["--train-images", "70000"], "--train-images"),
        (["--test-images", "0"], "--test-images"),
        (["--nu-post", "-0.1"], "--nu-post"),
        (["--tau-theta", "0"], "--tau-theta"),
        (["--readout-norm", "0"], "--readout-norm"),
        (["--readout-theta", "-3"], "--readout-theta"),
        (["--validation", "60000"], "--validation"),
        (["--validation", "59900", "--train-images", "200"], "--train-images"),
    ],
)
def test_cli_rejects_nonsense(tmp_path: Path, capsys, flags: list[str], named: str) -> None:
    code = main(["stdp", "--quick", "--data-dir", str(data_dir()), "--out", str(tmp_path / "x"), *flags])
    assert code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("snn-mnist: error:") and named in error and "\n" not in error
    assert not (tmp_path / "x" / "stdp_state.npz").exists()


def test_homeostasis_scales_with_the_network_size() -> None:
    # D&C's constants up to 400 neurons; theta_plus in proportion to N up to 1,600; tau_theta beyond
    assert size_scaled_homeostasis(100) == size_scaled_homeostasis(400) == (0.05, 1e7)
    assert size_scaled_homeostasis(800) == pytest.approx((0.1, 1e7))
    assert size_scaled_homeostasis(1600) == pytest.approx((0.2, 1e7))
    assert size_scaled_homeostasis(6400) == pytest.approx((0.2, 4e7))


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--neurons", "1600"], (0.2, 1e7)),
        (["--neurons", "6400"], (0.2, 4e7)),
        (["--neurons", "6400", "--theta-plus", "0.1", "--tau-theta", "2e7"], (0.1, 2e7)),
    ],
)
def test_cli_takes_the_size_scaled_homeostasis_unless_told(flags: list[str], expected: tuple[float, float]) -> None:
    args = build_parser().parse_args(["stdp", *flags, "--out", "unused"])
    config = stdp_cmd._config(args)
    assert (config.theta_plus_mv, config.tau_theta_ms) == pytest.approx(expected)


def test_config_round_trips_and_validates() -> None:
    config = StdpConfig(n_neurons=400)
    assert StdpConfig.from_json(json.loads(json.dumps(config.to_json()))) == config
    with pytest.raises(ValueError, match="unknown"):
        StdpConfig.from_json({"n_neurons": 3, "bogus": 1})
    with pytest.raises(ValueError, match="--present-ms"):
        StdpConfig(present_ms=0.5, dt_ms=1.0)
    with pytest.raises(ValueError, match="--max-rate"):
        StdpConfig(max_rate_hz=900.0)  # p > 1 per step after re-presentations
    with pytest.raises(ValueError, match="weight_sum"):
        StdpConfig(weight_sum=0.0)
