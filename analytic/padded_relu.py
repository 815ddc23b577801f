"""Exact ReLU moments of the leading ``n`` units of a zero-padded Gaussian state, with
``n`` traced: one compiled copy of the pair formula serves every ReLU layer of a net.

Why (issue 16): XLA compiles each call site of the exact pair formula
(:func:`analytic.relu.relu_covariance`: Rosenbaum's formula over Genz's bivariate cdf,
two to four seconds on the CPU per copy, more for the grouped evaluation's six
variants) on its own, even where two sites are the same code at other shapes. A net
with several ReLU layers (LeNet-5: four) paid that once per layer. Here the layer's
size is data: the state is padded to the widest layer, and the pairs are visited in
the order (j, i), j = 0, 1, ..., i < j (``tril_indices``), so the n(n-1)/2 pairs of
the first n units come first, whatever n. As :func:`analytic.moments.hidden_moments`
does, a layer of at least :data:`CHUNK` (= :data:`analytic.relu.MIN_GROUPED`) pairs
runs the grouped evaluation, in chunks of ``CHUNK`` pairs, and a smaller one the
elementwise formula, in pieces of :data:`PIECE` pairs: two ``lax.scan`` loops whose
steps past the layer's pairs are skipped (``lax.cond``); the tail of the last step is
masked to constant units (s = 0), which give 0. (One chunk size for all would cost a
small layer a whole chunk of masked pairs: 40 ms against 1-2 ms on LeNet-5's 120 and
84 units.) Two copies of the formula, then, for any number of layers.

The values are those of ``hidden_moments(m, S, "exact")``: the same formula for every
pair; only the grouping of a large layer's pairs into tiles differs, which changes the
rounding (about 1 ulp) and nothing else.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from analytic import relu

Array = jax.Array
CHUNK = relu.MIN_GROUPED  # pairs per step: the smallest count that runs grouped
PIECE = 8192  # pairs per step of a layer with fewer than CHUNK pairs (elementwise)


@functools.cache
def pair_table(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(i, j), i < j < ``size``, ordered by j then i (the pairs of the first n units are
    the first n(n-1)/2), padded to a multiple of :data:`CHUNK` with i = j = ``size`` (out
    of range: masked, and dropped by the scatter)."""
    j, i = np.tril_indices(size, -1)
    pad = -len(i) % CHUNK if len(i) else CHUNK
    fill = np.full(pad, size)
    return (np.concatenate([i, fill]).astype(np.int32),
            np.concatenate([j, fill]).astype(np.int32))


def _sqrt(v: Array) -> Array:
    """sqrt with a zero (not infinite) gradient at 0 (as :mod:`analytic.moments`)."""
    ok = v > 0
    return jnp.where(ok, jnp.sqrt(jnp.where(ok, v, 1.0)), 0.0)


def _pair_args(m: Array, s: Array, S: Array, ti: Array, tj: Array, start: Array,
               count: int, pairs: Array) -> tuple[Array, ...]:
    """(i, j, mi, mj, si, sj, rho) of the ``count`` table entries from ``start``, the
    entries at or past ``pairs`` masked to constant units (m = s = 0, rho = 0)."""
    size = m.shape[0]
    i = jax.lax.dynamic_slice_in_dim(ti, start, count)
    j = jax.lax.dynamic_slice_in_dim(tj, start, count)
    valid = start + jnp.arange(count) < pairs
    ic, jc = jnp.minimum(i, size - 1), jnp.minimum(j, size - 1)
    si = jnp.where(valid, s[ic], 0.0)
    sj = jnp.where(valid, s[jc], 0.0)
    den = si * sj
    ok = den > 0
    rho = jnp.where(ok, S[ic, jc] / jnp.where(ok, den, 1.0), 0.0)
    mi, mj = jnp.where(valid, m[ic], 0.0), jnp.where(valid, m[jc], 0.0)
    return i, j, mi, mj, si, sj, rho


def hidden_moments_padded(m: Array, S: Array, n: Array,
                          widths: tuple[int, ...] | None = None) -> tuple[Array, Array]:
    """(E[relu(z)], Cov[relu(z)]) for z ~ N(m[:n], S[:n, :n]), ``m`` (N,) and ``S`` (N, N)
    zero-padded, ``n`` <= N a traced int: (N,) and (N, N), correct in the leading n
    entries; the rows and columns of the padding are 0 for a zero-padded ``S`` and
    unspecified otherwise. Exact, as ``hidden_moments(m, S, "exact")`` (module
    docstring): grouped chunks for a layer of at least :data:`CHUNK` pairs, elementwise
    pieces for a smaller one. ``widths``: the values ``n`` can take, if known (static);
    a loop that none of them needs is left out (it would be compiled for nothing)."""
    size = m.shape[0]
    s = _sqrt(jnp.diagonal(S))
    mean = relu.relu_mean(m, s)
    var = relu.relu_variance(m, s)
    ti, tj = (jnp.asarray(t) for t in pair_table(size))
    pairs = n * (n - 1) // 2
    grouped = pairs >= CHUNK
    chunks = jnp.where(grouped, (pairs + CHUNK - 1) // CHUNK, 0)
    pieces = jnp.where(grouped, 0, (pairs + PIECE - 1) // PIECE)

    def loop(C: Array, count: int, steps: int, todo: Array, group: bool) -> Array:
        def run(C, c):
            i, j, *args = _pair_args(m, s, S, ti, tj, c * count, count, pairs)
            return C.at[i, j].set(relu.relu_covariance(*args, grouped=group), mode="drop")

        def step(C, c):
            return jax.lax.cond(c < todo, run, lambda C, c: C, C, c), None

        return jax.lax.scan(step, C, jnp.arange(steps))[0]

    counts = [w * (w - 1) // 2 for w in (widths or (size, 0))]
    C = jnp.zeros((size, size), var.dtype)
    if max(counts) >= CHUNK:
        C = loop(C, CHUNK, len(ti) // CHUNK, chunks, True)
    if min(counts) < CHUNK:
        C = loop(C, PIECE, CHUNK // PIECE, pieces, False)
    return mean, C + C.T + jnp.diag(var)
