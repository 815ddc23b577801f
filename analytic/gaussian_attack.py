"""Gaussian attacks through the closed-form moments (Bibi, Alfadly, Ghanem, CVPR 2018:
"these expressions can be used to systematically construct targeted and non-targeted
adversarial attacks"; the construction below is this project's).

The attacker chooses the distribution of the input, x_adv ~ N(x + delta, diag(std^2)),
with the mean shift in the eps-ball, ||delta||_inf <= eps and x + delta in ``bounds``,
and per-pixel standard deviations 0 <= std <= sigma. The network is replaced by its
two-stage linearization g = B relu(A x + c1) + c2 (:mod:`analytic.linearize`, at the
clean input, or re-linearized at x + delta every step), whose output moments are closed
form (:mod:`analytic.moments`), and the objective is ascended with Adam (optax) inside a
``lax.fori_loop``, projecting after every step:

* ``objective="margin"`` (needs only E[g], exact for every method):
  untargeted  max_{j != y} E[g_j] - E[g_y];   targeted  E[g_t] - max_{j != t} E[g_j];
* ``objective="probability"`` (uses Cov[g] from ``method``, g ~ N(E g, Cov g)):
  untargeted  logsumexp_{j != y} log Phi(d_jy);  targeted  sum_{j != t} log Phi(d_tj),
  d_ab = (E g_a - E g_b) / sd(g_a - g_b).

``mode`` picks what is optimized: ``mean`` (delta; std fixed at sigma), ``variance``
(std; delta = 0) or ``both``. Success is then *verified by sampling the real network*:
the fraction of ``samples`` draws of x_adv classified as the target (targeted) or not
as y (untargeted). Noisy draws are not clipped to ``bounds``: the attack is on the
Gaussian the closed form describes; its mean stays in bounds.

:func:`gaussian_attack` attacks one model; :func:`gaussian_attack_models` the S models of
stacked parameters (one compiled program for all); :func:`gaussian` is
:func:`gaussian_attack` in the calling convention of :mod:`attacks`
(``attack(logits_fn, x, y, *, eps, targeted, bounds, key)``). This module was
``attacks/gaussian.py``; it lives in ``analytic`` so that ``attacks`` need not import
``analytic``.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.scipy.special import log_ndtr

from analytic import checks
from analytic.linearize import Linearization, linearize
from analytic.moments import METHODS, moments, output_mean
from nets.models import Net

Array = jax.Array
MODES = ("mean", "variance", "both")
OBJECTIVES = ("margin", "probability")


class GaussianAttack(NamedTuple):
    """Adversarial Gaussians and their verified effect, one row per input."""

    mean: Array          # (N, *shape): x + delta, in bounds and within eps of x
    std: Array           # (N, *shape): per-pixel standard deviation in [0, sigma]
    success_rate: Array  # (N,): fraction of sampled inputs that fool the real network
    objective: Array     # (N,): the closed-form objective at the end (> 0: expected logits fooled)


def _margin(mean: Array, cls: Array, targeted: Array) -> Array:
    others = jnp.where(jnp.arange(mean.shape[0]) == cls, -jnp.inf, mean).max()
    return jnp.where(targeted, mean[cls] - others, others - mean[cls])


def _log_prob(mean: Array, cov: Array, cls: Array, targeted: Array) -> Array:
    var = jnp.diagonal(cov)
    v = jnp.maximum(var + var[cls] - 2 * cov[cls], 1e-12)
    d = (mean[cls] - mean) / jnp.sqrt(v)  # d_cls,j
    is_cls = jnp.arange(mean.shape[0]) == cls
    towards = jnp.where(is_cls, 0.0, log_ndtr(d)).sum()
    away = jax.nn.logsumexp(jnp.where(is_cls, -jnp.inf, log_ndtr(-d)))
    return jnp.where(targeted, towards, away)


def attack_objective(lin: Linearization, mean_x: Array, std: Array, cls: Array, *,
                     targeted: bool | Array, objective: str = "margin",
                     method: str = "exact") -> Array:
    """The closed-form objective (module docstring) for x ~ N(mean_x, diag(std^2))."""
    var = std * std
    if objective == "margin":
        return _margin(output_mean(lin, mean_x, var, check=False), cls, targeted)
    out = moments(lin, mean_x, var, method, check=False)
    return _log_prob(out.mean, out.cov, cls, targeted)


def _project(x: Array, u: Array, v: Array, eps: float, bounds: tuple[float, float]):
    u = jnp.clip(u, -1.0, 1.0)
    u = jnp.where(eps > 0, (jnp.clip(x + eps * u, *bounds) - x) / jnp.where(eps > 0, eps, 1.0), 0.0)
    return u, jnp.clip(v, 0.0, 1.0)


_STATIC = ("net", "samples", "layer", "bounds", "relinearize", "objective", "method")


def _attack_one(net: Net, params, x: Array, cls: Array, key: Array, eps: Array, sigma: Array,
                lr: Array, targeted: Array, opt_mean: Array, opt_var: Array, steps: Array, *,
                samples: int, layer: str | None, bounds: tuple[float, float],
                relinearize: bool, objective: str, method: str) -> GaussianAttack:
    # targeted, the mode and steps are traced: one compiled program serves them all.
    opt = optax.adam(lr)

    def one(x_i, cls_i, key_i):
        lin0 = linearize(net, params, x_i, layer)

        def loss(theta):
            u, v = theta
            mean_x = jnp.clip(x_i + eps * u, *bounds)
            std = sigma * jnp.where(opt_var, v, 1.0)
            lin = (jax.lax.stop_gradient(linearize(net, params, mean_x, layer))
                   if relinearize else lin0)
            return -attack_objective(lin, mean_x, std, cls_i, targeted=targeted,
                                     objective=objective, method=method)

        def step(_, state):
            theta, opt_state = state
            g_u, g_v = jax.grad(loss)(theta)
            grads = (jnp.where(opt_mean, g_u, 0.0), jnp.where(opt_var, g_v, 0.0))
            updates, opt_state = opt.update(grads, opt_state, theta)
            u, v = optax.apply_updates(theta, updates)
            return _project(x_i, u, v, eps, bounds), opt_state

        theta = (jnp.zeros_like(x_i), jnp.full_like(x_i, 1.0) * jnp.where(opt_var, 0.5, 1.0))
        theta, _ = jax.lax.fori_loop(0, steps, step, (theta, opt.init(theta)))
        u, v = theta
        mean_x = jnp.clip(x_i + eps * u, *bounds)  # u is projected: this only fixes rounding
        std = sigma * v
        final = -loss(theta)
        draws = mean_x + std * jax.random.normal(key_i, (samples, *x_i.shape), x_i.dtype)
        pred = net.apply({"params": params}, draws).argmax(-1)
        fooled = jnp.where(targeted, pred == cls_i, pred != cls_i)
        return GaussianAttack(mean_x, std, fooled.mean(), final)

    keys = jax.random.split(key, x.shape[0])
    return jax.lax.map(lambda a: one(*a), (x, cls, keys))


_attack = functools.partial(jax.jit, static_argnames=_STATIC)(_attack_one)


@functools.partial(jax.jit, static_argnames=_STATIC)
def _attack_models(net: Net, params, x: Array, cls: Array, keys: Array, *args: Array,
                   **static) -> GaussianAttack:
    return jax.lax.map(lambda a: _attack_one(net, a[0], x, cls, a[1], *args, **static),
                       (params, keys))


def _num_classes(net: Net, params, x: Array, stacked: bool) -> int:
    """The network's number of outputs (abstract evaluation only, nothing is computed)."""
    def apply(p, v):
        p = jax.tree.map(lambda a: a[0], p) if stacked else p
        return net.apply({"params": p}, v)

    return int(jax.eval_shape(apply, params, jnp.asarray(x)[:1]).shape[-1])


def _check_scalar(value, name: str, positive: bool = False) -> None:
    """A finite number >= 0 (> 0 with ``positive``): eps, sigma, lr."""
    v = float(value)
    if not (v > 0 if positive else v >= 0) or not math.isfinite(v):
        hint = ("; for an unconstrained mean use eps = hi - lo"
                if name == "eps" and math.isinf(v) else "")
        raise ValueError(f"need finite {name} {'>' if positive else '>='} 0, got {value}{hint}")


def _check_arguments(net: Net, params, x: Array, y: Array, target: Array | None, *,
                     stacked: bool, check: bool, **kw) -> None:
    """The one-line ValueErrors of :func:`gaussian_attack`: the scalar arguments always,
    the arrays (``x`` in ``bounds``, labels) unless ``check=False`` or traced."""
    checks.check_choice(kw["mode"], MODES, "mode")
    checks.check_choice(kw["objective"], OBJECTIVES, "objective")
    checks.check_choice(kw["method"], METHODS, "method")
    for name in ("eps", "sigma"):
        _check_scalar(kw[name], name)
    _check_scalar(kw["lr"], "lr", positive=True)
    checks.check_int(kw["steps"], "steps", 0)  # 0: the start, N(x, sigma^2 I)
    checks.check_int(kw["samples"], "samples")
    lo, hi = kw["bounds"]
    if not lo < hi:
        raise ValueError(f"bounds must satisfy lo < hi, got {tuple(kw['bounds'])}")
    if not check:
        return
    checks.check_images(x, kw["bounds"])
    n, k = checks.shape_of(x)[0], _num_classes(net, params, x, stacked)
    checks.check_labels(y, n, k, "y")
    if target is not None:
        checks.check_labels(target, n, k, "target")


def _arguments(x: Array, y: Array, target: Array | None, *, eps: float, sigma: float,
               steps: int, mode: str, lr: float, samples: int, layer: str | None,
               bounds: tuple[float, float], relinearize: bool, objective: str,
               method: str) -> tuple[tuple, dict]:
    """(traced arguments after the key, static arguments) of ``_attack_one``, for
    arguments that passed :func:`_check_arguments`."""
    dtype = jnp.asarray(x).dtype
    targeted = target is not None
    cls = jnp.asarray(target if targeted else y, jnp.int32)
    traced = (cls, jnp.asarray(eps, dtype), jnp.asarray(sigma, dtype), jnp.asarray(lr, dtype),
              jnp.asarray(targeted), jnp.asarray(mode != "variance"),
              jnp.asarray(mode != "mean"), jnp.asarray(steps, jnp.int32))
    static = {"samples": samples, "layer": layer, "bounds": tuple(float(b) for b in bounds),
              "relinearize": relinearize, "objective": objective, "method": method}
    return traced, static


def gaussian_attack(net: Net, params, x: Array, y: Array, *, eps: float, sigma: float,
                    steps: int = 100, target: Array | None = None, key: Array,
                    mode: str = "both", lr: float = 0.05, samples: int = 1000,
                    layer: str | None = None, bounds: tuple[float, float] = (0.0, 1.0),
                    relinearize: bool = False, objective: str = "margin",
                    method: str = "exact", check: bool = True) -> GaussianAttack:
    """Gaussian attack on a batch ``x`` (N, H, W, C) with labels ``y`` (N,).

    Untargeted when ``target`` is None, else towards ``target`` (N,). ``eps`` bounds the
    mean shift (L-inf), ``sigma`` the per-pixel std; ``steps`` Adam steps of rate ``lr``
    on the normalized variables delta/eps and std/sigma; ``key`` draws the ``samples``
    verification inputs per image. See the module docstring for ``mode``, ``objective``.

    One ValueError for a bad argument: unknown ``mode`` / ``objective`` / ``method``,
    ``eps`` or ``sigma`` negative or not finite, ``lr`` <= 0, ``steps`` < 0 (0 leaves the
    start N(x, sigma^2 I) unchanged), ``samples`` < 1, ``bounds`` with lo >= hi (always checked); with ``check`` (default True) also
    ``x`` empty, not finite or outside ``bounds``, and ``y`` / ``target`` not one integer
    label per input in [0, classes) (skipped when traced). ``check=False`` skips the
    array checks in a hot loop.
    """
    _check_arguments(net, params, x, y, target, stacked=False, check=check, eps=eps,
                     sigma=sigma, steps=steps, mode=mode, lr=lr, samples=samples,
                     bounds=bounds, objective=objective, method=method)
    (cls, *traced), static = _arguments(
        x, y, target, eps=eps, sigma=sigma, steps=steps, mode=mode, lr=lr, samples=samples,
        layer=layer, bounds=bounds, relinearize=relinearize, objective=objective,
        method=method)
    return _attack(net, params, jnp.asarray(x), cls, key, *traced, **static)


def gaussian_attack_models(net: Net, params, x: Array, y: Array, *, eps: float,
                           sigma: float, steps: int = 100, target: Array | None = None,
                           key: Array, mode: str = "both", lr: float = 0.05,
                           samples: int = 1000, layer: str | None = None,
                           bounds: tuple[float, float] = (0.0, 1.0), relinearize: bool = False,
                           objective: str = "margin", method: str = "exact",
                           check: bool = True) -> GaussianAttack:
    """:func:`gaussian_attack` on each of S models whose ``params`` are stacked along a
    leading axis (as ``nets.train.fit`` returns them), on the same inputs; model i draws
    with ``split(key, S)[i]``. Every field gains a leading S axis.

    The models run one after another (``lax.map``) inside one compiled program: on the
    CPU a convolution vmapped over the models' kernels is slower than a loop over them.
    Arguments are checked as in :func:`gaussian_attack` (``check=False`` skips the array
    checks).
    """
    _check_arguments(net, params, x, y, target, stacked=True, check=check, eps=eps,
                     sigma=sigma, steps=steps, mode=mode, lr=lr, samples=samples,
                     bounds=bounds, objective=objective, method=method)
    (cls, *traced), static = _arguments(
        x, y, target, eps=eps, sigma=sigma, steps=steps, mode=mode, lr=lr, samples=samples,
        layer=layer, bounds=bounds, relinearize=relinearize, objective=objective,
        method=method)
    keys = jax.random.split(key, jax.tree.leaves(params)[0].shape[0])
    return _attack_models(net, params, jnp.asarray(x), cls, keys, *traced, **static)


def _net_and_params(logits_fn) -> tuple[Net, object]:
    """(net, params) inside a logits function made by ``attacks.model_logits_fn`` (a
    ``Partial`` of an object with a ``net`` attribute, the parameters its one argument)."""
    net = getattr(getattr(logits_fn, "func", None), "net", None)
    args = getattr(logits_fn, "args", ())
    if not isinstance(net, Net) or len(args) != 1:
        raise ValueError("the Gaussian attack linearizes the network, so it needs its layers: "
                         "pass attacks.model_logits_fn(net, params), not a plain logits "
                         f"function (got {type(logits_fn).__name__})")
    return net, args[0]


def gaussian(logits_fn, x: Array, y: Array, *, eps: float, sigma: float,
             targeted: bool = False, bounds: tuple[float, float] = (0.0, 1.0), key: Array,
             **options) -> GaussianAttack:
    """:func:`gaussian_attack` in the calling convention of the input attacks of
    :mod:`attacks`: ``logits_fn`` from ``attacks.model_logits_fn(net, params)``, ``y`` the
    true labels, or the target classes when ``targeted`` (as in ``attacks.pgd``).

    ``options`` are :func:`gaussian_attack`'s other keywords (steps, mode, lr, samples,
    layer, relinearize, objective, method, check). The result is a distribution, not
    one point: ``.mean`` (in the eps-ball and ``bounds``) plays the part of the other
    attacks' ``x_adv``, e.g. ``attacks.outcome(logits_fn, x, y, res.mean, norm="linf")``,
    and ``.success_rate`` is the sampled rate of the Gaussian around it.
    """
    net, params = _net_and_params(logits_fn)
    return gaussian_attack(net, params, x, y, eps=eps, sigma=sigma,
                           target=y if targeted else None, key=key, bounds=bounds, **options)
