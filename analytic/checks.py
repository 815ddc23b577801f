"""Input checks shared by the public entry points of ``analytic`` (issue 17).

Each check raises one ``ValueError`` whose one-line message names the argument, says
what is wrong and how to fix it. They run in Python, outside jit: shapes and choices
(static) are always checked; values (signs, NaN/inf, symmetry, eigenvalues) only when
the array is concrete, and silently skipped when it is a tracer (inside a caller's
``jit`` / ``vmap``), as ``attacks.common.check_inputs`` does. The entry points take
``check=False`` to skip everything in a hot loop.

Covariances come in the shapes :func:`analytic.moments.preactivation` accepts: a scalar
(isotropic variance), an array of ``mu``'s shape or ``(d,)`` (per-input variances) or a
full ``(d, d)`` matrix on the flattened input. A full matrix must be symmetric and
positive semidefinite within ``tol = max(1e-6, d * machine eps of its dtype)`` (the
usual rank tolerance, so a float32 L @ L.T of low rank passes): max |C - C^T| <=
tol * max |C| and min eigenvalue >= -tol * max |eigenvalue|.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def traced(*trees) -> bool:
    """Whether any leaf of ``trees`` is a tracer (the values are unknown: inside jit/vmap)."""
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(trees))


def shape_of(a) -> tuple[int, ...]:
    """The shape of an array, tracer or Python number (a scalar is ``()``)."""
    return tuple(a.shape) if hasattr(a, "shape") else np.shape(a)


def check_choice(value: str, choices: Sequence[str], name: str = "method") -> None:
    """``value`` must be one of ``choices``."""
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {tuple(choices)}")


def check_int(value, name: str, low: int = 1) -> None:
    """``value`` must be an integer >= ``low`` (a count: steps, samples, a chunk size);
    a 0-d integer array counts, a traced one is skipped."""
    if traced(value):
        return
    try:
        ok = not isinstance(value, bool) and operator.index(value) >= low
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def _values(a) -> np.ndarray:
    """``a`` on the host in float64 (for small arrays: noise levels, covariances)."""
    return np.asarray(a, np.float64)


def count_nonfinite(a) -> int:
    """How many entries of ``a`` are NaN/inf, computed where ``a`` lives (a JAX array on
    its device, eagerly even while a caller's jit is tracing; only the count is copied)."""
    if isinstance(a, jax.Array):
        with jax.ensure_compile_time_eval():
            return int(a.size - jnp.isfinite(a).sum())
    a = np.asarray(a)
    return int(a.size - np.isfinite(a).sum())


def check_finite(a, name: str) -> None:
    """No NaN or inf in ``a`` (skipped when traced)."""
    if traced(a):
        return
    bad = count_nonfinite(a)
    if bad:
        raise ValueError(f"{name} has {bad} NaN/inf of {np.size(a)} entries; pass finite values")


def check_nonnegative(a, name: str, what: str = "variance",
                      fix: str = "pass variances such as sigma ** 2") -> None:
    """Every entry of ``a`` (a noise level: variance or standard deviation) is finite and
    >= 0 (skipped when traced); the message counts the negative and NaN/inf entries."""
    if traced(a):
        return
    v = _values(a)
    nonfinite = ~np.isfinite(v)
    negative = (v < 0) & ~nonfinite
    if nonfinite.any() or negative.any():
        low = f" (min {v[negative].min():g})" if negative.any() else ""
        raise ValueError(f"{name} must hold {what}s >= 0 and finite; got "
                         f"{int(negative.sum())} negative{low} and {int(nonfinite.sum())} "
                         f"NaN/inf of {v.size} entries; {fix}")


def check_linearization(lin, name: str = "lin", batch: int = 0) -> tuple[int, int, int]:
    """(d, n, k) of a Linearization A (n, d), c1 (n,), B (k, n), c2 (k,), each with
    ``batch`` leading batch axes of one common shape; shapes only (also when traced)."""
    shapes = {f: shape_of(getattr(lin, f)) for f in ("A", "c1", "B", "c2")}
    if any(len(s) != r + batch for s, r in zip(shapes.values(), (2, 1, 2, 1))):
        raise ValueError(f"{name} fields have shapes {shapes}; a Linearization holds A (n, d), "
                         f"c1 (n,), B (k, n), c2 (k,)" + (
                             " after one batch axis (shared_lin=True: one for all inputs)"
                             if batch else " (build it with analytic.linearize)"))
    lead = {s[:batch] for s in shapes.values()}
    n, d = shapes["A"][batch:]
    k = shapes["B"][batch]
    want = {"c1": (n,), "B": (k, n), "c2": (k,)}
    if len(lead) > 1 or any(shapes[f][batch:] != w for f, w in want.items()):
        raise ValueError(f"{name} fields have inconsistent shapes {shapes}; with A (n, d) = "
                         f"({n}, {d}) need c1 ({n},), B (k, {n}), c2 (k,)"
                         + (", all with the same batch axis" if batch else ""))
    return d, n, k


def check_mean(mu, d: int, name: str = "mu", batch: int = 0, lin_shape=None) -> None:
    """``mu`` (after ``batch`` leading axes) holds one input of d entries, and is finite."""
    shape = shape_of(mu)
    item = shape[batch:]
    if len(shape) < batch or int(np.prod(item)) != d:
        where = f" (lin.A is {lin_shape})" if lin_shape else ""
        one = ("one input per row of the batch" if batch else
               "one input without a batch axis (batched_moments takes a batch)")
        raise ValueError(f"{name} of shape {shape} has {int(np.prod(item))} entries per input "
                         f"but the linearization takes d = {d}{where}; pass {one}")
    check_finite(mu, name)


def cov_kind(cov_item: tuple[int, ...], mu_item: tuple[int, ...], d: int) -> str | None:
    """"scalar", "diag" or "full" for a covariance of shape ``cov_item`` (no batch axis),
    as :func:`analytic.moments.preactivation` reads it; None when it is none of them."""
    if cov_item == ():
        return "scalar"
    if cov_item == mu_item or cov_item == (d,):
        return "diag"
    if cov_item == (d, d):
        return "full"
    return None


def cov_form(cov_shape: tuple[int, ...], mu_shape: tuple[int, ...], d: int) -> str:
    """:func:`cov_kind`, or one ValueError naming the shapes a covariance may have."""
    kind = cov_kind(tuple(cov_shape), tuple(mu_shape), d)
    if kind is None:
        raise ValueError(f"cov of shape {tuple(cov_shape)} is neither a scalar, "
                         f"{tuple(mu_shape)}, ({d},) nor ({d}, {d})")
    return kind


def tolerance(dtype, d: int) -> float:
    """Relative tolerance of the symmetry and PSD checks: max(1e-6, d * eps(dtype))."""
    dt = np.dtype(dtype) if np.issubdtype(np.dtype(dtype), np.floating) else np.float64
    return max(1e-6, d * float(np.finfo(dt).eps))


def check_covariance_matrix(cov, name: str = "cov") -> None:
    """A (..., d, d) stack of covariance matrices: finite, symmetric and PSD within
    :func:`tolerance` (skipped when traced); the message names the worst matrix's index
    and its min eigenvalue."""
    if traced(cov):
        return
    raw = np.asarray(cov)
    d = raw.shape[-1]
    tol = tolerance(raw.dtype, d)
    c = raw.astype(np.float64).reshape(-1, d, d)
    label = (lambda i: name) if raw.ndim == 2 else (
        lambda i: f"{name}[{', '.join(map(str, np.unravel_index(i, raw.shape[:-2])))}]")
    finite = np.isfinite(c).all(axis=(1, 2))
    if not finite.all():
        i = int(np.argmin(finite))
        raise ValueError(f"{label(i)} has {int((~np.isfinite(c[i])).sum())} NaN/inf entries; "
                         f"a covariance matrix must be finite")
    scale = np.abs(c).max(axis=(1, 2))
    asym = np.abs(c - np.swapaxes(c, 1, 2)).max(axis=(1, 2))
    bad = asym > tol * scale
    if bad.any():
        i = int(np.argmax(np.where(bad, asym / np.where(scale > 0, scale, 1), -1)))
        raise ValueError(f"{label(i)} is not symmetric: max |cov - cov.T| = {asym[i]:.3g} > "
                         f"{tol:.2g} * max |cov| ({scale[i]:.3g}); pass (cov + cov.T) / 2")
    w = np.linalg.eigvalsh((c + np.swapaxes(c, 1, 2)) / 2)  # ascending, per matrix
    low, top = w[:, 0], np.abs(w).max(axis=1)
    bad = low < -tol * top
    if bad.any():
        i = int(np.argmax(np.where(bad, -low / np.where(top > 0, top, 1), -1)))
        raise ValueError(f"{label(i)} is not positive semidefinite: min eigenvalue {low[i]:.3g}"
                         f" < -{tol:.2g} * max |eigenvalue| ({top[i]:.3g}); pass a covariance,"
                         f" e.g. L @ L.T")


def check_cov(cov, mu_item: tuple[int, ...], d: int, name: str = "cov",
              batch: tuple[int, ...] = ()) -> str:
    """A covariance for inputs of shape ``mu_item`` (d entries), with leading axes
    ``batch``: its shape (always) and values (when concrete): variances >= 0 and finite,
    or a symmetric PSD matrix. Returns its kind (:func:`cov_kind`)."""
    shape = shape_of(cov)
    nb = len(batch)
    kind = cov_kind(shape[nb:], mu_item, d) if shape[:nb] == batch else None
    if kind is None:
        lead = f"{batch} + " if batch else ""
        raise ValueError(f"{name} of shape {shape} is not {lead}a scalar, {mu_item}, ({d},) or "
                         f"({d}, {d}) (d = {d} inputs); pass a variance, per-input variances "
                         f"or a full covariance")
    if kind == "full":
        check_covariance_matrix(cov, name)
    else:
        check_nonnegative(cov, name)
    return kind


def check_gaussian(lin, mu, cov, *, lin_batched: bool = False, mu_batched: bool = False,
                   cov_batched: bool = False) -> None:
    """The inputs of :func:`analytic.moments.moments` and its batched forms: a consistent
    Linearization, ``mu`` with d entries per input (finite), a valid covariance, and the
    same batch size along every batched argument."""
    d, _, _ = check_linearization(lin, batch=int(lin_batched))
    mu_shape = shape_of(mu)
    if mu_batched:
        if not mu_shape:
            raise ValueError("mu must have a leading batch axis in batched_moments, got a scalar")
        size = mu_shape[0]
        for what, flag, on, s in (("lin.A", "shared_lin", lin_batched, shape_of(lin.A)),
                                  ("cov", "shared_cov", cov_batched, shape_of(cov))):
            if on and (not s or s[0] != size):
                raise ValueError(f"{what} of shape {s} does not have mu's batch size {size} "
                                 f"first; pass {flag}=True to use one for every input")
    lin_a = shape_of(lin.A)
    check_mean(mu, d, batch=int(mu_batched), lin_shape=lin_a)
    check_cov(cov, mu_shape[int(mu_batched):], d, batch=mu_shape[:1] if cov_batched else ())


def check_images(x, bounds: tuple[float, float], name: str = "x") -> None:
    """``bounds`` lo < hi and a batch ``x`` inside them (with 1e-6 slack), finite (values
    skipped when traced)."""
    lo, hi = bounds
    if not lo < hi:
        raise ValueError(f"bounds must satisfy lo < hi, got {tuple(bounds)}")
    if traced(x):
        return
    v = x if isinstance(x, jax.Array) else np.asarray(x)
    if v.size == 0:
        raise ValueError(f"{name} is empty (shape {v.shape}); pass at least one input")
    check_finite(v, name)
    with jax.ensure_compile_time_eval():  # on the device, also inside a caller's trace
        x_lo, x_hi = float(v.min()), float(v.max())
    if x_lo < lo - 1e-6 or x_hi > hi + 1e-6:
        raise ValueError(f"{name} spans [{x_lo:g}, {x_hi:g}], outside bounds {tuple(bounds)}; "
                         f"scale it (e.g. images / 255) or pass bounds=({x_lo:g}, {x_hi:g})")


def check_labels(y, n: int, num_classes: int, name: str = "y") -> None:
    """``y``: ``n`` integer class indices in [0, num_classes) (range skipped when traced)."""
    shape = shape_of(y)
    dtype = getattr(y, "dtype", np.asarray(y).dtype)
    if shape != (n,) or not np.issubdtype(dtype, np.integer):
        raise ValueError(f"{name} must be {n} integer class indices of shape ({n},), got "
                         f"{dtype} {shape}; one-hot labels? use {name}.argmax(-1)")
    if traced(y):
        return
    v = np.asarray(y)
    bad = (v < 0) | (v >= num_classes)
    if bad.any():
        raise ValueError(f"{name} has {int(bad.sum())} labels outside [0, {num_classes}) "
                         f"(e.g. {int(v[bad][0])}); the network has {num_classes} classes")
