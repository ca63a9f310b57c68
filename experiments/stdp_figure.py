"""The receptive-field figure of `snn-mnist stdp`: every neuron's 784 input weights as a
28x28 tile with its label; above 1,600 neurons a downsampled overview beside a zoom."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from plasticity.stdp import StdpNetwork, receptive_field_grid

FIGURE_FULL_COLUMNS = 40  # up to 40 x 40 tiles (1,600 neurons) every tile is drawn with its label
ZOOM_COLUMNS = 10  # larger networks: a downsampled overview plus the first 10 x 10 tiles


def save_receptive_fields(path: Path, network: StdpNetwork, assignments: np.ndarray, title: str) -> None:
    """Every neuron's input weights as a 28x28 tile with its label; above 1,600 neurons an
    overview of all tiles (each 28x28 tile averaged down to 14x14, no labels) beside a
    labelled zoom of the first ZOOM_COLUMNS x ZOOM_COLUMNS neurons."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = network.config.n_neurons
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    vmax = float(np.nanpercentile(network.weights, 99.5)) or 1.0

    def draw(axes: Any, weights: np.ndarray, columns: int, labels: np.ndarray | None) -> Any:
        grid = receptive_field_grid(weights, columns)
        image = axes.imshow(grid, cmap="hot_r", vmin=0.0, vmax=vmax, interpolation="nearest")
        if labels is not None:
            for j, label in enumerate(labels):
                r, c = divmod(j, columns)
                text = "-" if label < 0 else str(int(label))
                axes.text(c * 29 + 1, r * 29 + 1, text, color="tab:blue", fontsize=6, va="top", ha="left")
        axes.set_axis_off()
        return image

    if cols <= FIGURE_FULL_COLUMNS:
        inches = max(6.0, 0.5 * cols)
        figure, axes = plt.subplots(figsize=(inches, inches * rows / cols + 0.5))
        image = draw(axes, network.weights, cols, assignments)
        axes.set_title(title, fontsize=9)
        figure.colorbar(image, ax=axes, fraction=0.03, pad=0.01, label="weight")
        figure.tight_layout()
    else:
        # overview: mean over 2x2 pixel blocks, so an 80 x 80 grid stays a readable size
        small = network.weights.reshape(14, 2, 14, 2, n).mean(axis=(1, 3)).reshape(196, n)
        zoom = min(n, ZOOM_COLUMNS * ZOOM_COLUMNS)
        figure, (left, right) = plt.subplots(1, 2, figsize=(22, 11.5), gridspec_kw={"width_ratios": [1, 1]})
        image = _draw_small_tiles(left, small, cols, vmax)
        left.set_title(f"all {n} neurons (each tile averaged to 14x14)", fontsize=9)
        draw(right, network.weights[:, :zoom], ZOOM_COLUMNS, assignments[:zoom])
        right.set_title(f"zoom: neurons 0-{zoom - 1} with their labels", fontsize=9)
        figure.suptitle(title, fontsize=10)
        figure.colorbar(image, ax=[left, right], fraction=0.02, pad=0.01, label="weight")
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _draw_small_tiles(axes: Any, tiles: np.ndarray, columns: int, vmax: float) -> Any:
    """Tiles (196, N), each a 14x14 image, in a grid `columns` wide with 1-pixel gaps."""
    n = tiles.shape[1]
    rows = int(np.ceil(n / columns))
    grid = np.full((rows * 15 - 1, columns * 15 - 1), np.nan)
    for j in range(n):
        r, c = divmod(j, columns)
        grid[r * 15 : r * 15 + 14, c * 15 : c * 15 + 14] = tiles[:, j].reshape(14, 14)
    image = axes.imshow(grid, cmap="hot_r", vmin=0.0, vmax=vmax, interpolation="nearest")
    axes.set_axis_off()
    return image
