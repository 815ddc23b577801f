"""Interval statistics of convolution weights: the Min-Max property and fuzziness.

Formulation (seed 000, Shen, Chen & Wang, arXiv 2011.13719). Only the paper's abstract
is available, so these definitions are this project's own reading of it (see
``../shared/DESIGN.md``), not a transcription of the paper's equations.

Each weight ``w`` of a conv kernel of shape ``(kh, kw, in, out)`` belongs to an
*interval* ``[lo, hi]``: the min and max of a group of weights chosen by ``granularity``

* ``"kernel"`` (default): one ``kh x kw`` slice per ``(in, out)`` channel pair;
* ``"filter"``: everything feeding one output channel, ``kh x kw x in``;
* ``"layer"``: the whole kernel.

With center ``c = (lo + hi) / 2`` and radius ``r = (hi - lo) / 2``:

* center distance ``d = |w - c| / r`` in ``[0, 1]``; the **Min-Max index** is ``mean d``
  (1: every weight sits at an end of its interval, the Min-Max property at its extreme);
* fraction **near the ends**: ``mean [d >= near]`` (``near = 0.9`` by default);
* **membership** ``mu = (w - lo) / (hi - lo)`` in ``[0, 1]`` (so ``d = |2 mu - 1|``);
* **fuzziness** (De Luca & Termini, 1972) ``F = mean H(mu) / ln 2`` in ``[0, 1]`` with
  ``H(mu) = -mu ln mu - (1 - mu) ln(1 - mu)`` and ``0 ln 0 = 0``. ``F = 0`` when every
  weight is at an end, ``F = 1`` when every weight is at the center.

Both are invariant to ``w -> a w + b`` per interval for any ``a != 0`` (``mu -> 1 - mu``
when ``a < 0``, and ``H`` is symmetric), so neither can be lowered by merely rescaling.
Every interval holds at least two weights at its ends (its min and its max), so with
``n`` weights per interval the index is at least ``2 / n`` (0.08 for 5x5 kernels).

A **degenerate** interval (``hi == lo``, e.g. a constant or all-zero kernel, or any
``1 x 1`` kernel at ``kernel`` granularity) has every weight at both ends at once: we
set ``d = 1``, ``mu = 0``, ``H = 0`` there (no NaN, no NaN gradient) and report the
fraction of weights in such intervals as ``degenerate``.

The sister view of the same weights (most ``|w|`` near zero, a few large) is reported
per layer: ``small_fraction = mean [|w| <= small * max |w|]`` (``small = 0.1``) and the
excess kurtosis ``E[(w - m)^4] / Var(w)^2 - 3`` (0 for a Gaussian, -1.2 uniform).

Everything here is a pure, jittable function of arrays or of a params pytree.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array

GRANULARITIES = ("kernel", "filter", "layer")
STATS = ("fuzziness", "minmax_index", "near_ends", "small_fraction", "kurtosis", "degenerate")

# Axes of a (kh, kw, in, out) kernel reduced to get one interval, per granularity.
_AXES = {"kernel": (0, 1), "filter": (0, 1, 2), "layer": (0, 1, 2, 3)}


def _axes(w: Array, granularity: str) -> tuple[int, ...]:
    if granularity not in _AXES:
        raise ValueError(f"unknown granularity {granularity!r}; choose one of {GRANULARITIES}")
    if w.ndim != 4:
        raise ValueError(f"expected a conv kernel of shape (kh, kw, in, out), got {w.shape}")
    return _AXES[granularity]


def interval(w: Array, granularity: str = "kernel", *, stop_gradient: bool = False
             ) -> tuple[Array, Array]:
    """``(lo, hi)``: min and max of each interval, kept broadcastable against ``w``.

    With ``stop_gradient`` the ends are treated as constants when differentiating (see
    :func:`fuzziness` for why the regularizer does that).
    """
    axes = _axes(w, granularity)
    lo, hi = w.min(axis=axes, keepdims=True), w.max(axis=axes, keepdims=True)
    if stop_gradient:
        lo, hi = jax.lax.stop_gradient(lo), jax.lax.stop_gradient(hi)
    return lo, hi


def membership(w: Array, granularity: str = "kernel", *, stop_gradient: bool = False
               ) -> tuple[Array, Array]:
    """``(mu, degenerate)``: ``mu = (w - lo) / (hi - lo)`` in [0, 1], and a mask of the
    weights whose interval is a point (there ``mu = 0``). Safe to differentiate."""
    lo, hi = interval(w, granularity, stop_gradient=stop_gradient)
    return range_membership(w, lo, hi)


def range_membership(w: Array, lo: Array, hi: Array) -> tuple[Array, Array]:
    """``(mu, degenerate)`` of ``w`` in ranges ``[lo, hi]`` broadcastable against it:
    ``mu = (w - lo) / (hi - lo)`` clipped to [0, 1], exactly 0 at or below ``lo`` and 1 at
    or above ``hi``; where ``hi == lo``, ``mu = 0``. NaN-free, also in the gradient. Shared
    by the group reading (here) and the trajectory reading (:mod:`minmax.trajectory`)."""
    width = hi - lo
    degenerate = jnp.broadcast_to(width <= 0, w.shape)
    safe_width = jnp.where(width > 0, width, 1.0)  # double-where: no 0/0 even in the grad
    mu = jnp.clip((w - lo) / safe_width, 0.0, 1.0)
    # The ends are found by comparing weights, not by the rounding of the division (which
    # XLA may compile differently in different programs): exactly 0 at the min, 1 at the max.
    mu = jnp.where(w >= hi, 1.0, mu)
    return jnp.where((w <= lo) | degenerate, 0.0, mu), degenerate


def center_distance(w: Array, granularity: str = "kernel") -> Array:
    """``d = |w - c| / r = |2 mu - 1|`` in [0, 1] for every weight (1 in degenerate intervals)."""
    mu, _ = membership(w, granularity)
    return jnp.abs(2.0 * mu - 1.0)


def binary_entropy(mu: Array) -> Array:
    """``H(mu) / ln 2`` in bits, with ``H(0) = H(1) = 0``.

    The derivative ``log2((1 - mu) / mu)`` is infinite at 0 and 1; there the gradient is
    set to 0 (double-where), which is also the right answer for the regularizer: a weight
    already at an end of its interval is at a minimum of ``H`` and has nowhere to go.
    """
    inside = (mu > 0.0) & (mu < 1.0)
    m = jnp.where(inside, mu, 0.5)
    h = -(m * jnp.log(m) + (1.0 - m) * jnp.log1p(-m)) / math.log(2.0)
    return jnp.where(inside, h, 0.0)


def fuzziness(w: Array, granularity: str = "kernel", *, stop_gradient: bool = True) -> Array:
    """De Luca–Termini fuzziness ``F = mean H(mu) / ln 2`` of one conv kernel, in [0, 1].

    Differentiable with NaN-free gradients. ``stop_gradient=True`` (the default, used by
    the regularizer) holds the interval ends ``lo``/``hi`` fixed when differentiating.
    Why: ``lo`` and ``hi`` are themselves the min and max weights, and with the gradient
    flowing through them the cheapest way to lower ``F`` is to drag the extreme weights
    *inwards* onto the crowd (shrinking the interval), which is the opposite of the
    Min-Max property ("weights move away from the centers, to the min or the max").
    Holding the ends fixed, ``dF/dw = log2((1 - mu) / mu) / (N (hi - lo))`` pushes each
    interior weight towards its nearer end, and the two end weights get no push (so the
    penalty does not inflate the ranges either). The ends still move with training: they
    are recomputed from the weights at every step.
    """
    mu, _ = membership(w, granularity, stop_gradient=stop_gradient)
    return binary_entropy(mu).mean()


def per_interval(w: Array, granularity: str = "kernel", *, near: float = 0.9) -> dict[str, Array]:
    """Statistics of each interval: arrays of shape ``(in, out)`` (kernel), ``(out,)``
    (filter) or ``()`` (layer): ``lo``, ``hi``, ``fuzziness``, ``minmax_index``,
    ``near_ends``."""
    axes = _axes(w, granularity)
    mu, _ = membership(w, granularity)
    d = jnp.abs(2.0 * mu - 1.0)
    return {
        "lo": w.min(axis=axes),
        "hi": w.max(axis=axes),
        "fuzziness": binary_entropy(mu).mean(axis=axes),
        "minmax_index": d.mean(axis=axes),
        "near_ends": (d >= near).mean(axis=axes),
    }


def excess_kurtosis(w: Array) -> Array:
    """``E[(w - m)^4] / Var(w)^2 - 3`` over all entries (0 when the variance is 0)."""
    x = w.ravel() - w.mean()
    var = jnp.mean(x * x)
    ok = var > 0
    return jnp.where(ok, jnp.mean(x**4) / jnp.where(ok, var, 1.0) ** 2 - 3.0, 0.0)


def kernel_stats(w: Array, granularity: str = "kernel", *, near: float = 0.9,
                 small: float = 0.1) -> dict[str, Array]:
    """Scalar statistics of one conv kernel (see the module docstring): ``STATS``.

    Every interval of a granularity holds the same number of weights, so the means over
    weights here equal the means over intervals of :func:`per_interval`.
    """
    mu, degenerate = membership(w, granularity)
    d = jnp.abs(2.0 * mu - 1.0)
    a = jnp.abs(w)
    return {
        "fuzziness": binary_entropy(mu).mean(),
        "minmax_index": d.mean(),
        "near_ends": (d >= near).mean(),
        "small_fraction": (a <= small * a.max()).mean(),
        "kurtosis": excess_kurtosis(w),
        "degenerate": degenerate.mean(),
    }


def conv_kernels(params: Mapping[str, Any], layers: Sequence[str] | None = None
                 ) -> dict[str, Array]:
    """``{name: kernel}`` of the conv layers of a params pytree, in order.

    A conv layer is a top-level entry with a 4-D ``"kernel"`` (Flax ``nn.Conv``; this
    project's layer names are ``conv1``, ``conv2``, ...). ``layers`` picks some of them by
    name (empty or ``None``: all); a name that is not a conv layer is a ``ValueError``.
    """
    convs = {name: p["kernel"] for name, p in params.items()
             if isinstance(p, Mapping) and "kernel" in p and jnp.ndim(p["kernel"]) == 4}
    if not layers:
        return convs
    bad = [n for n in layers if n not in convs]
    if bad:
        raise ValueError(f"not conv layers of these params: {bad}; conv layers are {list(convs)}")
    return {n: convs[n] for n in layers}


def layer_stats(params: Mapping[str, Any], granularity: str = "kernel", *,
                layers: Sequence[str] | None = None, near: float = 0.9, small: float = 0.1
                ) -> dict[str, dict[str, Array]]:
    """``{layer: {stat: scalar}}`` for the conv layers of one model's params.

    For S stacked models, ``jax.vmap(lambda p: layer_stats(p, ...))(stacked_params)``
    gives shape-(S,) leaves. Compiled once per granularity, layers and shapes.
    """
    return _layer_stats(params, granularity, tuple(layers) if layers is not None else None,
                        near, small)


@functools.partial(jax.jit, static_argnames=("granularity", "layers", "near", "small"))
def _layer_stats(params, granularity: str, layers: tuple[str, ...] | None, near: float,
                 small: float) -> dict[str, dict[str, Array]]:
    return {name: kernel_stats(w, granularity, near=near, small=small)
            for name, w in conv_kernels(params, layers).items()}
