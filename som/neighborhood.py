"""Neighborhood functions h(d; sigma) of the grid distance d between two units.

* ``gaussian``: h = exp(-d^2 / (2 sigma^2)) (Kohonen 2013, eq. 5). On a rectangular grid
  this equals MiniSom's separable product exp(-dx^2/2s^2) exp(-dy^2/2s^2).
* ``bubble``: h = 1 if d <= sigma else 0 (Kohonen 1982's "neighborhood set" N_c; a disc
  on the plane, so it applies to hexagonal grids too; MiniSom's bubble is a square).
  The winner itself (d = 0) is always inside, so sigma < 1 updates the winner only.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

Array = jax.Array


def gaussian(d: Array, sigma: Array) -> Array:
    """exp(-d^2 / (2 sigma^2))."""
    return jnp.exp(-(d * d) / (2.0 * sigma * sigma))


def bubble(d: Array, sigma: Array) -> Array:
    """1 inside the disc of radius sigma (with a 1e-6 tolerance), 0 outside."""
    return (d <= sigma + 1e-6).astype(jnp.result_type(d, jnp.float32))


NEIGHBORHOODS: dict[str, Callable[[Array, Array], Array]] = {
    "gaussian": gaussian,
    "bubble": bubble,
}


def get(name: str) -> Callable[[Array, Array], Array]:
    """The neighborhood function called ``name``."""
    if name not in NEIGHBORHOODS:
        raise ValueError(f"unknown neighborhood {name!r}; use one of {sorted(NEIGHBORHOODS)}")
    return NEIGHBORHOODS[name]
