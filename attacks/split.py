"""One jitted call of an attack with its rows split over the devices (issue 18).

The host loops of the ensemble (AutoAttack, APGD-T's targets, FAB-T's targets and
restarts) call jitted programs on the still-robust rows through
:func:`attacks.common.run_bucketed`. Inside a :func:`rows_over` block each such call,
given as a ``functools.partial`` of the program and its shared arguments, runs as one
``jax.shard_map`` over the mesh's ``data`` axis: every device attacks its own rows (the
call padded to a multiple of the device count by repeating its first row) and the shared
arguments (the model, eps, a target index) are replicated. ``shard_map``, not a ``jit``
of split inputs: a ``vmap`` that merges rows with another axis (restarts, FAB's classes)
into one convolution batch is all-gathered by XLA's partitioner (see
:func:`attacks.evaluate._split_broken`). Examples are independent and draw from their
own keys, so a device's rows get what they get in one device's call (up to the model's
rounding in calls of another size).

The partial is taken apart into arrays (jit arguments) and everything else (static: the
program, ints, strings, floats, the pytree structure), so a call of the same program
with new arrays of the same shapes reuses the compiled one. Other callables (closures)
are called as they are, on one device.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from nets import xla
from nets.sharding import replicate, row_multiple, split_rows

_MESH: contextvars.ContextVar[Mesh | None] = contextvars.ContextVar("rows_over", default=None)
_ARRAY = object()  # marks where an array leaf of the partial goes back


@contextlib.contextmanager
def rows_over(mesh: Mesh | None) -> Iterator[None]:
    """Within the block, bucketed calls (:func:`attacks.common.run_bucketed`) of a
    ``functools.partial`` split their rows over ``mesh`` (``None`` or one device: no
    split)."""
    token = _MESH.set(mesh if mesh is not None and row_multiple(mesh) > 1 else None)
    try:
        yield
    finally:
        _MESH.reset(token)


def row_mesh() -> Mesh | None:
    """The mesh of the enclosing :func:`rows_over` block with several devices, else None."""
    return _MESH.get()


def splittable(attack: Callable) -> bool:
    """Whether :func:`split_call` can run ``attack``: a ``functools.partial`` whose
    non-array leaves are hashable (they become static arguments)."""
    if not isinstance(attack, functools.partial):
        return False
    try:
        hash(_parts(attack)[1:])
    except TypeError:
        return False
    return True


def _parts(attack: functools.partial) -> tuple[list, Any, tuple]:
    """(array leaves, pytree structure, static leaves with :data:`_ARRAY` at the arrays)
    of the partial's bound arguments."""
    leaves, treedef = jax.tree.flatten((attack.args, attack.keywords))
    is_array = [isinstance(a, (jax.Array, np.ndarray, np.generic)) for a in leaves]
    arrays = [a for a, arr in zip(leaves, is_array) if arr]
    static = tuple(_ARRAY if arr else a for a, arr in zip(leaves, is_array))
    return arrays, treedef, static


def split_call(attack: functools.partial, rows: tuple, mesh: Mesh):
    """``attack(*rows)`` (every row array with the batch axis first; the output a pytree
    of per-row arrays) with the rows split over ``mesh``'s ``data`` axis."""
    n = rows[0].shape[0]
    parts = row_multiple(mesh)
    size = -(-n // parts) * parts
    if size != n:  # pad by repeating the first row: valid inputs, dropped below
        take = np.where(np.arange(size) < n, np.arange(size), 0)
        rows = tuple(a[take] for a in rows)
    arrays, treedef, static = _parts(attack)
    out = _split(replicate(arrays, mesh), split_rows(tuple(rows), mesh), func=attack.func,
                 treedef=treedef, static=static, mesh=mesh)
    return out if size == n else jax.tree.map(lambda a: a[:n], out)


@functools.partial(xla.jit, static_argnames=("func", "treedef", "static", "mesh"))
def _split(arrays, rows, *, func, treedef, static, mesh):
    def local(arrays, rows):
        it = iter(arrays)
        args, kwargs = jax.tree.unflatten(
            treedef, [next(it) if s is _ARRAY else s for s in static])
        return func(*args, *rows, **kwargs)

    return jax.shard_map(local, mesh=mesh, in_specs=(P(), P("data")), out_specs=P("data"),
                         check_vma=False)(arrays, rows)
