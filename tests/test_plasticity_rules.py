"""The local learning rules: Numba kernel == NumPy reference, and what each rule promises.

Spike data are random and sparse, plus the edge cases: all-silent and
all-firing batches.  Layer-1-like updates have a time-constant pre (images,
(B, n_pre)); layer-2-like updates a spiking pre, (T, B, n_pre).
"""

from __future__ import annotations

from contextlib import contextmanager

import numba
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from plasticity import hebbian_reference
from plasticity.hebbian import (
    RULE_NAMES,
    STABILISED_RULES,
    PlasticityRule,
    coactivity,
    network_activity,
    weight_view,
)
from training.network import FeedForwardSNN, study_network_config
from training.presets import network_with

STEPS, BATCH, N_PRE, N_POST = 6, 16, 40, 24
PRE_KINDS = ("constant", "spiking")
PATTERNS = ("sparse", "silent", "firing", "silent_pre", "firing_pre")


def images(rng: np.random.Generator, batch: int, n_pre: int) -> np.ndarray:
    """MNIST-like pixels: k/255, about 80% of them zero."""
    pixels = rng.integers(0, 256, size=(batch, n_pre)) * (rng.random((batch, n_pre)) < 0.2)
    return (pixels / 255.0).astype(np.float32)


def spikes(rng: np.random.Generator, shape: tuple[int, ...], rate: float) -> np.ndarray:
    return (rng.random(shape) < rate).astype(np.float32)


def activity(
    rng: np.random.Generator,
    pre_kind: str,
    pattern: str = "sparse",
    steps: int = STEPS,
    batch: int = BATCH,
    n_pre: int = N_PRE,
    n_post: int = N_POST,
    post_rate: float = 0.08,
) -> tuple[np.ndarray, np.ndarray]:
    if pre_kind == "constant":
        pre = images(rng, batch, n_pre)
    else:
        pre = spikes(rng, (steps, batch, n_pre), 0.1)
    post = spikes(rng, (steps, batch, n_post), post_rate)
    if pattern == "silent":
        post[...] = 0.0
    elif pattern == "firing":
        post[...] = 1.0
    elif pattern == "silent_pre":
        pre[...] = 0.0
    elif pattern == "firing_pre":
        pre[...] = 1.0
    return pre, post


@pytest.fixture(autouse=True)
def one_thread():
    """Run on one Numba thread unless a test asks for more (`all_threads`).

    These tests make many tiny updates; on a shared 2-core machine waking the
    threads of a parallel region costs far more than the work.  Results do not
    depend on the thread count (test_kernel_result_does_not_depend_on_thread_count)."""
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(previous)


@contextmanager
def all_threads():
    previous = numba.get_num_threads()
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def trained_state(rule: PlasticityRule, weight: np.ndarray, rng: np.random.Generator):
    """A state whose W0 differs from the current weights, so anchors and norms do work."""
    w0 = (weight + rng.normal(0.0, 0.05, weight.shape)).astype(np.float32)
    return rule.init_state(w0, importance=rng.random(weight.shape))


def both_backends(
    name: str,
    weight: np.ndarray,
    pre: np.ndarray,
    post: np.ndarray,
    eta: float,
    state=None,
    **options,
) -> tuple[np.ndarray, np.ndarray]:
    fast, slow = weight.copy(), weight.copy()
    PlasticityRule(name, backend="numba", **options).update(fast, pre, post, eta, state)
    PlasticityRule(name, backend="numpy", **options).update(slow, pre, post, eta, state)
    return fast, slow


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("pre_kind", PRE_KINDS)
@pytest.mark.parametrize("name", RULE_NAMES)
def test_kernel_matches_reference(name: str, pre_kind: str, pattern: str) -> None:
    rng = np.random.default_rng(1)
    pre, post = activity(rng, pre_kind, pattern)
    weight = rng.uniform(-0.3, 0.3, (N_POST, N_PRE)).astype(np.float32)
    rule = PlasticityRule(name)
    state = trained_state(rule, weight, rng)
    for eta in (0.5, 40.0):  # the second drives many weights into the clip bounds
        fast, slow = both_backends(name, weight, pre, post, eta, state)
        np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("name", RULE_NAMES)
def test_kernel_matches_reference_at_network_size(name: str) -> None:
    """784 -> 512 (image pre) and 512 -> 10 (spiking pre), batch 128, T 25."""
    rng = np.random.default_rng(2)
    x = images(rng, 128, 784)
    hidden = spikes(rng, (25, 128, 512), 0.1)
    output = spikes(rng, (25, 128, 10), 0.03)
    rule = PlasticityRule(name)
    for pre, post in ((x, hidden), (hidden, output)):
        weight = rng.uniform(-0.1, 0.1, (post.shape[2], pre.shape[-1])).astype(np.float32)
        state = trained_state(rule, weight, rng)
        with all_threads():
            fast, slow = both_backends(name, weight, pre, post, 0.5, state)
        np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-8)
        assert not np.array_equal(fast, weight)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    name=st.sampled_from(RULE_NAMES),
    pre_kind=st.sampled_from(PRE_KINDS),
    steps=st.integers(1, 5),
    batch=st.integers(1, 9),
    n_pre=st.integers(1, 13),
    n_post=st.integers(1, 7),
    post_rate=st.sampled_from([0.0, 0.05, 0.3, 1.0]),
)
def test_kernel_matches_reference_on_any_shape(
    seed: int, name: str, pre_kind: str, steps: int, batch: int, n_pre: int, n_post: int, post_rate: float
) -> None:
    rng = np.random.default_rng(seed)
    pre, post = activity(rng, pre_kind, "sparse", steps, batch, n_pre, n_post, post_rate)
    weight = rng.uniform(-1.0, 1.0, (n_post, n_pre)).astype(np.float32)
    state = trained_state(PlasticityRule(name), weight, rng)
    fast, slow = both_backends(name, weight, pre, post, 0.7, state)
    np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("name", RULE_NAMES)
def test_kernel_result_does_not_depend_on_thread_count(name: str) -> None:
    rng = np.random.default_rng(3)
    results = []
    for pre_kind in PRE_KINDS:
        pre, post = activity(rng, pre_kind)
        weight = rng.uniform(-0.3, 0.3, (N_POST, N_PRE)).astype(np.float32)
        rule = PlasticityRule(name)
        state = trained_state(rule, weight, rng)
        previous = numba.get_num_threads()
        per_threads = []
        try:
            for threads in sorted({1, numba.config.NUMBA_NUM_THREADS}):
                numba.set_num_threads(threads)
                updated = weight.copy()
                rule.update(updated, pre, post, 0.5, state)
                per_threads.append(updated)
        finally:
            numba.set_num_threads(previous)
        results.append(per_threads)
    for per_threads in results:
        for other in per_threads[1:]:
            assert np.array_equal(per_threads[0], other)


@pytest.mark.parametrize("name", RULE_NAMES)
def test_constant_pre_is_the_image_repeated_over_time(name: str) -> None:
    """Layer 1's short cut (counts times a constant pre) equals the literal (T, B, n_pre) form."""
    rng = np.random.default_rng(4)
    pre, post = activity(rng, "constant", post_rate=0.3)
    repeated = np.repeat(pre[None], STEPS, axis=0)
    weight = rng.uniform(-0.3, 0.3, (N_POST, N_PRE)).astype(np.float32)
    rule = PlasticityRule(name)
    state = trained_state(rule, weight, rng)
    short, literal = weight.copy(), weight.copy()
    rule.update(short, pre, post, 0.5, state)
    rule.update(literal, repeated, post, 0.5, state)
    np.testing.assert_allclose(short, literal, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("backend", ("numba", "numpy"))
@pytest.mark.parametrize("name", RULE_NAMES)
@pytest.mark.parametrize("bound", (1.0, 0.25))
def test_clipping_holds(name: str, backend: str, bound: float) -> None:
    rng = np.random.default_rng(5)
    pre, post = activity(rng, "spiking", post_rate=0.3)
    pre[:, :, : N_PRE // 2] = 1.0  # half the inputs always on: strong, same-sign updates
    weight = rng.uniform(-bound, bound, (N_POST, N_PRE)).astype(np.float32)
    rule = PlasticityRule(name, clip=bound, backend=backend)
    state = trained_state(rule, weight, rng)
    for _ in range(3):
        rule.update(weight, pre, post, 1e3, state)
        assert np.all(np.abs(weight) <= np.float32(bound))


def test_without_clipping_weights_leave_the_bound() -> None:
    rng = np.random.default_rng(6)
    pre, post = activity(rng, "spiking", post_rate=0.5)
    weight = np.zeros((N_POST, N_PRE), dtype=np.float32)
    PlasticityRule("hebb", clip=None).update(weight, pre, post, 1e3)
    assert np.abs(weight).max() > 1.0


@pytest.mark.parametrize("backend", ("numba", "numpy"))
@pytest.mark.parametrize("pre_kind", PRE_KINDS)
@pytest.mark.parametrize("name", RULE_NAMES)
def test_zero_eta_leaves_weights_bit_identical(name: str, pre_kind: str, backend: str) -> None:
    rng = np.random.default_rng(7)
    pre, post = activity(rng, pre_kind, post_rate=0.3)
    weight = rng.uniform(-1.0, 1.0, (N_POST, N_PRE)).astype(np.float32)
    rule = PlasticityRule(name, backend=backend)
    state = rule.init_state(weight, importance=rng.random(weight.shape))
    before = weight.tobytes()
    for _ in range(3):
        rule.update(weight, pre, post, 0.0, state)
    assert weight.tobytes() == before


@pytest.mark.parametrize("name", RULE_NAMES)
def test_biases_unchanged_and_layers_updated_in_place(name: str) -> None:
    torch.manual_seed(0)
    model = FeedForwardSNN(network_with(study_network_config(), {"hidden_size": 32, "num_steps": 5}), backend="numba")
    with torch.no_grad():  # enough drive that the hidden and output layers fire
        model.fc1.weight.mul_(8.0)
        model.fc2.weight.mul_(8.0)
    layers = (model.fc1, model.fc2)
    weights_before = [layer.weight.detach().clone() for layer in layers]
    biases_before = [layer.bias.detach().clone() for layer in layers]
    rule = PlasticityRule(name)
    states = [rule.init_state(weight_view(layer)) for layer in layers]
    batch = torch.rand(16, 1, 28, 28)
    with torch.no_grad():
        output = model(batch)
    assert output.hidden_spikes.sum() > 0 and output.output_spikes.sum() > 0
    for layer, layer_activity, state in zip(layers, network_activity(batch, output), states):
        rule.update(weight_view(layer), layer_activity.pre, layer_activity.post, 0.05, state)
    for layer, weight, bias in zip(layers, weights_before, biases_before):
        assert torch.equal(layer.bias, bias)
        assert not torch.equal(layer.weight, weight)
        assert layer.weight.abs().max() <= 1.0


def test_oja_keeps_row_norms_bounded_where_hebb_grows_them() -> None:
    rng = np.random.default_rng(8)
    n_post, n_pre = 8, 50
    start = rng.uniform(-0.1, 0.1, (n_post, n_pre)).astype(np.float32)
    hebb, oja = start.copy(), start.copy()
    hebb_rule = PlasticityRule("hebb", clip=None)
    oja_rule = PlasticityRule("oja", clip=None)
    hebb_norms, oja_norms = [], []
    for _ in range(300):
        pre, post = activity(rng, "spiking", steps=10, batch=32, n_pre=n_pre, n_post=n_post, post_rate=0.2)
        hebb_rule.update(hebb, pre, post, 0.5)
        oja_rule.update(oja, pre, post, 0.5)
        hebb_norms.append(np.linalg.norm(hebb, axis=1))
        oja_norms.append(np.linalg.norm(oja, axis=1))
    hebb_norms, oja_norms = np.array(hebb_norms), np.array(oja_norms)
    # Oja's fixed point is the spike-triggered average of pre: mean 0.1 per input here,
    # so a row norm near 0.1 * sqrt(50) = 0.71; it gets there and stays.
    assert oja_norms.max() < 1.0
    np.testing.assert_allclose(oja_norms[-1], oja_norms[149], rtol=0.2)
    # Plain Hebb only ever adds (pre, post >= 0): once the weights are positive,
    # every row grows in proportion to the number of updates, without bound.
    assert np.all(np.diff(hebb_norms[149:], axis=0) >= 0.0)
    assert np.all(hebb_norms[-1] > 1.8 * hebb_norms[149])
    assert hebb_norms[-1].min() > 10.0


def test_covariance_is_hebbian_above_chance_and_anti_hebbian_below() -> None:
    rng = np.random.default_rng(9)
    pre = spikes(rng, (STEPS, BATCH, 3), 0.4)
    post = np.stack([pre[..., 0], 1.0 - pre[..., 0]], axis=-1)  # with, against input 0
    for backend in ("numba", "numpy"):
        weight = np.zeros((2, 3), dtype=np.float32)
        PlasticityRule("covariance", backend=backend).update(weight, pre, post, 1.0)
        assert weight[0, 0] > 0.0 and weight[1, 0] < 0.0
        assert weight[0, 0] == -weight[1, 0]
        # H (uncentred) would be positive for both; covariance removes the chance level
        hebb = np.zeros((2, 3), dtype=np.float32)
        PlasticityRule("hebb", backend=backend).update(hebb, pre, post, 1.0)
        assert hebb[1, 1] > 0.0 and abs(weight[1, 1]) < hebb[1, 1]


@pytest.mark.parametrize("pre_kind", PRE_KINDS)
@pytest.mark.parametrize("pattern", ("silent", "firing"))
def test_covariance_of_a_silent_or_saturated_layer_is_exactly_zero(pre_kind: str, pattern: str) -> None:
    """Post equal to its batch mean covaries with nothing: the weights do not move at all."""
    rng = np.random.default_rng(10)
    pre, post = activity(rng, pre_kind, pattern)
    weight = rng.uniform(-0.3, 0.3, (N_POST, N_PRE)).astype(np.float32)
    for backend in ("numba", "numpy"):
        updated = weight.copy()
        PlasticityRule("covariance", backend=backend).update(updated, pre, post, 10.0)
        assert updated.tobytes() == weight.tobytes()


def test_norm_rule_restores_trained_row_norms() -> None:
    rng = np.random.default_rng(11)
    pre, post = activity(rng, "constant", post_rate=0.3)
    weight = rng.uniform(-0.3, 0.3, (N_POST, N_PRE)).astype(np.float32)
    rule = PlasticityRule("covariance_norm")
    state = rule.init_state(weight)
    for _ in range(20):
        rule.update(weight, pre, post, 5.0, state)
    norms = np.linalg.norm(weight.astype(np.float64), axis=1)
    np.testing.assert_allclose(norms, state.target_norm, rtol=1e-6)


def test_metaplastic_gate_slows_only_updates_toward_zero() -> None:
    rng = np.random.default_rng(12)
    pre, post = activity(rng, "spiking", post_rate=0.3)
    weight = rng.uniform(-0.3, 0.3, (N_POST, N_PRE)).astype(np.float32)
    rule = PlasticityRule("covariance_meta", meta_strength=2.0)
    state = rule.init_state(weight)
    plain, gated = weight.copy(), weight.copy()
    PlasticityRule("covariance").update(plain, pre, post, 0.5)
    rule.update(gated, pre, post, 0.5, state)
    step_plain = plain.astype(np.float64) - weight
    step_gated = gated.astype(np.float64) - weight
    away = weight * step_plain > 0.0
    toward = weight * step_plain < 0.0
    assert away.any() and toward.any()
    np.testing.assert_array_equal(gated[away], plain[away])
    assert np.all(np.abs(step_gated[toward]) <= np.abs(step_plain[toward]))
    # the gate is 1 - tanh(m |w|)^2 with m = strength / rms(W0)
    gate = 1.0 - np.tanh(state.meta_scale * weight.astype(np.float64)) ** 2
    np.testing.assert_allclose(step_gated[toward], step_plain[toward] * gate[toward], rtol=1e-4, atol=1e-7)


def test_anchor_pulls_toward_trained_weights_without_overshoot() -> None:
    rng = np.random.default_rng(13)
    pre, post = activity(rng, "spiking", "silent")  # no co-activity: only the pull acts
    trained = rng.uniform(-0.3, 0.3, (N_POST, N_PRE)).astype(np.float32)
    importance = np.ones(trained.shape)
    importance[0] = 0.0  # an unimportant neuron is not pulled at all
    rule = PlasticityRule("covariance_anchor", anchor_strength=10.0)
    state = rule.init_state(trained, importance=importance)
    drifted = (trained + 0.2).astype(np.float32)
    for eta, expected_fraction in ((0.01, 0.1 * state.importance[1, 0]), (10.0, 1.0)):
        weight = drifted.copy()
        rule.update(weight, pre, post, eta, state)
        np.testing.assert_array_equal(weight[0], drifted[0])
        moved = (drifted[1:].astype(np.float64) - weight[1:]) / (drifted[1:].astype(np.float64) - trained[1:])
        np.testing.assert_allclose(moved, min(expected_fraction, 1.0), rtol=1e-4)
    np.testing.assert_allclose(state.importance.mean(), 1.0, rtol=1e-6)


@pytest.mark.parametrize("pre_kind", PRE_KINDS)
def test_coactivity_matches_reference(pre_kind: str) -> None:
    rng = np.random.default_rng(14)
    pre, post = activity(rng, pre_kind, post_rate=0.3)
    expected = hebbian_reference.coactivity(pre, post).astype(np.float32)
    for backend in ("numba", "numpy"):
        result = coactivity(pre, post, backend=backend)
        assert result.dtype == np.float32 and result.shape == (N_POST, N_PRE)
        np.testing.assert_allclose(result, expected, rtol=1e-6)


def test_state_is_a_copy_of_the_trained_weights() -> None:
    weight = np.full((3, 4), 0.5, dtype=np.float32)
    state = PlasticityRule("covariance_anchor").init_state(weight)
    weight[...] = 0.0
    assert np.all(state.trained_weight == 0.5)
    np.testing.assert_allclose(state.target_norm, 1.0)


def test_bad_input_is_refused_with_a_clear_message() -> None:
    rng = np.random.default_rng(15)
    pre, post = activity(rng, "spiking")
    weight = np.zeros((N_POST, N_PRE), dtype=np.float32)
    rule = PlasticityRule()
    with pytest.raises(ValueError, match="--rule"):
        PlasticityRule("stdp")
    with pytest.raises(ValueError, match="backend"):
        PlasticityRule(backend="cuda")
    with pytest.raises(ValueError, match="clip"):
        PlasticityRule(clip=0.0)
    with pytest.raises(ValueError, match="post must be"):
        rule.update(weight, pre, post[..., :-1], 0.1)
    with pytest.raises(ValueError, match="pre must be"):
        rule.update(weight, pre[:-1], post, 0.1)
    with pytest.raises(ValueError, match="float32"):
        rule.update(weight.astype(np.float64), pre, post, 0.1)
    with pytest.raises(ValueError, match="contiguous"):
        rule.update(np.asfortranarray(weight), pre, post, 0.1)
    with pytest.raises(ValueError, match="--eta"):
        rule.update(weight, pre, post, -1e-5)
    with pytest.raises(ValueError, match="--eta"):
        rule.update(weight, pre, post, float("nan"))
    for name in STABILISED_RULES:
        with pytest.raises(ValueError, match="init_state"):
            PlasticityRule(name).update(weight, pre, post, 0.1)
    with pytest.raises(ValueError, match="importance"):
        rule.init_state(weight, importance=-np.ones(weight.shape))
