"""`snn-mnist explain`: measure every number and draw every figure the teaching docs use.

    snn-mnist explain --out explain               numbers.json and the figures, in ./explain
    snn-mnist explain --out explain --docs docs   the same, then rewrite docs/numbers.json,
                                                  docs/figures/*.png and the numbers in docs/*.md
    snn-mnist explain --quick --out DIR           everything but the one-epoch trainings of
                                                  sections 06 and 07b
    snn-mnist explain --out DIR --check-against docs/numbers.json
                                                  does this machine reproduce the docs? (exit 1
                                                  if not; DIR/comparison.md has every number)

The docs (docs/README.md) quote numbers only inside `<!-- num:KEY -->...<!-- /num -->`
spans, and every KEY is measured here, by the library's own code, in one run
(`experiments.docs_numbers` explains the spans, the number kinds and how tests
compare them).  One function per doc section:

    lif_section          01: the LIF update, tau from beta, subtract vs zero reset, traces
    true_gradient_section 02: the step's true (zero) gradient learns nothing; the surrogate does
    surrogate_section    03: fast sigmoid and arctan: peak, width, area; shapes figure
    bptt_section         04: hand-written BPTT vs autograd, the detached reset, constant input
    snntorch_section     05: each detail that makes two implementations disagree, vs snnTorch
    sweep_section        06: test accuracy after one epoch over slopes and alphas
    gradient_time_section 07a: |dL/dU_t| against t, detached vs attached reset; the
                         unrolled graph (`experiments.explain_network`, for chapter 4)
    network_section      07b: hidden membranes against the surrogates, silent neurons, the
                         loss over one epoch, a hidden raster (`experiments.explain_network`,
                         for chapters 3 and 7; trains its own one-epoch runs)

Training runs (`experiments.trials`) use `training.train.train` (the code behind
`snn-mnist train`) with the study's defaults apart from the surrogate, one epoch
each, for every one of `ExplainConfig.seeds` seeds on every kernel path of
`ExplainConfig.kernel_paths`: a training result depends on its seed, and in its
last bits on the machine, so the docs quote it as a mean and sd over those runs
(`NumberBook.add_seed_runs`).  Every run is independent and single-process on
one thread by default, so a seed, thread count and kernel path give the same
numbers on the same machine every time, and `--jobs` runs them side by side in
worker processes without changing a bit.  `--check-against` lays a run beside
the committed numbers (`experiments.docs_compare`).  snnTorch (a test-only
dependency) is needed for section 05, as for `crosscheck`.
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from experiments.cli import add_common_options
from experiments.docs_compare import check_against, kernel_path_table
from experiments.docs_numbers import (
    NUMBERS_FILE,
    NumberBook,
    SeedRuns,
    Spread,
    environment,
    mean_interval,
    read_numbers,
    render_docs,
    sd_interval,
    write_numbers,
)
from experiments.run_folder import writes_output_folder
from experiments.trials import KERNEL_PATHS, Log, Trial, TrialResult, initial_model, run_trials
from lif_core import (
    ArcTan,
    FastSigmoid,
    Leaky,
    LIFParameters,
    LIFState,
    StraightHeaviside,
    lif_sequence,
    lif_step,
    unrolled_sequence,
)
from lif_core.surrogate import Surrogate, heaviside, make_surrogate
from training.data import MnistSplit, load_mnist
from training.errors import SnnMnistError
from training.runtime import available_threads
from training.network import spike_count_loss
from training.train import TrainConfig, evaluate

LIF_TRACE_FIGURE = "lif_trace.png"
SURROGATE_FIGURE = "surrogate_shapes.png"
SWEEP_FIGURE = "surrogate_sweep.png"
# drawn by experiments.explain_network (sections 07a and 07b)
GRADIENT_TIME_FIGURE = "gradient_through_time.png"
UNROLLED_FIGURE = "unrolled_graph.png"
MEMBRANE_FIGURE = "membranes_vs_surrogates.png"
TRAINING_FIGURE = "training_and_raster.png"
QUICK_FIGURES = (LIF_TRACE_FIGURE, SURROGATE_FIGURE, GRADIENT_TIME_FIGURE, UNROLLED_FIGURE)
FIGURES = (*QUICK_FIGURES, SWEEP_FIGURE, MEMBRANE_FIGURE, TRAINING_FIGURE)


# The kernel paths the committed docs pool (docs/portability.md).
DOCS_KERNEL_PATHS: tuple[str, ...] = ("native", "avx2", "compatible")


@dataclass(frozen=True)
class ExplainConfig:
    """What explain measures; the defaults are what the committed docs quote."""

    seed: int = 0  # the seed of single measurements, and the first of the training seeds
    seeds: int = 5  # every training-derived number is a statistic over seeds seed .. seed + seeds - 1
    trace_steps: int = 30  # section 01 traces, dt = 1 ms per step
    constant_current: float = 0.3
    noisy_mean: float = 0.3
    noisy_std: float = 0.3
    tiny_train_images: int = 6400  # section 02: 50 batches of 128
    sweep_slopes: tuple[float, ...] = (0.5, 5.0, 25.0, 100.0, 500.0)
    sweep_alphas: tuple[float, ...] = (0.25, 2.0, 8.0, 32.0)
    # every training run is repeated on each of these float kernel paths (KERNEL_PATHS)
    kernel_paths: tuple[str, ...] = ("native",)

    def __post_init__(self) -> None:
        if not isinstance(self.seeds, int) or self.seeds < 2:
            raise SnnMnistError(f"--seeds must be at least 2 (a spread needs two runs), got {self.seeds!r}")
        unknown = [path for path in self.kernel_paths if path not in KERNEL_PATHS]
        if unknown or not self.kernel_paths or len(set(self.kernel_paths)) != len(self.kernel_paths):
            raise SnnMnistError(
                f"--kernel-paths {','.join(self.kernel_paths)}: give each at most once, from "
                f"{', '.join(KERNEL_PATHS)} (e.g. native,avx2,compatible)"
            )

    @property
    def training_seeds(self) -> tuple[int, ...]:
        return tuple(range(self.seed, self.seed + self.seeds))


def scale_tag(scale: float) -> str:
    """A key-safe name for a shape parameter: 25.0 -> '25', 0.5 -> '0p5'."""
    return format(scale, "g").replace(".", "p")


def sweep_key(surrogate: str, scale: float | None) -> str:
    """numbers.json key (stem) of one sweep setting's test accuracy."""
    return "sweep_" + surrogate + ("" if scale is None else "_" + scale_tag(scale)) + "_acc"


# --------------------------------------------------------------------------- 01 the LIF neuron


def zero_reset_sequence(current: Tensor, beta: float, threshold: float) -> tuple[Tensor, Tensor]:
    """Reset to zero, as snnTorch's `Leaky(reset_mechanism="zero")`, written out for the guide
    (`lif_sequence`, the study's neuron, subtracts; `lif_core.Leaky` has both).  current
    (T, B, N); returns (spikes, membranes), each (T, B, N)."""
    membrane = torch.zeros_like(current[0])  # U_{-1} = 0
    spikes, membranes = [], []
    for current_t in current:
        # reset_t = H(U_{t-1} - thr), from the previous membrane as with subtraction
        reset = heaviside(membrane - threshold)
        # U_t = beta * (1 - reset_t) * U_{t-1} + I_t        (the old membrane is zeroed, then decays)
        membrane = beta * ((1 - reset) * membrane) + current_t
        # S_t = H(U_t - thr)
        spikes.append(heaviside(membrane - threshold))
        membranes.append(membrane)
    return torch.stack(spikes), torch.stack(membranes)


def spike_times(spikes: Tensor) -> list[int]:
    """Steps at which a single neuron's (T, 1, 1) spike train is 1."""
    return spikes.flatten().nonzero().flatten().tolist()


def lif_section(book: NumberBook, config: ExplainConfig, figures_dir: Path) -> None:
    params = LIFParameters()  # the study's neuron: beta 0.9, threshold 1
    beta, threshold = params.beta, params.threshold
    book.add("lif_beta", beta, "g")
    # beta = exp(-dt / tau)  =>  tau = -dt / ln(beta), dt = 1 ms
    book.add("lif_tau_ms", -1.0 / math.log(beta), ".2f")
    steps = config.trace_steps
    constant = torch.full((steps, 1, 1), config.constant_current)
    generator = torch.Generator().manual_seed(config.seed)
    noisy = config.noisy_mean + config.noisy_std * torch.randn(steps, 1, 1, generator=generator)
    traces = {}
    for name, current in (("constant", constant), ("noisy", noisy)):
        subtract = lif_sequence(current, params, backend="torch")
        zero_spikes, zero_membranes = zero_reset_sequence(current, beta, threshold)
        traces[name] = (current, subtract.membranes, subtract.spikes, zero_membranes, zero_spikes)
        book.add(f"lif_{name}_subtract_count", int(subtract.spikes.sum()), "d")
        book.add(f"lif_{name}_zero_count", int(zero_spikes.sum()), "d")
    book.add("lif_steps", steps, "d")
    book.add("lif_constant_current", config.constant_current, "g")
    book.add("lif_noisy_mean", config.noisy_mean, "g")
    book.add("lif_noisy_std", config.noisy_std, "g")
    _, membranes, spikes, zero_membranes, zero_spikes = traces["constant"]
    book.add("lif_constant_membranes", membranes.flatten()[:5].tolist(), ".5g")
    book.add("lif_constant_spike_times", spike_times(spikes), "d")
    book.add("lif_constant_zero_spike_times", spike_times(zero_spikes), "d")
    book.add("lif_first_spike", spike_times(spikes)[0], "d")
    after_spike = spike_times(spikes)[0] + 1
    book.add("lif_after_spike_subtract", float(membranes.flatten()[after_spike]), ".5g")
    book.add("lif_after_spike_zero", float(zero_membranes.flatten()[after_spike]), ".5g")
    # Without spikes U_t = I (1 - beta^(t+1)) / (1 - beta) -> I / (1 - beta): a constant
    # current fires only if I / (1 - beta) > thr, i.e. I > (1 - beta) thr (the rheobase).
    rheobase = (1 - beta) * threshold
    book.add("lif_rheobase", rheobase, ".3g")
    long = 1000
    below = lif_sequence(torch.full((1, 1), 0.99 * rheobase), params, num_steps=long, backend="torch")
    above = lif_sequence(torch.full((1, 1), 1.01 * rheobase), params, num_steps=long, backend="torch")
    book.add("lif_rheobase_steps", long, "d")
    book.add("lif_below_rheobase_count", int(below.counts.sum()), "d")
    book.add("lif_above_rheobase_count", int(above.counts.sum()), "d")
    book.add("lif_above_rheobase_first", spike_times(above.spikes)[0], "d")
    from experiments.explain_figures import plot_lif_traces  # matplotlib: only when drawing

    plot_lif_traces(
        {name: tuple(t.flatten().numpy() for t in trace) for name, trace in traces.items()},
        threshold,
        beta,
        figures_dir / LIF_TRACE_FIGURE,
    )


# --------------------------------------------------------------------------- 02 the true gradient


def true_gradient_trials(config: ExplainConfig) -> list[Trial]:
    """Section 02's short runs: 50 steps with the true gradient (on the first kernel path:
    it changes nothing, bit for bit) and with the surrogate (on every kernel path)."""
    first = config.kernel_paths[0]
    return [Trial("heaviside", None, seed, config.tiny_train_images, first) for seed in config.training_seeds] + [
        Trial("fast_sigmoid", None, seed, config.tiny_train_images, path)
        for path in config.kernel_paths
        for seed in config.training_seeds
    ]


def seed_runs(
    config: ExplainConfig, results: Mapping[Trial, TrialResult], trial: Trial, field: str = "test_accuracy"
) -> tuple[SeedRuns, dict[str, list[float]]]:
    """`field` of `trial` for every seed and kernel path: pooled, and per path in seed order."""
    by_path = {
        path: [float(getattr(results[trial._replace(seed=s, kernel_path=path)], field)) for s in config.training_seeds]
        for path in config.kernel_paths
    }
    return SeedRuns(tuple(v for values in by_path.values() for v in values)), by_path


def true_gradient_section(
    book: NumberBook,
    config: ExplainConfig,
    train_split: MnistSplit,
    test_split: MnistSplit,
    results: Mapping[Trial, TrialResult],
) -> None:
    seed = config.seed
    batch = train_split.subset(128)
    totals = {}
    for surrogate in ("heaviside", "fast_sigmoid"):
        model = initial_model(surrogate, seed)
        output = model(batch.flat_images)
        # the study's loss: CE on output counts + activity_penalty * mean hidden count
        loss = model.loss(output, batch.labels)
        loss.total.backward()
        # sum over every weight and bias of |dL/dparameter|
        totals[surrogate] = sum(float(p.grad.abs().sum()) for p in model.parameters())  # type: ignore[union-attr]
        book.add(f"zero_grad_initial_loss_{surrogate}", float(loss.total.detach()), ".4f", "float")
    book.add("zero_grad_grad_sum_heaviside", totals["heaviside"], "g")
    book.add("zero_grad_grad_sum_fast_sigmoid", totals["fast_sigmoid"], ".3g", "float")

    seeds = config.training_seeds
    untrained = {s: evaluate(initial_model("fast_sigmoid", s).eval(), test_split) for s in seeds}
    silent = (untrained[seed].output_counts.sum(dim=1) == 0).double().mean().item()
    book.add("training_seeds", list(seeds), "d")
    book.add("training_seed_count", len(seeds), "d")
    book.add("zero_grad_initial_acc", untrained[seed].accuracy, ".2f", "evaluation")
    book.add("zero_grad_initial_silent_pct", 100 * silent, ".2f", "evaluation")
    book.add("untrained_acc_by_seed", [untrained[s].accuracy for s in seeds], ".2f", "evaluation")
    book.add("zero_grad_digit0_pct", 100 * (test_split.labels == 0).double().mean().item(), ".2f")
    book.add("zero_grad_test_images", len(test_split), ",d")
    book.add("tiny_train_images", config.tiny_train_images, "d")
    book.add("tiny_batches", config.tiny_train_images // TrainConfig().batch_size, "d")
    first = config.kernel_paths[0]
    true_runs = [results[Trial("heaviside", None, s, config.tiny_train_images, first)] for s in seeds]
    book.add("tiny_heaviside_acc_by_seed", [r.test_accuracy for r in true_runs], ".2f", "evaluation")
    book.add("tiny_heaviside_max_weight_change", max(r.max_weight_change for r in true_runs), "g")
    tiny = Trial("fast_sigmoid", None, seed, config.tiny_train_images)
    for key, field, spec in (
        ("tiny_fast_sigmoid_acc", "test_accuracy", ".2f"),
        ("tiny_fast_sigmoid_max_weight_change", "max_weight_change", ".3f"),
    ):
        runs, by_path = seed_runs(config, results, tiny, field)
        book.add_seed_runs(key, runs, spec, fresh_n=config.seeds, by_path=by_path)


# --------------------------------------------------------------------------- 03 surrogates


def derivative_peak(surrogate: Surrogate) -> float:
    """dS/dU at U = thr, through the autograd Function's backward (float64)."""
    x = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(surrogate.spike(x).sum(), x)
    return float(grad)


def half_width(surrogate: Surrogate) -> float:
    """Half width at half maximum of dS/dU: the x > 0 with derivative(x) = peak / 2 (bisection)."""
    peak = float(surrogate.derivative(torch.zeros(1, dtype=torch.float64)))

    def above_half(x: float) -> bool:
        return float(surrogate.derivative(torch.tensor([x], dtype=torch.float64))) > peak / 2

    low, high = 0.0, 1e-6
    while above_half(high):
        high *= 2
    for _ in range(200):
        middle = (low + high) / 2
        low, high = (middle, high) if above_half(middle) else (low, middle)
    return (low + high) / 2


def derivative_area(surrogate: Surrogate, width: float, points: int = 200_001) -> float:
    """Integral of dS/dU over the whole real line (midpoint rule after x = width * tan(theta),
    which maps the real line onto (-pi/2, pi/2) and resolves the narrow peak and the tails)."""
    theta = (torch.arange(points, dtype=torch.float64) + 0.5) * (math.pi / points) - math.pi / 2
    x = width * torch.tan(theta)
    # dx = width * sec(theta)^2 dtheta
    return float((surrogate.derivative(x) * width / torch.cos(theta) ** 2).sum() * (math.pi / points))


def surrogate_section(book: NumberBook, config: ExplainConfig, figures_dir: Path) -> None:
    families: list[tuple[str, tuple[float, ...]]] = [
        ("fast_sigmoid", config.sweep_slopes),
        ("atan", config.sweep_alphas),
    ]
    book.add("sweep_slopes", list(config.sweep_slopes), "g")
    book.add("sweep_alphas", list(config.sweep_alphas), "g")
    for name, scales in families:
        for scale in scales:
            surrogate = make_surrogate(name, scale)
            tag = f"shape_{name}_{scale_tag(scale)}"
            width = half_width(surrogate)
            book.add(f"{tag}_peak", derivative_peak(surrogate), ".4g")
            book.add(f"{tag}_hwhm", width, ".3g")
            book.add(f"{tag}_area", derivative_area(surrogate, width), ".3g")
    book.add("shape_heaviside_peak", derivative_peak(StraightHeaviside()), "g")
    from experiments.explain_figures import plot_surrogate_shapes

    plot_surrogate_shapes(config.sweep_slopes, config.sweep_alphas, figures_dir / SURROGATE_FIGURE)


# --------------------------------------------------------------------------- 04 BPTT by hand


def attached_reset_sequence(current: Tensor, params: LIFParameters) -> tuple[Tensor, Tensor]:
    """The LIF loop with the reset *not* detached: reset_t = S_{t-1} through the surrogate,
    so autograd also follows U_{t-1} -> reset_t -> U_t.  Same forward as `unrolled_sequence`."""
    threshold = params.threshold
    membrane = torch.zeros_like(current[0])
    spikes, membranes = [], []
    for current_t in current:
        # reset_t = H(U_{t-1} - thr), differentiable through the surrogate this time
        reset = params.surrogate.spike(membrane - threshold)
        membrane = params.clamped_beta * membrane + current_t - reset * threshold
        spikes.append(params.surrogate.spike(membrane - threshold))
        membranes.append(membrane)
    return torch.stack(spikes), torch.stack(membranes)


def _bptt_loss(spikes: Tensor, membranes: Tensor, counts: Tensor, weights: dict[str, Tensor]) -> Tensor:
    """A loss through every output: spikes, membranes and CE on counts."""
    return (
        (spikes * weights["spikes"]).sum()
        + (membranes * weights["membranes"]).sum()
        + F.cross_entropy(counts, weights["labels"])
    )


def bptt_section(book: NumberBook, config: ExplainConfig) -> None:
    steps, batch, neurons = 25, 4, 16
    book.add("bptt_shape", [steps, batch, neurons], "d")
    generator = torch.Generator().manual_seed(config.seed + 4)
    current = torch.rand(steps, batch, neurons, generator=generator, dtype=torch.float64) * 0.6
    weights = {
        "spikes": torch.randn(steps, batch, neurons, generator=generator, dtype=torch.float64),
        "membranes": torch.randn(steps, batch, neurons, generator=generator, dtype=torch.float64),
        "labels": torch.randint(0, neurons, (batch,), generator=generator),
    }
    params = LIFParameters(beta=0.9, threshold=1.0, surrogate=FastSigmoid())

    reference_input = current.clone().requires_grad_()
    spikes, membranes = unrolled_sequence(reference_input, params)
    book.add("bptt_spike_fraction_pct", 100 * float(spikes.detach().mean()), ".1f")
    (reference,) = torch.autograd.grad(
        _bptt_loss(spikes, membranes, spikes.sum(dim=0), weights), reference_input
    )
    book.add("bptt_max_abs_grad", float(reference.abs().max()), ".3g")
    for backend in ("torch", "numba"):
        ours_input = current.clone().requires_grad_()
        out = lif_sequence(ours_input, params, backend=backend)  # type: ignore[arg-type]
        (ours,) = torch.autograd.grad(_bptt_loss(out.spikes, out.membranes, out.counts, weights), ours_input)
        book.add(f"bptt_diff_{backend}", float((ours - reference).abs().max()), ".1e", "roundoff")

    attached_input = current.clone().requires_grad_()
    attached_spikes, attached_membranes = attached_reset_sequence(attached_input, params)
    assert torch.equal(attached_spikes, spikes)  # same forward; only the backward differs
    (attached,) = torch.autograd.grad(
        _bptt_loss(attached_spikes, attached_membranes, attached_spikes.sum(dim=0), weights), attached_input
    )
    book.add("bptt_attached_rel_diff", float((attached - reference).norm() / reference.norm()), ".3g", "float")
    sign_flips = ((attached * reference) < 0).double().mean().item()
    book.add("bptt_attached_sign_flip_pct", 100 * sign_flips, ".1f", "float")

    # One step from U_{t-1} = thr exactly (no spike: H(0) = 0), zero input:
    # dU_t/dU_{t-1} = beta (detached)  or  beta - thr * surrogate'(0) (attached)
    tall = LIFParameters(beta=0.9, threshold=1.0, surrogate=ArcTan(alpha=8.0))
    for name, sequence, factor_params in (
        ("detached", unrolled_sequence, params),
        ("attached", attached_reset_sequence, params),
        ("attached_atan8", attached_reset_sequence, tall),
    ):
        previous = torch.full((1, 1, 1), params.threshold, dtype=torch.float64, requires_grad=True)
        current_2 = torch.cat([previous, torch.zeros_like(previous)])  # U_0 = I_0 = thr, then I_1 = 0
        _, membranes_2 = sequence(current_2, factor_params)
        (factor,) = torch.autograd.grad(membranes_2[1].sum(), previous)
        book.add(f"bptt_factor_{name}", float(factor), ".3g")

    # Constant input: one (B, N) tensor used at every step versus T separate copies.
    constant = torch.rand(batch, neurons, generator=generator, dtype=torch.float64) * 0.6
    shared = constant.clone().requires_grad_()
    out = lif_sequence(shared, params, num_steps=steps, backend="numba")
    (grad_shared,) = torch.autograd.grad(_bptt_loss(out.spikes, out.membranes, out.counts, weights), shared)
    copies = constant.expand(steps, batch, neurons).clone().requires_grad_()
    out_copies = lif_sequence(copies, params, backend="numba")
    assert torch.equal(out.spikes, out_copies.spikes) and torch.equal(out.membranes, out_copies.membranes)
    (grad_copies,) = torch.autograd.grad(
        _bptt_loss(out_copies.spikes, out_copies.membranes, out_copies.counts, weights), copies
    )
    book.add("bptt_constant_diff", float((grad_shared - grad_copies.sum(dim=0)).abs().max()), ".1e", "roundoff")
    book.add("bptt_constant_max_abs_grad", float(grad_shared.abs().max()), ".3g")


# --------------------------------------------------------------------------- 05 snnTorch


def run_snn_layer(layer: torch.nn.Module, current: Tensor) -> tuple[Tensor, Tensor]:
    """Run an snn.Leaky over (T, B, N) from `init_leaky()`, as the study's loop does."""
    mem = layer.init_leaky()  # type: ignore[operator]
    spikes, membranes = [], []
    for current_t in current:
        spk, mem = layer(current_t, mem)
        spikes.append(spk)
        membranes.append(mem)
    return torch.stack(spikes), torch.stack(membranes)


def unclamped_spike_times(beta: float, current: float, threshold: float, steps: int) -> list[int]:
    """Spike times of one neuron driven by a constant `current` with `beta` *not* clamped to
    [0, 1]: the time loop of `lif_core.sequence_kernels.lif_forward` (threshold and reset by
    subtraction included), called directly, since its wrapper, like `LIFParameters`, clamps."""
    import numpy as np

    from lif_core import sequence_kernels

    spikes, membranes = np.empty((steps, 1, 1)), np.empty((steps, 1, 1))
    sequence_kernels.lif_forward(
        np.full((1, 1, 1), current), True, steps, float(beta), float(threshold),
        spikes, True, membranes, np.empty((1, 1)),
    )
    return spike_times(torch.from_numpy(spikes))


def snntorch_section(book: NumberBook, config: ExplainConfig) -> None:
    # snnTorch is a test-only dependency: import it here, so that `snn-mnist --help` works
    # without it; snntorch_modules() says how to install it when it is missing.
    from experiments.snntorch_network import snntorch_modules

    snn = snntorch_modules()
    import snntorch.functional as SF
    from snntorch import surrogate as snn_surrogate

    beta, threshold = 0.9, 1.0
    params = LIFParameters(beta, threshold)

    # reset_delay: the returned membrane is U_t before its own spike's reset.
    current = torch.full((25, 1, 1), config.constant_current)
    ours = lif_sequence(current, params, backend="torch")
    delayed_spikes, delayed = run_snn_layer(snn.Leaky(beta=beta), current)
    undelayed_spikes, undelayed = run_snn_layer(snn.Leaky(beta=beta, reset_delay=False), current)
    book.add("snn_delay_max_diff", float((ours.membranes - delayed).abs().max()), "g")
    book.add("snn_delay_spike_times", spike_times(delayed_spikes), "d")
    book.add("snn_no_delay_spike_times", spike_times(undelayed_spikes), "d")
    book.add("snn_ours_max_membrane", float(ours.membranes.max()), ".5g")
    book.add("snn_no_delay_max_membrane", float(undelayed.max()), ".5g")

    # The reset comes from the membrane handed in, U_{t-1}, whatever produced it.
    start = torch.full((1, 1), 1.5)
    _, snn_first = snn.Leaky(beta=beta)(torch.full((1, 1), config.constant_current), start.clone())
    _, our_state = lif_step(torch.full((1, 1), config.constant_current), LIFState(start.clone()), params)
    book.add("snn_prev_start", 1.5, "g")
    book.add("snn_prev_u0", float(snn_first), ".4g")
    book.add("ours_prev_u0", float(our_state.membrane), ".4g")
    at_threshold = torch.full((3, 1, 1), threshold)
    at_spikes, at_membranes = run_snn_layer(snn.Leaky(beta=beta), at_threshold)
    ours_at = lif_sequence(at_threshold, params, backend="torch")
    book.add("snn_at_thr_membranes", at_membranes.flatten().tolist(), ".4g")
    book.add("snn_at_thr_spikes", [int(s) for s in at_spikes.flatten().tolist()], "d")
    book.add("ours_at_thr_membranes", ours_at.membranes.flatten().tolist(), ".4g")

    # beta outside [0, 1] is clamped.
    big_beta, small_current, steps = 1.5, 0.05, 10
    ramp = torch.full((steps, 1, 1), small_current)
    _, snn_ramp = run_snn_layer(snn.Leaky(beta=big_beta), ramp)
    ours_ramp = lif_sequence(ramp, LIFParameters(big_beta, threshold), backend="torch")
    threshold_free = 0.0
    for _ in range(steps):
        # U_t = beta * U_{t-1} + I: the geometric sum without threshold or reset.  It is not
        # what an unclamped neuron does: that one crosses the threshold and resets (below).
        threshold_free = big_beta * threshold_free + small_current
    unclamped_spikes = unclamped_spike_times(big_beta, small_current, threshold, steps)
    book.add("snn_clamp_beta", big_beta, "g")
    book.add("snn_clamp_steps", steps, "d")
    book.add("snn_clamp_current", small_current, "g")
    book.add("snn_clamp_snn_last", float(snn_ramp[-1]), ".4g")
    book.add("snn_clamp_ours_last", float(ours_ramp.membranes[-1]), ".4g")
    book.add("snn_clamp_unclamped_last", threshold_free, ".4g")
    book.add("snn_clamp_unclamped_first_spike", unclamped_spikes[0], "d")

    # arctan's default alpha, and the prefactor alpha/2 its backward really applies.
    x = torch.zeros(1, requires_grad=True)
    (atan_peak,) = torch.autograd.grad(snn_surrogate.atan()(x).sum(), x)
    book.add("snn_atan_default_peak", float(atan_peak), ".4g")
    # snnTorch's docstring: dS/dU = (1/pi) / (1 + (pi U alpha/2)^2), peak 1/pi
    book.add("snn_atan_docstring_peak", 1 / math.pi, ".4f")
    book.add("snn_atan_peak_ratio", float(atan_peak) * math.pi, ".4f")
    probe = torch.full((1,), 0.1, requires_grad=True)
    (fast_grad,) = torch.autograd.grad(snn_surrogate.fast_sigmoid()(probe).sum(), probe)
    # 1 / (slope * 0.1 + 1)^2 = g  =>  slope = (g^(-1/2) - 1) / 0.1
    book.add("snn_fast_sigmoid_default_slope", (float(fast_grad) ** -0.5 - 1) / 0.1, ".4g", "float")
    generator = torch.Generator().manual_seed(config.seed + 5)
    probe = torch.randn(4096, generator=generator) * 0.5
    for surrogate, theirs_fn in ((FastSigmoid(), snn_surrogate.fast_sigmoid()), (ArcTan(), snn_surrogate.atan())):
        a = probe.clone().requires_grad_()
        b = probe.clone().requires_grad_()
        (ga,) = torch.autograd.grad(surrogate.spike(a).sum(), a)
        (gb,) = torch.autograd.grad(theirs_fn(b).sum(), b)
        book.add(f"snn_surrogate_{surrogate.name}_max_diff", float((ga - gb).abs().max()), "g")

    # snn.Leaky's default surrogate is arctan (alpha 2), not fast sigmoid.
    layer_current = torch.randn(25, 8, 16, generator=generator) * 0.8 + 0.4

    def leaky_grad(spike_grad: object) -> Tensor:
        inputs = layer_current.clone().requires_grad_()
        spikes, _ = run_snn_layer(snn.Leaky(beta=beta, spike_grad=spike_grad), inputs)
        return torch.autograd.grad(spikes.sum(), inputs)[0]

    default_grad = leaky_grad(None)
    atan_grad = leaky_grad(snn_surrogate.atan(alpha=2.0))
    fast_grad_layer = leaky_grad(snn_surrogate.fast_sigmoid(slope=25))
    book.add("snn_default_vs_atan_max_diff", float((default_grad - atan_grad).abs().max()), "g")
    book.add(
        "snn_default_vs_fast_rel_diff",
        float((default_grad - fast_grad_layer).norm() / default_grad.norm()),
        ".3g",
        "float",
    )

    # init_leaky() returns an empty tensor; any membrane whose shape differs from the input's
    # is silently replaced by zeros; without `mem`, the layer reuses its stored membrane.
    book.add("snn_init_leaky_numel", snn.Leaky(beta=beta).init_leaky().numel(), "d")
    batch_current = torch.full((4, 3), 0.2)
    row_membrane = torch.full((1, 3), 0.5)
    _, mismatched = snn.Leaky(beta=beta)(batch_current, row_membrane)
    _, broadcast = lif_step(batch_current, LIFState(row_membrane), params)
    book.add("snn_mismatch_start", 0.5, "g")
    book.add("snn_mismatch_current", 0.2, "g")
    book.add("snn_mismatch_u0", float(mismatched[0, 0]), ".4g")
    book.add("ours_broadcast_u0", float(broadcast.membrane[0, 0]), ".4g")
    carry_layer = snn.Leaky(beta=beta)
    carry_layer.init_leaky()
    for _ in range(25):
        carry_layer(batch_current)  # no mem passed: the layer keeps its own
    _, next_batch_first = carry_layer(batch_current)
    book.add("snn_carry_u0", float(next_batch_first[0, 0]), ".4g")
    book.add("snn_fresh_u0", float(snn.Leaky(beta=beta)(batch_current)[1][0, 0]), ".4g")

    # surrogate_disable=True: no surrogate and no zero gradient either; spikes leave the graph.
    disabled = snn.Leaky(beta=beta, surrogate_disable=True)
    graph_input = torch.rand(4, 3, requires_grad=True)
    disabled_spikes, _ = disabled(graph_input * 2, disabled.init_leaky())
    book.add("snn_disabled_requires_grad", str(disabled_spikes.requires_grad), "")

    # beta is a float32 buffer in snnTorch (and in our Leaky module): in float64 it decays by
    # float32(0.9), while LIFParameters(0.9) decays by 0.9 exactly.
    double_current = torch.rand(30, 2, 3, generator=generator, dtype=torch.float64) * 0.5
    _, snn_double = run_snn_layer(snn.Leaky(beta=beta), double_current)
    functional = lif_sequence(double_current, params, backend="torch")
    module = Leaky(beta=beta, threshold=threshold, backend="torch")(double_current)
    book.add("snn_beta_buffer", float(snn.Leaky(beta=beta).beta), ".10g")
    book.add("snn_float64_functional_diff", float((functional.membranes - snn_double).abs().max()), ".2g", "float")
    book.add("snn_float64_module_diff", float((module.membranes - snn_double).abs().max()), "g")

    # Spike-count cross-entropy (the study, ours) vs snnTorch's per-step rate loss.
    steps, batch = 25, 64
    output_spikes = (torch.rand(steps, batch, 10, generator=generator) < 0.3).float()
    labels = torch.randint(0, 10, (batch,), generator=generator)
    ours_ce = spike_count_loss(output_spikes.sum(dim=0), torch.zeros(batch, 1), labels, 0.0).cross_entropy
    count_ce = SF.ce_count_loss()(output_spikes, labels)
    rate_ce = SF.ce_rate_loss()(output_spikes, labels)
    book.add("loss_count_vs_ours_diff", float((ours_ce - count_ce).abs()), "g")
    book.add("loss_random_count", float(ours_ce), ".4f", "float")
    book.add("loss_random_rate", float(rate_ce.squeeze()), ".4f", "float")
    # float64, so that the count loss's tiny value is not rounded to 0 as float32 would
    perfect = torch.zeros(steps, 1, 10, dtype=torch.float64)
    perfect[:, 0, 3] = 1.0  # the right class fires at every step, the others never
    target = torch.tensor([3])
    for name, loss_fn in (
        ("count", lambda s: spike_count_loss(s.sum(dim=0), torch.zeros(1, 1), target, 0.0).cross_entropy),
        ("rate", lambda s: SF.ce_rate_loss()(s, target).squeeze()),
    ):
        spikes_in = perfect.clone().requires_grad_()
        value = loss_fn(spikes_in)
        (grad,) = torch.autograd.grad(value, spikes_in)
        book.add(f"loss_perfect_{name}", float(value.detach()), ".3g", "float")
        # total push on the right class's spikes, summed over the T steps
        book.add(f"loss_perfect_{name}_grad", float(grad[:, 0, 3].sum()), ".3g", "float")


# --------------------------------------------------------------------------- 06 sweep


def sweep_settings(config: ExplainConfig) -> list[tuple[str, float | None]]:
    """(surrogate, scale) of every row of section 06's table."""
    return [
        ("heaviside", None),
        *[("fast_sigmoid", s) for s in config.sweep_slopes],
        *[("atan", a) for a in config.sweep_alphas],
    ]


def sweep_trials(config: ExplainConfig, train_images: int) -> list[Trial]:
    """One epoch over `train_images` images for every setting and every training seed, on
    every kernel path (the true gradient on the first only: it changes nothing)."""
    first = config.kernel_paths[0]
    return [
        Trial(surrogate, scale, seed, train_images, path)
        for path in config.kernel_paths
        for surrogate, scale in sweep_settings(config)
        for seed in config.training_seeds
        if surrogate != "heaviside" or path == first
    ]


def is_wide(surrogate: str, scale: float | None) -> bool:
    """At least as wide as the study's surrogate (fast sigmoid, slope 25), by half width."""
    return half_width(make_surrogate(surrogate, scale)) >= half_width(FastSigmoid(25.0)) * (1 - 1e-9)


def sweep_section(
    book: NumberBook,
    config: ExplainConfig,
    train_split: MnistSplit,
    test_split: MnistSplit,
    results: Mapping[Trial, TrialResult],
    figures_dir: Path,
) -> None:
    seeds = config.training_seeds
    first = config.kernel_paths[0]
    heaviside = [results[Trial("heaviside", None, s, len(train_split), first)].test_accuracy for s in seeds]
    book.add(sweep_key("heaviside", None) + "_by_seed", heaviside, ".2f", "evaluation")
    surrogates = [setting for setting in sweep_settings(config) if setting[0] != "heaviside"]
    pooled = {
        setting: seed_runs(config, results, Trial(*setting, config.seed, len(train_split))) for setting in surrogates
    }
    runs = {setting: pooled[setting][0] for setting in surrogates}
    wide = [setting for setting in surrogates if is_wide(*setting)]
    narrow = [setting for setting in surrogates if not is_wide(*setting)]
    # The wide settings share one seed spread (their sds agree, docs/portability.md), so
    # their means are compared with the pooled sd, which has many more degrees of freedom.
    wide_spread = Spread.pooled(runs[setting] for setting in wide)
    fresh_n = config.seeds  # what a check against these numbers runs: one kernel path
    for setting in surrogates:
        book.add_seed_runs(
            sweep_key(*setting),
            runs[setting],
            ".2f",
            fresh_n=fresh_n,
            family=wide_spread if setting in wide else None,
            by_path=pooled[setting][1],
        )
    book.add("sweep_wide_count", len(wide), "d")
    book.add("sweep_narrow_count", len(narrow), "d")
    # How many runs there were depends on --kernel-paths: a setting of the run, not a result.
    book.add("sweep_wide_pooled_df", wide_spread.degrees_of_freedom, "d", "environment")
    book.add(
        "sweep_wide_pooled_sd", wide_spread.sd, ".2f", "statistic",
        sd_interval(wide_spread, len(wide) * (fresh_n - 1)),
    )
    wide_means = [runs[setting].mean for setting in wide]
    half = mean_interval(wide_spread, runs[wide[0]].n, fresh_n)[0]
    # max - min moves by at most the sum of two means' moves
    book.add("sweep_wide_range_points", max(wide_means) - min(wide_means), ".2f", "statistic", (2 * half, 2 * half))
    all_wide = SeedRuns(tuple(value for setting in wide for value in runs[setting].values))
    wide_half = mean_interval(wide_spread, all_wide.n, len(wide) * fresh_n)[0]
    book.add("sweep_wide_mean", all_wide.mean, ".2f", "statistic", (wide_half, wide_half))
    for setting in narrow:
        # how far below the wide settings' mean: both means move, by their own intervals
        loss = all_wide.mean - runs[setting].mean
        own = mean_interval(Spread.of(runs[setting]), runs[setting].n, fresh_n)[0]
        book.add(f"{sweep_key(*setting)}_loss_points", loss, ".2f", "statistic", (own + wide_half, own + wide_half))
    book.add("sweep_run_total", runs[wide[0]].n, "d", "environment")
    book.add("kernel_path_count", len(config.kernel_paths), "d", "environment")
    book.add("sweep_seed_count", len(seeds), "d")
    trained = sum(1 for trial in results if trial.train_images == len(train_split))
    book.add("sweep_run_count", trained, "d", "environment")
    book.add("sweep_train_images", len(train_split), ",d")
    book.add("sweep_test_images", len(test_split), ",d")
    from experiments.explain_figures import plot_surrogate_sweep

    plot_surrogate_sweep(
        {s: runs[("fast_sigmoid", s)].values for s in config.sweep_slopes},
        {a: runs[("atan", a)].values for a in config.sweep_alphas},
        {("fast_sigmoid", s): half_width(FastSigmoid(s)) for s in config.sweep_slopes}
        | {("atan", a): half_width(ArcTan(a)) for a in config.sweep_alphas},
        float(sum(heaviside) / len(heaviside)),
        half_width(FastSigmoid(25.0)),
        figures_dir / SWEEP_FIGURE,
    )


# --------------------------------------------------------------------------- the command


def explain(
    config: ExplainConfig,
    out_dir: Path,
    train_split: MnistSplit,
    test_split: MnistSplit,
    threads: int,
    quick: bool = False,
    jobs: int = 1,
    log: Log = print,
) -> NumberBook:
    """Measure everything, write out_dir/numbers.json and out_dir/figures/*.png.

    The training runs of sections 02 and 06 go first, all together, in `jobs` processes;
    the sections then read their results.  Section 07b trains its own runs, since it keeps
    more of each network than a `TrialResult` (`experiments.explain_network`)."""
    # explain_network imports this module (and matplotlib): only when explaining
    from experiments.explain_network import gradient_time_section, network_section

    out_dir = Path(out_dir)
    figures_dir = out_dir / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    book = NumberBook()
    trials = true_gradient_trials(config) + ([] if quick else sweep_trials(config, len(train_split)))
    started = time.perf_counter()
    log(
        f"training runs: {len(trials)} ({config.seeds} seeds on {len(config.kernel_paths)} kernel path(s): "
        f"{', '.join(config.kernel_paths)}), {jobs} at a time ..."
    )
    results = run_trials(trials, train_split, test_split, threads, jobs, log)
    log(f"training runs: done in {time.perf_counter() - started:.1f} s")
    sections: list[tuple[str, Callable[[], None]]] = [
        ("01 LIF neuron", lambda: lif_section(book, config, figures_dir)),
        ("02 true gradient", lambda: true_gradient_section(book, config, train_split, test_split, results)),
        ("03 surrogates", lambda: surrogate_section(book, config, figures_dir)),
        ("04 BPTT", lambda: bptt_section(book, config)),
        ("05 snnTorch", lambda: snntorch_section(book, config)),
        ("07a gradient through time", lambda: gradient_time_section(book, config, figures_dir)),
    ]
    if not quick:
        sections.append(
            ("06 sweep", lambda: sweep_section(book, config, train_split, test_split, results, figures_dir))
        )
        sections.append(
            (
                "07b network after one epoch",
                lambda: network_section(book, config, train_split, test_split, threads, jobs, figures_dir, log),
            )
        )
    for name, run in sections:
        started = time.perf_counter()
        run()
        log(f"{name}: done in {time.perf_counter() - started:.1f} s")
    meta = {**environment(threads, config.seed), "quick": quick, "config": asdict(config)}
    for key in ("seed", "threads"):
        book.add(f"env_{key}", meta[key], "d", "environment")
    book.add("env_machine", meta["machine_description"], "", "environment")
    for name, version in meta["versions"].items():
        book.add(f"env_{name}", version, "", "environment")
    meta["config"]["train_images"] = len(train_split)
    meta["config"]["test_images"] = len(test_split)
    write_numbers(out_dir / NUMBERS_FILE, book, meta)
    return book


def publish(out_dir: Path, docs_dir: Path) -> list[Path]:
    """Copy numbers.json and the figures into docs_dir and re-render docs_dir/*.md."""
    out_dir, docs_dir = Path(out_dir), Path(docs_dir)
    if not docs_dir.is_dir():
        raise SnnMnistError(f"--docs {docs_dir} is not a folder; point it at the repository's docs/")
    (docs_dir / "figures").mkdir(exist_ok=True)
    for name in FIGURES:
        shutil.copyfile(out_dir / "figures" / name, docs_dir / "figures" / name)
    shutil.copyfile(out_dir / NUMBERS_FILE, docs_dir / NUMBERS_FILE)
    numbers = read_numbers(docs_dir / NUMBERS_FILE)
    changed = render_docs(docs_dir, numbers["formatted"])
    portability = docs_dir / PORTABILITY_PAGE
    if portability.is_file() and render_kernel_path_table(portability, numbers):
        changed.append(portability)
    return changed


PORTABILITY_PAGE = "portability.md"
KERNEL_PATH_TABLE = re.compile(r"(<!-- kernel-path-table -->\n)(.*?)(<!-- /kernel-path-table -->)", re.DOTALL)


def render_kernel_path_table(page: Path, numbers: Mapping[str, Any]) -> bool:
    """Rewrite the same-seed table between the kernel-path-table markers of `page` from
    `numbers` (`kernel_path_table`); whether the page changed."""
    text = page.read_text(encoding="utf-8")
    rendered = KERNEL_PATH_TABLE.sub(lambda match: match.group(1) + kernel_path_table(numbers) + match.group(3), text)
    if rendered == text:
        return False
    page.write_text(rendered, encoding="utf-8")
    return True


def read_check_against(path: Path) -> dict[str, Any]:
    """The numbers.json that --check-against names, read before any work (SnnMnistError naming it)."""
    fix = "Fix: point --check-against at a numbers.json written by explain (e.g. docs/numbers.json)"
    try:
        numbers = read_numbers(path)
    except UnicodeDecodeError:
        raise SnnMnistError(f"--check-against {path}: not a text file, so not a numbers.json. {fix}") from None
    except ValueError as error:
        raise SnnMnistError(f"--check-against {path}: not valid JSON ({error}). {fix}") from None
    if not isinstance(numbers, dict):
        raise SnnMnistError(f"--check-against {path}: holds a JSON {type(numbers).__name__}, not the object of a numbers.json. {fix}")
    missing = [key for key in ("meta", "kinds", "values", "formatted") if not isinstance(numbers.get(key), dict)]
    if missing:
        raise SnnMnistError(f"--check-against {path}: a JSON object without the {', '.join(missing)} of a numbers.json. {fix}")
    return numbers


@writes_output_folder
def run_explain(args: argparse.Namespace) -> int:
    from experiments.train_cmd import prepare_runtime

    if args.quick and args.docs is not None:
        raise SnnMnistError(
            "--docs needs every number, including section 6's sweep; drop --quick to rewrite the docs"
        )
    if args.check_against is not None and not args.check_against.is_file():
        raise SnnMnistError(
            f"--check-against {args.check_against}: no such file; point it at a numbers.json (e.g. docs/numbers.json)"
        )
    committed = read_check_against(args.check_against) if args.check_against is not None else None
    prepare_runtime(args)
    jobs = args.jobs if args.jobs is not None else max(1, available_threads() // args.threads)
    if jobs < 1:
        raise SnnMnistError(f"--jobs must be a positive integer, got {jobs}")
    # The committed docs pool three kernel paths; rewriting them with fewer would change what they mean.
    paths = args.kernel_paths or (",".join(DOCS_KERNEL_PATHS) if args.docs is not None else "native")
    config = ExplainConfig(seed=args.seed, seeds=args.seeds, kernel_paths=tuple(paths.split(",")))
    train_split = load_mnist("train", args.data_dir, download=args.download)
    test_split = load_mnist("test", args.data_dir, download=args.download)
    started = time.perf_counter()
    book = explain(config, args.out, train_split, test_split, args.threads, quick=args.quick, jobs=jobs)
    print(f"{len(book.values)} numbers and the figures in {args.out} ({time.perf_counter() - started:.0f} s)")
    if args.docs is not None:
        changed = publish(args.out, args.docs)
        names = ", ".join(path.name for path in changed) or "none"
        print(f"docs in {args.docs}: numbers.json and figures written; Markdown files changed: {names}")
    if args.check_against is not None:
        return check_against(
            committed, read_numbers(args.out / NUMBERS_FILE), args.check_against, args.out
        )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    defaults = ExplainConfig()
    parser = subparsers.add_parser(
        "explain",
        help="measure every number and figure of the surrogate-gradient guide in docs/",
        description=(
            "Compute every number the teaching docs quote and draw their figures: LIF traces, "
            "the zero true gradient, surrogate shapes, BPTT checks, the snnTorch details, and a "
            "one-epoch training sweep over surrogate slopes and alphas, each trained with several "
            "seeds. Writes numbers.json and figures/ to --out; --docs DIR also rewrites the "
            "numbers in DIR/*.md, DIR/figures and DIR/numbers.json; --check-against FILE says "
            "whether every number lies within its tolerance of another run's numbers.json."
        ),
    )
    add_common_options(parser, out="explain", threads=False, device=False, backend=False)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads for torch and Numba per training run (default: 1, as the committed docs)",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=defaults.seeds,
        help=f"seeds per training setting, from --seed on (default: {defaults.seeds})",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="training runs at once, each in its own process (default: cores / --threads); "
        "the numbers do not depend on it",
    )
    parser.add_argument(
        "--kernel-paths",
        default=None,
        help="repeat every training run on these float kernel paths, comma-separated, from "
        f"{', '.join(KERNEL_PATHS)} (default: native; with --docs: {','.join(DOCS_KERNEL_PATHS)}, as the committed docs)",
    )
    parser.add_argument("--docs", type=Path, default=None, help="docs folder to rewrite (e.g. docs)")
    parser.add_argument(
        "--check-against",
        type=Path,
        default=None,
        help="a committed numbers.json (e.g. docs/numbers.json): exit 1 if a number lies outside its tolerance",
    )
    parser.add_argument(
        "--quick", action="store_true", help="skip the one-epoch trainings of sections 6 and 7b"
    )
    parser.set_defaults(handler=run_explain)
