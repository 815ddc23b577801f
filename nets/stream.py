"""Batches of a host-kept dataset fed to the device ahead of use.

``nets.train`` keeps the whole training set on the device and gathers every batch there.
A dataset that does not fit the device stays in host memory (numpy arrays, or
``np.memmap`` for one larger than that) and :func:`batches` hands it over one batch at a
time: the host gathers batch ``i + prefetch`` and starts its transfer
(``jax.device_put`` returns at once) while the device still runs the step of batch
``i``, the pattern of ``flax.jax_utils.prefetch_to_device``. Jitted steps are dispatched
asynchronously too, so the host's gathers overlap the device's work.

The order of an epoch is the one training uses for a model with key ``key``
(:func:`epoch_order`, as in ``nets.train.EpochFn``): the rows of
``permutation(fold_in(key, epoch), N)`` cut into ``N // B`` batches of ``B``, the last
partial batch dropped. The batches therefore equal the in-memory ones, row for row.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from nets.data import Dataset
from nets.sharding import split_rows

__all__ = ["batches", "epoch_order"]


def epoch_order(key: jax.Array | None, epoch: int, n: int, batch_size: int,
                drop_remainder: bool = True) -> np.ndarray | list[np.ndarray]:
    """Row indices of one epoch's batches, on the host.

    ``key`` ``None``: rows in order. One key: a ``(steps, B)`` array from
    ``permutation(fold_in(key, epoch), n)``. Stacked keys ``(S, ...)`` (a run's
    ``states["key"]``): ``(S, steps, B)``, model ``s`` in the order of key ``s``.
    ``drop_remainder=False`` with one key (or none) keeps a last partial batch: the
    result is then a list of index arrays, one per batch.
    """
    if batch_size < 1 or n < 1:
        raise ValueError(f"batch_size and the number of rows must be >= 1, got "
                         f"{batch_size} and {n}")
    if key is None:
        perm = np.arange(n)
    else:
        one = lambda k: jax.random.permutation(jax.random.fold_in(k, epoch), n)
        perm = np.asarray(jax.vmap(one)(key) if _stacked(key) else one(key))
    steps = n // batch_size
    if drop_remainder or n % batch_size == 0:
        if steps == 0:
            raise ValueError(f"{n} rows make no full batch of {batch_size}")
        full = perm[..., : steps * batch_size]
        return full.reshape(*perm.shape[:-1], steps, batch_size)
    if perm.ndim > 1:
        raise ValueError("drop_remainder=False needs one key (or None), not stacked keys")
    return [perm[i: i + batch_size] for i in range(0, n, batch_size)]


def batches(
    dataset: Dataset,
    batch_size: int,
    key: jax.Array | None = None,
    *,
    epoch: int = 0,
    prefetch: int = 2,
    mesh: Mesh | None = None,
    drop_remainder: bool = True,
) -> Iterator[tuple[jax.Array, jax.Array]]:
    """One epoch of ``(images, labels)`` device batches of a host-kept ``dataset``.

    The order is :func:`epoch_order` of ``key`` and ``epoch``: ``None`` walks the rows
    in order (evaluation; ``drop_remainder=False`` keeps a last smaller batch, which
    compiles a second shape). Stacked keys ``(S, ...)`` give ``(S, B, ...)`` batches,
    model ``s``'s rows in its own order, as ``nets.train`` gathers them.

    ``prefetch`` batches are gathered and sent beyond the one being used (0: none). With
    ``mesh`` every batch is placed split over devices: its rows over the ``data`` axis
    (:func:`nets.sharding.split_rows`), or, for stacked keys, ``P("models", "data")`` of
    a ``nets.sharding.model_mesh``; otherwise it goes to the default device.
    """
    if prefetch < 0:
        raise ValueError(f"prefetch must be >= 0, got {prefetch}")
    images, labels = dataset.images, dataset.labels
    order = epoch_order(key, epoch, len(labels), batch_size, drop_remainder)
    stacked = key is not None and _stacked(key)
    if stacked:
        order = np.swapaxes(order, 0, 1)  # (steps, S, B): step i gathers every model's rows
    place = _placement(mesh, stacked)

    queue: collections.deque = collections.deque()
    for idx in order:
        queue.append(place((images[idx], labels[idx])))
        if len(queue) > prefetch:
            yield queue.popleft()
    while queue:
        yield queue.popleft()


def _placement(mesh: Mesh | None, stacked: bool):
    if mesh is None:
        return jax.device_put
    if stacked:
        return lambda batch: jax.device_put(batch, NamedSharding(mesh, P("models", "data")))
    return lambda batch: split_rows(batch, mesh)


def _stacked(key: Any) -> bool:
    """Whether ``key`` is several keys: raw ``uint32`` keys are ``(2,)`` alone,
    typed keys (``jax.random.key``) are scalars alone."""
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return np.ndim(key) == 1
    return np.ndim(key) == 2
