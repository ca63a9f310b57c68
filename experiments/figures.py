"""Figures for the study's results folder (matplotlib, Agg canvas, PNG).

Each function takes measured arrays and a path and writes one PNG atomically.
Figures are built with `matplotlib.figure.Figure` directly, not pyplot, so no
global figure state is created and nothing needs a display.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from training.checkpoint import atomic_write

DIGITS = [str(digit) for digit in range(10)]


def _save(figure: Figure, path: Path) -> None:
    FigureCanvasAgg(figure)
    figure.tight_layout()
    atomic_write(Path(path), lambda temp: figure.savefig(temp, format="png", dpi=120))


def plot_training_curves(train_acc: Sequence[float], test_acc: Sequence[float], path: Path) -> None:
    """Train and test accuracy (percent) per epoch."""
    figure = Figure(figsize=(6.4, 4.2))
    axes = figure.add_subplot()
    epochs = np.arange(1, len(train_acc) + 1)
    axes.plot(epochs, train_acc, marker="o", label="train (running, during the epoch)")
    axes.plot(epochs, test_acc, marker="s", label="test (after the epoch)")
    for x, y in zip(epochs, test_acc):
        axes.annotate(f"{y:.2f}", (x, y), textcoords="offset points", xytext=(0, -14), ha="center", fontsize=7)
    axes.set_xlabel("epoch")
    axes.set_ylabel("accuracy (%)")
    axes.set_xticks(epochs)
    axes.set_title("Supervised SNN (784-512-10 LIF, BPTT): accuracy per epoch")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    _save(figure, path)


def plot_confusion_matrix(matrix: np.ndarray, title: str, path: Path) -> None:
    """Counts per (true digit, predicted digit), with the count printed in every cell."""
    matrix = np.asarray(matrix)
    figure = Figure(figsize=(6.4, 5.6))
    axes = figure.add_subplot()
    image = axes.imshow(matrix, cmap="Blues")
    colorbar = figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    colorbar.set_label("test images")
    threshold = matrix.max() / 2 if matrix.size else 0
    for (row, column), value in np.ndenumerate(matrix):
        axes.text(
            column,
            row,
            str(int(value)),
            ha="center",
            va="center",
            fontsize=7,
            color="white" if value > threshold else "black",
        )
    axes.set_xticks(range(matrix.shape[1]), DIGITS[: matrix.shape[1]])
    axes.set_yticks(range(matrix.shape[0]), DIGITS[: matrix.shape[0]])
    axes.set_xlabel("predicted digit")
    axes.set_ylabel("true digit")
    accuracy = 100.0 * np.trace(matrix) / max(matrix.sum(), 1)
    axes.set_title(f"{title}\n(test accuracy {accuracy:.2f}%)")
    _save(figure, path)


def plot_weight_histograms(before: np.ndarray, afters: Mapping[str, np.ndarray], layer: str, path: Path) -> None:
    """Overlaid weight histograms of one layer: the trained weights and each post-trained
    version (outlines), log count axis; the legend gives each version's relative change."""
    before = np.asarray(before).ravel()
    figure = Figure(figsize=(7.0, 4.4))
    axes = figure.add_subplot()
    largest = max([float(np.abs(before).max())] + [float(np.abs(np.asarray(a)).max()) for a in afters.values()])
    limit = min(1.0, 1.05 * largest) if largest > 0 else 1.0
    bins = np.linspace(-limit, limit, 121)
    axes.hist(before, bins=bins, alpha=0.45, label="baseline (after BPTT)", color="tab:blue")
    for (label, after), color in zip(afters.items(), ("tab:orange", "tab:red", "tab:green", "tab:purple")):
        after = np.asarray(after).ravel()
        change = np.linalg.norm(after - before) / max(np.linalg.norm(before), 1e-12)
        axes.hist(after, bins=bins, histtype="step", linewidth=1.6, color=color, label=f"{label}: change {100 * change:.2f}%")
    axes.set_yscale("log")
    axes.set_xlabel("weight value (all weights lie in the clip range [-1, 1])")
    axes.set_ylabel("number of weights (log scale)")
    axes.set_title(f"{layer} weights ({before.size:,}) before and after post-training")
    axes.legend(fontsize=8, title="relative change = ||W - W0|| / ||W0||", title_fontsize=7)
    axes.grid(alpha=0.3)
    _save(figure, path)


def plot_accuracy_trajectories(
    trajectories: Mapping[str, Sequence[float]], title: str, path: Path, baseline: float | None = None
) -> None:
    """Test accuracy before (epoch 0) and after each post-training epoch, one line per run."""
    figure = Figure(figsize=(7.0, 4.4))
    axes = figure.add_subplot()
    for label, values in trajectories.items():
        axes.plot(range(len(values)), values, marker="o", label=label)
    if baseline is not None:
        axes.axhline(baseline, color="grey", linestyle=":", linewidth=1, label=f"baseline {baseline:.2f}%")
    longest = max((len(values) for values in trajectories.values()), default=1)
    axes.set_xticks(range(longest))
    # At least a 2-point window, so a 0.1-point wobble does not look like a collapse.
    low, high = axes.get_ylim()
    if high - low < 2.0:
        middle = (high + low) / 2
        axes.set_ylim(middle - 1.0, middle + 1.0)
    axes.set_xlabel("post-training epoch (0 = before plasticity)")
    axes.set_ylabel("test accuracy (%)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="best")
    _save(figure, path)


def plot_rule_comparison(runs: Sequence[Mapping], path: Path, baseline: float | None = None) -> None:
    """Every rule's test-accuracy trajectory, one panel per learning rate (shared y axis)."""
    etas = sorted({float(run["eta"]) for run in runs})
    figure = Figure(figsize=(4.2 * len(etas), 4.4))
    axes_list = figure.subplots(1, len(etas), sharey=True, squeeze=False)[0]
    for axes, eta in zip(axes_list, etas):
        for run in runs:
            if float(run["eta"]) == eta:
                values = run["test_accuracy"]
                axes.plot(range(len(values)), values, marker="o", label=run["rule"])
        if baseline is not None:
            axes.axhline(baseline, color="grey", linestyle=":", linewidth=1)
        axes.set_title(f"eta = {eta:g}")
        axes.set_xticks(range(max(len(run["test_accuracy"]) for run in runs)))
        axes.set_xlabel("post-training epoch (0 = before)")
        axes.grid(alpha=0.3)
    axes_list[0].set_ylabel("test accuracy (%)")
    axes_list[-1].legend(fontsize=8, loc="lower left")
    figure.suptitle("Which local rules keep what was learned? (measured; dotted: baseline)")
    _save(figure, path)


def plot_spike_heatmaps(
    image: np.ndarray,
    hidden_spikes: np.ndarray,
    output_spikes: np.ndarray,
    label: int,
    prediction: int,
    path: Path,
    hidden_shown: int = 128,
) -> None:
    """Input image, hidden and output spike rasters over time, and output spike counts.

    hidden_spikes: (T, H), output_spikes: (T, 10) for one image.  The hidden raster
    shows the `hidden_shown` most active neurons, most active at the top."""
    steps = hidden_spikes.shape[0]
    counts = hidden_spikes.sum(axis=0)
    order = np.argsort(-counts, kind="stable")[:hidden_shown]
    figure = Figure(figsize=(12.0, 3.8))
    grid = figure.add_gridspec(1, 4, width_ratios=[1.0, 2.2, 1.3, 1.2])

    axes = figure.add_subplot(grid[0])
    axes.imshow(np.asarray(image).reshape(28, 28), cmap="gray")
    axes.set_title(f"input (digit {label})")
    axes.set_xticks([])
    axes.set_yticks([])

    axes = figure.add_subplot(grid[1])
    axes.imshow(hidden_spikes[:, order].T, aspect="auto", cmap="Greys", interpolation="nearest", vmin=0, vmax=1)
    axes.set_xlabel("time step")
    axes.set_ylabel(f"hidden neuron (top {len(order)} by spikes)")
    axes.set_title(f"hidden spikes: {int(hidden_spikes.sum())} in {steps} steps")

    axes = figure.add_subplot(grid[2])
    axes.imshow(output_spikes.T, aspect="auto", cmap="Greys", interpolation="nearest", vmin=0, vmax=1)
    axes.set_yticks(range(10), DIGITS)
    axes.set_xlabel("time step")
    axes.set_ylabel("output neuron (digit)")
    axes.set_title("output spikes")

    axes = figure.add_subplot(grid[3])
    output_counts = output_spikes.sum(axis=0)
    colors = ["tab:green" if digit == prediction else "tab:grey" for digit in range(10)]
    axes.barh(range(10), output_counts, color=colors)
    axes.set_yticks(range(10), DIGITS)
    axes.invert_yaxis()
    axes.set_xlabel(f"spikes in {steps} steps")
    axes.set_title(f"output counts: predicted {prediction}")
    _save(figure, path)


def plot_hidden_activity(hidden_spikes: np.ndarray, label: int, path: Path, shown: int = 64) -> None:
    """One image's hidden layer: raster of `shown` neurons and the population rate per step."""
    steps, neurons = hidden_spikes.shape
    figure = Figure(figsize=(8.0, 5.0))
    grid = figure.add_gridspec(2, 1, height_ratios=[2.2, 1.0])
    axes = figure.add_subplot(grid[0])
    times, cells = np.nonzero(hidden_spikes[:, :shown])
    axes.scatter(times, cells, marker="|", s=60, color="black")
    axes.set_xlim(-0.5, steps - 0.5)
    axes.set_ylim(-0.5, shown - 0.5)
    axes.set_ylabel(f"hidden neuron (first {shown} of {neurons})")
    axes.set_title(f"Hidden-layer spikes for one test image (digit {label})")
    axes = figure.add_subplot(grid[1])
    axes.bar(range(steps), 100.0 * hidden_spikes.mean(axis=1), color="tab:blue")
    axes.set_xlim(-0.5, steps - 0.5)
    axes.set_xlabel("time step")
    axes.set_ylabel("neurons firing (%)")
    _save(figure, path)


def plot_dose_response(payload: Mapping[str, Any], path: Path) -> None:
    """Accuracy lost after the last epoch against eta per rule (mean ± sd over seeds), with the
    study's loss and the default rule's crossing eta* marked, and the weight drift against eta
    (payload: what experiments.dose_response writes to dose_response.json)."""
    config, summary = payload["config"], payload["summary"]
    study_loss, study_eta, tolerated = payload["study"]["loss"], payload["study"]["eta"], payload["tolerated_loss"]
    figure = Figure(figsize=(11.0, 5.6))
    loss_axes, drift_axes = figure.subplots(1, 2)
    for rule in config["rules"]:
        entries = summary["table"][rule]
        if not entries:
            continue
        etas = [entry["eta"] for entry in entries]
        means = [entry["loss_mean"][-1] for entry in entries]
        sds = [entry["loss_sd"][-1] or 0.0 for entry in entries]
        loss_axes.errorbar(etas, means, yerr=sds, marker="o", capsize=3, label=rule)
        drift = [100 * (entry["drift_fc1"][0] + entry["drift_fc2"][0]) / 2 for entry in entries]
        drift_axes.plot(etas, drift, marker="o", label=rule)
    loss_axes.axhline(study_loss, color="black", linestyle="--", linewidth=1, label=f"study's loss, {study_loss:.2f} points")
    loss_axes.axhline(tolerated, color="grey", linestyle=":", linewidth=1, label=f"{tolerated} points")
    loss_axes.plot([study_eta], [study_loss], marker="*", markersize=14, color="black", linestyle="none", label="study (its eta = 1e-5)")
    star = summary["study_loss_crossing"]["geometric_mean"]
    if star is not None:
        low, high = summary["study_loss_crossing"]["range"]
        loss_axes.axvspan(low, high, color="tab:blue", alpha=0.12)
        loss_axes.axvline(star, color="tab:blue", linestyle="--", linewidth=1, label=f"{payload['default_rule']} loses it at {star:.2g}")
    loss_axes.set_xscale("log")
    loss_axes.set_yscale("symlog", linthresh=1.0)
    loss_axes.set_xlabel("eta (multiplies a mean over batch and time)")
    loss_axes.set_ylabel(f"test accuracy lost after {config['epochs']} epochs (points)")
    loss_axes.set_title(f"Stability-plasticity frontier ({len(config['seeds'])} seeds, mean ± sd)")
    loss_axes.grid(alpha=0.3, which="both")
    loss_axes.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3)
    drift_axes.set_xscale("log")
    drift_axes.set_yscale("log")
    drift_axes.set_xlabel("eta")
    drift_axes.set_ylabel("weight drift, mean of fc1 and fc2 (%)")
    drift_axes.set_title("How far the weights moved (mean over seeds)")
    drift_axes.grid(alpha=0.3, which="both")
    drift_axes.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    _save(figure, path)


def _band(axes: Any, x: np.ndarray, runs: Sequence[Sequence[float]], label: str, marker: str) -> None:
    values = np.asarray(runs, dtype=np.float64)
    mean = values.mean(axis=0)
    spread = values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros_like(mean)
    (line,) = axes.plot(x, mean, marker=marker, label=f"{label} (mean of {len(values)})")
    axes.fill_between(x, mean - spread, mean + spread, color=line.get_color(), alpha=0.2)


def plot_seed_summary(
    train_acc: Sequence[Sequence[float]],
    test_acc: Sequence[Sequence[float]],
    gentle: Sequence[Sequence[float]],
    strong: Sequence[Sequence[float]],
    study_gentle: Sequence[float],
    path: Path,
) -> None:
    """Accuracy per training epoch and per post-training epoch over the seeds: mean, with a
    band of ± one sample sd; the study's published gentle trajectory beside ours."""
    figure = Figure(figsize=(11.0, 4.4))
    training_axes, post_axes = figure.subplots(1, 2)
    epochs = np.arange(1, len(test_acc[0]) + 1)
    _band(training_axes, epochs, train_acc, "train (running)", "o")
    _band(training_axes, epochs, test_acc, "test", "s")
    training_axes.set_xticks(epochs)
    training_axes.set_xlabel("epoch")
    training_axes.set_ylabel("accuracy (%)")
    training_axes.set_title("Supervised training over the seeds (band: ± 1 sd)")
    training_axes.grid(alpha=0.3)
    training_axes.legend(loc="lower right", fontsize=8)
    steps = np.arange(len(gentle[0]))
    _band(post_axes, steps, gentle, "ours, eta 1e-5", "o")
    _band(post_axes, steps, strong, "ours, eta 1e-4", "^")
    post_axes.plot(np.arange(len(study_gentle)), study_gentle, color="black", linestyle="--", marker="*", label="study, eta 1e-5 (one run)")
    post_axes.set_xticks(np.arange(max(len(gentle[0]), len(study_gentle))))
    post_axes.set_xlabel("post-training epoch (0 = before plasticity)")
    post_axes.set_ylabel("test accuracy (%)")
    post_axes.set_title("Post-training, default rule (covariance)")
    post_axes.grid(alpha=0.3)
    post_axes.legend(fontsize=8, loc="lower left")
    _save(figure, path)


def plot_adaptation(payload: Mapping[str, Any], path: Path) -> None:
    """Gain on shifted test images and cost on clean ones against eta, per rule (mean ± sd over
    seeds); payload: what experiments.dose_response writes under --shift."""
    summary = payload["summary"]["adaptation"]
    figure = Figure(figsize=(11.0, 4.4))
    gain_axes, cost_axes = figure.subplots(1, 2, sharey=True)
    for rule, entry in summary.items():
        etas = [item["eta"] for item in entry["grid"]]
        for axes, key in ((gain_axes, "gain"), (cost_axes, "cost")):
            axes.errorbar(etas, [item[key][0] for item in entry["grid"]], yerr=[item[key][1] or 0.0 for item in entry["grid"]],
                          marker="o", capsize=3, label=rule)
    for axes, title in ((gain_axes, "gain: shifted-test accuracy after - before"), (cost_axes, "cost: clean-test accuracy after - before")):
        axes.axhline(0.0, color="grey", linewidth=1)
        axes.set_xscale("log")
        axes.set_yscale("symlog", linthresh=1.0)
        axes.set_xlabel("eta")
        axes.set_title(title, fontsize=10)
        axes.grid(alpha=0.3, which="both")
        axes.legend(fontsize=7)
    gain_axes.set_ylabel("points")
    figure.suptitle(f"Post-training on unlabeled shifted images ({payload['config']['shift']}), {len(payload['config']['seeds'])} seeds")
    _save(figure, path)
