"""Input checks shared by the public entry points of ``som`` (issue 17).

Each check raises one ``ValueError`` whose one-line message names the argument, says
what is wrong and how to fix it. They run in Python, outside jit: shapes and sizes are
always checked; values (NaN/inf) only when the array is concrete, and silently skipped
when it is a tracer (inside a caller's ``jit`` / ``vmap``), as
``attacks.common.check_inputs`` does. The entry points take ``check=False`` to skip
everything in a hot loop.
"""

from __future__ import annotations

import math
import operator

import jax
import jax.numpy as jnp
import numpy as np


def traced(*trees) -> bool:
    """Whether any leaf of ``trees`` is a tracer (the values are unknown: inside jit/vmap)."""
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(trees))


def shape_of(a) -> tuple[int, ...]:
    """The shape of an array, tracer or nested list (a number is ``()``)."""
    return tuple(a.shape) if hasattr(a, "shape") else np.shape(a)


def finite_rows(a) -> np.ndarray:
    """Boolean NumPy mask over all axes but the last: the rows of ``a`` without NaN/inf.
    Computed where ``a`` lives (a JAX array on its device, eagerly even while a caller's
    jit is tracing; only the mask is copied)."""
    if isinstance(a, jax.Array):
        with jax.ensure_compile_time_eval():
            return np.asarray(jnp.isfinite(a).all(axis=-1))
    return np.isfinite(np.asarray(a)).all(axis=-1)


def check_int(value, name: str, low: int = 1) -> None:
    """``value`` must be an integer (not a bool or a float) >= ``low``: grid sizes,
    steps, chunk sizes."""
    try:
        ok = not isinstance(value, bool) and operator.index(value) >= low
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def check_number(value, name: str, low: float = 0.0, strict: bool = False) -> None:
    """``value`` must be a finite number >= ``low`` (> ``low`` with ``strict``): radii and
    learning rates."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if not math.isfinite(v) or v < low or (strict and v == low):
        raise ValueError(f"{name} must be a finite number {'>' if strict else '>='} {low:g}, "
                         f"got {value!r}")


def check_data(x, name: str = "x", batched: bool = False) -> tuple[int, int]:
    """``x`` is (N, d) samples (``batched``: (K, N, d), one set per map) with N >= 1 and
    d >= 1 (always checked) and no NaN/inf (checked when concrete; the message counts the
    bad rows and names the first). Returns (N, d)."""
    shape = shape_of(x)
    want = 3 if batched else 2
    form = "(maps, samples, features)" if batched else "(samples, features)"
    if len(shape) != want:
        fix = ("stack one (N, d) set per map" if batched else
               "flatten each sample, e.g. x.reshape(len(x), -1)")
        raise ValueError(f"{name} must be {want}-D {form}, got shape {shape}; {fix}")
    n, d = shape[-2:]
    if n < 1 or d < 1 or (batched and shape[0] < 1):
        raise ValueError(f"{name} of shape {shape} is empty; a map needs at least one sample "
                         f"with at least one feature")
    if not traced(x):
        rows = ~finite_rows(x)
        if rows.any():
            first = np.unravel_index(int(np.argmax(rows)), rows.shape)
            where = (f"map {first[0]}, row {first[1]}" if batched else f"row {first[0]}")
            fix = ("drop or impute them in each set" if batched else
                   f"drop or impute them, e.g. {name}[np.isfinite({name}).all(1)]")
            raise ValueError(f"{name} has {int(rows.sum())} of {rows.size} rows with NaN/inf "
                             f"(first: {where}); {fix}")
    return n, d


def check_weights(weights, x=None, units: int | None = None, name: str = "weights",
                  data: str = "x") -> None:
    """A codebook ``weights`` (M, d): 2-D, M >= 1, finite (when concrete); ``M == units``
    when given (the grid's size); and ``x`` (N, d), when given, with the same d."""
    shape = shape_of(weights)
    if len(shape) != 2 or shape[0] < 1:
        raise ValueError(f"{name} must be a 2-D (units, features) codebook with at least one "
                         f"unit, got shape {shape}; pass the weights fit returns")
    m, d = shape
    if units is not None and m != units:
        raise ValueError(f"{name} has {m} units but the grid has {units}; pass the weights "
                         f"trained on this grid")
    if x is not None:
        dx = shape_of(x)[-1]
        if dx != d:
            raise ValueError(f"{data} has {dx} features per row but {name} has {d} ({m} units "
                             f"x {d}); pass data of the map's dimension (the same layer "
                             f"codes, padding and scaling it was trained on)")
    if not traced(weights):
        bad = ~finite_rows(weights)
        if bad.any():
            raise ValueError(f"{name} has {int(bad.sum())} of {m} units with NaN/inf "
                             f"(first: unit {int(np.argmax(bad))}); retrain on finite data")


def check_map_inputs(weights, x, chunk: int | None = None, units: int | None = None,
                     two: bool = False) -> None:
    """What :func:`som.bmu.bmus` and the quality measures need: finite, non-empty
    (N, d) data ``x``, a finite codebook (M, d) of the same d (``units`` units when given,
    at least 2 with ``two``: a second-best unit) and an integer ``chunk`` >= 1."""
    check_data(x)
    check_weights(weights, x, units)
    if two and shape_of(weights)[0] < 2:
        raise ValueError("weights has 1 unit; the second-best unit needs a map of >= 2 units")
    if chunk is not None:
        check_int(chunk, "chunk")
