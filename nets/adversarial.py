"""Adversarial training objectives: PGD-AT and TRADES, for :mod:`nets.train`.

* PGD-AT (Madry et al., ICLR 2018, "Towards deep learning models resistant to
  adversarial attacks"): minimize the cross-entropy at the worst point of the Linf ball,

      min_theta  E [ max_{||d||_inf <= eps} CE(f(x + d), y) ],

  the inner max approximated by PGD from a uniform random start in the ball.
* TRADES (Zhang et al., ICML 2019, "Theoretically principled trade-off between
  robustness and accuracy"): clean cross-entropy plus beta times the KL divergence
  between the predictions at x and at the worst point for that KL,

      min_theta  E [ CE(f(x), y) + beta * max_{||d||_inf <= eps} KL(p(x) || p(x + d)) ],

  the inner max started at x + 0.001 N(0, 1), as the authors' reference code
  (github.com/yaodongyu/TRADES, ``trades.py``) does.

Both inner maximizations are :func:`perturb`: ``steps`` sign-gradient ascent steps
``x_{t+1} = Proj_{B_eps(x) ∩ [lo, hi]}(x_t + alpha sign(∇ loss(x_t)))`` in one
``lax.fori_loop``. The attack sees the parameters through ``stop_gradient`` and its
result is a constant for the outer gradient (Danskin's theorem: the gradient of the max
is the gradient at the maximizer), so nothing differentiates through the loop.

This lives in ``nets`` (not ``attacks``, which imports ``nets``) so that training can
use it; the attacks for *evaluating* models are in ``attacks``. The randomness of each
step comes from the model's training key folded with the step count (see
:func:`step_key`), so runs stay bit-reproducible and resume exactly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

Array = jax.Array
Apply = Callable[[Any, Array], Array]  # (params, images) -> logits

METHODS = ("none", "pgd", "trades")
BOUNDS = (0.0, 1.0)  # nets.data images are float32 in [0, 1]
# Folded into a model's training key to get the stream of attack randomness, apart from
# the data order (which folds the epoch into the same key).
_STREAM = 0x61647674  # "advt"


@dataclasses.dataclass(frozen=True)
class Adversarial:
    """The adversarial-training settings (the ``adversarial``, ``adv_*`` and
    ``trades_beta`` fields of :class:`nets.train.TrainSpec`).

    ``step_size`` 0 means Madry et al.'s rule of thumb ``2.5 * eps / steps`` (enough to
    cross the ball from any start in the given steps). ``warmup`` > 0 epochs of
    ``steps_per_epoch`` training steps ramp eps linearly from eps / (warmup x
    steps_per_epoch) at step 0 up to eps at the last step of the ramp: from
    the first step at full eps a fresh network can settle on the constant prediction
    (loss log 10 = 2.303) and never leave it (measured on digits: an MLP at eps 0.1,
    LeNet-5 at 0.2 or at 0.1 with learning rate 3e-3); the ramp is the usual remedy.
    """

    method: str = "none"
    eps: float = 0.1
    steps: int = 7
    step_size: float = 0.0
    beta: float = 6.0
    warmup: int = 0
    steps_per_epoch: int = 1

    @classmethod
    def of(cls, spec: Any, steps_per_epoch: int = 1) -> Adversarial:
        """The settings of a TrainSpec (or anything with the same field names)."""
        return cls(spec.adversarial, spec.adv_eps, spec.adv_steps, spec.adv_step_size,
                   spec.trades_beta, spec.adv_warmup, steps_per_epoch)

    def eps_at(self, step: Array | int) -> Array | float:
        """The radius at training step ``step`` (the warm-up ramp, then ``eps``)."""
        ramp = self.warmup * self.steps_per_epoch
        if ramp <= 1:
            return self.eps
        return self.eps * jnp.minimum(1.0, (step + 1) / ramp)

    def alpha(self, eps: Array | float) -> Array | float:
        """The inner step size at radius ``eps``."""
        return self.step_size or 2.5 * eps / self.steps

    def check(self) -> None:
        """One ValueError line naming the ``train.`` key whose value cannot work."""
        if self.method not in METHODS:
            raise ValueError(f"unknown train.adversarial {self.method!r}; choose one of {METHODS}")
        if self.method == "none":
            return
        if not 0 < self.eps <= BOUNDS[1] - BOUNDS[0]:
            raise ValueError(f"train.adv_eps must be in (0, 1] for inputs in [0, 1], got "
                             f"{self.eps}")
        if self.steps < 1:
            raise ValueError(f"train.adv_steps must be >= 1, got {self.steps}")
        if not self.step_size >= 0:
            raise ValueError(f"train.adv_step_size must be >= 0 (0: 2.5 * adv_eps / "
                             f"adv_steps), got {self.step_size}")
        if not self.beta >= 0:
            raise ValueError(f"train.trades_beta must be >= 0, got {self.beta}")
        if self.warmup < 0:
            raise ValueError(f"train.adv_warmup must be >= 0 epochs, got {self.warmup}")

    def describe(self) -> str:
        """One line for reports, e.g. ``PGD-AT, Linf eps=0.1, 7 steps of 2.5 eps/7``."""
        if self.method == "none":
            return "standard"
        name = "PGD-AT" if self.method == "pgd" else f"TRADES (beta={self.beta:g})"
        step = f"{self.step_size:g}" if self.step_size else f"2.5 eps/{self.steps}"
        ramp = f", eps ramped up over {self.warmup} epochs" if self.warmup > 0 else ""
        return f"{name}, Linf eps={self.eps:g}, {self.steps} steps of {step}{ramp}"


def step_key(key: Array, step: Array) -> Array:
    """The attack key of one training step: ``fold_in(fold_in(key, stream), step)``."""
    return jax.random.fold_in(jax.random.fold_in(key, _STREAM), step)


def perturb(loss: Callable[[Array], Array], x: Array, x0: Array, *, eps: float,
            steps: int, alpha: float, bounds: tuple[float, float] = BOUNDS) -> Array:
    """Linf projected sign-gradient ascent on the scalar ``loss`` from ``x0``.

    ``x_{t+1} = clip(clip(x_t + alpha sign(∇loss(x_t)), x - eps, x + eps), lo, hi)``;
    the two clips are the projection onto B_eps(x) ∩ [lo, hi] (both are boxes and x lies
    in both). ``loss`` sums (or averages) over the batch, so each example's gradient is
    its own. Returns the last iterate (as Madry et al. and TRADES do), inside the ball
    and the bounds whenever ``steps >= 1``.
    """
    grad = jax.grad(loss)

    def body(_, xa):
        xa = xa + alpha * jnp.sign(grad(xa))
        return jnp.clip(jnp.clip(xa, x - eps, x + eps), *bounds)

    return jax.lax.fori_loop(0, steps, body, x0)


def kl_divergence(logits_p: Array, logits_q: Array) -> Array:
    """Per-example KL(p || q) = sum_k p_k (log p_k - log q_k), p = softmax(logits_p)."""
    log_p = jax.nn.log_softmax(logits_p)
    return jnp.sum(jnp.exp(log_p) * (log_p - jax.nn.log_softmax(logits_q)), axis=-1)


def pgd_example(apply: Apply, params: Any, x: Array, y: Array, key: Array,
                adv: Adversarial, eps: Array | float | None = None) -> Array:
    """PGD-AT's training input: the CE maximizer from a uniform start in the ball of
    radius ``eps`` (default ``adv.eps``)."""
    eps = adv.eps if eps is None else eps
    fixed = jax.lax.stop_gradient(params)
    x0 = jnp.clip(x + jax.random.uniform(key, x.shape, x.dtype, -1.0, 1.0) * eps, *BOUNDS)

    def ce(xa):
        return optax.softmax_cross_entropy_with_integer_labels(apply(fixed, xa), y).sum()

    return jax.lax.stop_gradient(perturb(ce, x, x0, eps=eps, steps=adv.steps,
                                         alpha=adv.alpha(eps)))


def trades_example(apply: Apply, params: Any, x: Array, clean: Array, key: Array,
                   adv: Adversarial, eps: Array | float | None = None) -> Array:
    """TRADES's adversarial input: the KL(p(x) || p(.)) maximizer from x + 0.001 N(0, 1)
    (not clipped before the first step, as in the reference); ``clean`` = f(x)."""
    eps = adv.eps if eps is None else eps
    fixed = jax.lax.stop_gradient(params)
    clean = jax.lax.stop_gradient(clean)
    x0 = x + 0.001 * jax.random.normal(key, x.shape, x.dtype)

    def kl(xa):
        return kl_divergence(clean, apply(fixed, xa)).sum()

    return jax.lax.stop_gradient(perturb(kl, x, x0, eps=eps, steps=adv.steps,
                                         alpha=adv.alpha(eps)))


def loss(apply: Apply, params: Any, x: Array, y: Array, key: Array,
         adv: Adversarial, eps: Array | float | None = None) -> Array:
    """The batch-mean training loss of ``adv.method`` (without any regularizer) at
    radius ``eps`` (default ``adv.eps``; the training step passes ``adv.eps_at(step)``):

    none: CE(f(x), y); pgd: CE(f(x_adv), y); trades: CE(f(x), y) + beta KL(p(x) || p(x_adv)).
    """
    def ce(logits):
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    if adv.method == "none":
        return ce(apply(params, x))
    if adv.method == "pgd":
        return ce(apply(params, pgd_example(apply, params, x, y, key, adv, eps)))
    if adv.method == "trades":
        clean = apply(params, x)
        x_adv = trades_example(apply, params, x, clean, key, adv, eps)
        return ce(clean) + adv.beta * kl_divergence(clean, apply(params, x_adv)).mean()
    raise ValueError(f"unknown train.adversarial {adv.method!r}; choose one of {METHODS}")
