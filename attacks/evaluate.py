"""Robust accuracy of a model over an eps grid, for a list of attacks, in one call.

* Budgeted attacks (FGSM, BIM, PGD, MI-FGSM, APGD, APGD-T, Square) run once per eps;
  the eps grid is a ``vmap`` inside one jitted program per attack.
* AutoAttack runs once per eps on the host (:mod:`attacks.autoattack`: each member only
  on the examples still robust; with several devices each of its calls split over them).
* Minimal-perturbation attacks (DeepFool, CW-L2, FAB, FAB-T) run once, unconstrained; an example
  counts as broken at eps when the attack succeeded with ||delta|| <= eps.

Data go through in fixed-size chunks (the last one padded), so memory is bounded and
each attack compiles once whatever the dataset size. With several devices each chunk's
rows are split over them (:func:`nets.sharding.data_mesh`, ``jax.shard_map``: every
device attacks its own rows, the chunk a multiple of the device count). The default
chunk is :data:`CPU_CHUNK` on CPU (with :mod:`nets.autotune` on and one device, the
faster per example of :data:`CPU_CHUNKS`, timed once per machine: :func:`_tuned_chunk`);
elsewhere all rows, unless the device's free memory
(``memory_stats``) holds fewer by XLA's count of the compiled call's buffers
(:func:`attacks.common.program_bytes`). Every example draws its randomness
from its own key (``attacks.common.example_keys``), so the results do not depend on the
chunk size. Per example, each attack reports whether it is still correctly classified at
each eps (``correct``, the robust-correct mask from which the accuracy is the mean over
examples) and its minimal eps: the smallest grid eps that broke the example (0 if it is
misclassified clean, inf if no grid eps did; for minimal attacks the measured norm itself).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from attacks.apgd import apgd, apgd_t
from attacks.autoattack import autoattack
from attacks.common import (
    MEMORY_FRACTION,
    Array,
    Bounds,
    LogitsFn,
    as_pytree_fn,
    example_keys,
    free_memory,
    program_bytes,
    rows_that_fit,
)
from attacks.fab import fab
from attacks.gradient import bim, fgsm, mifgsm, pgd
from attacks.minimal import carlini_wagner_l2, deepfool
from attacks.outcome import distance
from attacks.square import square
from nets import autotune, xla
from nets.batching import pad_rows
from nets.sharding import data_mesh, replicate, row_multiple, split_rows

# Examples per jitted call on CPU. The budgeted attacks vmap the eps grid, so a call
# attacks chunk x E inputs; small chunks keep them in cache. CPU seconds per seed for all
# seven attacks of the attacks lens (LeNet-5, 200 images, 8 linf / 7 l2 eps, 20 steps,
# 2 cores): 24.6 s in chunks of 16, 29 s of 32, 37 s of 64 (8 to 16 about equal).
CPU_CHUNK = 16
# The CPU chunks :mod:`nets.autotune` times against each other (another CPU's caches may
# favour the larger one).
CPU_CHUNKS = (CPU_CHUNK, 32)


@dataclasses.dataclass(frozen=True)
class Attack:
    """An attack function with its fixed settings.

    ``minimal`` attacks (DeepFool, CW-L2, FAB) run once unconstrained and their measured
    norm is compared with each eps; an ``ensemble`` (AutoAttack) runs once per eps on the
    host (each member sees only the examples still robust, which a vmap over eps cannot
    express); the others run on the whole eps grid in one vmapped program.
    """

    fn: Callable[..., Array]
    norm: str = "linf"
    minimal: bool = False
    ensemble: bool = False
    takes_norm: bool = True  # CW-L2 is l2 only and has no norm argument
    kwargs: tuple[tuple[str, object], ...] = ()

    def __call__(self, logits_fn, x, y, *, eps, key, targeted=False, bounds=(0.0, 1.0)):
        kw = {"norm": self.norm} if self.takes_norm else {}
        if targeted:  # only passed when asked: APGD-T and FAB-T choose their own targets
            kw["targeted"] = True
        kw.update(self.kwargs)
        out = self.fn(logits_fn, x, y, eps=eps, key=key, bounds=bounds, **kw)
        return jnp.asarray(out.x_adv) if self.ensemble else out


def make_attack(name: str, **kwargs) -> Attack:
    """An attack from the registry by name, with settings (e.g. ``steps=40``)."""
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; choose from {sorted(ATTACKS)}")
    base = ATTACKS[name]
    return dataclasses.replace(base, kwargs=tuple(sorted({**dict(base.kwargs), **kwargs}.items())))


ATTACKS: dict[str, Attack] = {
    "fgsm": Attack(fgsm, "linf"),
    "bim": Attack(bim, "linf"),
    "pgd": Attack(pgd, "linf"),
    "mifgsm": Attack(mifgsm, "linf"),
    "pgd_l2": Attack(pgd, "l2"),
    "fgm_l2": Attack(fgsm, "l2"),
    "deepfool": Attack(deepfool, "l2", minimal=True),
    "deepfool_linf": Attack(deepfool, "linf", minimal=True),
    "cw_l2": Attack(carlini_wagner_l2, "l2", minimal=True, takes_norm=False),
    "apgd_ce": Attack(apgd, "linf", kwargs=(("loss", "ce"),)),
    "apgd_dlr": Attack(apgd, "linf", kwargs=(("loss", "dlr"),)),
    "apgd_t": Attack(apgd_t, "linf"),
    "apgd_ce_l2": Attack(apgd, "l2", kwargs=(("loss", "ce"),)),
    "apgd_t_l2": Attack(apgd_t, "l2"),
    "fab": Attack(fab, "linf", minimal=True),
    "fab_t": Attack(fab, "linf", minimal=True, kwargs=(("targeted", True),)),
    "fab_l2": Attack(fab, "l2", minimal=True),
    "square": Attack(square, "linf"),
    "square_l2": Attack(square, "l2"),
    "autoattack": Attack(autoattack, "linf", ensemble=True),
    "autoattack_l2": Attack(autoattack, "l2", ensemble=True),
}


@functools.partial(xla.jit, static_argnames=("attack", "targeted", "bounds"))
def _broken(fn, attack: Attack, x, y, eps_grid, key, *, targeted, bounds):
    """(E, n) bool: example broken at each eps; (n,) norm of the perturbation used.
    ``key``: one key per example."""
    clean_ok = fn(x).argmax(-1) == y
    if attack.minimal:
        xa = attack(fn, x, y, eps=jnp.inf, key=key, targeted=targeted, bounds=bounds)
        pred = fn(xa).argmax(-1)
        hit = pred != y
        dist = jnp.where(hit, distance(xa - x, attack.norm), jnp.inf)
        broken = ~clean_ok[None] | (dist[None] <= eps_grid[:, None])
        return broken, jnp.where(clean_ok, dist, 0.0)

    def at(eps):
        xa = attack(fn, x, y, eps=eps, key=key, targeted=targeted, bounds=bounds)
        return ~clean_ok | (fn(xa).argmax(-1) != y)

    broken = jax.vmap(at)(eps_grid)
    first = jnp.argmax(broken, axis=0)
    dist = jnp.where(broken.any(0), eps_grid[first], jnp.inf)
    return broken, dist


@functools.partial(xla.jit, static_argnames=("attack", "targeted", "bounds", "mesh"))
def _split_broken(fn, attack: Attack, x, y, eps_grid, key, *, targeted, bounds, mesh: Mesh):
    """:func:`_broken` with the rows split over ``mesh``'s ``data`` axis, each device
    attacking its own rows. ``shard_map``, not a ``jit`` of split inputs: the ``vmap`` over
    the eps grid merges eps and rows into one convolution batch, which XLA's partitioner
    all-gathers (every device then attacks every row; seen in LeNet-5's PGD program).
    Examples are independent and keyed by their own keys, so each device's rows get what
    they get in one device's chunk."""

    def local(fn, x, y, eps_grid, key):
        return _broken(fn, attack, x, y, eps_grid, key, targeted=targeted, bounds=bounds)

    return jax.shard_map(local, mesh=mesh, in_specs=(P(), P("data"), P("data"), P(), P("data")),
                         out_specs=(P(None, "data"), P("data")), check_vma=False)(
        fn, x, y, eps_grid, key)


def _chunk_rows(chunk: int | None, n: int, parts: int,
                call_bytes: Callable[[int], int | None]) -> int:
    """Rows per jitted call, a multiple of the ``parts`` devices that share each call.

    ``chunk`` if given (rounded up); by default :data:`CPU_CHUNK` on CPU, elsewhere all
    ``n`` rows unless the first device's free memory (``memory_stats``) holds fewer:
    ``call_bytes(rows)`` is the compiled call's need per device (:func:`program_bytes`;
    compiling the whole batch costs nothing extra when it fits: the call reuses it),
    and when it is too much the rows are cut in proportion (the need grows linearly
    with a device's rows; counting the fixed part, e.g. the parameters, per row errs on
    the safe side)."""
    if chunk is not None and chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    whole = -(-n // parts) * parts
    if chunk is not None:
        return min(-(-chunk // parts) * parts, whole)
    if xla.is_cpu():
        return min(-(-CPU_CHUNK // parts) * parts, whole)
    free = free_memory()
    need = None if free is None else call_bytes(whole)
    if need is None or need <= free * MEMORY_FRACTION:
        return whole
    return parts * rows_that_fit(need / (whole // parts), free)


def _tuned_chunk(fn, attack: Attack, rows: tuple, grid, bounds: Bounds) -> int:
    """The CPU chunk of one device: :data:`CPU_CHUNK`, or with :mod:`nets.autotune` on
    the size in :data:`CPU_CHUNKS` with the least time per example (each timed on the
    first rows, padded, by :func:`nets.autotune.choose_size`).

    Keyed by the machine, the attack kind (its function and norm), the input shape and
    dtype and the eps-grid length; not by the model, its parameters or the attack's
    settings (steps, loss), which scale both sizes alike: one timing, and one compile of
    the size not chosen, per attack kind and input shape on a machine, recorded for
    later runs."""
    x = rows[0]
    kind = f"{attack.fn.__module__}.{attack.fn.__name__}/{attack.norm}"
    key = (f"attacks.robust_accuracy.chunk|{kind}|x{tuple(x.shape[1:])}|{x.dtype}"
           f"|E{grid.shape[0]}")
    head, _ = pad_rows(tuple(a[:max(CPU_CHUNKS)] for a in rows), max(CPU_CHUNKS), mode="edge")

    def run(size: int):
        x, y, k = (a[:size] for a in head)
        return _broken(fn, attack, x, y, grid, k, targeted=False, bounds=bounds)

    return autotune.choose_size(key, run, CPU_CHUNKS, CPU_CHUNK)


def _call_bytes(fn, attack: Attack, rows: tuple, grid, bounds: Bounds, mesh: Mesh, size: int):
    """:func:`program_bytes` of one call of ``size`` rows (compiled, not run)."""
    split = row_multiple(mesh) > 1
    sharding = NamedSharding(mesh, P("data")) if split else None
    x, y, k = (jax.ShapeDtypeStruct((size, *a.shape[1:]), a.dtype, sharding=sharding)
               for a in rows)
    if split:
        lowered = _split_broken.compiled().lower(fn, attack, x, y, grid, k, targeted=False,
                                                 bounds=bounds, mesh=mesh)
    else:
        lowered = _broken.compiled().lower(fn, attack, x, y, grid, k, targeted=False,
                                           bounds=bounds)
    return program_bytes(lowered.compile())


def _ensemble_broken(fn, attack: Attack, x, y, grid, key, bounds,
                     mesh: Mesh | None) -> np.ndarray:
    """(E, N) broken masks of an ensemble (AutoAttack), one host call per eps > 0 with the
    same per-example keys as the other attacks; eps = 0 breaks the misclassified only.
    ``mesh`` (several devices): every call of every member split over its rows."""
    rows = []
    for eps in np.asarray(grid):
        if eps == 0:
            rows.append(np.asarray(fn(x).argmax(-1) != y))
            continue
        res = attack.fn(fn, x, y, eps=float(eps), norm=attack.norm, bounds=bounds,
                        key=example_keys(key, x.shape[0]), mesh=mesh, **dict(attack.kwargs))
        rows.append(~res.robust)
    return np.stack(rows)


def robust_accuracy(
    logits_fn: LogitsFn,
    x: Array,
    y: Array,
    attacks: Mapping[str, Attack],
    eps_grid: Mapping[str, Sequence[float]] | Sequence[float],
    *,
    key: Array,
    chunk: int | None = None,
    bounds: Bounds = (0.0, 1.0),
    progress: Callable[[str], None] | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Untargeted robust accuracy, per example and on average, for each attack over its
    eps grid.

    ``eps_grid`` is one grid for all attacks or ``{norm: grid}`` (e.g. linf and l2 grids);
    grids must be sorted ascending. Returns, for each attack name::

        {"eps": (E,), "correct": (E, N) bool, "accuracy": (E,), "min_eps": (N,)}

    ``correct[e, i]``: example i is classified correctly and the attack with budget
    ``eps[e]`` did not change that; ``accuracy = correct.mean(1)``. Example i's random
    start (PGD) uses the key ``fold_in(key, i)``, so nothing depends on ``chunk`` (examples
    per jitted call, rounded up to a multiple of the device count; default
    :data:`CPU_CHUNK` on CPU, or with :mod:`nets.autotune` on and one device the faster of
    :data:`CPU_CHUNKS` (:func:`_tuned_chunk`); elsewhere all of them or as many as the
    device's free memory holds) nor on the device count.
    """
    fn = as_pytree_fn(logits_fn)
    x, y = jnp.asarray(x), jnp.asarray(y)
    n = x.shape[0]
    mesh = data_mesh()
    parts = row_multiple(mesh)
    keys = example_keys(key, n)
    bounds = tuple(map(float, bounds))
    placed_fn = fn if parts == 1 else replicate(fn, mesh)
    out = {}
    for name, attack in attacks.items():
        grid = eps_grid[attack.norm] if isinstance(eps_grid, Mapping) else eps_grid
        grid = jnp.asarray(grid, x.dtype)
        if bool(jnp.any(jnp.diff(grid) < 0)):
            raise ValueError(f"eps grid for {name} must be ascending, got {grid}")
        if attack.ensemble:
            broken = _ensemble_broken(placed_fn, attack, x, y, grid, key, bounds,
                                      mesh if parts > 1 else None)
            hit = broken.any(0)
            min_eps = np.where(hit, np.asarray(grid)[np.argmax(broken, 0)], np.inf)
        else:
            rows = chunk
            if (chunk is None and parts == 1 and n > CPU_CHUNK and xla.is_cpu()
                    and autotune.is_enabled()):
                rows = _tuned_chunk(fn, attack, (x, y, keys), grid, bounds)
            size = _chunk_rows(rows, n, parts, functools.partial(
                _call_bytes, placed_fn, attack, (x, y, keys), grid, bounds, mesh))
            broken, min_eps = _chunked_broken(placed_fn, attack, (x, y, keys), grid, size,
                                              bounds, mesh)
        correct = ~broken
        out[name] = {
            "eps": np.asarray(grid),
            "correct": correct,
            "accuracy": correct.mean(1),
            "min_eps": min_eps,
        }
        if progress is not None:
            progress(name)
    return out


def _chunked_broken(fn, attack: Attack, rows: tuple, grid, size: int, bounds: Bounds,
                    mesh: Mesh) -> tuple[np.ndarray, np.ndarray]:
    """(E, N) broken masks and (N,) min eps of :func:`_broken` in calls of ``size`` rows,
    each split over ``mesh`` when it has several devices. The rows are padded to whole
    calls (one compiled program per attack); padded rows repeat the first example, so
    they are valid inputs, and are dropped."""
    n = rows[0].shape[0]
    padded, _ = pad_rows(rows, size, mode="edge")
    parts = []
    for i in range(0, padded[0].shape[0], size):
        x, y, k = (a[i:i + size] for a in padded)
        if row_multiple(mesh) == 1:
            parts.append(_broken(fn, attack, x, y, grid, k, targeted=False, bounds=bounds))
        else:
            x, y, k = split_rows((x, y, k), mesh)
            parts.append(_split_broken(fn, attack, x, y, grid, k, targeted=False,
                                       bounds=bounds, mesh=mesh))
    broken = np.concatenate([np.asarray(b) for b, _ in parts], axis=1)[:, :n]
    return broken, np.concatenate([np.asarray(d) for _, d in parts])[:n]
