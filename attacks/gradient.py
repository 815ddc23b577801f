"""Gradient-sign family: FGSM, BIM, PGD (linf, l2; random start, restarts), MI-FGSM.

All four are one projected-ascent loop with different switches:

    x_{t+1} = Proj_{B_eps(x) ∩ bounds}( x_t + alpha * d_t ),
    d_t = sign(g_t) (linf) or g_t / ||g_t||_2 (l2),   g_t = ∇_x loss(x_t)

* FGSM (Goodfellow et al. 2015): one step, alpha = eps, x_0 = x.
* BIM (Kurakin et al. 2017): T steps, alpha = eps / T by default, x_0 = x.
* PGD (Madry et al. 2018): T steps, alpha = 2.5 eps / T by default, x_0 uniform in the
  ball; ``restarts`` independent starts run side by side (vmap) and each example keeps
  its best (successful first, then highest loss).
* MI-FGSM (Dong et al. 2018): g_t is replaced by the momentum
  m_t = mu m_{t-1} + ∇ / ||∇||_1.

The loop is a ``lax.fori_loop`` (unrolled up to MAX_UNROLL steps); eps and alpha are traced, so an eps grid is a ``vmap``
and new eps values or data of the same shape never recompile.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from attacks.common import (
    Array,
    Bounds,
    LogitsFn,
    as_pytree_fn,
    attack_loss,
    check_args,
    loss_grad,
    normalize,
    project,
    random_start,
    success,
)

# Loops up to this many steps are unrolled: XLA:CPU runs the convolution gradients in a
# while-loop body on a slow path (PGD-40 on 1,000 LeNet-5 inputs, 2 cores: 6.9 s looped,
# 4.5 s unrolled; benchmarks/attacks.py). Longer loops stay loops: unrolled, 100 steps
# took ~16 s to compile.
MAX_UNROLL = 50


@functools.partial(
    jax.jit,
    static_argnames=("steps", "norm", "targeted", "bounds", "rand_init", "restarts", "decay"),
)
def _iterate(fn, x, y, eps, alpha, key, *, steps, norm, targeted, bounds, rand_init,
             restarts, decay):
    eps = jnp.asarray(eps, x.dtype)
    alpha = jnp.asarray(alpha, x.dtype)

    def run(k):
        x0 = random_start(k, x, eps, norm, bounds) if rand_init else x

        def body(_, carry):
            xa, mom = carry
            _, g = loss_grad(fn, xa, y, targeted)
            if decay is not None:  # MI-FGSM: accumulate L1-normalized gradients
                l1 = jnp.sum(jnp.abs(g), axis=tuple(range(1, g.ndim)), keepdims=True)
                mom = decay * mom + g / jnp.maximum(l1, 1e-12)
                g = mom
            xa = project(xa + alpha * normalize(g, norm), x, eps, norm, bounds)
            return xa, mom

        xa, _ = jax.lax.fori_loop(0, steps, body, (x0, jnp.zeros_like(x)), unroll=steps <= MAX_UNROLL)
        return xa

    if restarts == 1:
        return run(key)
    cands = jax.vmap(run)(jax.random.split(key, restarts))  # (R, N, ...)
    logits = jax.vmap(fn)(cands)
    score = attack_loss(logits, y[None], targeted) + 1e6 * success(logits, y[None], targeted)
    best = jnp.argmax(score, axis=0)  # (N,)
    return cands[best, jnp.arange(x.shape[0])]


def _call(logits_fn, x, y, eps, alpha, key, norm, bounds, **static):
    check_args(eps, bounds, norm)
    if key is None:
        key = jax.random.PRNGKey(0)
    return _iterate(as_pytree_fn(logits_fn), x, jnp.asarray(y), eps, alpha, key,
                    norm=norm, bounds=tuple(float(b) for b in bounds), **static)


def fgsm(logits_fn: LogitsFn, x: Array, y: Array, *, eps, norm: str = "linf",
         targeted: bool = False, bounds: Bounds = (0.0, 1.0), key: Array | None = None) -> Array:
    """Fast gradient (sign) method: x + eps * sign(∇ loss) for linf (FGM for l2)."""
    return _call(logits_fn, x, y, eps, eps, key, norm, bounds, steps=1, targeted=targeted,
                 rand_init=False, restarts=1, decay=None)


def bim(logits_fn: LogitsFn, x: Array, y: Array, *, eps, steps: int = 10, alpha=None,
        norm: str = "linf", targeted: bool = False, bounds: Bounds = (0.0, 1.0),
        key: Array | None = None) -> Array:
    """Basic iterative method: ``steps`` projected steps of size alpha (default eps/steps)."""
    alpha = eps / steps if alpha is None else alpha
    return _call(logits_fn, x, y, eps, alpha, key, norm, bounds, steps=steps,
                 targeted=targeted, rand_init=False, restarts=1, decay=None)


def pgd(logits_fn: LogitsFn, x: Array, y: Array, *, eps, steps: int = 40, alpha=None,
        norm: str = "linf", restarts: int = 1, random_init: bool = True,
        targeted: bool = False, bounds: Bounds = (0.0, 1.0), key: Array | None = None) -> Array:
    """Projected gradient descent from a random start; alpha defaults to 2.5 eps/steps."""
    if restarts < 1:
        raise ValueError(f"restarts must be >= 1, got {restarts}")
    alpha = 2.5 * eps / steps if alpha is None else alpha
    return _call(logits_fn, x, y, eps, alpha, key, norm, bounds, steps=steps,
                 targeted=targeted, rand_init=random_init, restarts=restarts, decay=None)


def mifgsm(logits_fn: LogitsFn, x: Array, y: Array, *, eps, steps: int = 10, alpha=None,
           decay: float = 1.0, norm: str = "linf", targeted: bool = False,
           bounds: Bounds = (0.0, 1.0), key: Array | None = None) -> Array:
    """Momentum iterative FGSM (decay mu, default 1.0); alpha defaults to eps/steps."""
    alpha = eps / steps if alpha is None else alpha
    return _call(logits_fn, x, y, eps, alpha, key, norm, bounds, steps=steps,
                 targeted=targeted, rand_init=False, restarts=1, decay=float(decay))
