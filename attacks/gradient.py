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

The loop is a ``lax.fori_loop`` (not unrolled: with ``nets.conv``'s CPU paths a rolled
loop is the faster one, see benchmarks/attacks_bench.py); eps and alpha are
traced, so an eps grid is a ``vmap`` and new eps values or data of the same shape never
recompile. ``chunk`` examples go through per call (default: CPU_CHUNK on CPU, all
elsewhere), which bounds memory for any batch size.
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
    check_inputs,
    chunk_size,
    finite_eps,
    is_key_batch,
    loss_grad,
    normalize,
    project,
    random_start,
    success,
)
from nets import xla
from nets.batching import pad_rows

# On CPU a batch is attacked CPU_CHUNK examples per call (one compiled program, the last
# chunk padded): the activations of 128 LeNet-5 inputs stay in cache, those of 1,000 do
# not (PGD-40 on 1,000 inputs, 2 cores: 1.49 s whole, 1.24 s in chunks of 256, 1.11 s in
# chunks of 128). Other backends take the whole batch at once. Results do not depend on
# the chunking: the random starts are drawn for the whole batch first.
CPU_CHUNK = 128

@functools.partial(xla.jit, static_argnames=("steps", "norm", "targeted", "bounds", "restarts",
                                            "decay"))
def _iterate(fn, x, starts, y, eps, alpha, *, steps, norm, targeted, bounds, restarts, decay):
    """The attack loop from ``starts`` (R, N, ...): R restarts, each example keeps its best."""
    eps = jnp.asarray(eps, x.dtype)
    alpha = jnp.asarray(alpha, x.dtype)

    def run(x0):
        def body(_, carry):
            xa, mom = carry
            _, g = loss_grad(fn, xa, y, targeted)
            if decay is not None:  # MI-FGSM: accumulate L1-normalized gradients
                l1 = jnp.sum(jnp.abs(g), axis=tuple(range(1, g.ndim)), keepdims=True)
                mom = decay * mom + g / jnp.maximum(l1, 1e-12)
                g = mom
            xa = project(xa + alpha * normalize(g, norm), x, eps, norm, bounds)
            return xa, mom

        xa, _ = jax.lax.fori_loop(0, steps, body, (x0, jnp.zeros_like(x)))
        return xa

    if restarts == 1:
        return run(starts[0])
    cands = jax.vmap(run)(starts)  # (R, N, ...)
    logits = jax.vmap(fn)(cands)
    score = attack_loss(logits, y[None], targeted) + 1e6 * success(logits, y[None], targeted)
    best = jnp.argmax(score, axis=0)  # (N,)
    return cands[best, jnp.arange(x.shape[0])]


@functools.partial(jax.jit, static_argnames=("norm", "bounds", "restarts", "rand_init"))
def _starts(key, x, eps, *, norm, bounds, restarts, rand_init):
    """(R, N, ...) starting points: x itself, or R uniform draws from the eps-ball (from
    one key, or from one key per example: then restart r of example i uses split(key[i]))."""
    if not rand_init:
        return x[None]
    if restarts == 1:
        keys = key[None]
    elif is_key_batch(key):
        keys = jnp.swapaxes(jax.vmap(lambda k: jax.random.split(k, restarts))(key), 0, 1)
    else:
        keys = jax.random.split(key, restarts)
    eps = jnp.asarray(eps, x.dtype)
    return jax.vmap(lambda k: random_start(k, x, eps, norm, bounds))(keys)


def _prepare(x, y, eps, bounds, norm, steps):
    """Checked inputs and eps, with eps = inf as the whole input box (finite steps)."""
    check_args(eps, bounds, norm)
    x = jnp.asarray(x)
    check_inputs(x, y, bounds, steps)
    return x, finite_eps(eps, x, norm, bounds)


def _call(logits_fn, x, y, eps, alpha, key, norm, bounds, *, rand_init, chunk, **static):
    key = jax.random.PRNGKey(0) if key is None else key
    fn, y, bounds = as_pytree_fn(logits_fn), jnp.asarray(y), tuple(float(b) for b in bounds)
    starts = _starts(key, x, eps, norm=norm, bounds=bounds, restarts=static["restarts"],
                     rand_init=rand_init)
    attack = functools.partial(_iterate, fn, eps=eps, alpha=alpha, norm=norm,
                               bounds=bounds, **static)
    n, size = x.shape[0], chunk_size(chunk, x, CPU_CHUNK)
    if size == n:
        return attack(x, starts, y)
    # The last chunk is padded to the same shape (one compiled program); the padded rows
    # repeat the first example, so they stay inside the bounds, and are dropped.
    (xp, sp, yp), _ = pad_rows((x, jnp.swapaxes(starts, 0, 1), y), size, mode="edge")
    sp = jnp.swapaxes(sp, 0, 1)  # back to (R, N_padded, ...)
    out = [attack(xp[i:i + size], sp[:, i:i + size], yp[i:i + size])
           for i in range(0, xp.shape[0], size)]
    return jnp.concatenate(out)[:n]


def fgsm(logits_fn: LogitsFn, x: Array, y: Array, *, eps, norm: str = "linf",
         targeted: bool = False, bounds: Bounds = (0.0, 1.0), key: Array | None = None,
         chunk: int | None = None) -> Array:
    """Fast gradient (sign) method: x + eps * sign(∇ loss) for linf (FGM for l2)."""
    x, eps = _prepare(x, y, eps, bounds, norm, 1)
    return _call(logits_fn, x, y, eps, eps, key, norm, bounds, steps=1, targeted=targeted,
                 rand_init=False, restarts=1, decay=None, chunk=chunk)


def bim(logits_fn: LogitsFn, x: Array, y: Array, *, eps, steps: int = 10, alpha=None,
        norm: str = "linf", targeted: bool = False, bounds: Bounds = (0.0, 1.0),
        key: Array | None = None, chunk: int | None = None) -> Array:
    """Basic iterative method: ``steps`` projected steps of size alpha (default eps/steps)."""
    x, eps = _prepare(x, y, eps, bounds, norm, steps)
    alpha = eps / steps if alpha is None else alpha
    return _call(logits_fn, x, y, eps, alpha, key, norm, bounds, steps=steps,
                 targeted=targeted, rand_init=False, restarts=1, decay=None, chunk=chunk)


def pgd(logits_fn: LogitsFn, x: Array, y: Array, *, eps, steps: int = 40, alpha=None,
        norm: str = "linf", restarts: int = 1, random_init: bool = True,
        targeted: bool = False, bounds: Bounds = (0.0, 1.0), key: Array | None = None,
        chunk: int | None = None) -> Array:
    """Projected gradient descent from a random start; alpha defaults to 2.5 eps/steps.

    ``key``: one key for the batch, or one per example (``attacks.common.example_keys``)."""
    if restarts < 1:
        raise ValueError(f"restarts must be >= 1, got {restarts}")
    x, eps = _prepare(x, y, eps, bounds, norm, steps)
    alpha = 2.5 * eps / steps if alpha is None else alpha
    return _call(logits_fn, x, y, eps, alpha, key, norm, bounds, steps=steps,
                 targeted=targeted, rand_init=random_init, restarts=restarts, decay=None,
                 chunk=chunk)


def mifgsm(logits_fn: LogitsFn, x: Array, y: Array, *, eps, steps: int = 10, alpha=None,
           decay: float = 1.0, norm: str = "linf", targeted: bool = False,
           bounds: Bounds = (0.0, 1.0), key: Array | None = None,
           chunk: int | None = None) -> Array:
    """Momentum iterative FGSM (decay mu, default 1.0); alpha defaults to eps/steps."""
    x, eps = _prepare(x, y, eps, bounds, norm, steps)
    alpha = eps / steps if alpha is None else alpha
    return _call(logits_fn, x, y, eps, alpha, key, norm, bounds, steps=steps,
                 targeted=targeted, rand_init=False, restarts=1, decay=float(decay), chunk=chunk)
