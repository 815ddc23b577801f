"""How tight the closed-form moments are: analytic vs Monte Carlo, per input.

The measures of Bibi, Alfadly, Ghanem (CVPR 2018, experiments; DESIGN.md, analytic/),
for one input's analytic output moments (:class:`~analytic.moments.Moments`) against the
Monte Carlo moments of the real network (:class:`~analytic.montecarlo.MCMoments`):

* the symmetric relative error  2 |a - b| / (|a| + |b|)  of the output mean and of the
  output variances (|.| the Euclidean norm over the k classes; 0 where a = b = 0;
  between 0 and 2, scale-free and symmetric in a and b);
* the variance ratio MC / analytic, the mean over the classes of Var_MC[g_j] / Var[g_j];
* Monte Carlo's own relative error of the variances, |se(Var_MC)| / |Var_MC| (the
  batch-means standard errors of :func:`analytic.montecarlo.mc_moments`): the floor below
  which an analytic error cannot be told apart from sampling noise. For Gaussian outputs
  each variance has relative standard error sqrt(2 / (n - 1)), 0.032 at n = 2,000.

Everything works on one input and is jittable; ``jax.vmap`` it over images and models.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from analytic.moments import Moments
from analytic.montecarlo import MCMoments

Array = jax.Array


class Tightness(NamedTuple):
    """Per input: symmetric relative errors of the mean and of the variances, and the
    variance ratio MC / analytic (mean over classes)."""

    mean_error: Array
    var_error: Array
    var_ratio: Array


def sym_rel_error(a: Array, b: Array) -> Array:
    """2 |a - b| / (|a| + |b|) over the last axis (Euclidean norms); 0 where both are 0."""
    a, b = jnp.asarray(a), jnp.asarray(b)
    num = 2 * jnp.linalg.norm(a - b, axis=-1)
    den = jnp.linalg.norm(a, axis=-1) + jnp.linalg.norm(b, axis=-1)
    ok = den > 0
    return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


def variances(cov: Array) -> Array:
    """The diagonal of a covariance (..., k, k) -> (..., k)."""
    return jnp.diagonal(cov, axis1=-2, axis2=-1)


def tightness(out: Moments, mc: MCMoments) -> Tightness:
    """Analytic ``out`` vs Monte Carlo ``mc`` for one input (module docstring)."""
    v, v_mc = variances(out.cov), variances(mc.cov)
    tiny = jnp.finfo(v.dtype).tiny
    return Tightness(sym_rel_error(out.mean, mc.mean), sym_rel_error(v, v_mc),
                     jnp.mean(v_mc / jnp.maximum(v, tiny), axis=-1))


def mc_relative_error(mc: MCMoments) -> Array:
    """|se(Var_MC)| / |Var_MC| (norms over the classes): Monte Carlo's own relative
    standard error of the output variances, from its batch means."""
    v = variances(mc.cov)
    norm = jnp.linalg.norm(v, axis=-1)
    return jnp.linalg.norm(variances(mc.cov_se), axis=-1) / jnp.where(norm > 0, norm, 1.0)
