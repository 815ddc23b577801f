"""Best-matching units (BMUs) by matrix products, a chunk of inputs at a time.

The BMU of x is c(x) = argmin_j ||x - w_j|| (Kohonen 1982). All N x M squared distances
come from one matmul,

    ||x - w||^2 = ||x||^2 - 2 x.w + ||w||^2,

and ||x||^2 does not change the argmin, so the search is ``argmin_j (||w_j||^2 - 2 x.w_j)``.
Inputs are processed ``chunk`` rows at a time (``lax.map``) so memory stays O(chunk * M)
for any N. Squared distances are clipped at 0 (cancellation can make them slightly
negative in float32).

:func:`bmus` and :func:`best_two` check their inputs first, outside jit
(:func:`som.checks.check_map_inputs`: (N, d) data, N >= 1, of the codebook's d, both
finite; NaN/inf only for concrete arrays); ``check=False`` skips it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from nets.batching import chunked
from som import checks

Array = jax.Array


def sq_distances(x: Array, w: Array) -> Array:
    """(N, M) squared Euclidean distances between rows of ``x`` (N, d) and ``w`` (M, d)."""
    xx = jnp.sum(x * x, axis=-1, keepdims=True)
    ww = jnp.sum(w * w, axis=-1)
    return jnp.maximum(xx - 2.0 * x @ w.T + ww, 0.0)


def scores(x: Array, w: Array) -> Array:
    """||w_j||^2 - 2 x.w_j: the squared distance up to the per-row constant ||x||^2."""
    return jnp.sum(w * w, axis=-1) - 2.0 * x @ w.T


@functools.partial(jax.jit, static_argnames=("chunk",))
def _bmus(weights: Array, x: Array, chunk: int = 4096) -> Array:
    def fn(xc):
        return jnp.argmin(scores(xc, weights), axis=-1).astype(jnp.int32)

    return chunked(fn, x, min(chunk, x.shape[0]))


def bmus(weights: Array, x: Array, chunk: int = 4096, *, check: bool = True) -> Array:
    """(N,) int32 index of the best-matching unit of each row of ``x`` for ``weights`` (M, d).

    Jitted. ``check`` (default True): one ValueError, outside jit, for ``x`` not (N, d)
    with N >= 1, a feature count other than the codebook's, or NaN/inf (values only when
    not traced); ``check=False`` skips it."""
    if check:
        checks.check_map_inputs(weights, x, chunk)
    return _bmus(weights, x, chunk)


@functools.partial(jax.jit, static_argnames=("chunk",))
def _best_two(weights: Array, x: Array, chunk: int = 4096) -> Array:
    def fn(xc):
        _, idx = jax.lax.top_k(-scores(xc, weights), 2)
        return idx.astype(jnp.int32)

    return chunked(fn, x, min(chunk, x.shape[0]))


def best_two(weights: Array, x: Array, chunk: int = 4096, *, check: bool = True) -> Array:
    """(N, 2) int32: the best and second-best matching units of each row of ``x``.

    ``check``: as in :func:`bmus`, and at least two units."""
    if check:
        checks.check_map_inputs(weights, x, chunk, two=True)
    return _best_two(weights, x, chunk)
