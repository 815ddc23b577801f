"""The ``init`` reading: a weight's interval is the support of its initializer.

Another reading of seed 000's "centers of intervals" (this project's, not the paper's
equations): the interval is fixed before training, the range the initializer draws
from, and the claim is that training moves the weights from inside it to its ends.

This project's conv kernels use Flax's LeCun normal initializer: a normal truncated at
+-2 standard deviations, rescaled to variance ``1 / fan_in`` (``fan_in = kh kw in``). The
standard normal truncated to [-2, 2] has sd 0.87962566103423978, so the draws are
``sqrt(1 / fan_in) / 0.8796... * u`` with ``|u| <= 2``: the support is ``[-b, b]`` with

    b = 2 sqrt(1 / fan_in) / 0.87962566103423978.

Against it, with ``mu = (clip(w, -b, b) + b) / (2 b)``:

* ``outside = mean [|w| > b]`` (0 at init; weights that left the support sit at an end);
* fuzziness ``F = mean H(mu) / ln 2`` of the clipped membership, Min-Max index
  ``mean |2 mu - 1| = mean min(|w| / b, 1)``, near the ends ``mean [|2 mu - 1| >= near]``.

The center is 0 for every weight, so this reading asks whether ``|w|`` grows to the
initializer's bound. :func:`init_penalty` is its loss: ``F`` against ``+-b``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from minmax.stats import binary_entropy, conv_kernels

Array = jax.Array
TRUNCATED_SD = 0.87962566103423978  # sd of the standard normal truncated to [-2, 2]
STATS = ("fuzziness", "minmax_index", "near_ends", "outside")


def support_bound(shape: Sequence[int]) -> float:
    """``b = 2 sqrt(1 / fan_in) / 0.8796...`` of a ``(kh, kw, in, out)`` kernel under
    LeCun normal (``fan_in = kh kw in``)."""
    if len(shape) != 4:
        raise ValueError(f"expected a conv kernel shape (kh, kw, in, out), got {tuple(shape)}")
    fan_in = shape[0] * shape[1] * shape[2]
    return 2.0 * math.sqrt(1.0 / fan_in) / TRUNCATED_SD


def support_membership(w: Array) -> Array:
    """``mu = (clip(w, -b, b) + b) / (2 b)`` in [0, 1] (exactly 0 / 1 outside the support)."""
    b = support_bound(w.shape)
    return (jnp.clip(w, -b, b) + b) / (2.0 * b)


def support_stats(w: Array, *, near: float = 0.9) -> dict[str, Array]:
    """``STATS`` of one conv kernel against its initializer's support ``[-b, b]``."""
    b = support_bound(w.shape)
    mu = support_membership(w)
    d = jnp.abs(2.0 * mu - 1.0)
    return {"fuzziness": binary_entropy(mu).mean(), "minmax_index": d.mean(),
            "near_ends": (d >= near).mean(), "outside": (jnp.abs(w) > b).mean()}


def init_stats(params: Mapping[str, Any], *, near: float = 0.9) -> dict[str, dict[str, Array]]:
    """``{layer: {stat: scalar}}`` for every conv layer of one model's params."""
    return {name: support_stats(w, near=near) for name, w in conv_kernels(params).items()}


def init_penalty(layers: Sequence[str] | None = None):
    """``params -> mean over the selected conv layers of F(w; -b, b)``: pushes each weight
    towards the nearer end of its initializer's support (gradient
    ``log2((1 - mu) / mu) / (2 b N)`` inside it, 0 outside)."""
    layers = tuple(layers or ())

    def penalty(params: Mapping[str, Any]) -> Array:
        kernels = conv_kernels(params, layers)
        if not kernels:
            raise ValueError("init_penalty: these params have no conv layers")
        return jnp.mean(jnp.stack([binary_entropy(support_membership(w)).mean()
                                   for w in kernels.values()]))

    return penalty
