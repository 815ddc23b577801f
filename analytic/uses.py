"""What the closed form is used for (the uses listed in Bibi, Alfadly, Ghanem, CVPR 2018).

* :func:`expected_logits_vs_noise`: E[g(x + n)] per class as the isotropic noise level
  sigma grows (n ~ N(0, sigma^2 I)).
* :func:`true_vs_best_other`: the expected true-class logit against the best other one
  (the argmax of E[g] is correct when the first is larger).
* :func:`confusion_matrix`: interclass confusion under noise. This project's choice of
  measure (the paper's exact one is not restated in its abstract): with the output
  approximated as N(E[g], Cov[g]) from the closed form, the probability that class j's
  logit exceeds the true class c's,
  P(g_j > g_c) = Phi((E g_j - E g_c) / sqrt(V_jj + V_cc - 2 V_jc)), averaged over the
  images of class c (row c, column j; the diagonal is 0 by definition).
* :func:`sensitivity_map`: noise of standard deviation sigma on one pixel p at a time
  (Sigma = sigma^2 e_p e_p^T, so S = sigma^2 a_p a_p^T has rank one and every pair of
  hidden units is perfectly (anti-)correlated: only the |rho| = 1 formula is needed, no
  bivariate cdf), vmapped over p.

All functions take a :class:`~analytic.linearize.Linearization` of one input and are
jittable; vmap them over images. The two that take a noise level check their inputs
(:mod:`analytic.checks`; ``check=False`` skips it).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtr

from analytic import checks
from analytic.linearize import Linearization, mm
from analytic.moments import METHODS, Moments, moments, output_moments

Array = jax.Array


def _check_noise(lin: Linearization, x: Array, sigma, method: str, name: str) -> None:
    """A consistent ``lin``, an input ``x`` of its d entries (finite), standard deviations
    ``sigma`` >= 0 and finite, a known ``method`` (values skipped when traced)."""
    checks.check_choice(method, METHODS)
    d, _, _ = checks.check_linearization(lin)
    checks.check_mean(x, d, "x", lin_shape=checks.shape_of(lin.A))
    checks.check_nonnegative(sigma, name, "standard deviation",
                             "pass sigma >= 0 (the noise is N(0, sigma^2))")


def expected_logits_vs_noise(lin: Linearization, x: Array, sigmas: Array,
                             method: str = "exact", *, check: bool = True) -> Moments:
    """Output moments for x + N(0, sigma^2 I), one row per sigma: mean (L, k), cov (L, k, k).

    ``check`` (default True): one ValueError for ``sigmas`` negative or NaN/inf, ``x``
    not of ``lin``'s input size or not finite, an inconsistent ``lin`` or an unknown
    ``method`` (values skipped when traced); ``check=False`` skips it."""
    if check:
        _check_noise(lin, x, sigmas, method, "sigmas")
    sigmas = jnp.asarray(sigmas, lin.A.dtype)
    return jax.vmap(lambda s: moments(lin, x, s * s, method, check=False))(sigmas)


def true_vs_best_other(mean: Array, label: Array) -> tuple[Array, Array]:
    """(E[g_y], max_{j != y} E[g_j]) of one output mean (k,) and its label ``y``: the
    expected logits classify the input correctly when the first exceeds the second."""
    others = jnp.where(jnp.arange(mean.shape[-1]) == label, -jnp.inf, mean)
    return mean[label], others.max()


def pairwise_exceed(mean: Array, cov: Array) -> Array:
    """P(g_j > g_i) for every (i, j) under g ~ N(mean, cov): Phi((mu_j - mu_i) / sd_ij);
    a step function where sd_ij = 0, and 0 on the diagonal."""
    var = jnp.diagonal(cov)
    v = var[:, None] + var[None, :] - 2 * cov
    diff = mean[None, :] - mean[:, None]
    ok = v > 0
    z = jnp.where(ok, diff / jnp.sqrt(jnp.where(ok, v, 1.0)), jnp.where(diff > 0, jnp.inf, -jnp.inf))
    p = ndtr(z)
    return p * (1 - jnp.eye(mean.shape[0], dtype=p.dtype))


def confusion_matrix(means: Array, covs: Array, labels: Array, num_classes: int) -> Array:
    """(C, C): row c = mean over images of class c of P(g_j > g_c) (module docstring).
    ``means`` (N, k), ``covs`` (N, k, k); rows of absent classes are 0."""
    probs = jax.vmap(pairwise_exceed)(means, covs)  # (N, k, k): [i, j] = P(g_j > g_i)
    rows = jnp.take_along_axis(probs, labels[:, None, None], axis=1)[:, 0, :]  # (N, k)
    onehot = jax.nn.one_hot(labels, num_classes, dtype=rows.dtype)
    total = mm(onehot.T, rows)
    count = onehot.sum(0)[:, None]
    return jnp.where(count > 0, total / jnp.maximum(count, 1), 0.0)


class SensitivityMap(NamedTuple):
    """Per input pixel (shaped like x): the change of the expected true-class logit,
    its standard deviation, and the largest P(g_j > g_y), under noise on that pixel."""

    mean_shift: Array
    std: Array
    flip_prob: Array


def sensitivity_map(lin: Linearization, x: Array, y: Array, sigma: float,
                    method: str = "exact", batch_size: int | None = 64, *,
                    check: bool = True) -> SensitivityMap:
    """Noise N(0, sigma^2) on one input pixel at a time (``lax.map`` over pixels in
    vmapped groups of ``batch_size``), for the true class ``y``.

    ``check`` (default True): one ValueError for ``sigma`` negative or NaN/inf, ``x`` not
    of ``lin``'s input size or not finite, ``y`` not one class index in [0, k), an
    inconsistent ``lin`` or an unknown ``method`` (values skipped when traced);
    ``check=False`` skips it."""
    if check:
        _check_noise(lin, x, sigma, method, "sigma")
        if checks.shape_of(y) != ():
            raise ValueError(f"y must be one class index (a scalar), got shape "
                             f"{checks.shape_of(y)}; vmap sensitivity_map over images")
        k = checks.shape_of(lin.B)[0]
        if not checks.traced(y) and not 0 <= int(y) < k:
            raise ValueError(f"y = {int(y)} is outside [0, {k}); the linearization has "
                             f"{k} classes")
    m = mm(lin.A, x.reshape(-1)) + lin.c1
    clean = mm(lin.B, jax.nn.relu(m)) + lin.c2

    def one(a_p: Array) -> tuple[Array, Array, Array]:
        S = (sigma * sigma) * jnp.outer(a_p, a_p)
        if method == "diagonal":
            S = jnp.diagonal(S)
        out = output_moments(m, S, lin.B, lin.c2, method, rank_one=True)
        flip = pairwise_exceed(out.mean, out.cov)[y].max()
        return out.mean[y] - clean[y], jnp.sqrt(jnp.maximum(out.cov[y, y], 0.0)), flip

    shift, std, flip = jax.lax.map(one, lin.A.T, batch_size=batch_size)
    return SensitivityMap(shift.reshape(x.shape), std.reshape(x.shape), flip.reshape(x.shape))
