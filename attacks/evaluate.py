"""Robust accuracy of a model over an eps grid, for a list of attacks, in one call.

* Budgeted attacks (FGSM, BIM, PGD, MI-FGSM, APGD, APGD-T, Square) run once per eps;
  the eps grid is a ``vmap`` inside one jitted program per attack.
* AutoAttack runs once per eps on the host (:mod:`attacks.autoattack`: each member only
  on the examples still robust).
* Minimal-perturbation attacks (DeepFool, CW-L2, FAB, FAB-T) run once, unconstrained; an example
  counts as broken at eps when the attack succeeded with ||delta|| <= eps.

Data go through in fixed-size chunks (the last one padded), so memory is bounded and
each attack compiles once whatever the dataset size. Every example draws its randomness
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

from attacks.apgd import apgd, apgd_t
from attacks.autoattack import autoattack
from attacks.common import Array, Bounds, LogitsFn, as_pytree_fn, example_keys
from attacks.fab import fab
from attacks.gradient import bim, fgsm, mifgsm, pgd
from attacks.minimal import carlini_wagner_l2, deepfool
from attacks.outcome import distance
from attacks.square import square
from nets import xla
from nets.batching import pad_rows

# Examples per jitted call on CPU. The budgeted attacks vmap the eps grid, so a call
# attacks chunk x E inputs; small chunks keep them in cache. CPU seconds per seed for all
# seven attacks of the attacks lens (LeNet-5, 200 images, 8 linf / 7 l2 eps, 20 steps,
# 2 cores): 24.6 s in chunks of 16, 29 s of 32, 37 s of 64 (8 to 16 about equal).
CPU_CHUNK = 16


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


def _ensemble_broken(fn, attack: Attack, x, y, grid, key, bounds) -> np.ndarray:
    """(E, N) broken masks of an ensemble (AutoAttack), one host call per eps > 0 with the
    same per-example keys as the other attacks; eps = 0 breaks the misclassified only."""
    rows = []
    for eps in np.asarray(grid):
        if eps == 0:
            rows.append(np.asarray(fn(x).argmax(-1) != y))
            continue
        res = attack.fn(fn, x, y, eps=float(eps), norm=attack.norm, bounds=bounds,
                        key=example_keys(key, x.shape[0]), **dict(attack.kwargs))
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
    per jitted call; default :data:`CPU_CHUNK` on CPU, all of them elsewhere).
    """
    fn = as_pytree_fn(logits_fn)
    x, y = jnp.asarray(x), jnp.asarray(y)
    n = x.shape[0]
    if chunk is None:
        chunk = CPU_CHUNK if xla.is_cpu() else n
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    size = min(chunk, n)
    # Pad to whole chunks (one compiled program per attack); padded rows repeat the first
    # example, so they are valid inputs, and are dropped below.
    (xp, yp, kp), _ = pad_rows((x, y, example_keys(key, n)), size, mode="edge")
    bounds = tuple(map(float, bounds))
    out = {}
    for name, attack in attacks.items():
        grid = eps_grid[attack.norm] if isinstance(eps_grid, Mapping) else eps_grid
        grid = jnp.asarray(grid, x.dtype)
        if bool(jnp.any(jnp.diff(grid) < 0)):
            raise ValueError(f"eps grid for {name} must be ascending, got {grid}")
        if attack.ensemble:
            broken = _ensemble_broken(fn, attack, x, y, grid, key, bounds)
            hit = broken.any(0)
            min_eps = np.where(hit, np.asarray(grid)[np.argmax(broken, 0)], np.inf)
        else:
            parts = [_broken(fn, attack, xp[i:i + size], yp[i:i + size], grid, kp[i:i + size],
                             targeted=False, bounds=bounds)
                     for i in range(0, xp.shape[0], size)]
            broken = np.concatenate([np.asarray(b) for b, _ in parts], axis=1)[:, :n]
            min_eps = np.concatenate([np.asarray(d) for _, d in parts])[:n]
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
