"""MiniSom-familiar views of a trained map: winners as (row, col), ``win_map``,
``labels_map`` and ``distance_map`` (issue 15).

A MiniSom user holds weights of shape (x, y, d) and asks ``winner(x) -> (i, j)``. Here a
codebook is (M, d) with units numbered row-major, ``j = r * cols + c`` (:mod:`som.grid`),
so ``weights.reshape(rows, cols, d)`` is MiniSom's array and ``(r, c)`` its ``(i, j)``.
The BMUs come from the jitted, chunked :func:`som.bmu.bmus` (ties: the lowest index, as
NumPy's ``argmin`` in MiniSom); the groupings are ragged, so they are built on the host.

``distance_map`` is MiniSom's normalized U-matrix: per unit the sum (``scaling="sum"``,
MiniSom's default) or the mean of the Euclidean distances to its adjacent units, divided
by the largest value. Adjacency is :attr:`som.grid.Grid.adjacency`: the 8-neighborhood on
rectangular grids (MiniSom's too); on hexagonal grids the 6 touching hexagons of this
project's odd-r offset rows, while MiniSom offsets by column, so hexagonal maps from the
two libraries are not laid out alike. :func:`som.quality.u_matrix` is the unnormalized
mean.
"""

from __future__ import annotations

from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np

from som.bmu import bmus
from som.checks import check_map_inputs
from som.grid import Grid
from som.quality import u_matrix

Array = jax.Array
SCALINGS = ("sum", "mean")


def winners(weights: Array, x: Array, grid: Grid, chunk: int = 4096, *,
            check: bool = True) -> Array:
    """(N, 2) int32: the (row, col) of each row's best-matching unit (MiniSom's
    ``winner`` for every sample at once)."""
    if check:
        check_map_inputs(weights, x, chunk, grid.size)
    c = bmus(weights, x, chunk, check=False)
    return jnp.stack(jnp.divmod(c, grid.cols), axis=-1).astype(jnp.int32)


def win_map(weights: Array, x: Array, grid: Grid, *, return_indices: bool = False,
            chunk: int = 4096) -> dict[tuple[int, int], list]:
    """``{(row, col): [rows of x won by that unit]}`` (or their indices), in input order;
    units that win nothing are absent, as in MiniSom."""
    rc = np.asarray(winners(weights, x, grid, chunk))
    data = np.asarray(x)
    out: dict[tuple[int, int], list] = {}
    for i, (r, c) in enumerate(rc):
        out.setdefault((int(r), int(c)), []).append(i if return_indices else data[i])
    return out


def labels_map(weights: Array, x: Array, labels, grid: Grid, *,
               chunk: int = 4096) -> dict[tuple[int, int], Counter]:
    """``{(row, col): Counter(label -> how many rows of x with that label it wins)}``."""
    labels = np.asarray(labels)
    if labels.shape[:1] != np.shape(x)[:1]:
        raise ValueError(f"labels_map: {np.shape(x)[0]} rows of x but {labels.shape[0]} "
                         f"labels; pass one label per row")
    won = win_map(weights, x, grid, return_indices=True, chunk=chunk)
    return {pos: Counter(labels[idx].tolist()) for pos, idx in won.items()}


def distance_map(weights: Array, grid: Grid, scaling: str = "sum") -> Array:
    """(rows, cols) in [0, 1]: the sum or mean distance of each unit to its adjacent units,
    divided by the largest (MiniSom's ``distance_map``)."""
    if scaling not in SCALINGS:
        raise ValueError(f"unknown scaling {scaling!r}; choose one of {SCALINGS}")
    u = u_matrix(weights, grid)  # the mean over adjacent units
    if scaling == "sum":
        u = u * jnp.asarray(grid.adjacency.sum(1), u.dtype).reshape(grid.shape)
    return u / jnp.max(u)
