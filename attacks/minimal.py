"""Minimal-perturbation attacks: DeepFool and Carlini-Wagner L2.

Both search for the smallest perturbation that changes the decision, then (to share the
common calling convention) the result is projected onto the eps-ball; ``eps=inf``
(the default) returns the unconstrained minimal adversarial.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from attacks.common import Array, Bounds, LogitsFn, as_pytree_fn, check_args, project


def _boundary_normals(fn, x: Array, y: Array, targeted: bool) -> tuple[Array, Array, Array]:
    """Logits (N, C), the reference class (N,) and w_k = ∇(Z_k - Z_ref) (C, N, ...).

    Each w_k is one vjp with the cotangent e_k - e_ref (vjp is linear), C of them vmapped:
    the differences come out of the backward pass directly, with no input Jacobian
    ∇Z (C, N, ...) to subtract from. The C backward passes are what a DeepFool step
    costs; their memory grows with the rows, which :func:`attacks.evaluate.robust_accuracy`
    chunks to the device's memory. Examples are independent (one vjp of the batch)."""
    logits, vjp = jax.vjp(fn, x)
    c = logits.shape[-1]
    # Reference class: the true label (untargeted) or the current prediction (targeted).
    ref = logits.argmax(-1) if targeted else y
    cot = jnp.eye(c, dtype=logits.dtype)[:, None, :] - jax.nn.one_hot(ref, c, dtype=logits.dtype)
    (w,) = jax.vmap(vjp)(cot)
    return logits, ref, w


@functools.partial(jax.jit, static_argnames=("steps", "norm", "targeted", "bounds"))
def _deepfool(fn, x, y, eps, overshoot, *, steps, norm, targeted, bounds):
    bshape = (x.shape[0],) + (1,) * (x.ndim - 1)

    def body(carry):
        i, r_tot, done = carry
        xa = jnp.clip(x + (1.0 + overshoot) * r_tot, *bounds)
        logits, ref, w = _boundary_normals(fn, xa, y, targeted)  # (N, C), (N,), (C, N, ...)
        pred = logits.argmax(-1)
        n = jnp.arange(x.shape[0])
        f = logits - logits[n, ref][:, None]  # (N, C): f_k = Z_k - Z_ref
        wn = (jnp.sqrt(jnp.sum(w * w, axis=tuple(range(2, w.ndim)))) if norm == "l2"
              else jnp.sum(jnp.abs(w), axis=tuple(range(2, w.ndim)))).T  # (N, C)
        dist = jnp.abs(f) / jnp.maximum(wn, 1e-12)
        if targeted:
            k = y
        else:
            k = jnp.argmin(jnp.where(jax.nn.one_hot(y, f.shape[1], dtype=bool), jnp.inf, dist), -1)
        wk = w[k, n]  # (N, ...)
        fk, wnk = jnp.abs(f[n, k]), jnp.maximum(wn[n, k], 1e-12)
        if norm == "l2":
            step = ((fk + 1e-4) / wnk**2).reshape(bshape) * wk
        else:
            step = ((fk + 1e-4) / wnk).reshape(bshape) * jnp.sign(wk)
        done = done | ((pred == y) if targeted else (pred != y))
        r_tot = r_tot + jnp.where(done.reshape(bshape), 0.0, step)
        return i + 1, r_tot, done

    def active(carry):  # stop once every example is fooled, or after ``steps`` steps
        i, _, done = carry
        return (i < steps) & ~jnp.all(done)

    init = (jnp.zeros((), jnp.int32), jnp.zeros_like(x), jnp.zeros(x.shape[0], bool))
    _, r_tot, _ = jax.lax.while_loop(active, body, init)
    xa = jnp.clip(x + (1.0 + overshoot) * r_tot, *bounds)
    return project(xa, x, jnp.asarray(eps, x.dtype), norm, bounds)


def deepfool(logits_fn: LogitsFn, x: Array, y: Array, *, eps=jnp.inf, steps: int = 50,
             overshoot: float = 0.02, norm: str = "l2", targeted: bool = False,
             bounds: Bounds = (0.0, 1.0), key: Array | None = None) -> Array:
    """DeepFool (Moosavi-Dezfooli et al., CVPR 2016).

    Each step linearizes the classifier at the current point and jumps to the nearest
    linearized decision boundary: with f_k = Z_k - Z_y and w_k = ∇f_k,
    r = (|f_l| / ||w_l||^2) w_l for l = argmin_k |f_k| / ||w_k|| (l2; the linf variant
    uses ||w||_1 and sign(w)). Targeted mode uses the target class as l. On an affine
    classifier it lands on the nearest boundary in one step. ``key`` is unused.
    """
    check_args(eps, bounds, norm)
    return _deepfool(as_pytree_fn(logits_fn), x, jnp.asarray(y), eps, overshoot, steps=steps,
                     norm=norm, targeted=targeted, bounds=tuple(float(b) for b in bounds))


@functools.partial(jax.jit, static_argnames=("steps", "search_steps", "targeted", "bounds"))
def _cw(fn, x, y, eps, c0, lr, kappa, *, steps, search_steps, targeted, bounds):
    lo, hi = bounds
    n = x.shape[0]
    onehot = jax.nn.one_hot(y, fn(x[:1]).shape[-1], dtype=x.dtype)
    to_x = lambda w: lo + (jnp.tanh(w) + 1.0) / 2.0 * (hi - lo)
    w0 = jnp.arctanh(jnp.clip((x - lo) / (hi - lo) * 2.0 - 1.0, -1 + 1e-6, 1 - 1e-6))
    opt = optax.adam(lr)

    def margin(logits):
        z_y = jnp.sum(logits * onehot, -1)
        z_other = jnp.max(jnp.where(onehot > 0, -jnp.inf, logits), -1)
        return z_other - z_y if targeted else z_y - z_other  # > 0 means not yet adversarial

    def search(_, carry):
        c, lower, upper, best_l2, best_x = carry

        def objective(w):
            xa = to_x(w)
            d2 = jnp.sum((xa - x) ** 2, axis=tuple(range(1, x.ndim)))
            m = margin(fn(xa))
            return jnp.sum(d2 + c * jnp.maximum(m, -kappa)), (xa, d2, m)

        def step(_, st):
            w, ost, found, bl2, bx = st
            # one forward (and backward) per step: the margin that decides success is the
            # one of the loss, at the same point xa
            (_, (xa, d2, m)), g = jax.value_and_grad(objective, has_aux=True)(w)
            ok = m < 0
            better = ok & (d2 < bl2)
            bx = jnp.where(better.reshape((n,) + (1,) * (x.ndim - 1)), xa, bx)
            bl2 = jnp.where(better, d2, bl2)
            upd, ost = opt.update(g, ost)
            return optax.apply_updates(w, upd), ost, found | ok, bl2, bx

        init = (w0, opt.init(w0), jnp.zeros(n, bool), best_l2, best_x)
        _, _, found, best_l2, best_x = jax.lax.fori_loop(0, steps, step, init)
        upper = jnp.where(found, jnp.minimum(upper, c), upper)
        lower = jnp.where(found, lower, jnp.maximum(lower, c))
        c = jnp.where(upper < 1e9, (lower + upper) / 2.0, c * 10.0)
        return c, lower, upper, best_l2, best_x

    init = (jnp.full(n, c0, x.dtype), jnp.zeros(n, x.dtype), jnp.full(n, 1e10, x.dtype),
            jnp.full(n, jnp.inf, x.dtype), x)
    *_, best_x = jax.lax.fori_loop(0, search_steps, search, init)
    return project(best_x, x, jnp.asarray(eps, x.dtype), "l2", bounds)


def carlini_wagner_l2(logits_fn: LogitsFn, x: Array, y: Array, *, eps=jnp.inf,
                      steps: int = 100, search_steps: int = 5, c: float = 1.0,
                      lr: float = 0.01, kappa: float = 0.0, targeted: bool = False,
                      bounds: Bounds = (0.0, 1.0), key: Array | None = None) -> Array:
    """Carlini & Wagner (S&P 2017) L2 attack.

    Minimizes ||x' - x||_2^2 + c * max(Z_y - max_{i!=y} Z_i, -kappa) over
    x' = lo + (tanh(w) + 1)/2 (hi - lo) (box constraint by change of variables) with Adam,
    and binary-searches c per example over ``search_steps`` rounds. Returns the smallest
    successful x' found (x itself where none was found), projected onto the eps-ball.
    ``key`` is unused.
    """
    check_args(eps, bounds, "l2")
    return _cw(as_pytree_fn(logits_fn), x, jnp.asarray(y), eps, c, lr, kappa, steps=steps,
               search_steps=search_steps, targeted=targeted,
               bounds=tuple(float(b) for b in bounds))

