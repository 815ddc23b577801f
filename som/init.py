"""Initial codebooks: random data samples, or the plane of the first two principal axes.

* ``random``: each unit starts at a data sample drawn at random (without replacement
  when N >= M), as MiniSom's ``random_weights_init``; needs a key.
* ``pca`` (linear initialization, Kohonen 2013 sec. 3.6; SOM Toolbox ``som_lininit``):
  w_j = mean + a_j sqrt(l1) v1 + b_j sqrt(l2) v2, where (v1, l1), (v2, l2) are the
  leading eigenpairs of the data covariance and (a_j, b_j) are unit j's plane coordinates
  rescaled to [-1, 1]; the longer side of the map follows the first axis. Deterministic,
  ordered from the start, so training needs fewer steps. Zero-padded input dimensions
  have zero variance and stay zero, so padded codes of several layers can share one
  vmapped call.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from som.grid import Grid

Array = jax.Array
INITS = ("pca", "random")


def random_init(key: Array, x: Array, grid: Grid) -> Array:
    """(M, d) codebook of M random rows of ``x``."""
    idx = jax.random.choice(key, x.shape[0], (grid.size,), replace=x.shape[0] < grid.size)
    return x[idx]


def pca_init(x: Array, grid: Grid) -> Array:
    """(M, d) codebook spanning the first two principal axes of ``x`` (see module doc)."""
    x = jnp.asarray(x, jnp.float32)
    mean = x.mean(0)
    xc = x - mean
    cov = xc.T @ xc / max(x.shape[0] - 1, 1)
    evals, evecs = jnp.linalg.eigh(cov)  # ascending
    axes = evecs[:, ::-1][:, :2] * jnp.sqrt(jnp.maximum(evals[::-1][:2], 0.0))  # (d, 2)
    if axes.shape[1] < 2:  # one input dimension: the second axis is absent
        axes = jnp.concatenate([axes, jnp.zeros_like(axes)], axis=1)
    return mean + jnp.asarray(_plane(grid)) @ axes.T


@functools.cache
def _plane(grid: Grid) -> np.ndarray:
    """(M, 2) unit coordinates in [-1, 1]; column 0 is the map's longer side."""
    xy = grid.coords.astype(np.float64)
    span = xy.max(0) - xy.min(0)
    ab = np.where(span > 0, (xy - xy.min(0)) / np.where(span > 0, span, 1.0) * 2 - 1, 0.0)
    if grid.rows > grid.cols:
        ab = ab[:, ::-1]
    return ab.astype(np.float32)


def init_weights(key: Array, x: Array, grid: Grid, method: str = "pca") -> Array:
    """The initial codebook by ``method`` (``pca`` ignores the key)."""
    if method == "pca":
        return pca_init(x, grid)
    if method == "random":
        return random_init(key, x, grid)
    raise ValueError(f"unknown init {method!r}; use one of {INITS}")
