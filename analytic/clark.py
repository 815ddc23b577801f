"""Moments of the maximum of jointly Gaussian variables (Clark 1961).

C. E. Clark, "The greatest of a finite set of random variables", Operations Research
9(2):145-162, 1961. For (X1, X2) jointly Gaussian with means m1, m2, variances v1, v2
and covariance c12, write theta^2 = Var(X1 - X2) = v1 + v2 - 2 c12,
alpha = (m1 - m2) / theta, phi/Phi the standard normal pdf/cdf. Exactly:

    E[max]       = m1 Phi(alpha) + m2 Phi(-alpha) + theta phi(alpha)
    E[max^2]     = (m1^2 + v1) Phi(alpha) + (m2^2 + v2) Phi(-alpha) + (m1 + m2) theta phi(alpha)
    Cov(max, Y)  = Cov(X1, Y) Phi(alpha) + Cov(X2, Y) Phi(-alpha)

for any Y jointly Gaussian with (X1, X2) (Clark's eq. 5; a consequence of Stein's lemma).

The values are computed without the cancellation of E[max^2] - E[max]^2 when the means
are large against the spread (it loses every digit of float32 at the small noise levels
of the experiments): with B the input of the larger mean, O the other and
D = O - B ~ N(-|m1 - m2|, theta^2), max = B + relu(D), so (Stein: Cov(B, relu D) =
Cov(B, D) P(D > 0))

    E[max]   = m_B + E[relu D],
    Var[max] = v_B + Var[relu D] + 2 (c12 - v_B) Phi(-|alpha|),

with the ReLU moments of :mod:`analytic.relu` (themselves cancellation-free).

**More than two inputs** (Clark's recursion, an approximation): max(X1, ..., Xk) =
max(max(max(X1, X2), X3), ...), each step treating the running maximum R as Gaussian
with its exact first two moments and its covariances with the other variables from the
formula above. The covariance of R with any Y is then a weighted sum
Cov(R, Y) = sum_j w_j Cov(X_j, Y) (the weights are products of Phi's), which
:func:`max_moments` returns so that callers can carry the covariance of the maximum with
every other unit. The approximation is exact when one input dominates (all the Phi's
are 0 or 1) and for k = 2; it is worst for near-ties of three or more inputs
(tests/analytic/test_clark.py measures it against Monte Carlo). Treating R as
Gaussian keeps the joint covariance positive semidefinite: Var[max] >= w^T S w at every
step (Cauchy-Schwarz: Var[relu D] >= Cov(relu D, D)^2 / Var D).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtr

from analytic import relu

Array = jax.Array


class MaxMoments(NamedTuple):
    """Mean, variance and weights w of a maximum: Cov(max, Y) = sum_j w_j Cov(X_j, Y)."""

    mean: Array
    var: Array
    weights: Array


def _theta_floor(dtype) -> float:
    """theta at or below this: X1 - X2 is treated as the constant m1 - m2 (the same
    threshold as the ReLU moments' s -> 0 edge, finfo.tiny^(1/4))."""
    return float(jnp.finfo(dtype).tiny) ** 0.25


def clark_max(m1: Array, m2: Array, v1: Array, v2: Array, c12: Array) -> MaxMoments:
    """E[max(X1, X2)], Var[max(X1, X2)] and the weights (Phi(alpha), Phi(-alpha)) of
    Cov(max, Y) = Cov(X1, Y) Phi(alpha) + Cov(X2, Y) Phi(-alpha), exactly (module
    docstring). Broadcasts; ``weights`` has a trailing axis of 2. At theta = 0 (X1 - X2
    constant) the maximum is the input of the larger mean (a tie splits the weights
    1/2, 1/2: then X1 = X2)."""
    dtype = jnp.result_type(float, m1, m2, v1, v2, c12)
    m1, m2, v1, v2, c12 = (jnp.asarray(a, dtype) for a in (m1, m2, v1, v2, c12))
    theta2 = jnp.maximum(v1 + v2 - 2 * c12, 0.0)
    ok = theta2 > _theta_floor(dtype) ** 2
    theta = jnp.where(ok, jnp.sqrt(jnp.where(ok, theta2, 1.0)), 0.0)
    first = m1 >= m2  # X1 is the base B (the larger mean)
    gap = -jnp.abs(m1 - m2)  # mean of D = O - B, <= 0
    # P(O > B) = Phi(-|alpha|)
    p_other = jnp.where(ok, ndtr(gap / jnp.where(ok, theta, 1.0)),
                        jnp.where(gap == 0, 0.5, 0.0))
    p_base = jnp.where(ok, ndtr(-gap / jnp.where(ok, theta, 1.0)),
                       jnp.where(gap == 0, 0.5, 1.0))
    m_b, v_b = jnp.where(first, m1, m2), jnp.where(first, v1, v2)
    mean = m_b + relu.relu_mean(gap, theta)
    var = v_b + relu.relu_variance(gap, theta) + 2 * (c12 - v_b) * p_other
    w1 = jnp.where(first, p_base, p_other)
    w2 = jnp.where(first, p_other, p_base)
    return MaxMoments(mean, jnp.maximum(var, 0.0), jnp.stack([w1, w2], axis=-1))


def clark_max_cov(weights: Array, c1y: Array, c2y: Array) -> Array:
    """Cov(max(X1, X2), Y) = Cov(X1, Y) Phi(alpha) + Cov(X2, Y) Phi(-alpha), with
    ``weights`` from :func:`clark_max` (exact for Y jointly Gaussian with X1, X2)."""
    return weights[..., 0] * c1y + weights[..., 1] * c2y


ORDERS = ("descending", "given")


def max_moments(m: Array, S: Array, *, order: str = "descending") -> MaxMoments:
    """Clark's recursion for max(X_1, ..., X_k), X ~ N(m, S): ``m`` (..., k), ``S``
    (..., k, k), or (..., k) for independent inputs (variances only). Returns the mean
    and variance (...,) and the weights (..., k) of Cov(max, Y) = sum_j w_j Cov(X_j, Y)
    (w_j >= 0, sum_j w_j = 1).

    max(...max(max(X_(1), X_(2)), X_(3))..., X_(k)), the running maximum treated as
    Gaussian at each step (module docstring): exact for k <= 2 and when one input
    dominates, an approximation otherwise. ``order``: ``"descending"`` (default) takes
    the inputs by decreasing mean, ``"given"`` in the order of the last axis. Measured on
    k = 4 unit-variance inputs with means 0, 1, 2, 3 (tests/analytic/test_clark.py),
    descending order errs less than the ascending one on the mean (Clark's recursion
    adds the small contenders to a running maximum that is already nearly Gaussian)."""
    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r}; choose one of {ORDERS}")
    m = jnp.asarray(m)
    S = jnp.asarray(S, jnp.result_type(float, m))
    if order == "given":
        return _recursion(m, S)
    perm = jnp.argsort(-m, axis=-1, stable=True)
    take = functools.partial(jnp.take_along_axis, indices=perm, axis=-1)
    if S.ndim == m.ndim:
        S_p = take(S)
    else:  # rows, then columns
        S_p = jnp.take_along_axis(jnp.take_along_axis(S, perm[..., :, None], axis=-2),
                                  perm[..., None, :], axis=-1)
    res = _recursion(take(m), S_p)
    weights = jnp.take_along_axis(res.weights, jnp.argsort(perm, axis=-1), axis=-1)
    return MaxMoments(res.mean, res.var, weights)


def _recursion(m: Array, S: Array) -> MaxMoments:
    """Clark's recursion in the order of the last axis (see :func:`max_moments`).

    The k - 1 steps run as one ``lax.scan`` (k is the pooling window: 4 for 2x2), so
    the two-input formula is compiled once: unrolled, XLA fused the chained steps into
    a program 7x the size of one step and compiled it 6x as long (issue 16). The same
    operations in the same order; XLA fuses them differently, which moves some results
    by an ulp."""
    k = m.shape[-1]
    m = m.astype(S.dtype)  # clark_max's dtype; a fixed dtype for the scan's carry
    diagonal = S.ndim == m.ndim
    var_x = S if diagonal else jnp.diagonal(S, axis1=-2, axis2=-1)
    eye = jnp.eye(k, dtype=S.dtype)
    init = (m[..., 0], var_x[..., 0], jnp.broadcast_to(eye[0], m.shape))
    if k == 1:
        return MaxMoments(*init)
    last = functools.partial(jnp.moveaxis, source=-1, destination=0)
    cols = jnp.zeros((k - 1,), S.dtype) if diagonal else last(S[..., :, 1:])

    def step(carry, xs):
        mean, var, w = carry
        m_j, v_j, s_j, e_j = xs
        c = jnp.zeros_like(mean) if diagonal else jnp.sum(w * s_j, axis=-1)
        res = clark_max(mean, m_j, var, v_j, c)
        w = res.weights[..., :1] * w + res.weights[..., 1:] * e_j
        return (res.mean, res.var, w), None

    xs = (last(m[..., 1:]), last(var_x[..., 1:]), cols, eye[1:])
    (mean, var, w), _ = jax.lax.scan(step, init, xs)
    return MaxMoments(mean, var, w)
