"""AutoAttack (Croce & Hein, ICML 2020): an ensemble of parameter-free attacks, each run
only on the examples every earlier attack left robust, the first success kept.

Versions, as the reference (fra31/auto-attack, ``AutoAttack.set_version``) sets them:

* ``standard``: APGD-CE (1 restart), APGD-T (9 target classes), FAB-T (9 target
  classes), Square (5,000 queries); for l1, APGD-CE with 5 restarts, APGD-T with 5
  target classes and FAB-T, and no Square (it has no l1 version; the reference's
  large-eps l1 schedule is not reproduced);
* ``plus``: APGD-CE and APGD-DLR (5 restarts each), FAB (5 restarts), Square, APGD-T,
  FAB-T;
* ``rand``: APGD-CE and APGD-DLR (1 restart each). The reference averages 20 gradient
  draws (EOT) for randomized defenses; a ``logits_fn`` here is deterministic (it takes
  no key), so 20 draws would be 20 equal gradients, and this version runs without them;
* ``custom``: the attacks named in ``attacks`` (any of :data:`MEMBERS`), in that order.

Only examples classified correctly clean are attacked (the others count as broken, with
x_adv = x). Each member sees the still-robust examples in chunks of
:func:`attacks.common.bucket_sizes` (full chunks, the rest padded to a power of two;
APGD-T, FAB-T and Square re-pack the examples they have not broken yet between targets
or query segments), so each member compiles a few shapes at most, and every example uses
its own key (``fold_in(key, i)`` with i its index in the full batch), so an example's
result does not depend on which others are still robust (up to the model's rounding in
calls of another size).
Robust accuracy after the ensemble is therefore no higher than after any single member
run on its own with the same keys (a member can only remove examples from the robust set).

Several devices (``mesh``, e.g. :func:`nets.sharding.data_mesh`; ``robust_accuracy``
passes it): every jitted call of every member has its rows split over the mesh's ``data``
axis (:mod:`attacks.split`): APGD-CE, APGD-DLR and FAB as one ``shard_map`` per bucket;
APGD-T and FAB-T keep their host loops over targets and restarts, each call split;
Square runs as one program per bucket (its in-program form, the same per-example result
as the host-packed one, whose calls are closures :mod:`attacks.split` cannot take apart).
Per-example keys make the results those of one device.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from attacks.apgd import apgd, apgd_t
from attacks.common import (
    ALL_NORMS,
    Array,
    Bounds,
    LogitsFn,
    as_pytree_fn,
    check_args,
    check_inputs,
    per_example_keys,
    run_bucketed,
)
from attacks.fab import fab
from attacks.outcome import distance
from attacks.split import rows_over
from attacks.square import square
from nets.sharding import replicate, row_multiple

# Each member: (attack, its settings). Steps and queries are the reference's defaults.
MEMBERS: dict[str, tuple[Callable[..., Array], dict]] = {
    "apgd-ce": (apgd, {"loss": "ce", "steps": 100, "restarts": 1}),
    "apgd-dlr": (apgd, {"loss": "dlr", "steps": 100, "restarts": 1}),
    "apgd-t": (apgd_t, {"steps": 100, "n_target_classes": 9, "restarts": 1}),
    "fab": (fab, {"steps": 100, "restarts": 1}),
    "fab-t": (fab, {"steps": 100, "restarts": 1, "targeted": True, "n_target_classes": 9,
                    "robust_only": True}),
    "square": (square, {"queries": 5000, "p_init": 0.8, "restarts": 1}),
}

VERSIONS: dict[str, tuple[str, ...]] = {
    "standard": ("apgd-ce", "apgd-t", "fab-t", "square"),
    "plus": ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"),
    "rand": ("apgd-ce", "apgd-dlr"),
}

# Settings that differ from MEMBERS per (version, norm), as the reference's set_version.
_OVERRIDES: dict[tuple[str, str], dict[str, dict]] = {
    ("standard", "l1"): {"apgd-ce": {"restarts": 5}, "apgd-t": {"n_target_classes": 5}},
    ("plus", "linf"): {"apgd-ce": {"restarts": 5}, "apgd-dlr": {"restarts": 5},
                       "fab": {"restarts": 5}},
    ("plus", "l2"): {"apgd-ce": {"restarts": 5}, "apgd-dlr": {"restarts": 5},
                     "fab": {"restarts": 5}},
}

# Examples per call on CPU; elsewhere the still-robust examples are padded up to the next
# power of two (at most log2(N) + 1 shapes per member, each compiled once).
CPU_CHUNK = 128

# Members that take the still-robust examples as they are and pack them into chunks
# themselves (APGD-T and FAB-T per target, Square between query segments, each in
# attacks.common.bucket_sizes): they get the subset unpadded. The others get it in the
# calls of bucket_sizes (full chunks, the rest padded to a power of two).
_PACKS_ITSELF = frozenset({"apgd-t", "fab-t", "square"})


@dataclasses.dataclass(frozen=True)
class AutoAttackResult:
    """Per-example results (numpy, N rows) of one AutoAttack run.

    ``x_adv``: the first successful member's point (x where none succeeded);
    ``clean_correct``; ``robust``: still correct after every member; ``broken_by``: the
    name of the member that broke it ("" if robust, "clean" if misclassified clean);
    ``distance``: ||x_adv - x|| in ``norm``; ``robust_after``: robust accuracy after each
    member, in order; ``seconds``: wall time per member.
    """

    x_adv: np.ndarray
    clean_correct: np.ndarray
    robust: np.ndarray
    broken_by: np.ndarray
    distance: np.ndarray
    norm: str
    eps: float
    robust_after: dict[str, float]
    seconds: dict[str, float]

    @property
    def robust_accuracy(self) -> float:
        return float(self.robust.mean())


def members(version: str = "standard", norm: str = "linf",
            attacks: Sequence[str] | None = None) -> list[tuple[str, Callable, dict]]:
    """The (name, attack, settings) run by ``version`` for ``norm``, in order."""
    if version == "custom":
        if not attacks:
            raise ValueError("version='custom' needs attacks=(...) naming members from "
                             f"{sorted(MEMBERS)}")
        names = tuple(attacks)
    elif version in VERSIONS:
        if attacks is not None:
            raise ValueError(f"attacks= is only for version='custom'; version {version!r} "
                             f"runs {VERSIONS[version]}")
        names = VERSIONS[version]
        if norm == "l1":
            names = tuple(n for n in names if n != "square")
    else:
        raise ValueError(f"unknown version {version!r}; use one of "
                         f"{sorted(VERSIONS) + ['custom']}")
    unknown = [n for n in names if n not in MEMBERS]
    if unknown:
        raise ValueError(f"unknown AutoAttack members {unknown}; choose from {sorted(MEMBERS)}")
    if norm == "l1" and "square" in names:
        raise ValueError("square has no l1 version; drop it from attacks= or use linf / l2")
    extra = _OVERRIDES.get((version, norm), {})
    return [(n, MEMBERS[n][0], {**MEMBERS[n][1], **extra.get(n, {})}) for n in names]


def _bucket(n: int, chunk: int | None) -> int:
    """Examples per call: ``chunk`` (CPU default :data:`CPU_CHUNK`), else the next power of
    two >= n, so a shrinking robust set reuses a few compiled shapes."""
    if chunk is not None:
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        return chunk
    if jax.default_backend() == "cpu":
        return CPU_CHUNK
    return 1 << max(0, int(np.ceil(np.log2(max(n, 1)))))


def _keys(data: np.ndarray, typed: bool) -> Array:
    """Host key data back to device keys (typed keys re-wrapped)."""
    return jax.random.wrap_key_data(data) if typed else jnp.asarray(data)


def _call(attack: Callable[..., Array], fn, typed: bool, kw: dict, x: np.ndarray,
          y: np.ndarray, keys: np.ndarray) -> Array:
    """``attack`` on host rows (keys as host key data)."""
    return attack(fn, jnp.asarray(x), jnp.asarray(y), key=_keys(keys, typed), **kw)


@jax.jit
def _predict(fn, x):
    return fn(x).argmax(-1)


def autoattack(logits_fn: LogitsFn, x: Array, y: Array, *, eps, norm: str = "linf",
               version: str = "standard", attacks: Sequence[str] | None = None,
               settings: dict[str, dict] | None = None, bounds: Bounds = (0.0, 1.0),
               key: Array | None = None, chunk: int | None = None,
               progress: Callable[[str, float], None] | None = None,
               mesh: Mesh | None = None) -> AutoAttackResult:
    """AutoAttack of ``x`` (N, ...) with true labels ``y`` at budget ``eps`` in ``norm``.

    ``settings`` overrides members' settings, e.g. ``{"square": {"queries": 1000}}``
    (smaller budgets for a quick look; the reference numbers need the defaults).
    ``progress(name, robust_accuracy)`` is called after each member. ``mesh``: split
    every call's rows over its ``data`` axis (default: one device).
    """
    check_args(eps, bounds, norm, norms=ALL_NORMS)
    if not np.isfinite(float(eps)):
        raise ValueError("AutoAttack needs a finite eps (a budget); for minimal "
                         "perturbations use attacks.fab or attacks.minimal_eps")
    x, y = jnp.asarray(x), jnp.asarray(y)
    check_inputs(x, y, bounds)
    plan = members(version, norm, attacks)
    for name in settings or {}:
        if name not in {n for n, _, _ in plan}:
            raise ValueError(f"settings for {name!r}, which this run does not use; it runs "
                             f"{[n for n, _, _ in plan]}")
    fn, bounds = as_pytree_fn(logits_fn), tuple(float(b) for b in bounds)
    split = mesh is not None and row_multiple(mesh) > 1
    if split:  # the model once on every device; eps an array: a jit argument, not static
        fn, eps = replicate(fn, mesh), jnp.asarray(eps, x.dtype)
    n = x.shape[0]
    keys = per_example_keys(key, n)
    typed = jax.dtypes.issubdtype(keys.dtype, jax.dtypes.prng_key)
    keys_np = np.asarray(jax.random.key_data(keys) if typed else keys)
    with rows_over(mesh if split else None):
        return _run(fn, x, y, keys_np, typed, plan, settings or {}, eps=eps, norm=norm,
                    bounds=bounds, chunk=chunk, split=split, progress=progress)


def _run(fn, x: Array, y: Array, keys_np: np.ndarray, typed: bool, plan: list,
         settings: dict, *, eps, norm: str, bounds: Bounds, chunk: int | None, split: bool,
         progress) -> AutoAttackResult:
    """The members in turn on the still-robust examples (see :func:`autoattack`)."""
    n = x.shape[0]
    predict = functools.partial(_predict, fn)
    if split:
        clean = np.asarray(run_bucketed(predict, (np.asarray(x),), _bucket(n, chunk)))
    else:
        clean = np.asarray(predict(x))
    clean = clean == np.asarray(y)
    robust = clean.copy()
    broken_by = np.where(clean, "", "clean").astype(object)
    x_np, y_np = np.asarray(x), np.asarray(y)  # host copies: gathers of any size, no compile
    x_adv = x_np.copy()
    robust_after, seconds = {}, {}
    for name, attack, kw in plan:
        start = time.perf_counter()
        idx = np.flatnonzero(robust)
        if idx.size:
            kw = {**kw, **settings.get(name, {})}
            size = _bucket(idx.size, chunk)
            member = functools.partial(_call, attack, fn, typed, dict(
                kw, eps=eps, norm=norm, bounds=bounds, chunk=size))
            subset = (x_np[idx], y_np[idx], keys_np[idx])
            packs = name in _PACKS_ITSELF and not (split and name == "square")
            xa = member(*subset) if packs else run_bucketed(member, subset, size)
            pred = np.asarray(run_bucketed(predict, (np.asarray(xa),), size))
            hit = pred != y_np[idx]
            x_adv[idx[hit]] = np.asarray(xa)[hit]
            robust[idx[hit]] = False
            broken_by[idx[hit]] = name
        robust_after[name] = float(robust.mean())
        seconds[name] = time.perf_counter() - start
        if progress is not None:
            progress(name, robust_after[name])
    dist = np.asarray(distance(jnp.asarray(x_adv) - x, norm))
    return AutoAttackResult(x_adv, clean, robust, broken_by.astype(str), dist, norm,
                            float(eps), robust_after, seconds)
