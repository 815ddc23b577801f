"""Figures for the SOM study (matplotlib; figures are returned, never written here).

* :func:`draw_map`: one map on an axis, a hexagon or square per unit at its plane
  position, colored by a per-unit value or class.
* :func:`hit_maps`: rows of panels (one panel per layer): units colored by their
  majority class, opacity = class purity, empty units blank; optional U-matrix row.
* :func:`measures_vs_depth`: the per-layer measures against layer depth.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.collections import PatchCollection
from matplotlib.patches import Patch, RegularPolygon

from som.grid import Grid


def _cells(grid: Grid) -> list[RegularPolygon]:
    xy = grid.coords
    if grid.topology == "hexagonal":  # pointy-top hexagons of width 1
        return [RegularPolygon((x, -y), 6, radius=1 / math.sqrt(3)) for x, y in xy]
    return [RegularPolygon((x, -y), 4, radius=math.sqrt(0.5), orientation=math.pi / 4)
            for x, y in xy]


def draw_map(ax, grid: Grid, colors: np.ndarray, title: str = "") -> None:
    """Draw ``grid`` on ``ax`` with one RGBA color per unit (``colors`` (M, 4))."""
    coll = PatchCollection(_cells(grid), facecolors=colors, edgecolors=(0.7, 0.7, 0.7, 1.0),
                           linewidths=0.3)
    ax.add_collection(coll)
    xy = grid.coords
    ax.set_xlim(xy[:, 0].min() - 0.7, xy[:, 0].max() + 0.7)
    ax.set_ylim(-xy[:, 1].max() - 0.7, -xy[:, 1].min() + 0.7)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def class_colors(hits: np.ndarray) -> np.ndarray:
    """(M, 4) RGBA: majority class color (tab10), alpha = purity; empty units white."""
    hits = np.asarray(hits, float)
    total = hits.sum(-1)
    cmap = plt.get_cmap("tab10")
    out = np.ones((hits.shape[0], 4))
    for j in np.flatnonzero(total > 0):
        k = int(hits[j].argmax())
        out[j] = cmap(k % 10)
        out[j, 3] = 0.25 + 0.75 * hits[j, k] / total[j]
    return out


def value_colors(values: np.ndarray, cmap: str = "bone_r") -> np.ndarray:
    """(M, 4) RGBA of ``values`` scaled to [0, 1] within the map."""
    v = np.asarray(values, float).ravel()
    span = v.max() - v.min()
    return plt.get_cmap(cmap)((v - v.min()) / span if span > 0 else np.zeros_like(v))


def hit_maps(grid: Grid, layers: Sequence[str], rows: Sequence[tuple[str, Sequence[np.ndarray]]],
             u_matrices: Sequence[np.ndarray] | None = None, num_classes: int = 10):
    """A figure with one column per layer: each ``rows`` entry is (label, per-layer
    (M, C) class hits); an optional last row shows each layer's U-matrix."""
    n_rows = len(rows) + (u_matrices is not None)
    fig, axes = plt.subplots(n_rows, len(layers), figsize=(2.3 * len(layers), 2.3 * n_rows),
                             squeeze=False)
    for r, (label, hits) in enumerate(rows):
        for c, name in enumerate(layers):
            draw_map(axes[r, c], grid, class_colors(hits[c]), f"{name}: {label}")
    if u_matrices is not None:
        for c, name in enumerate(layers):
            draw_map(axes[-1, c], grid, value_colors(u_matrices[c]), f"{name}: U-matrix")
    cmap = plt.get_cmap("tab10")
    fig.legend(handles=[Patch(color=cmap(k % 10), label=str(k)) for k in range(num_classes)],
               loc="lower center", ncol=num_classes, fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def measures_vs_depth(layers: Sequence[str], panels: Sequence[tuple[str, dict[str, Sequence]]]):
    """One panel per (ylabel, {series name: per-layer values}) against layer depth."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.6), squeeze=False)
    x = np.arange(1, len(layers) + 1)
    for ax, (ylabel, series) in zip(axes[0], panels):
        for name, ys in series.items():
            ax.plot(x, np.asarray(ys, float), marker="o", ms=4, label=name)
        ax.set_xticks(x, layers)
        ax.set_xlabel("layer (input -> output)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
