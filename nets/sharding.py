"""Meshes and placements that split work over devices.

Two meshes serve the whole toolkit:

* :func:`model_mesh` -- ``("models", "data")`` for training S stacked models: models
  split over ``gcd(S, D)`` devices, every model's batch over the rest;
* :func:`data_mesh` -- ``("data",)`` for row-parallel work (evaluation, attacks, SOM
  fits, weight sweeps, moments): the rows of a batch split over every device.

Placing the inputs with :func:`split_rows` (rows) and :func:`replicate` (parameters)
lets XLA's SPMD partitioner split a jitted computation and insert the reductions, so the
numbers equal those of one device up to float rounding -- as long as nothing merges the
rows with another axis: a ``vmap`` over models or eps values that joins the rows into
one convolution batch makes XLA all-gather them (every device then does all the work).
Row-independent work of that kind runs under ``jax.shard_map`` over ``("data",)``
(nets/evaluate.py, attacks/evaluate.py); :func:`device_blocks` gives each device its own
chunked block for a scan (SOM fits, weight sweeps). On one device every function here is
a plain transfer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from nets.batching import pad_rows

__all__ = ["data_devices", "data_mesh", "device_blocks", "local_data_mesh", "model_mesh", "replicate",
           "row_multiple", "split_rows"]


def data_devices(available: int, rows: int | None) -> int:
    """Devices on the ``data`` axis: the largest divisor of ``rows`` that is at most
    ``available`` (all of them when ``rows`` is ``None``). E.g. 4 devices and batch
    64: 4; batch 30: 3; batch 7: 1."""
    if rows is None:
        return available
    return max(d for d in range(1, available + 1) if rows % d == 0)


def model_mesh(num_models: int, batch_size: int | None = None,
               devices: Sequence[jax.Device] | None = None) -> Mesh:
    """The 2-D mesh ``("models", "data")`` of a run of S stacked models.

    ``models`` gets ``m = gcd(S, D)`` of the D devices (each trains S/m models), ``data``
    the largest ``d <= D // m`` that divides ``batch_size`` (:func:`data_devices`), which
    splits every batch of B into d parts of B/d. 1 model on 4 devices: (1, 4); 2 models:
    (2, 2); 4 models: (4, 1). A batch size that ``D // m`` does not divide falls back to
    fewer data devices, silently: the numbers are the same, only fewer devices work
    (batch 30 on 4 devices: (1, 3), one device idle). The mesh takes the first ``m * d``
    devices.
    """
    devices = list(jax.devices() if devices is None else devices)
    m = math.gcd(num_models, len(devices))
    d = data_devices(len(devices) // m, batch_size)
    return Mesh(np.asarray(devices[: m * d]).reshape(m, d), ("models", "data"))


def data_mesh(rows: int | None = None, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """The 1-D mesh ``("data",)`` over the first :func:`data_devices` devices that divide
    ``rows`` (all devices when ``rows`` is ``None``; pad the rows to
    :func:`row_multiple` to use them all)."""
    devices = list(jax.devices() if devices is None else devices)
    return Mesh(np.asarray(devices[: data_devices(len(devices), rows)]), ("data",))


def row_multiple(mesh: Mesh) -> int:
    """The number of rows a split batch must be a multiple of: the ``data`` axis size."""
    return mesh.shape["data"]


def split_rows(tree: Any, mesh: Mesh) -> Any:
    """Every leaf of ``tree`` placed split along axis 0 over the mesh's ``data`` axis
    (replicated along any other axis). Axis 0 must be a multiple of :func:`row_multiple`."""
    n = row_multiple(mesh)
    for leaf in jax.tree.leaves(tree):
        if np.shape(leaf)[0] % n:
            raise ValueError(f"{np.shape(leaf)[0]} rows cannot be split over {n} devices; "
                             f"pad them to a multiple of {n} (nets.batching.pad_rows)")
    return jax.device_put(tree, NamedSharding(mesh, P("data")))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Every leaf of ``tree`` placed whole on every device of the mesh."""
    return jax.device_put(tree, NamedSharding(mesh, P()))


def local_data_mesh(mesh: Mesh | None = None) -> Mesh:
    """``mesh``, or the ``("data",)`` mesh over every device of this process: each process
    of a multi-process run works on its own devices (all hold the same data)."""
    return data_mesh(devices=jax.local_devices()) if mesh is None else mesh


def device_blocks(tree: Any, chunk: int, mesh: Mesh) -> tuple[Any, jax.Array]:
    """Every leaf of ``tree`` (N, ...) as (D, C, c, ...) zero-padded chunks, block ``i`` on
    device ``i`` of the mesh's ``data`` axis, and a (D, C, c) mask of the real rows;
    c = min(chunk, rows per device).

    The rows are padded to a multiple of D and cut into D contiguous blocks first (a free
    reshape when they are already split over the devices), then each block is padded to a
    multiple of c, so every device scans only its own rows (SOM fits, weight sweeps)."""
    n_dev = row_multiple(mesh)
    tree, valid = pad_rows(tree, n_dev)
    blocks = jax.tree.map(lambda a: a.reshape(n_dev, -1, *a.shape[1:]), (tree, valid))
    c = min(chunk, jax.tree.leaves(blocks)[0].shape[1])
    (tree, valid), _ = jax.vmap(lambda t: pad_rows(t, c))(blocks)  # padding: valid False
    tree, valid = jax.tree.map(lambda a: a.reshape(n_dev, -1, c, *a.shape[2:]), (tree, valid))
    if n_dev > 1:
        tree, valid = jax.lax.with_sharding_constraint((tree, valid), NamedSharding(mesh, P("data")))
    return tree, valid
