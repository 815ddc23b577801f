"""Figures for the SOM study (matplotlib; figures are returned, never written here).

* :func:`draw_map`: one map on an axis, a hexagon or square per unit at its plane
  position, colored by a per-unit value or class.
* :func:`hit_maps`: rows of panels (one panel per layer): units colored by their
  majority class, opacity = class purity, empty units blank; optional U-matrix row.
* :func:`versus_depth`: per-layer measures against depth, mean over seeds with the 95%
  seed band, shallow and deep layers marked.
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

from experiments import render
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


def class_colors(majority: np.ndarray, purity: np.ndarray) -> np.ndarray:
    """(M, 4) RGBA: majority class color (tab10), alpha = purity; units without hits white."""
    majority, purity = np.asarray(majority), np.asarray(purity, float)
    cmap = plt.get_cmap("tab10")
    out = np.ones((majority.shape[0], 4))
    for j in np.flatnonzero(majority >= 0):
        out[j] = cmap(int(majority[j]) % 10)
        out[j, 3] = 0.25 + 0.75 * purity[j]
    return out


def value_colors(values: np.ndarray, cmap: str = "bone_r") -> np.ndarray:
    """(M, 4) RGBA of ``values`` scaled to [0, 1] within the map."""
    v = np.asarray(values, float).ravel()
    span = v.max() - v.min()
    return plt.get_cmap(cmap)((v - v.min()) / span if span > 0 else np.zeros_like(v))


def hit_maps(grid: Grid, layers: Sequence[str],
             rows: Sequence[tuple[str, dict[str, Sequence]]],
             u_matrices: Sequence[np.ndarray] | None = None, num_classes: int = 10,
             title: str = ""):
    """A figure with one column per layer: each ``rows`` entry is (label, {"majority_class":
    (L, M), "purity": (L, M)}); an optional last row shows each layer's U-matrix."""
    n_rows = len(rows) + (u_matrices is not None)
    fig, axes = plt.subplots(n_rows, len(layers), figsize=(2.3 * len(layers), 2.3 * n_rows),
                             squeeze=False)
    for r, (label, maps) in enumerate(rows):
        for c, name in enumerate(layers):
            colors = class_colors(maps["majority_class"][c], maps["purity"][c])
            draw_map(axes[r, c], grid, colors, f"{name}: {label}")
    if u_matrices is not None:
        for c, name in enumerate(layers):
            draw_map(axes[-1, c], grid, value_colors(u_matrices[c]), f"{name}: U-matrix")
    cmap = plt.get_cmap("tab10")
    fig.legend(handles=[Patch(color=cmap(k % 10), label=str(k)) for k in range(num_classes)],
               loc="lower center", ncol=num_classes, fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, -0.02), title="majority true label of a unit's inputs",
               title_fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def versus_depth(layers: Sequence[str], shallow: Sequence[str],
                 panels: Sequence[tuple[str, str, dict[str, np.ndarray]]]):
    """One panel per (title, y label, {series: (seeds, layers) values}) against the layers,
    each the mean over seeds with its 95% seed band (:func:`experiments.render.curves`);
    a dotted line separates the shallow layers from the deep ones."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.4 * len(panels), 4.0), squeeze=False)
    x = np.arange(1, len(layers) + 1)
    split = len(shallow) + 0.5
    for ax, (title, ylabel, series) in zip(axes[0], panels):
        render.curves(x, series, "layer, input to output (dotted line: shallow | deep)",
                      ylabel, title, ax=ax)
        ax.set_xticks(x, layers)
        ax.axvline(split, color="0.4", ls=":", lw=1)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2,
                  frameon=False)
    fig.tight_layout()
    return fig
