"""Batched inference: logits and accuracy of one model or of S stacked models.

Inputs are processed in fixed-size chunks with ``lax.map`` so that memory stays bounded
for any dataset size and the compiled function depends only on the chunk shape.

With several devices the rows are split over :func:`nets.sharding.data_mesh` (padded to
a multiple of the device count) and each device runs the chunked loop on its own rows
(``jax.shard_map``); the parameters are replicated. Rows are independent, so the logits
are those of one device and the accuracy is the same count over the same rows. Placing
the rows with ``split_rows`` and letting XLA partition a plain ``jit`` is not enough
here: ``vmap`` over the S models merges the model and row axes into one convolution
batch, and XLA's SPMD partitioner then all-gathers the rows and runs every device on
all of them (seen in the compiled LeNet-5 program on 4 host devices).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from nets.batching import chunked
from nets.data import Dataset
from nets.distributed import fetch
from nets.models import Net
from nets.sharding import data_mesh, replicate, row_multiple, split_rows

Array = jax.Array


def _chunked_logits(net: Net, params, images: Array, chunk: int) -> Array:
    return chunked(lambda x: net.apply({"params": params}, x), images, min(chunk, images.shape[0]))


_logits = jax.jit(_chunked_logits, static_argnames=("net", "chunk"))


@functools.partial(jax.jit, static_argnames=("net", "chunk", "mesh"))
def _split_logits(net: Net, params, images: Array, chunk: int, mesh: Mesh) -> Array:
    """:func:`_chunked_logits` on each device's rows (``chunk`` rows per device per step)."""
    return jax.shard_map(functools.partial(_chunked_logits, net, chunk=chunk), mesh=mesh,
                         in_specs=(P(), P("data")), out_specs=P("data"),
                         check_vma=False)(params, images)


def _traced(*trees) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(trees))


def _pad(a, rows: int, fill):
    """``a`` with ``rows`` rows of ``fill`` appended (numpy stays numpy: no device work)."""
    if not rows:
        return a
    lib = np if isinstance(a, np.ndarray) else jnp
    return lib.concatenate([a, lib.full((rows, *a.shape[1:]), fill, a.dtype)])


def logits(net: Net, params, images: Array, chunk: int = 512) -> Array:
    """Logits of one model for ``images`` (N, H, W, C), computed ``chunk`` rows at a time
    (per device: with D devices the rows are split D ways, ``chunk`` rows each per step).
    Inside a caller's ``jit`` / ``vmap`` it is the plain chunked loop."""
    if _traced(params, images):
        return _logits(net, params, images, chunk)
    mesh = data_mesh()
    parts = row_multiple(mesh)
    if parts == 1:
        return _logits(net, params, jnp.asarray(images), chunk)
    n = images.shape[0]
    padded = _pad(images, -n % parts, 0)
    out = _split_logits(net, replicate(params, mesh), split_rows(padded, mesh), chunk, mesh)
    return out[:n]


@functools.partial(jax.jit, static_argnames=("net", "chunk", "mesh"))
def _stacked_accuracy(net: Net, params, images: Array, labels: Array, chunk: int,
                      mesh: Mesh | None) -> Array:
    """(S,) accuracy; rows labelled -1 (padding) count for nothing."""

    def hits(params, images, labels):  # (S,) correct rows among these
        def one(p):
            pred = _chunked_logits(net, p, images, chunk).argmax(-1)
            return jnp.sum(pred == labels)

        counts = jax.vmap(one)(params)
        return counts if mesh is None else jax.lax.psum(counts, "data")

    if mesh is not None:
        hits = jax.shard_map(hits, mesh=mesh, in_specs=(P(), P("data"), P("data")),
                             out_specs=P(), check_vma=False)
    return hits(params, images, labels) / jnp.sum(labels >= 0)


def placed(data: Dataset) -> Dataset:
    """``data`` on the devices as :func:`accuracy` wants it: rows padded to a multiple of
    the device count (label -1, never predicted) and split over them. Pass the result to
    :func:`accuracy` every epoch and nothing is copied again (``device_put`` of an array
    already placed so is free); a host ``Dataset`` is copied on every call."""
    mesh = data_mesh()
    parts = row_multiple(mesh)
    if parts == 1:
        return data._replace(images=jnp.asarray(data.images), labels=jnp.asarray(data.labels))
    pad = -data.images.shape[0] % parts
    rows = (_pad(data.images, pad, 0), _pad(data.labels, pad, -1))
    images, labels = split_rows(rows, mesh)
    return data._replace(images=images, labels=labels)


def accuracy(net: Net, stacked_params, data: Dataset, chunk: int = 512) -> np.ndarray:
    """Top-1 test accuracy of each of S stacked models: shape (S,). With several devices
    each one evaluates its share of the rows (``chunk`` rows per step); pass
    :func:`placed` data to keep the test set on the devices between calls."""
    data = placed(data)
    mesh = data_mesh()
    if row_multiple(mesh) == 1:
        return fetch(_stacked_accuracy(net, stacked_params, data.images, data.labels, chunk,
                                       None))
    return fetch(_stacked_accuracy(net, replicate(stacked_params, mesh), data.images,
                                   data.labels, chunk, mesh))
