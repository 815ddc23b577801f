"""The Min-Max loss: ``CE + lambda * F(conv weights)``, and per-epoch tracking of the stats.

Seed 000 (Shen, Chen & Wang, arXiv 2011.13719) says the Min-Max property "can be
incorporated into the design of loss function"; its abstract gives no formula, so this
is the project's own: the penalty is the mean De Luca–Termini fuzziness
(:func:`minmax.stats.fuzziness`) over the selected conv layers, a number in [0, 1].

Both pieces plug into :func:`nets.train.fit`::

    penalty = fuzziness_penalty(layers=("conv1", "conv2"))
    states, history = fit(net, train, test, spec, seeds=(0, 1, 0, 1),
                          reg_weights=(0.0, 0.0, 1.0, 1.0), regularizer=penalty,
                          on_epoch=tracker())

``fit`` adds ``reg_weight * penalty(params)`` to each model's cross-entropy, so a lambda
grid times seeds is one vmapped run; the tracker logs every conv layer's statistics for
all S models into each epoch's metrics record. An epoch is one ``lax.scan`` in ``fit``,
so statistics are taken once per epoch (not every N steps).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from minmax import stats

Array = jax.Array


def fuzziness_penalty(
    layers: Sequence[str] | None = None,
    granularity: str = "kernel",
    *,
    stop_gradient: bool = True,
) -> Callable[[Mapping[str, Any]], Array]:
    """``params -> mean over the selected conv layers of F(kernel)`` (scalar in [0, 1]).

    ``layers``: conv layer names (empty or ``None``: every conv layer). ``stop_gradient``
    holds the interval ends fixed when differentiating (the default; see
    :func:`minmax.stats.fuzziness` for why). Biases and dense layers are not penalized.
    """
    if granularity not in stats.GRANULARITIES:
        raise ValueError(f"unknown granularity {granularity!r}; choose one of {stats.GRANULARITIES}")
    layers = tuple(layers or ())

    def penalty(params: Mapping[str, Any]) -> Array:
        kernels = stats.conv_kernels(params, layers)
        if not kernels:
            raise ValueError("fuzziness_penalty: these params have no conv layers")
        values = [stats.fuzziness(w, granularity, stop_gradient=stop_gradient)
                  for w in kernels.values()]
        return jnp.mean(jnp.stack(values))

    return penalty


def stacked_stats(
    granularity: str = "kernel",
    *,
    layers: Sequence[str] | None = None,
    near: float = 0.9,
    small: float = 0.1,
) -> Callable[[Mapping[str, Any]], dict[str, dict[str, Array]]]:
    """Jitted ``stacked_params -> {layer: {stat: (S,)}}`` for S stacked models."""

    def one(params: Mapping[str, Any]) -> dict[str, dict[str, Array]]:
        return stats.layer_stats(params, granularity, layers=layers, near=near, small=small)

    return jax.jit(jax.vmap(one))


def flatten(per_layer: Mapping[str, Mapping[str, Any]]) -> dict[str, list]:
    """``{layer: {stat: (S,)}}`` -> ``{"stat/layer": [S floats]}``, the metrics-record keys."""
    return {f"{stat}/{layer}": np.asarray(v, np.float64).tolist()
            for layer, row in per_layer.items() for stat, v in row.items()}


def tracker(
    granularity: str = "kernel",
    *,
    layers: Sequence[str] | None = None,
    near: float = 0.9,
    small: float = 0.1,
) -> Callable[[int, Mapping[str, Any]], dict[str, list]]:
    """An ``on_epoch(epoch, states)`` for :func:`nets.train.fit`: the conv statistics of
    all S models, as ``{"fuzziness/conv1": [S], "minmax_index/conv1": [S], ...}``."""
    fn = stacked_stats(granularity, layers=layers, near=near, small=small)

    def on_epoch(epoch: int, states: Mapping[str, Any]) -> dict[str, list]:
        return flatten(jax.device_get(fn(states["params"])))

    return on_epoch
