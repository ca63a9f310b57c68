"""`snn-mnist explain`, sections 07: the figures that look inside the network and its gradient.

    gradient_time_section   07a: |g_t| = |dL/dU_t| against t, detached vs attached reset,
                                 and the LIF cell unrolled over three steps (chapter 4)
    network_section         07b: the hidden membranes against the surrogates' windows, silent
                                 neurons, the loss over one epoch and a hidden raster
                                 (chapters 3 and 7)

The first needs no training and runs with `--quick`.  The second trains the study's
network (`training.train.train`, the code behind `snn-mnist train`, on the exact path
as every training run of the guide; `experiments.trials`) for one epoch on every
training image, once per seed of `ExplainConfig.training_seeds` on every kernel path of
`ExplainConfig.kernel_paths`, and looks at the hidden layer on the first
`PROBE_IMAGES` test images before and after.  What it quotes of the trained networks
is a mean and sd over those runs (`NumberBook.add_seed_runs`), like every training
number of the guide; the figures draw one named run (seed 0 on the first kernel path).
Non-native kernel paths run in worker processes started with their variables, as in
`experiments.trials`.
"""

from __future__ import annotations

import itertools
import math
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse, FancyArrowPatch
from torch import Tensor

from experiments.docs_numbers import NumberBook, SeedRuns
from experiments.explain import (
    GRADIENT_TIME_FIGURE,
    MEMBRANE_FIGURE,
    TRAINING_FIGURE,
    UNROLLED_FIGURE,
    ExplainConfig,
    attached_reset_sequence,
    half_width,
)
from experiments.explain_figures import _save
from experiments.trials import (
    KERNEL_PATHS,
    Log,
    initial_model,
    kernel_path_environment,
    quiet,
)
from lif_core import ArcTan, FastSigmoid, LIFParameters, lif_sequence
from training.data import MnistSplit
from training.network import FeedForwardSNN, spike_count_loss, study_network_config
from training.runtime import configure_threads
from training.train import TrainConfig, epoch_order, iterate_batches, train

PROBE_IMAGES = 1000  # the first test images, on which the hidden layer is looked at
# U1 - thr is histogrammed twice: over most of its range, and finely around the threshold
COARSE_EDGES = np.linspace(-50.0, 30.0, 401)  # bins of 0.2
FINE_EDGES = np.linspace(-0.5, 0.5, 201)  # bins of 0.005
# The study's surrogate and snn.Leaky's default, whose windows the membranes are compared with
WINDOWS: dict[str, FastSigmoid | ArcTan] = {"fast_sigmoid": FastSigmoid(25.0), "atan": ArcTan(2.0)}
PROBE_FIELDS = ("window_fast_sigmoid_pct", "window_atan_pct", "silent_pct", "rate_pct")


# --------------------------------------------------------------------------- 07a gradient in time


class GradientInTime(NamedTuple):
    """mean over (B, N) of |g_t| = |dL/dU_t|, (T,), for each reset and each loss."""

    last_detached: np.ndarray  # loss on the last step's spikes only
    last_attached: np.ndarray
    count_detached: np.ndarray  # loss on the spike counts (the study's kind of loss)
    count_attached: np.ndarray


def mean_abs_gradient(
    sequence: Callable[[Tensor], tuple[Tensor, Tensor]], current: Tensor, loss_fn: Callable[[Tensor], Tensor]
) -> np.ndarray:
    """mean_{b,n} |dL/dU_t| for every t: U_t depends on I_t with weight 1, so dL/dI_t = g_t."""
    inputs = current.clone().requires_grad_()
    spikes, _ = sequence(inputs)
    (grad,) = torch.autograd.grad(loss_fn(spikes), inputs)
    return grad.abs().mean(dim=(1, 2)).numpy()


def gradient_in_time(current: Tensor, params: LIFParameters, weights: Tensor, labels: Tensor) -> GradientInTime:
    """|g_t| of one LIF layer (float64) with the reset detached (ours: `lif_sequence`, whose
    backward is `reference_backward`) and attached (`attached_reset_sequence`, autograd)."""

    def detached(inputs: Tensor) -> tuple[Tensor, Tensor]:
        out = lif_sequence(inputs, params, backend="torch")
        return out.spikes, out.membranes  # type: ignore[return-value]

    def attached(inputs: Tensor) -> tuple[Tensor, Tensor]:
        return attached_reset_sequence(inputs, params)

    # L = sum_{b,n} w_bn S_{T-1,bn}: one injection, at the last step
    def last(spikes: Tensor) -> Tensor:
        return (spikes[-1] * weights).sum()

    # L = CE(C, y), C = sum_t S_t: every step receives dL/dC
    def count(spikes: Tensor) -> Tensor:
        return F.cross_entropy(spikes.sum(dim=0), labels)

    return GradientInTime(
        *(mean_abs_gradient(sequence, current, loss) for loss in (last, count) for sequence in (detached, attached))
    )


def gradient_time_section(book: NumberBook, config: ExplainConfig, figures_dir: Path) -> None:
    steps, batch, neurons = 25, 64, 16
    book.add("gradtime_shape", [steps, batch, neurons], "d")
    generator = torch.Generator().manual_seed(config.seed + 7)
    current = torch.rand(steps, batch, neurons, generator=generator, dtype=torch.float64) * 0.6
    weights = torch.randn(batch, neurons, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, neurons, (batch,), generator=generator)
    params = LIFParameters(beta=0.9, threshold=1.0, surrogate=FastSigmoid(25.0))
    book.add("gradtime_spike_fraction_pct", 100 * float(lif_sequence(current, params).spikes.mean()), ".1f")
    curves = gradient_in_time(current, params, weights, labels)
    beta = params.clamped_beta
    # a gradient entering at T-1 alone reaches step t multiplied by dU_{T-1}/dU_t = beta^(T-1-t)
    envelope = beta ** np.arange(steps - 1, -1, -1, dtype=np.float64)
    book.add("gradtime_envelope", beta ** (steps - 1), ".3g")
    deviation = np.abs(curves.last_detached / (curves.last_detached[-1] * envelope) - 1)
    book.add("gradtime_envelope_deviation", float(deviation.max()), ".1e", "roundoff")
    # how much larger the gradient at the first step is than at the last
    book.add("gradtime_last_ratio_attached", float(curves.last_attached[0] / curves.last_attached[-1]), ".3g", "float")
    for reset in ("detached", "attached"):
        values = getattr(curves, f"count_{reset}")
        book.add(f"gradtime_count_ratio_{reset}", float(values[0] / values[-1]), ".3g", "float")
    plot_gradient_in_time(curves, envelope, beta, figures_dir / GRADIENT_TIME_FIGURE)
    plot_unrolled_graph(figures_dir / UNROLLED_FIGURE)


# --------------------------------------------------------------------------- 07b the trained network


class NetworkProbe(NamedTuple):
    """The hidden layer of one network on the probe images, all neuron-steps together."""

    coarse: np.ndarray  # counts of U1 - thr in COARSE_EDGES' bins, then below and above the range
    fine: np.ndarray  # counts in FINE_EDGES' bins, then below and above
    window_fast_sigmoid_pct: float  # % of neuron-steps with |U1 - thr| below the fast sigmoid's half width
    window_atan_pct: float  # the same for arctan
    silent_pct: float  # % of hidden neurons that never spike on any probe image
    rate_pct: float  # % of neuron-steps with a spike
    neuron_rates: np.ndarray  # (H,) each hidden neuron's spikes per step, over every probe image
    raster: np.ndarray  # (T, H) the hidden spikes of the first probe image


class NetworkRun(NamedTuple):
    """One epoch of training and the trained network's probe."""

    probe: NetworkProbe
    batch_losses: np.ndarray  # the training loss of every batch, in the order trained
    test_accuracy: float  # on the probe images, percent


def histogram(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts in the bins of `edges`, followed by the counts below and above them."""
    counts, _ = np.histogram(values, edges)
    return np.concatenate([counts, [(values < edges[0]).sum(), (values >= edges[-1]).sum()]])


@torch.no_grad()
def probe_network(model: FeedForwardSNN, images: Tensor, widths: Mapping[str, float]) -> NetworkProbe:
    """Run the study's network on `images` on the exact path, keeping the hidden membranes U1."""
    output = model.eval()(images, record_membranes=True)
    assert output.hidden_membranes is not None
    # x = U1 - thr, the argument of the surrogate, at every neuron-step
    shifted = (output.hidden_membranes - float(model.lif1.threshold)).flatten().numpy()
    spikes = output.hidden_spikes
    rates = spikes.mean(dim=(0, 1)).numpy()
    return NetworkProbe(
        coarse=histogram(shifted, COARSE_EDGES),
        fine=histogram(shifted, FINE_EDGES),
        window_fast_sigmoid_pct=100 * float((np.abs(shifted) < widths["fast_sigmoid"]).mean()),
        window_atan_pct=100 * float((np.abs(shifted) < widths["atan"]).mean()),
        silent_pct=100 * float((rates == 0).mean()),
        rate_pct=100 * float(spikes.mean()),
        neuron_rates=rates,
        raster=spikes[:, 0].numpy().astype(np.uint8),
    )


def batch_labels(train_split: MnistSplit, config: TrainConfig) -> list[Tensor]:
    """The labels of the first epoch's batches, in the order `train` visits them."""
    order = epoch_order(len(train_split), config.seed, 0)
    return [train_split.labels[batch] for batch in iterate_batches(order, config.batch_size)]


def train_and_probe(
    seed: int, train_split: MnistSplit, probe_split: MnistSplit, widths: Mapping[str, float], threads: int
) -> tuple[NetworkRun, float]:
    """One epoch of `training.train.train` with the study's settings (exact path), then the
    trained network's probe; and the seconds it took.  The loss of every batch is taken
    from the training forward passes themselves, by a forward hook on the network, with the
    batches' labels in the order train draws them (checked against train's epoch loss)."""
    configure_threads(threads)
    started = time.perf_counter()
    network_config = study_network_config()
    train_config = TrainConfig(epochs=1, seed=seed, fused=False)
    labels = batch_labels(train_split, train_config)
    losses: list[float] = []
    penalty = network_config.activity_penalty

    def record(module: torch.nn.Module, _: object, output: object) -> None:
        if isinstance(module, FeedForwardSNN) and module.training:
            counts = (output.output_counts.detach(), output.hidden_counts.detach())  # type: ignore[attr-defined]
            losses.append(float(spike_count_loss(*counts, labels[len(losses)], penalty).total))

    handle = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        with tempfile.TemporaryDirectory(prefix="snn-explain-") as folder:
            model, history = train(
                train_split, probe_split, network_config, train_config, Path(folder), progress=False, log=quiet
            )
    finally:
        handle.remove()
    sizes = [len(batch) for batch in labels]
    # train's epoch loss is the size-weighted mean of the batch losses
    epoch_loss = sum(loss * size for loss, size in zip(losses, sizes, strict=True)) / sum(sizes)
    assert math.isclose(epoch_loss, history.loss_history[0], rel_tol=1e-9), (epoch_loss, history.loss_history)
    probe = probe_network(model, probe_split.flat_images, widths)
    return NetworkRun(probe, np.asarray(losses), history.test_acc_history[0]), time.perf_counter() - started


def train_networks(
    config: ExplainConfig,
    train_split: MnistSplit,
    probe_split: MnistSplit,
    widths: Mapping[str, float],
    threads: int,
    jobs: int,
    log: Log,
) -> dict[tuple[str, int], NetworkRun]:
    """`train_and_probe` for every kernel path and seed, keyed (path, seed): here when native
    and jobs is 1, otherwise in `jobs` worker processes started with the path's variables."""
    runs: dict[tuple[str, int], NetworkRun] = {}
    total = len(config.kernel_paths) * config.seeds

    def report(key: tuple[str, int], run: NetworkRun, seconds: float) -> None:
        runs[key] = run
        log(f"  [{len(runs)}/{total}] network, seed {key[1]}, {key[0]} kernels: {run.test_accuracy:.1f}% ({seconds:.0f} s)")

    for path in config.kernel_paths:
        if path == "native" and jobs == 1:
            for seed in config.training_seeds:
                report((path, seed), *train_and_probe(seed, train_split, probe_split, widths, threads))
            continue
        for split in (train_split, probe_split):
            split.images.share_memory_()
            split.labels.share_memory_()
        context = torch.multiprocessing.get_context("spawn")
        with kernel_path_environment(KERNEL_PATHS[path]), ProcessPoolExecutor(jobs, mp_context=context) as pool:
            futures = {
                pool.submit(train_and_probe, seed, train_split, probe_split, dict(widths), threads): (path, seed)
                for seed in config.training_seeds
            }
            for future in as_completed(futures):
                report(futures[future], *future.result())
    return {(path, seed): runs[(path, seed)] for path in config.kernel_paths for seed in config.training_seeds}


def network_section(
    book: NumberBook,
    config: ExplainConfig,
    train_split: MnistSplit,
    test_split: MnistSplit,
    threads: int,
    jobs: int,
    figures_dir: Path,
    log: Log = print,
) -> None:
    probe_split = test_split.subset(min(PROBE_IMAGES, len(test_split)))
    widths = {name: half_width(surrogate) for name, surrogate in WINDOWS.items()}
    initial = probe_network(initial_model("fast_sigmoid", config.seed), probe_split.flat_images, widths)
    network_config = study_network_config()
    hidden_size = network_config.layer_sizes[1]
    book.add("network_probe_images", len(probe_split), ",d")
    book.add("network_neuron_steps", len(probe_split) * network_config.num_steps * hidden_size, ",d")
    # the untrained network of the first seed: a deterministic evaluation
    for field in PROBE_FIELDS:
        book.add(f"network_initial_{field}", getattr(initial, field), ".2f", "evaluation")
    runs = train_networks(config, train_split, probe_split, widths, threads, jobs, log)
    for field in PROBE_FIELDS:
        by_path = {
            path: [float(getattr(runs[(path, seed)].probe, field)) for seed in config.training_seeds]
            for path in config.kernel_paths
        }
        pooled = SeedRuns(tuple(value for values in by_path.values() for value in values))
        book.add_seed_runs(f"network_trained_{field}", pooled, ".2f", fresh_n=config.seeds, by_path=by_path)
    book.add("network_run_total", len(runs), "d", "environment")
    named = runs[(config.kernel_paths[0], config.seed)]  # the run the figures draw
    plot_membranes(initial, named.probe, widths, figures_dir / MEMBRANE_FIGURE)
    plot_training_and_raster(named, config.seed, config.kernel_paths[0], figures_dir / TRAINING_FIGURE)


# --------------------------------------------------------------------------- figures

INITIAL_COLOR = "tab:grey"
TRAINED_COLOR = "tab:blue"
FAST_SIGMOID_COLOR = "tab:purple"
ATAN_COLOR = "tab:green"


def _density(counts: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Histogram counts (with the two out-of-range counts last) as a density over all values."""
    return counts[:-2] / (counts.sum() * np.diff(edges))


def _draw_surrogates(axes: Axes, low: float, high: float) -> None:
    """The two surrogate derivatives and the step's true derivative (0, and a delta at 0)."""
    x = torch.linspace(low, high, 4001, dtype=torch.float64)
    axes.plot(x, WINDOWS["fast_sigmoid"].derivative(x), color=FAST_SIGMOID_COLOR, label="fast sigmoid, slope 25: g(x)")
    axes.plot(x, WINDOWS["atan"].derivative(x), color=ATAN_COLOR, label="arctan, alpha 2: g(x)")
    axes.axhline(0.0, color="black", linewidth=1.6, label="true dH/dx: 0 for x ≠ 0 ...")
    axes.annotate(
        "", (0.0, 1.12), (0.0, 0.0), arrowprops={"arrowstyle": "-|>", "color": "black", "linewidth": 1.6}
    )
    axes.text(0.0, 1.15, " δ(x)", fontsize=8, ha="left", va="bottom")
    axes.plot([], [], color="black", marker="^", linestyle="none", label="... and a delta δ(x) at x = 0")
    axes.set_ylim(-0.03, 1.25)
    axes.set_ylabel("dS/dU in the backward pass")


def plot_membranes(initial: NetworkProbe, trained: NetworkProbe, widths: Mapping[str, float], path: Path) -> None:
    """(a) U1 - thr over its range (log density), (b) around the threshold, before and after
    one epoch, each with the surrogate derivatives and the true one on a second axis."""
    figure = Figure(figsize=(13.0, 5.4))
    for index, (edges, field, scale, title) in enumerate(
        (
            (COARSE_EDGES, "coarse", "log", "(a) every neuron-step of the hidden layer"),
            (FINE_EDGES, "fine", "linear", "(b) near the threshold, where the surrogates are"),
        )
    ):
        axes = figure.add_subplot(1, 2, index + 1)
        for probe, color, label in ((initial, INITIAL_COLOR, "at initialisation"), (trained, TRAINED_COLOR, "after one epoch")):
            counts = getattr(probe, field)
            outside = 100 * (counts[-2] + counts[-1]) / counts.sum()
            axes.stairs(
                _density(counts, edges), edges, color=color, fill=index == 1, alpha=0.35 if index == 1 else 1.0,
                label=f"U1 - thr {label} ({outside:.2g}% of them off this axis)",
            )
        axes.set_yscale(scale)
        axes.set_xlabel("x = U1 - thr (hidden membrane minus threshold)")
        axes.set_ylabel("density of neuron-steps")
        axes.set_title(title)
        axes.grid(alpha=0.3)
        if index == 1:
            width = widths["fast_sigmoid"]
            axes.axvspan(-width, width, color=FAST_SIGMOID_COLOR, alpha=0.15, label="fast sigmoid's half width")
        axes.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
        second = axes.twinx()
        _draw_surrogates(second, float(edges[0]), float(edges[-1]))
        if index == 0:
            second.legend(fontsize=7, loc="upper left")
    _save(figure, path)


def plot_gradient_in_time(curves: GradientInTime, envelope: np.ndarray, beta: float, path: Path) -> None:
    """mean |g_t| against t, log scale: (a) a loss on the last step only, (b) on the counts;
    the reset detached (ours) and attached, and the beta^(T-1-t) envelope from g_{T-1}."""
    figure = Figure(figsize=(12.0, 4.4))
    steps = np.arange(len(envelope))
    panels = (
        ("(a) loss on the last step's spikes only", curves.last_detached, curves.last_attached),
        ("(b) loss on the spike counts (every step)", curves.count_detached, curves.count_attached),
    )
    shared = None
    for index, (title, detached, attached) in enumerate(panels):
        axes = figure.add_subplot(1, 2, index + 1, sharey=shared)
        shared = shared or axes
        axes.plot(steps, detached, color="tab:blue", marker="o", markersize=3, label="reset detached (ours)")
        axes.plot(steps, attached, color="tab:red", marker="s", markersize=3, label="reset attached (through the surrogate)")
        axes.plot(
            steps, detached[-1] * envelope, color="black", linestyle=":", zorder=3,
            label=f"|g_(T-1)| · beta^(T-1-t), beta = {beta:g}",
        )
        axes.set_yscale("log")
        axes.set_xlabel("time step t")
        axes.set_title(title)
        axes.grid(alpha=0.3, which="both")
        axes.legend(fontsize=7, loc="lower right")
        if index == 0:
            axes.set_ylabel("mean |g_t| = |dL/dU_t| (log scale)")
    _save(figure, path)


def _node(axes: Axes, xy: tuple[float, float], text: str, color: str) -> None:
    axes.add_patch(Ellipse(xy, 0.62, 0.62, facecolor=color, edgecolor="black", zorder=2))
    axes.text(*xy, text, ha="center", va="center", fontsize=12, zorder=3)


def _edge(
    axes: Axes, start: tuple[float, float], end: tuple[float, float], label: str, *,
    dashed: bool = False, bend: float = 0.0, color: str = "black", where: tuple[float, float] = (0.0, 0.0),
) -> None:
    arrow = FancyArrowPatch(
        start, end, arrowstyle="-|>", mutation_scale=14, color=color, linewidth=1.4,
        linestyle="--" if dashed else "-", connectionstyle=f"arc3,rad={bend}", shrinkA=24, shrinkB=24,
    )
    axes.add_patch(arrow)
    middle = ((start[0] + end[0]) / 2 + where[0], (start[1] + end[1]) / 2 + where[1])
    axes.text(*middle, label, fontsize=8, ha="center", va="center", color=color)


def plot_unrolled_graph(path: Path, steps: Sequence[str] = ("t-1", "t", "t+1")) -> None:
    """The LIF cell unrolled over three steps: the input I_t, the membrane U_t and the spike
    S_t of each step, the edges the forward pass takes, and which carry gradient."""
    figure = Figure(figsize=(12.0, 5.4))
    axes = figure.add_subplot(1, 1, 1)
    column = {name: 1.0 + 3.2 * index for index, name in enumerate(steps)}
    rows = {"I": 0.0, "U": 1.6, "S": 3.2}
    for name, x in column.items():
        _node(axes, (x, rows["I"]), f"I$_{{{name}}}$", "whitesmoke")
        _node(axes, (x, rows["U"]), f"U$_{{{name}}}$", "lightsteelblue")
        _node(axes, (x, rows["S"]), f"S$_{{{name}}}$", "moccasin")
        _edge(axes, (x, rows["I"]), (x, rows["U"]), "input\n(weight 1)", where=(0.45, 0.0))
        _edge(
            axes, (x, rows["U"]), (x, rows["S"]),
            "spike: H(U - thr) forward,\nsurrogate g(U - thr) backward", color="tab:purple", where=(0.95, 0.05),
        )
    names = list(column)
    for before, after in itertools.pairwise(names):
        start, end = (column[before], rows["U"]), (column[after], rows["U"])
        _edge(axes, start, end, "leak: beta", where=(0.0, 0.18))
        _edge(
            axes, start, end, "reset: - thr · H(U - thr)\ndetached (no gradient)",
            dashed=True, bend=0.45, color="tab:red", where=(0.0, -1.3),
        )
    axes.text(
        column[names[-1]] + 1.3, rows["S"], "C = Σ$_t$ S$_t$ → loss", fontsize=10, va="center",
    )
    axes.text(
        column[names[0]] - 0.9, -1.25,
        "backward: g$_t$ = dL/dS$_t$ · g(U$_t$ - thr) + beta · g$_{t+1}$"
        "    (solid edges carry gradient; the dashed reset does not)",
        fontsize=9, ha="left",
    )
    axes.set_xlim(column[names[0]] - 1.0, column[names[-1]] + 2.6)
    axes.set_ylim(-1.6, 3.9)
    axes.set_aspect("equal")  # round nodes
    axes.set_axis_off()
    axes.set_title("The LIF cell unrolled over three steps")
    _save(figure, path)


def plot_training_and_raster(run: NetworkRun, seed: int, kernel_path: str, path: Path) -> None:
    """(a) the loss of every batch of one epoch; (b) the hidden raster of the first probe
    image, neurons sorted by their spike count; (c) the hidden neurons' firing rates."""
    figure = Figure(figsize=(13.5, 4.4))
    grid = figure.add_gridspec(1, 3, width_ratios=[1.3, 1.4, 1.0])
    axes = figure.add_subplot(grid[0])
    axes.plot(np.arange(1, len(run.batch_losses) + 1), run.batch_losses, color="tab:blue", linewidth=0.7)
    axes.set_xlabel("batch (128 images each)")
    axes.set_ylabel("training loss of the batch")
    axes.set_title(f"(a) one epoch, seed {seed} ({kernel_path} kernels)")
    axes.grid(alpha=0.3, which="both")

    raster = run.probe.raster
    order = np.argsort(-raster.sum(axis=0, dtype=np.int64), kind="stable")  # most active at the top
    axes = figure.add_subplot(grid[1])
    axes.imshow(raster[:, order].T, aspect="auto", cmap="Greys", interpolation="nearest", vmin=0, vmax=1)
    axes.set_xlabel("time step t")
    axes.set_ylabel("hidden neuron (sorted by spike count)")
    active = int((raster.sum(axis=0) > 0).sum())
    axes.set_title(f"(b) hidden spikes, first test image:\n{int(raster.sum())} spikes, {active} of {raster.shape[1]} neurons fire")

    axes = figure.add_subplot(grid[2])
    rates = run.probe.neuron_rates
    axes.hist(rates, bins=np.linspace(0.0, 1.0, 41), color="tab:blue")
    axes.set_yscale("log")
    axes.set_xlabel("firing rate (spikes per step)")
    axes.set_ylabel("hidden neurons (log scale)")
    axes.set_title(f"(c) firing rates: {int((rates == 0).sum())} of {len(rates)} silent")
    axes.grid(alpha=0.3, which="both")
    _save(figure, path)
