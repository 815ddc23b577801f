"""Decay of the neighborhood radius sigma(t) and the learning rate alpha(t), t = 0..T-1.

* ``exponential`` (the default here): v(t) = v0 * (v_end / v0) ** (t / (T - 1)), so the
  first update uses v0 and the last v_end exactly (Kohonen 2013 recommends a radius
  shrinking from about half the map to about 1 and a decreasing rate; this is the usual
  geometric form, e.g. somoclu and SOM_PAK's exponential option).
* ``linear``: v(t) = v0 + (v_end - v0) * t / (T - 1) (SOM Toolbox ``som_batchtrain``
  radius schedule).
* ``asymptotic``: MiniSom's default ``asymptotic_decay``, v(t) = v0 / (1 + 2 t / T); it
  ignores v_end and ends near v0 / 3. Use it to reproduce MiniSom's training.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array
DECAYS = ("exponential", "linear", "asymptotic")


def check(kind: str) -> None:
    if kind not in DECAYS:
        raise ValueError(f"unknown decay {kind!r}; use one of {DECAYS}")


def decay(kind: str, start: float | Array, end: float | Array, t: Array, total: int) -> Array:
    """Value at step ``t`` (traced is fine) of a schedule of ``total`` steps."""
    check(kind)
    t = jnp.asarray(t, jnp.float32)
    start = jnp.asarray(start, jnp.float32)
    end = jnp.asarray(end, jnp.float32)
    if kind == "asymptotic":
        return start / (1.0 + 2.0 * t / total)
    frac = t / max(total - 1, 1)
    if kind == "linear":
        return start + (end - start) * frac
    return start * (end / start) ** frac
