"""Cov(relu(w_i), relu(w_j)) by Mehler's expansion in the correlation: products only.

For w = s (U - c), U standard normal, and two such units whose U's have correlation
rho, Mehler's formula (the Hermite expansion of the bivariate normal density; e.g.
O'Donnell, *Analysis of Boolean Functions*, 2014, ch. 11) gives

    Cov(relu(w_i), relu(w_j)) = sum_{k>=1} rho^k v_k(i) v_k(j),
    v_k = s E[(U - c)_+ He_k(U)] / sqrt(k!) = s E[f^(k)(U)] / sqrt(k!)    (Stein's lemma)
    v_1 = s Phi(-c),   v_k = s phi(c) He_{k-2}(c) / sqrt(k!)  (k >= 2; f'' = delta(u - c))

with He_k the probabilists' Hermite polynomials. Since sum_k v_k(i)^2 = Var(relu(w_i)),
the terms after the K-th are bounded by Cauchy-Schwarz:

    |sum_{k>K} rho^k v_k(i) v_k(j)| <= |rho|^(K+1) sqrt(Var relu(w_i) Var relu(w_j)),

so :func:`terms_for` K = ceil(log(tol) / log|rho|) - 1 terms give the covariance to
``tol`` relative to the two units' own standard deviations (tol = the dtype's eps: the
rounding of the terms themselves). For |rho| <= 0.3, 13 terms in float32 -- three
multiplications per pair and term, where Genz's 6-point rule for the bivariate cdf
takes 6 sines, 6 exponentials and the Rosenbaum formula's two normal cdfs (issue 16:
the tiled W part of :func:`analytic.moments.exact_output_cov`).

The coefficients come from the normalized recursion h_k = He_k(c)/sqrt(k!),
h_{k+1} = (c h_k - sqrt(k) h_{k-1}) / sqrt(k+1), v_k = s phi(c) h_{k-2} / sqrt(k (k-1)):
no factorials, no overflow for the c <= 8.1 of the units that reach W.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtr

Array = jax.Array


def coefficients(c: Array, s: Array, terms: int) -> Array:
    """v_1 .. v_terms of each unit, shape (..., terms), for units s (U - c)."""
    c = jnp.asarray(c)
    s = jnp.asarray(s, c.dtype)
    pdf = jnp.exp(-c * c / 2) / math.sqrt(2 * math.pi)

    def step(carry, j):  # h_{j-1}, h_j -> v_{j+2} = pdf h_j / sqrt((j+2)(j+1)), h_{j+1}
        h_prev, h = carry
        v = pdf * h * jax.lax.rsqrt((j + 2) * (j + 1))
        return (h, (c * h - jnp.sqrt(j) * h_prev) * jax.lax.rsqrt(j + 1)), v

    j = jnp.arange(terms - 1, dtype=c.dtype)
    _, rest = jax.lax.scan(step, (jnp.zeros_like(c), jnp.ones_like(c)), j)
    v = jnp.concatenate([ndtr(-c)[None], rest]) if terms > 1 else ndtr(-c)[None]
    return s[..., None] * jnp.moveaxis(v, 0, -1)


def terms_for(rho_max: Array, tol: float, limit: int) -> Array:
    """The K whose truncation bound |rho|^(K+1) is at most ``tol`` (0 for rho = 0), as an
    int32 array; callers use the expansion only where K <= ``limit``."""
    r = jnp.clip(jnp.abs(rho_max), 0.0, 1.0)
    safe = jnp.where((r > 0) & (r < 1), r, 0.5)
    k = jnp.ceil(math.log(tol) / jnp.log(safe)) - 1
    k = jnp.where(r == 0, 0, jnp.where(r >= 1, limit + 1, k))
    return jnp.clip(k, 0, limit + 1).astype(jnp.int32)


def covariance(vi: Array, vj: Array, rho: Array, terms: int) -> Array:
    """sum_{k=1..terms} rho^k v_k(i) v_k(j) for a tile: ``vi`` (n, T), ``vj`` (m, T),
    ``rho`` (n, m), ``terms`` <= T a Python int. Horner's rule, unrolled: one fused
    elementwise pass of 3 operations per pair and term (a loop over the terms ran one
    small kernel per term, ~13 us each, issue 16)."""
    acc = jnp.zeros_like(rho)
    for k in range(terms - 1, -1, -1):  # acc = v_k(i) v_k(j) + rho acc, then rho acc
        acc = vi[:, k:k + 1] * vj[:, k][None, :] + rho * acc
    return rho * acc
