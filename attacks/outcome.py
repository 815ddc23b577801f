"""Per-example results of any attack: success mask, perturbation norm, minimal eps.

Every attack returns only ``x_adv`` (the calling convention of :mod:`attacks.common`);
:func:`outcome` reads off, per example, what a researcher reports:

* ``clean_correct``: the model classifies x correctly;
* ``success``: the attack achieved its goal, pred(x_adv) != y (untargeted) or == y
  (targeted);
* ``distance``: ||x_adv - x|| in the attack's norm (for minimal-perturbation attacks,
  DeepFool, CW-L2 and FAB, this *is* the measured minimal eps where ``success``).

For budgeted attacks (PGD, APGD, Square, ...) the per-example minimal eps is not a
by-product; :func:`minimal_eps` finds it by bisection on eps, per example:

    lo_0 = 0, hi_0 = eps_max;  mid = (lo + hi) / 2;
    broken(mid) ? hi <- mid : lo <- mid          (``steps`` times)

giving hi, the smallest eps found to break the example, within eps_max / 2^steps of the
attack's own threshold (exact if success is monotone in eps, which a fixed-seed attack
need not be: the bisection then returns *a* breaking eps, an upper bound on the minimal
one). Examples misclassified clean get 0; examples the attack cannot break at eps_max
get inf. All examples bisect at once: the attack is ``vmap``ped over examples, each with
its own eps and its own key, in one jitted ``lax.fori_loop``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from attacks.common import (
    Array,
    Bounds,
    LogitsFn,
    as_pytree_fn,
    check_inputs,
    chunk_size,
    per_example_keys,
    run_chunked,
    success,
)
from nets import xla

# Examples per jitted bisection call on CPU (each runs the attack ``steps`` times).
CPU_CHUNK = 16


@dataclasses.dataclass(frozen=True)
class Outcome:
    """Per-example result of one attack on N examples (numpy arrays of shape (N,))."""

    clean_correct: np.ndarray
    success: np.ndarray
    distance: np.ndarray

    @property
    def robust(self) -> np.ndarray:
        """Still correct after the attack (untargeted): correct clean and not broken."""
        return self.clean_correct & ~self.success

    @property
    def robust_accuracy(self) -> float:
        return float(self.robust.mean())


def distance(delta: Array, norm: str) -> Array:
    """Per-example ||delta|| in ``norm`` ("linf", "l2" or "l1"), shape (N,)."""
    flat = delta.reshape(delta.shape[0], -1)
    if norm == "linf":
        return jnp.abs(flat).max(-1)
    if norm == "l2":
        return jnp.sqrt(jnp.sum(flat * flat, -1))
    if norm == "l1":
        return jnp.abs(flat).sum(-1)
    raise ValueError(f"unknown norm {norm!r}; use linf, l2 or l1")


@functools.partial(jax.jit, static_argnames=("norm", "targeted"))
def _outcome(fn, x, y, x_adv, *, norm, targeted):
    clean = fn(x).argmax(-1)
    return clean == y, success(fn(x_adv), y, targeted), distance(x_adv - x, norm)


def outcome(logits_fn: LogitsFn, x: Array, y: Array, x_adv: Array, *, norm: str,
            targeted: bool = False) -> Outcome:
    """Per-example success mask and perturbation norm of ``x_adv`` (any attack's output).

    ``y``: true labels (untargeted) or targets (``targeted=True``).
    """
    x, x_adv, y = jnp.asarray(x), jnp.asarray(x_adv), jnp.asarray(y)
    if x_adv.shape != x.shape:
        raise ValueError(f"x_adv has shape {x_adv.shape}, x has {x.shape}; pass the attack's "
                         f"output for the same batch")
    distance(x[:1], norm)  # unknown norm: one clear error before tracing
    clean, hit, dist = _outcome(as_pytree_fn(logits_fn), x, y, x_adv, norm=norm,
                                targeted=targeted)
    return Outcome(np.asarray(clean), np.asarray(hit), np.asarray(dist))


@functools.partial(xla.jit, static_argnames=("attack", "steps", "bounds"))
def _bisect(fn, x, y, keys, eps_max, *, attack, steps, bounds):
    """Per-example bisection of the breaking eps (see the module docstring)."""

    def broken(xi, yi, ki, eps):  # one example, its own eps and key
        xa = attack(fn, xi[None], yi[None], eps=eps, key=ki[None], bounds=bounds)
        return fn(xa)[0].argmax() != yi

    broken_all = jax.vmap(broken)
    clean_ok = fn(x).argmax(-1) == y
    hi = jnp.full(x.shape[0], eps_max, x.dtype)
    reach = broken_all(x, y, keys, hi)

    def body(_, lohi):
        lo, hi = lohi
        mid = (lo + hi) / 2
        b = broken_all(x, y, keys, mid)
        return jnp.where(b, lo, mid), jnp.where(b, mid, hi)

    _, hi = jax.lax.fori_loop(0, steps, body, (jnp.zeros_like(hi), hi))
    return jnp.where(~clean_ok, 0.0, jnp.where(reach, hi, jnp.inf))


def minimal_eps(attack: Callable[..., Array], logits_fn: LogitsFn, x: Array, y: Array, *,
                eps_max: float, steps: int = 10, bounds: Bounds = (0.0, 1.0),
                key: Array | None = None, chunk: int | None = None) -> np.ndarray:
    """Per-example minimal eps of a budgeted attack, by bisection on [0, eps_max].

    ``attack`` is a hashable callable with the common convention, e.g.
    ``attacks.make_attack("pgd", steps=20)`` (an :class:`attacks.evaluate.Attack`): it
    is a static argument of the jitted bisection, so the same attack object reuses the
    compiled program for new data and parameters. Returns (N,) numpy: 0 for examples
    misclassified clean, inf where eps_max does not break them, else the bisection's
    upper end (within eps_max / 2^steps of the threshold).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not np.isfinite(eps_max) or eps_max <= 0:
        raise ValueError(f"eps_max must be finite and > 0, got {eps_max}")
    x, y = jnp.asarray(x), jnp.asarray(y)
    check_inputs(x, y, bounds)
    fn, bounds = as_pytree_fn(logits_fn), tuple(float(b) for b in bounds)
    keys = per_example_keys(key, x.shape[0])
    run = functools.partial(_bisect, fn, eps_max=jnp.asarray(eps_max, x.dtype), attack=attack,
                            steps=steps, bounds=bounds)
    return np.asarray(run_chunked(run, (x, y, keys), chunk_size(chunk, x, CPU_CHUNK)))
