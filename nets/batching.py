"""One helper for fixed-shape chunked evaluation: pad the batch axis to a multiple of the
chunk, so every chunk has one shape and one compiled program serves them all.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array


def pad_rows(tree: Any, chunk: int, mode: str = "zeros") -> tuple[Any, Array]:
    """Pad every leaf of ``tree`` along axis 0 to a multiple of ``chunk``.

    ``mode="zeros"`` pads with zeros, ``"edge"`` repeats the first row (keeps inputs
    valid for functions that must not see zeros, e.g. inside an attack's bounds).
    Returns (padded tree, valid) where ``valid`` is a bool mask of the real rows.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    leaves = jax.tree.leaves(tree)
    n = leaves[0].shape[0]
    pad = (-n) % chunk

    def one(a: Array) -> Array:
        if not pad:
            return a
        fill = (jnp.zeros((pad, *a.shape[1:]), a.dtype) if mode == "zeros"
                else jnp.repeat(a[:1], pad, axis=0))
        return jnp.concatenate([a, fill])

    return jax.tree.map(one, tree), jnp.arange(n + pad) < n


def chunked(fn, x: Any, chunk: int) -> Any:
    """``fn`` applied to ``x`` (an array or pytree of arrays with one batch axis) in
    chunks of ``chunk`` rows with ``lax.map``, zero-padded, results concatenated."""
    n = jax.tree.leaves(x)[0].shape[0]
    xp, _ = pad_rows(x, chunk)
    stacked = jax.tree.map(lambda a: a.reshape(-1, chunk, *a.shape[1:]), xp)
    out = jax.lax.map(fn, stacked)
    return jax.tree.map(lambda o: o.reshape(-1, *o.shape[2:])[:n], out)
