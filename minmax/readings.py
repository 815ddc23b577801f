"""Readings of "interval": the statistics and the penalty of each, for S stacked models.

Seed 000's abstract speaks of the weights moving away from "their centers of intervals"
without saying what the interval is. Three readings (this project's, each with its
formulas in its module):

* ``group`` (:mod:`minmax.stats`): the spread of a group of weights at one moment (a
  kernel slice, a filter, a layer): ``[min, max]`` of the group;
* ``trajectory`` (:mod:`minmax.trajectory`): each weight's running ``[min, max]`` over
  training, with a random-walk baseline of the same step sizes;
* ``init`` (:mod:`minmax.init_support`): the initializer's support ``[-b, b]``.

:func:`readings_tracker` is an ``on_epoch`` for :func:`nets.train.fit` giving every
reading's statistics per conv layer for all S models (keys ``reading/stat/layer``);
:func:`penalties` is a vector regularizer, one penalty per reading, for per-model weight
vectors (``reg_weights`` of shape (S, R)): one vmapped run trains a penalty of each
reading next to a shared unregularized baseline.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from minmax import init_support, stats, trajectory
from minmax.regularizer import fuzziness_penalty

Array = jax.Array
READINGS = ("group", "trajectory", "init")
STATS = {"group": stats.STATS, "trajectory": trajectory.STATS, "init": init_support.STATS}


def check(readings: Sequence[str]) -> tuple[str, ...]:
    """``readings`` as a tuple, or a ``ValueError`` naming an unknown or repeated one."""
    readings = tuple(readings)
    bad = [r for r in readings if r not in READINGS]
    if bad or not readings or len(set(readings)) != len(readings):
        raise ValueError(f"readings must be distinct, not empty and from {READINGS}, "
                         f"got {readings}")
    return readings


def step_tracker(readings: Sequence[str]) -> trajectory.TrajectoryTracker | None:
    """The :class:`nets.train.StepTracker` the readings need (``trajectory``: the running
    ranges of every conv layer), else ``None``."""
    return trajectory.TrajectoryTracker() if "trajectory" in check(readings) else None


def reading_stats(params: Mapping[str, Any], track: Mapping[str, Any] | None,
                  readings: Sequence[str] = READINGS, granularity: str = "kernel", *,
                  near: float = 0.9, small: float = 0.1) -> dict[str, dict[str, dict[str, Array]]]:
    """``{reading: {layer: {stat: scalar}}}`` of one model (``track``: its
    ``state["track"]``, needed for ``trajectory``)."""
    out = {}
    for r in check(readings):
        if r == "group":
            out[r] = {name: stats.kernel_stats(w, granularity, near=near, small=small)
                      for name, w in stats.conv_kernels(params).items()}
        elif r == "trajectory":
            if track is None:
                raise ValueError("the trajectory reading needs the state's track "
                                 "(train with step_tracker=readings.step_tracker(...))")
            out[r] = trajectory.trajectory_stats(params, track, near=near)
        else:
            out[r] = init_support.init_stats(params, near=near)
    return out


def flatten(per_reading: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, list]:
    """``{reading: {layer: {stat: (S,)}}}`` -> ``{"reading/stat/layer": [S floats]}``."""
    return {f"{r}/{stat}/{layer}": np.asarray(v, np.float64).tolist()
            for r, per_layer in per_reading.items() for layer, row in per_layer.items()
            for stat, v in row.items()}


def readings_tracker(readings: Sequence[str] = READINGS, granularity: str = "kernel", *,
                     near: float = 0.9, small: float = 0.1
                     ) -> Callable[[int, Mapping[str, Any]], dict[str, list]]:
    """An ``on_epoch(epoch, states)`` for :func:`nets.train.fit`: every reading's
    statistics of every conv layer for all S models, ``{"reading/stat/layer": [S]}``
    (one jitted, vmapped call)."""
    readings = check(readings)
    needs_track = "trajectory" in readings

    def one(params, track):
        return reading_stats(params, track, readings, granularity, near=near, small=small)

    fn = jax.jit(jax.vmap(one))

    def on_epoch(epoch: int, states: Mapping[str, Any]) -> dict[str, list]:
        track = states["track"] if needs_track else None
        return flatten(jax.device_get(fn(states["params"], track)))

    return on_epoch


def penalties(readings: Sequence[str] = READINGS, layers: Sequence[str] | None = None,
              granularity: str = "kernel", *, stop_gradient: bool = True):
    """``(params, track) -> (R,)``: the penalty of each reading, in the order of
    ``readings`` (group: :func:`minmax.regularizer.fuzziness_penalty`; trajectory:
    :func:`minmax.trajectory.trajectory_penalty`; init:
    :func:`minmax.init_support.init_penalty`). ``uses_track`` when ``trajectory`` is one."""
    readings = check(readings)
    fns = {"group": fuzziness_penalty(layers, granularity, stop_gradient=stop_gradient),
           "trajectory": trajectory.trajectory_penalty(layers),
           "init": init_support.init_penalty(layers)}

    def penalty(params: Mapping[str, Any], track: Mapping[str, Any] | None = None) -> Array:
        return jnp.stack([fns[r](params, track) if r == "trajectory" else fns[r](params)
                          for r in readings])

    if "trajectory" in readings:
        penalty.uses_track = True  # type: ignore[attr-defined]
    return penalty
