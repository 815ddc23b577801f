"""How good a map is and what it shows: quantization and topographic errors, U-matrix,
hit maps.

* Quantization error (Kohonen 2013 sec. 3.9): mean_i ||x_i - w_{c(x_i)}||, the distance
  computed directly (not from the matmul expansion) for accuracy.
* Topographic error (Kiviluoto 1996): fraction of inputs whose best and second-best
  units are not adjacent on the grid (``Grid.adjacency``: 8-neighborhood on rectangular
  grids as in MiniSom, the 6 touching hexagons on hexagonal ones).
* U-matrix (Ultsch & Siemon 1990): per unit, the mean distance between its weight vector
  and those of its adjacent units; large values mark cluster borders.
* Hit map: how many inputs each unit wins; with labels, per unit and class.

The two errors check their inputs first, outside jit
(:func:`som.checks.check_map_inputs`: (N, d) data of the codebook's d, finite, and for
the topographic error a codebook of the grid's size); ``check=False`` skips it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from som import checks
from som.bmu import best_two, bmus
from som.grid import Grid

Array = jax.Array


@functools.partial(jax.jit, static_argnames=("chunk",))
def _quantization_error(weights: Array, x: Array, chunk: int = 4096) -> Array:
    c = bmus(weights, x, chunk, check=False)
    return jnp.linalg.norm(x - weights[c], axis=-1).mean()


def quantization_error(weights: Array, x: Array, chunk: int = 4096, *,
                       check: bool = True) -> Array:
    """Mean distance between each row of ``x`` and its best-matching unit's weight.

    Jitted. ``check`` (default True): one ValueError, outside jit, for ``x`` not (N, d)
    with N >= 1, a feature count other than the codebook's, or NaN/inf (values only when
    not traced); ``check=False`` skips it."""
    if check:
        checks.check_map_inputs(weights, x, chunk)
    return _quantization_error(weights, x, chunk)


@functools.partial(jax.jit, static_argnames=("grid", "chunk"))
def _topographic_error(weights: Array, x: Array, grid: Grid, chunk: int = 4096) -> Array:
    two = best_two(weights, x, chunk, check=False)
    adjacent = jnp.asarray(grid.adjacency)[two[:, 0], two[:, 1]]
    return jnp.mean(~adjacent, dtype=jnp.float32)


def topographic_error(weights: Array, x: Array, grid: Grid, chunk: int = 4096, *,
                      check: bool = True) -> Array:
    """Fraction of rows of ``x`` whose two best units are not adjacent on ``grid``.

    ``check``: as in :func:`quantization_error`, and ``weights`` must have one row per
    unit of ``grid`` (at least two); ``check=False`` skips it."""
    if check:
        checks.check_map_inputs(weights, x, chunk, grid.size, two=True)
    return _topographic_error(weights, x, grid, chunk)


@functools.partial(jax.jit, static_argnames=("grid",))
def u_matrix(weights: Array, grid: Grid) -> Array:
    """(rows, cols): mean distance of each unit's weight to its adjacent units' weights."""
    adj = jnp.asarray(grid.adjacency, weights.dtype)
    diff = weights[:, None, :] - weights[None, :, :]
    dist = jnp.sqrt(jnp.maximum(jnp.sum(diff * diff, -1), 0.0))
    u = (adj * dist).sum(1) / jnp.maximum(adj.sum(1), 1.0)
    return u.reshape(grid.shape)


@functools.partial(jax.jit, static_argnames=("grid",))
def hit_map(units: Array, grid: Grid) -> Array:
    """(rows, cols) int32: how many of ``units`` (BMU indices) fall on each unit."""
    return jnp.bincount(units, length=grid.size).astype(jnp.int32).reshape(grid.shape)


@functools.partial(jax.jit, static_argnames=("num_units", "num_classes"))
def class_hits(units: Array, labels: Array, num_units: int, num_classes: int) -> Array:
    """(num_units, num_classes) int32 contingency table of BMU index vs label."""
    flat = units * num_classes + labels
    return jnp.bincount(flat, length=num_units * num_classes).reshape(
        num_units, num_classes).astype(jnp.int32)


def majority_class(hits: Array) -> Array:
    """(M,) majority label of each unit from ``class_hits`` output; -1 where no hits."""
    return jnp.where(hits.sum(-1) > 0, hits.argmax(-1), -1)
