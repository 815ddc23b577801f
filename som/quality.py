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
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from som.bmu import best_two, bmus
from som.grid import Grid

Array = jax.Array


@functools.partial(jax.jit, static_argnames=("chunk",))
def quantization_error(weights: Array, x: Array, chunk: int = 4096) -> Array:
    """Mean distance between each row of ``x`` and its best-matching unit's weight."""
    c = bmus(weights, x, chunk)
    return jnp.linalg.norm(x - weights[c], axis=-1).mean()


@functools.partial(jax.jit, static_argnames=("grid", "chunk"))
def topographic_error(weights: Array, x: Array, grid: Grid, chunk: int = 4096) -> Array:
    """Fraction of rows of ``x`` whose two best units are not adjacent on ``grid``."""
    two = best_two(weights, x, chunk)
    adjacent = jnp.asarray(grid.adjacency)[two[:, 0], two[:, 1]]
    return jnp.mean(~adjacent, dtype=jnp.float32)


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
