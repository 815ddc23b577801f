"""Auto-PGD (Croce & Hein, ICML 2020, arXiv 2003.01690): APGD-CE, APGD-DLR, APGD-T.

PGD with momentum and a step size that adapts itself (no step-size parameter):

    z = P(x_k + eta_k * d(grad f(x_k)))
    x_{k+1} = P(x_k + a (z - x_k) + (1 - a)(x_k - x_{k-1})),   a = 0.75 (1 at k = 0)

with P the projection onto the eps-ball ∩ bounds and d = sign (linf) or g/||g||_2 (l2);
eta_0 = 2 eps. At the checkpoints w_j = ceil(p_j N) (N = steps, p_0 = 0, p_1 = 0.22,
p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), :func:`checkpoints`) the step halves if

1. fewer than rho (w_j - w_{j-1}) of the steps since w_{j-1} increased f, or
2. the step was not halved at w_{j-1} and the best loss f_max did not grow since then,

and an example whose step halves restarts from its best point (and its gradient).

l1 (Croce & Hein, "Mind the box", ICML 2021), as fra31/auto-attack's ``APGDAttack``:
the step moves the top-k coordinates of |grad| by sign, eta sign(g_topk)/||sign(g_topk)||_1,
then projects exactly onto the l1-ball ∩ box (:mod:`attacks.l1`); no momentum; eta_0 = eps;
the start is the projection of x + N(0, I). Every max(int(0.04 N), 1) steps the sparsity
of the best point sets k = ||x_best - x||_0 / 1.5 (k starts at 20% of the coordinates);
if that sparsity fell by more than 5% the step goes back to eps and the iterate restarts
from the best point, else the step shrinks by 1.5 (never below eps / 10).

Losses: cross-entropy, or the Difference of Logits Ratio, with z_(1) >= z_(2) >= ... the
sorted logits (:func:`dlr_loss`, :func:`dlr_targeted_loss`)::

    DLR(z, y)      = -(z_y - max_{i != y} z_i) / (z_(1) - z_(3))
    DLR_T(z, y, t) = -(z_y - z_t) / (z_(1) - (z_(3) + z_(4)) / 2)

Implementation: one jitted program per chunk of examples; the N steps are one
``lax.fori_loop``; every example carries its own step size, best point and checkpoint
statistics (``jnp.where`` masks instead of the reference's index updates); restarts are
``vmap``ped and each example keeps its best restart (successful first, then the highest
loss). The reference instead runs restart r only on the examples that survived restarts
< r, which gives the same robust accuracy. Per run, a successful example returns its last
successful iterate (the reference's ``x_best_adv``), an unbroken one its best-loss point;
examples the attack has nothing to do for (misclassified clean, or already the target)
get x itself, as in the reference.

Where this follows the paper rather than the reference code (both torchattacks and
fra31): the checkpoints are the paper's w_j = ceil(p_j N); the reference truncates
0.22 N, 0.03 N and 0.06 N separately and keeps checkpoints every int(0.06 N) steps after
p = 0.99, which coincides with the paper for N a multiple of 100 (the default N = 100)
but not in general (N = 10: reference 2, 3, ..., 10; paper 3, 5, 6, 7, 8, 9, 10).
Condition 1 is the paper's strict "<" (the reference writes "<="), and its first
interval compares f(x_1) with f(x_0) (the reference compares with 0: a wrapped index).
Not implemented: EOT, and the reference's l1 eps schedule ``use_largereps``.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from attacks.common import (
    ALL_NORMS,
    Array,
    Bounds,
    LogitsFn,
    as_pytree_fn,
    bucket_limit,
    check_args,
    check_inputs,
    chunk_size,
    finite_eps,
    normalize,
    per_example_keys,
    project,
    run_bucketed,
    run_chunked,
)
from attacks.l1 import l1_norm
from nets import xla

# Examples per jitted call on CPU (the contract's default; the loop state is six copies of
# the chunk per restart, so 128 LeNet-5 inputs stay small).
CPU_CHUNK = 128
LOSSES = ("ce", "dlr")


# ---------------------------------------------------------------------------- losses


def dlr_loss(logits: Array, y: Array) -> Array:
    """DLR(z, y) = -(z_y - max_{i != y} z_i) / (z_(1) - z_(3) + 1e-12) per example
    (paper eq. 4): invariant to shifting and rescaling the logits. Needs >= 3 classes."""
    top = jax.lax.top_k(logits, 3)[0]
    zy = jnp.take_along_axis(logits, y[:, None], 1)[:, 0]
    other = jnp.where(jnp.argmax(logits, -1) == y, top[:, 1], top[:, 0])
    return -(zy - other) / (top[:, 0] - top[:, 2] + 1e-12)


def dlr_targeted_loss(logits: Array, y: Array, t: Array) -> Array:
    """Targeted DLR, -(z_y - z_t) / (z_(1) - (z_(3) + z_(4)) / 2 + 1e-12) per example
    (paper eq. 5). ``y = -1`` (true label unknown: ``apgd(targeted=True)``) takes for z_y
    the largest logit other than the target's. Needs >= 4 classes."""
    top = jax.lax.top_k(logits, 4)[0]
    zt = jnp.take_along_axis(logits, t[:, None], 1)[:, 0]
    others = jnp.where(jax.nn.one_hot(t, logits.shape[-1], dtype=bool), -jnp.inf, logits)
    zy = jnp.where(y >= 0, jnp.take_along_axis(logits, jnp.maximum(y, 0)[:, None], 1)[:, 0],
                   others.max(-1))
    return -(zy - zt) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)


def _objective(logits: Array, y: Array, t: Array, loss: str) -> Array:
    """The per-example loss APGD ascends. ``loss``: "ce" (CE(y)), "dlr", "ce-targeted"
    (-CE(t)) or "dlr-targeted"."""
    if loss == "ce":
        return optax.softmax_cross_entropy_with_integer_labels(logits, y)
    if loss == "dlr":
        return dlr_loss(logits, y)
    if loss == "ce-targeted":
        return -optax.softmax_cross_entropy_with_integer_labels(logits, t)
    return dlr_targeted_loss(logits, y, t)


def _succeeded(logits: Array, y: Array, t: Array, hit: bool) -> Array:
    """Success: the prediction is the target t (``hit``) or is not the label y."""
    pred = logits.argmax(-1)
    return pred == t if hit else pred != y


# -------------------------------------------------------------------------- schedule


def checkpoints(steps: int) -> tuple[int, ...]:
    """Step counts w_j = ceil(p_j * steps) <= steps at which the linf/l2 step size is
    checked: p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), p_0 = 0 (paper,
    Sec. 3.2), in integer hundredths so no float rounding moves a checkpoint; repeated
    w_j (steps < 17) count once."""
    out: list[int] = []
    p, dp = 22, 22  # p_j and p_j - p_{j-1}, in hundredths
    while p <= 100:
        w = -(-p * steps // 100)
        if not out or w != out[-1]:
            out.append(w)
        dp = max(dp - 3, 6)
        p += dp
    return tuple(out)


def l1_checkpoints(steps: int) -> tuple[int, ...]:
    """Step counts of the l1 sparsity / step-size checks: every max(int(0.04 steps), 1)
    steps (fra31/auto-attack)."""
    k = max(int(0.04 * steps), 1)
    return tuple(range(k, steps + 1, k))


def _schedule(steps: int, norm: str) -> tuple[np.ndarray, np.ndarray]:
    """Per step i (0-based): whether a checkpoint ends after it, and that interval's length."""
    ws = l1_checkpoints(steps) if norm == "l1" else checkpoints(steps)
    at, length = np.zeros(steps, bool), np.zeros(steps, np.float32)
    prev = 0
    for w in ws:
        at[w - 1], length[w - 1] = True, w - prev
        prev = w
    return at, length


# ------------------------------------------------------------------------------ core


def _start(keys: Array, x: Array, eps: Array, norm: str, bounds: Bounds) -> Array:
    """The reference's random start, per example from its own key: linf x + eps t/||t||_inf
    (t uniform in [-1, 1]^d), l2 x + eps t/||t||_2 (t gaussian), both on the sphere and then
    clipped; l1 the projection of x + t (t gaussian) onto the l1-ball ∩ box."""
    if norm == "linf":
        t = jax.vmap(lambda k: jax.random.uniform(k, x.shape[1:], x.dtype, -1.0, 1.0))(keys)
        size = jnp.max(jnp.abs(t), axis=tuple(range(1, x.ndim)), keepdims=True)
        return jnp.clip(x + eps * t / (size + 1e-12), *bounds)
    t = jax.vmap(lambda k: jax.random.normal(k, x.shape[1:], x.dtype))(keys)
    if norm == "l2":
        return jnp.clip(x + eps * normalize(t, "l2"), *bounds)
    return project(x + t, x, eps, "l1", bounds)


def _single_run(fn, x, y, t, keys, eps, rho, *, steps, norm, loss, hit, bounds):
    """One APGD run from a random start: (point, success, loss at that point) per example."""
    n, dims = x.shape[0], (1,) * (x.ndim - 1)
    d = math.prod(x.shape[1:])
    at_check, length = _schedule(steps, norm)
    at_check, length = jnp.asarray(at_check), jnp.asarray(length)

    def value_grad(xa):
        def total(xa):
            logits = fn(xa)
            f = _objective(logits, y, t, loss)
            return f.sum(), (f, _succeeded(logits, y, t, hit))

        g, (f, ok) = jax.grad(total, has_aux=True)(xa)
        return f, g, ok

    def step(i, s):
        eta = s["eta"].reshape(n, *dims)
        xk, g = s["x"], s["g"]
        if norm == "l1":  # sparse sign step on the top-k |g| coordinates, no momentum
            ag = jnp.abs(g).reshape(n, -1)
            idx = jnp.clip(jnp.floor((1.0 - s["topk"]) * d), 0, d - 1).astype(jnp.int32)
            thr = jnp.take_along_axis(jnp.sort(ag, -1), idx[:, None], 1).reshape(n, *dims)
            sg = jnp.sign(g * (jnp.abs(g) >= thr))
            return project(xk + eta * sg / (l1_norm(sg) + 1e-10), x, eps, norm, bounds)
        z = project(xk + eta * normalize(g, norm), x, eps, norm, bounds)
        a = jnp.where(i > 0, 0.75, 1.0).astype(x.dtype)
        return project(xk + a * (z - xk) + (1 - a) * (xk - s["x_prev"]), x, eps, norm, bounds)

    def body(i, s):
        x_new = step(i, s)
        f, g, ok = value_grad(x_new)
        s = dict(s, x_prev=s["x"], x=x_new, g=g)
        # the last successful iterate, and the best-loss point with its gradient
        s["x_adv"] = jnp.where(ok.reshape(n, *dims), x_new, s["x_adv"])
        s["f_adv"] = jnp.where(ok, f, s["f_adv"])
        s["ok"] = s["ok"] | ok
        better = f > s["f_best"]
        b = better.reshape(n, *dims)
        s["x_best"] = jnp.where(b, x_new, s["x_best"])
        s["g_best"] = jnp.where(b, g, s["g_best"])
        s["f_best"] = jnp.where(better, f, s["f_best"])
        s["ups"] = s["ups"] + (f > s["f_prev"])
        s["f_prev"] = f
        check = at_check[i]
        if norm == "l1":
            sparsity = jnp.sum((s["x_best"] - x != 0).reshape(n, -1), -1).astype(x.dtype)
            denser = check & (sparsity / s["sp_old"] < 0.95)  # NaN/inf when sp_old = 0: False
            eta = jnp.where(denser, eps, s["eta"] / 1.5)
            s["eta"] = jnp.where(check, jnp.clip(eta, eps / 10, eps), s["eta"])
            s["topk"] = jnp.where(check, sparsity / d / 1.5, s["topk"])
            s["sp_old"] = jnp.where(check, sparsity, s["sp_old"])
            back = denser
        else:
            oscillates = s["ups"] < rho * length[i]
            stalled = ~s["halved"] & (s["f_best_check"] >= s["f_best"])
            back = check & (oscillates | stalled)
            s["eta"] = jnp.where(back, s["eta"] / 2, s["eta"])
            s["halved"] = jnp.where(check, back, s["halved"])
            s["f_best_check"] = jnp.where(check, s["f_best"], s["f_best_check"])
            s["ups"] = jnp.where(check, 0, s["ups"])
        r = back.reshape(n, *dims)
        s["x"] = jnp.where(r, s["x_best"], s["x"])
        s["g"] = jnp.where(r, s["g_best"], s["g"])
        return s

    eps = jnp.asarray(eps, x.dtype)
    x0 = _start(keys, x, eps, norm, bounds)
    f0, g0, ok0 = value_grad(x0)
    zeros = jnp.zeros((n,), x.dtype)
    state = {
        "x": x0, "x_prev": x0, "g": g0, "x_best": x0, "g_best": g0, "f_best": f0,
        "x_adv": x0, "f_adv": f0, "ok": ok0, "f_prev": f0, "f_best_check": f0,
        "eta": zeros + (eps if norm == "l1" else 2 * eps),
        "ups": jnp.zeros((n,), jnp.int32), "halved": jnp.ones((n,), bool),
        "topk": zeros + 0.2, "sp_old": zeros + d,
    }
    s = jax.lax.fori_loop(0, steps, body, state)
    ok = s["ok"]
    return (jnp.where(ok.reshape(n, *dims), s["x_adv"], s["x_best"]), ok,
            jnp.where(ok, s["f_adv"], s["f_best"]))


def _best_of_restarts(fn, x, y, t, keys, eps, rho, *, restarts, **static):
    """``restarts`` runs side by side (vmap); per example the best: a successful run
    first, then the highest loss. Restart r of example i starts from split(key_i)[r]."""
    rkeys = jnp.swapaxes(jax.vmap(lambda k: jax.random.split(k, restarts))(keys), 0, 1)
    run = functools.partial(_single_run, fn, x, y, t, eps=eps, rho=rho, **static)
    xs, oks, fs = jax.vmap(run)(rkeys)  # (R, N, ...), (R, N), (R, N)
    eligible = oks | ~oks.any(0, keepdims=True)
    best = jnp.argmax(jnp.where(eligible, fs, -jnp.inf), axis=0)
    cols = jnp.arange(x.shape[0])
    return xs[best, cols], oks[best, cols], fs[best, cols]


def _check_classes(logits_shape, loss: str) -> None:
    need = {"dlr": 3, "dlr-targeted": 4}.get(loss, 2)
    if logits_shape[-1] < need:
        raise ValueError(f"the {loss} loss needs at least {need} classes, the model has "
                         f"{logits_shape[-1]}")


@functools.partial(xla.jit, static_argnames=("steps", "restarts", "norm", "loss", "hit",
                                            "bounds"))
def _apgd(fn, x, y, t, keys, *, eps, rho, steps, restarts, norm, loss, hit, bounds):
    """APGD on one chunk: x itself where the clean input already succeeds."""
    clean = fn(x)
    _check_classes(clean.shape, loss)
    done = _succeeded(clean, y, t, hit)
    xa, _, _ = _best_of_restarts(fn, x, y, t, keys, eps, rho, restarts=restarts, steps=steps,
                                 norm=norm, loss=loss, hit=hit, bounds=bounds)
    return jnp.where(done.reshape(-1, *(1,) * (x.ndim - 1)), x, xa)


@functools.partial(xla.jit, static_argnames=("steps", "restarts", "norm", "n_targets",
                                            "bounds"))
def _apgd_t(fn, x, y, keys, *, eps, rho, steps, restarts, norm, n_targets, bounds):
    """APGD-T on one chunk: the targets are the clean logits' ranks 2 .. n_targets + 1,
    scanned in that order; an example keeps its first success (and, if none, its
    highest targeted-DLR point); a target's runs are skipped when every example of the
    chunk is already broken (the reference attacks only the surviving examples)."""
    clean = fn(x)
    _check_classes(clean.shape, "dlr-targeted")
    if n_targets > clean.shape[-1] - 1:
        raise ValueError(f"n_target_classes={n_targets} but the model has only "
                         f"{clean.shape[-1] - 1} classes besides the true one")
    ranked = jnp.argsort(-clean, axis=-1)[:, 1:n_targets + 1]  # (N, n_targets)
    cols = (-1,) + (1,) * (x.ndim - 1)
    static = {"restarts": restarts, "steps": steps, "norm": norm, "loss": "dlr-targeted",
              "hit": False, "bounds": bounds}

    def one_target(carry, j_t):
        j, t = j_t
        xb, done, fb = carry
        tkeys = jax.vmap(lambda k: jax.random.fold_in(k, j))(keys)

        def attack(_):
            return _best_of_restarts(fn, x, y, t, tkeys, eps, rho, **static)

        def skip(_):
            return x, jnp.zeros_like(done), jnp.full_like(fb, -jnp.inf)

        xa, ok, f = jax.lax.cond(jnp.all(done), skip, attack, None)
        take = ~done & (ok | (f > fb))
        xb = jnp.where(take.reshape(cols), xa, xb)
        return (xb, done | ok, jnp.where(take, f, fb)), None

    done0 = clean.argmax(-1) != y
    init = (x, done0, jnp.full((x.shape[0],), -jnp.inf, x.dtype))
    (xb, _, _), _ = jax.lax.scan(one_target, init,
                                    (jnp.arange(n_targets, dtype=jnp.uint32), ranked.T))
    return jnp.where(done0.reshape(cols), x, xb)


# ---------------------------------------------------------------------------- public


def _prepare(x, y, eps, bounds, norm, steps, restarts, rho):
    check_args(eps, bounds, norm, norms=ALL_NORMS)
    if restarts < 1:
        raise ValueError(f"restarts must be >= 1, got {restarts}")
    if not isinstance(rho, jax.core.Tracer) and not 0.0 <= float(rho) <= 1.0:
        raise ValueError(f"rho must be in [0, 1], got {rho}")
    x = jnp.asarray(x)
    check_inputs(x, y, bounds, steps)
    return x, jnp.asarray(y), finite_eps(eps, x, norm, bounds), tuple(float(b) for b in bounds)


def apgd(logits_fn: LogitsFn, x: Array, y: Array, *, eps, norm: str = "linf",
         loss: str = "ce", steps: int = 100, restarts: int = 1, rho: float = 0.75,
         targeted: bool = False, bounds: Bounds = (0.0, 1.0), key: Array | None = None,
         chunk: int | None = None) -> Array:
    """APGD with the CE or DLR loss in linf, l2 or l1 (eps = inf: the whole box).

    ``y``: true labels (untargeted: success = misclassified), or the targets with
    ``targeted=True`` (success = classified as the target; loss "ce" ascends -CE(target),
    "dlr" the targeted DLR with the largest non-target logit in place of z_y, since the
    true labels are not given). ``key``: one key for the batch or one per example;
    ``chunk``: examples per jitted call (default: CPU_CHUNK on CPU, all elsewhere)."""
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; use one of {LOSSES}")
    x, y, eps, bounds = _prepare(x, y, eps, bounds, norm, steps, restarts, rho)
    n = x.shape[0]
    labels, targets = (jnp.full_like(y, -1), y) if targeted else (y, y)
    attack = functools.partial(
        _apgd, as_pytree_fn(logits_fn), eps=eps, rho=jnp.asarray(rho, x.dtype), steps=steps,
        restarts=restarts, norm=norm, loss=loss + "-targeted" if targeted else loss,
        hit=targeted, bounds=bounds)
    return run_chunked(attack, (x, labels, targets, per_example_keys(key, n)),
                       chunk_size(chunk, x, CPU_CHUNK))


@functools.partial(xla.jit, static_argnames=("steps", "restarts", "norm", "bounds"))
def _apgd_one_target(fn, x, y, t, keys, j, *, eps, rho, steps, restarts, norm, bounds):
    """Target ``t`` (one class per example) of APGD-T on one chunk: (point, success, loss).
    Its starts come from fold_in(key_i, j), as in :func:`_apgd_t`."""
    tkeys = jax.vmap(lambda k: jax.random.fold_in(k, j))(keys)
    return _best_of_restarts(fn, x, y, t, tkeys, eps, rho, restarts=restarts, steps=steps,
                             norm=norm, loss="dlr-targeted", hit=False, bounds=bounds)


@jax.jit
def _logits(fn, x):
    return fn(x)


def _apgd_t_robust_only(fn, x, y, keys, size, *, n_targets, **kw) -> Array:
    """APGD-T as the reference runs it: target j only on the examples no earlier target
    broke (host loop over targets; the still-robust examples in the chunks of
    :func:`attacks.common.bucket_sizes`, at most ``size`` rows). Per
    example the same result as :func:`_apgd_t` (its own keys, first success kept)."""
    clean = np.asarray(run_bucketed(functools.partial(_logits, fn), (np.asarray(x),), size))
    _check_classes(clean.shape, "dlr-targeted")
    if n_targets > clean.shape[-1] - 1:
        raise ValueError(f"n_target_classes={n_targets} but the model has only "
                         f"{clean.shape[-1] - 1} classes besides the true one")
    x_np, y_np = np.asarray(x), np.asarray(y)
    ranked = np.argsort(-clean, axis=-1, kind="stable")[:, 1:n_targets + 1]
    done = clean.argmax(-1) != y_np
    xb, fb = x_np.copy(), np.full(x_np.shape[0], -np.inf, x_np.dtype)
    for j in range(n_targets):
        idx = np.flatnonzero(~done)
        if not idx.size:
            break
        attack = functools.partial(_apgd_one_target, fn, j=jnp.uint32(j), **kw)
        xa, ok, f = (np.asarray(a) for a in run_bucketed(
            attack, (x_np[idx], y_np[idx], ranked[idx, j], keys[idx]), size))
        take = ok | (f > fb[idx])
        xb[idx[take]], fb[idx[take]] = xa[take], f[take]
        done[idx[ok]] = True
    return jnp.asarray(xb)


def apgd_t(logits_fn: LogitsFn, x: Array, y: Array, *, eps, norm: str = "linf",
           steps: int = 100, n_target_classes: int = 9, restarts: int = 1, rho: float = 0.75,
           bounds: Bounds = (0.0, 1.0), key: Array | None = None,
           chunk: int | None = None) -> Array:
    """APGD-T: for each of the ``n_target_classes`` most likely wrong classes (by the
    clean logits, most likely first) a targeted-DLR APGD run of ``restarts`` restarts;
    success is misclassification (as fra31's ``APGDAttack_targeted``), and each example
    keeps its first success.

    As the reference, target j runs only on the examples still robust after targets < j
    (a host loop over targets, the robust examples compacted into padded chunks; on the
    digits PGD-AT LeNet-5 this was ~3x faster than running every target on every
    example). Called inside a caller's jit (traced x) it runs every example of the batch
    on every target instead (one ``lax.scan`` over the targets, skipped once every
    example is broken), which gives the same result per example. Target j of example i
    draws its starts from fold_in(key_i, j). ``y``: true labels."""
    if n_target_classes < 1:
        raise ValueError(f"n_target_classes must be >= 1, got {n_target_classes}")
    x, y, eps, bounds = _prepare(x, y, eps, bounds, norm, steps, restarts, rho)
    fn, keys, size = as_pytree_fn(logits_fn), per_example_keys(key, x.shape[0]), \
        chunk_size(chunk, x, CPU_CHUNK)
    kw = {"eps": eps, "rho": jnp.asarray(rho, x.dtype), "steps": steps, "restarts": restarts,
          "norm": norm, "bounds": bounds}
    if not any(isinstance(a, jax.core.Tracer) for a in (x, y, eps, keys)):
        return _apgd_t_robust_only(fn, x, y, keys, bucket_limit(chunk, x, CPU_CHUNK),
                                   n_targets=n_target_classes, **kw)
    attack = functools.partial(_apgd_t, fn, n_targets=n_target_classes, **kw)
    return run_chunked(attack, (x, y, keys), size)
