"""Figures of the teaching docs (`snn-mnist explain`), in the house style of `experiments.figures`:
`matplotlib.figure.Figure` on an Agg canvas (no pyplot state, no display), PNG written atomically.
Every function takes arrays that explain measured; none computes a number of its own
except the smooth curves it draws from the closed forms in `lif_core.surrogate`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from lif_core.surrogate import ArcTan, FastSigmoid
from training.checkpoint import atomic_write

SUBTRACT_COLOR = "tab:blue"
ZERO_COLOR = "tab:orange"


def _save(figure: Figure, path: Path) -> None:
    FigureCanvasAgg(figure)
    figure.tight_layout()
    atomic_write(Path(path), lambda temp: figure.savefig(temp, format="png", dpi=120))


def plot_lif_traces(
    traces: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    threshold: float,
    beta: float,
    path: Path,
) -> None:
    """One column per input ('constant', 'noisy'): input current, membrane with the threshold
    (subtract reset solid, zero reset dashed), and the two spike trains.
    traces[name] = (current, membranes, spikes, zero-reset membranes, zero-reset spikes), each (T,)."""
    figure = Figure(figsize=(11.0, 6.8))
    grid = figure.add_gridspec(3, len(traces), height_ratios=[1.0, 2.4, 0.9])
    titles = {"constant": "constant input", "noisy": "noisy input"}
    rheobase = (1 - beta) * threshold
    for column, (name, (current, membranes, spikes, zero_membranes, zero_spikes)) in enumerate(traces.items()):
        steps = np.arange(len(current))
        limits = (-0.5, steps[-1] + 0.5)
        axes = figure.add_subplot(grid[0, column])
        axes.step(steps, current, where="mid", color="black", linewidth=1.2, label="input current I_t")
        axes.axhline(rheobase, color="grey", linestyle=":", linewidth=1.2, label="rheobase (1 - beta) thr")
        axes.set_ylabel("current I_t")
        axes.set_title(f"{titles.get(name, name)} (beta = {beta:g}, threshold = {threshold:g})")
        axes.grid(alpha=0.3)
        axes.set_xlim(*limits)
        low, high = min(float(current.min()), 0.0), max(float(current.max()), rheobase)
        axes.set_ylim(low - 0.1 * (high - low), high + 0.6 * (high - low))  # room for the legend
        axes.legend(fontsize=7, loc="upper left", ncol=2)

        axes = figure.add_subplot(grid[1, column])
        axes.plot(steps, membranes, color=SUBTRACT_COLOR, marker=".", linewidth=1.3, label="U_t, reset by subtraction (ours)")
        axes.plot(steps, zero_membranes, color=ZERO_COLOR, linestyle="--", linewidth=1.1, label="U_t, reset to zero")
        axes.axhline(threshold, color="red", linestyle=":", linewidth=1.2, label="threshold")
        axes.set_ylabel("membrane U_t (before reset)")
        axes.grid(alpha=0.3)
        axes.set_xlim(*limits)
        low, high = axes.get_ylim()
        axes.set_ylim(low, high + 0.35 * (high - low))  # room for the legend above the traces
        axes.legend(fontsize=7, loc="upper left", ncol=3)

        axes = figure.add_subplot(grid[2, column])
        labels = []
        for row, (train, color, label) in enumerate(
            ((spikes, SUBTRACT_COLOR, "subtract"), (zero_spikes, ZERO_COLOR, "zero"))
        ):
            times = np.nonzero(train)[0]
            axes.scatter(times, np.full(len(times), row), marker="|", s=160, color=color)
            labels.append(f"{label}: {len(times)}")
        axes.set_yticks([0, 1], labels)
        axes.set_ylim(-0.6, 1.6)
        axes.set_xlim(*limits)
        axes.set_xlabel("time step t (dt = 1 ms)")
        axes.set_ylabel("spikes S_t")
        axes.grid(alpha=0.3, axis="x")
    _save(figure, path)


def plot_surrogate_shapes(slopes: Sequence[float], alphas: Sequence[float], path: Path) -> None:
    """(a) the Heaviside step and the smooth functions whose slope the backward pass uses;
    (b) the fast-sigmoid derivative for each slope; (c) the arctan derivative for each alpha."""
    x = torch.linspace(-1.0, 1.0, 4001, dtype=torch.float64)
    figure = Figure(figsize=(13.0, 4.2))
    axes = figure.add_subplot(1, 3, 1)
    axes.plot(x, (x > 0).double(), color="black", linewidth=2.2, label="H(x): the forward pass")
    # the functions whose derivatives the surrogates are, shifted by 1/2 to sit on the step
    axes.plot(x, 0.5 + torch.atan(torch.pi / 2 * 2.0 * x) / torch.pi, color="tab:green", label="1/2 + arctan(pi x)/pi  (atan, alpha 2)")
    axes.plot(x, 0.5 + x / (1 + 25.0 * x.abs()), color="tab:purple", label="1/2 + x/(1 + 25|x|)  (fast sigmoid, slope 25)")
    axes.set_xlabel("x = U - threshold")
    axes.set_ylabel("S")
    axes.set_title("(a) forward: the step, and the smooth\nfunctions whose slopes stand in for dH/dx")
    axes.legend(fontsize=7, loc="upper left")
    axes.grid(alpha=0.3)

    axes = figure.add_subplot(1, 3, 2)
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    for slope, color in zip(slopes, colors):
        axes.plot(x, FastSigmoid(slope).derivative(x), color=color, label=f"slope {slope:g}")
    axes.set_xlabel("x = U - threshold")
    axes.set_ylabel("dS/dU used in the backward pass")
    axes.set_title("(b) fast sigmoid: 1 / (slope |x| + 1)^2\npeak 1 for every slope, area 2 / slope")
    axes.legend(fontsize=7)
    axes.grid(alpha=0.3)

    axes = figure.add_subplot(1, 3, 3)
    for alpha, color in zip(alphas, colors):
        axes.plot(x, ArcTan(alpha).derivative(x), color=color, label=f"alpha {alpha:g} (peak {alpha / 2:g})")
    axes.set_yscale("log")
    axes.set_xlabel("x = U - threshold")
    axes.set_ylabel("dS/dU used in the backward pass (log scale)")
    axes.set_title("(c) arctan: (alpha/2) / (1 + (pi alpha x / 2)^2)\npeak alpha/2, area 1 for every alpha")
    axes.legend(fontsize=7)
    axes.grid(alpha=0.3, which="both")
    _save(figure, path)


def plot_surrogate_sweep(
    fast_sigmoid: Mapping[float, Sequence[float]],
    atan: Mapping[float, Sequence[float]],
    half_widths: Mapping[tuple[str, float], float],
    heaviside_accuracy: float,
    study_half_width: float,
    path: Path,
) -> None:
    """Test accuracy after one epoch, every run as a dot and the mean +- sd as a bar:
    (a) against the fast-sigmoid slope, (b) against the arctan alpha, (c) both against the
    derivative's half width at half maximum, with the study's surrogate's width marked."""
    figure = Figure(figsize=(13.0, 4.6))
    families = [
        ("fast_sigmoid", "fast sigmoid", "slope (log scale)", fast_sigmoid, "tab:purple", "o"),
        ("atan", "arctan", "alpha (log scale)", atan, "tab:green", "s"),
    ]
    runs = len(next(iter(fast_sigmoid.values())))

    def draw(axes: Axes, xs: Sequence[float], results: Sequence[Sequence[float]], color: str, marker: str, label: str) -> None:
        means = [float(np.mean(r)) for r in results]
        sds = [float(np.std(r, ddof=1)) for r in results]
        for x, r in zip(xs, results):
            axes.plot([x] * len(r), r, linestyle="none", marker=marker, markersize=3, color=color, alpha=0.35)
        axes.errorbar(xs, means, yerr=sds, marker=marker, color=color, capsize=3, label=label)

    shared = None
    for index, (name, title, xlabel, results, color, marker) in enumerate(families):
        axes = figure.add_subplot(1, 3, index + 1, sharey=shared)
        shared = shared or axes
        scales = sorted(results)
        draw(axes, scales, [results[s] for s in scales], color, marker, f"mean ± sd of {runs} runs (dots: each run)")
        for scale in scales:
            axes.annotate(f"{np.mean(results[scale]):.2f}", (scale, float(np.max(results[scale]))), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7)
        axes.set_xscale("log")
        axes.set_xlabel(xlabel)
        axes.set_title(f"({'ab'[index]}) {title}: test accuracy after 1 epoch")
        axes.grid(alpha=0.3, which="both")
        axes.legend(fontsize=7, loc="lower left")
        if index == 0:
            axes.set_ylabel("test accuracy (%)")
    axes = figure.add_subplot(1, 3, 3, sharey=shared)
    for name, label, _, results, color, marker in families:
        scales = sorted(results)
        draw(axes, [half_widths[(name, s)] for s in scales], [results[s] for s in scales], color, marker, label)
    axes.axvline(study_half_width, color="grey", linestyle=":", linewidth=1, label="the study's surrogate")
    axes.set_xscale("log")
    axes.set_xlabel("half width at half maximum of dS/dU (log scale)")
    axes.set_title("(c) both, against the width of dS/dU")
    axes.text(
        0.97,
        0.03,
        f"true (zero) gradient: {heaviside_accuracy:.2f}%\n(off this scale)",
        transform=axes.transAxes,
        fontsize=7,
        color="dimgrey",
        ha="right",
        va="bottom",
    )
    low, high = shared.get_ylim() if shared is not None else axes.get_ylim()
    axes.set_ylim(low, high + 0.06 * (high - low))  # room for the value labels
    axes.grid(alpha=0.3, which="both")
    axes.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0.0, 0.12))
    _save(figure, path)
