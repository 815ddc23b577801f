"""The ``trajectory`` reading: a weight's interval is the range it has visited in training.

Seed 000's abstract says that during training the conv weights "will become far away
from their centers of intervals, i.e., decreasing to their minimum or increasing to
their maximum". Read per weight and over time (this project's reading, not the paper's
equations): the interval of weight ``w`` after ``t`` steps is its running range

    lo_t = min(w_0, ..., w_t),   hi_t = max(w_0, ..., w_t),

and the claim is that the weight ends at one end of it, i.e. it drifted monotonically.
At the end, with ``mu = (w_t - lo_t) / (hi_t - lo_t)`` in [0, 1]:

* fuzziness ``F = mean H(mu) / ln 2`` (De Luca–Termini, :func:`minmax.stats.binary_entropy`);
* Min-Max index ``mean |2 mu - 1|``;
* near the ends: ``mean [mu <= 0.05 or mu >= 0.95]`` (= ``|2 mu - 1| >= near``, ``near = 0.9``);
* ``degenerate``: the fraction of weights that never moved (``hi = lo``). They count as
  at an end (``mu = 0``, ``H = 0``), the convention of :mod:`minmax.stats`; the random
  walk below has the same degenerate weights (zero steps), so the comparison is fair.

**Random-walk baseline with the same step sizes.** Any path ends near an end of its own
range more often than one might think (a new record is an end), so the reading needs a
baseline. Beside every weight the tracker runs a shadow walk from the same start,
``z_0 = w_0``, ``z_{t+1} = z_t + s_t |w_{t+1} - w_t|`` with independent random signs
``s_t = +-1`` (Rademacher), with its own running range; the same statistics of ``z``
(``walk_*``) are what the weight's own step sizes give without any drift or memory.

:class:`TrajectoryTracker` is a :class:`nets.train.StepTracker`: the range and the walk
are updated inside the jitted train step from the old and new params (no extra pass),
for every conv layer. :func:`trajectory_penalty` is the reading's loss: fuzziness of the
current weights against the running range, the range held fixed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from minmax.stats import binary_entropy, conv_kernels, range_membership

Array = jax.Array
STATS = ("fuzziness", "minmax_index", "near_ends", "degenerate",
         "walk_fuzziness", "walk_minmax_index", "walk_near_ends")


def position_stats(w: Array, lo: Array, hi: Array, *, near: float = 0.9) -> dict[str, Array]:
    """Fuzziness, Min-Max index, near-the-ends and degenerate fractions of ``w`` in its
    per-weight ranges ``[lo, hi]`` (all arrays of one shape)."""
    mu, degenerate = range_membership(w, lo, hi)
    d = jnp.abs(2.0 * mu - 1.0)
    return {"fuzziness": binary_entropy(mu).mean(), "minmax_index": d.mean(),
            "near_ends": (d >= near).mean(), "degenerate": degenerate.mean()}


@dataclasses.dataclass(frozen=True)
class TrajectoryTracker:
    """A :class:`nets.train.StepTracker` of each conv weight's running range and of its
    random-walk shadow. Track: ``{layer: {"lo", "hi", "walk", "walk_lo", "walk_hi"}}``,
    each the kernel's shape. ``layers``: conv layer names (empty: all)."""

    layers: tuple[str, ...] = ()

    def init(self, params: Mapping[str, Any], key: Array) -> dict[str, dict[str, Array]]:
        del key  # the start is deterministic: every range is the initial weight
        return {name: {"lo": w, "hi": w, "walk": w, "walk_lo": w, "walk_hi": w}
                for name, w in conv_kernels(params, self.layers).items()}

    def update(self, track: Mapping[str, Any], old_params: Mapping[str, Any],
               new_params: Mapping[str, Any], key: Array) -> dict[str, dict[str, Array]]:
        old = conv_kernels(old_params, self.layers)
        out = {}
        for i, (name, w) in enumerate(conv_kernels(new_params, self.layers).items()):
            t = track[name]
            sign = walk_signs(key, i, w.shape, w.dtype)
            z = t["walk"] + sign * jnp.abs(w - old[name])
            out[name] = {"lo": jnp.minimum(t["lo"], w), "hi": jnp.maximum(t["hi"], w),
                         "walk": z, "walk_lo": jnp.minimum(t["walk_lo"], z),
                         "walk_hi": jnp.maximum(t["walk_hi"], z)}
        return out


def walk_signs(key: Array, layer_index: int, shape: tuple[int, ...], dtype: Any = jnp.float32
               ) -> Array:
    """The walk's signs ``s_t`` of one layer at one step: Rademacher draws from
    ``fold_in(key, layer_index)`` (``key``: :func:`nets.train.track_key` of the step)."""
    return jax.random.rademacher(jax.random.fold_in(key, layer_index), shape, dtype)


def trajectory_stats(params: Mapping[str, Any], track: Mapping[str, Any], *,
                     near: float = 0.9) -> dict[str, dict[str, Array]]:
    """``{layer: {stat: scalar}}`` (``STATS``): the weights' position in their running
    range and the random walk's in its own, for every tracked conv layer."""
    kernels = conv_kernels(params, tuple(track))
    out = {}
    for name, w in kernels.items():
        t = track[name]
        own = position_stats(w, t["lo"], t["hi"], near=near)
        walk = position_stats(t["walk"], t["walk_lo"], t["walk_hi"], near=near)
        out[name] = {**own, **{f"walk_{k}": v for k, v in walk.items() if k != "degenerate"}}
    return out


def trajectory_penalty(layers: Sequence[str] | None = None):
    """``(params, track) -> mean over the selected conv layers of F(w; lo, hi)``, the
    fuzziness of the current weights against their running ranges (which are constants
    here: the gradient ``log2((1 - mu) / mu) / (N (hi - lo))`` pushes each weight towards
    the nearer end of the range it has visited). ``uses_track = True``."""
    layers = tuple(layers or ())

    def penalty(params: Mapping[str, Any], track: Mapping[str, Any]) -> Array:
        kernels = conv_kernels(params, layers)
        if not kernels:
            raise ValueError("trajectory_penalty: these params have no conv layers")
        values = []
        for name, w in kernels.items():
            lo = jax.lax.stop_gradient(track[name]["lo"])
            hi = jax.lax.stop_gradient(track[name]["hi"])
            values.append(binary_entropy(range_membership(w, lo, hi)[0]).mean())
        return jnp.mean(jnp.stack(values))

    penalty.uses_track = True  # type: ignore[attr-defined]
    return penalty
