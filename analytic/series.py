"""The authors' truncated-series cross moment of ReLUs (the 2020 follow-up's baseline).

Source: Bibi, Alfadly, Ghanem's code, xmodar/network_moments, branch ``no-assumptions``
(``gaussian_relu_moments.relu_cov_mean`` and ``erf_exp_integral.py``; ``forward_gaussian``
uses 5 terms). The facts are carried over, the code is this project's own (jittable, the
number of terms a static parameter).

Their E[relu(z_i) relu(z_j)] is Rosenbaum's exact formula (:mod:`analytic.relu`) with the
one non-elementary part, L = Phi2(h_i, h_j; rho), written through the erf-exp integral

    L = Phi(h_j)/2 + I(a, b, c) / (2 sqrt(pi)),   I(a, b, c) = int_c^inf erf(a x + b) e^{-x^2} dx,
    a = rho/r,  b = h_i/(sqrt(2) r),  c = -h_j/sqrt(2),  r = sqrt(1 - rho^2),

(u_j = sqrt(2) x in L = int_{u_j > -h_j} phi(u_j) Phi((h_i + rho u_j)/r) du_j), and I by
the Taylor series of erf about b, cut after ``2 * terms`` powers of a:

    erf(b + a x) = erf(b) + (2/sqrt(pi)) sum_{k>=1} (-1)^{k-1} H_{k-1}(b) e^{-b^2} a^k x^k / k!
    I ~ erf(b) G_0 + (2/sqrt(pi)) sum_{k=1}^{2 terms} (-1)^{k-1} e^{-b^2} H_{k-1}(b) a^k/k! G_k,
    G_k = int_c^inf x^k e^{-x^2} dx,  G_0 = sqrt(pi)/2 erfc(c),  G_1 = e^{-c^2}/2,
    G_k = c^{k-1} e^{-c^2}/2 + (k-1)/2 G_{k-2}     (H: physicists' Hermite polynomials).

(Their code writes G_k with the incomplete gamma function, gamma((k+1)/2, c^2); the same
numbers.) The series converges like |a|^k, so for |a| >= 1 (|rho| >= 1/sqrt 2) they
swap the roles of the two variables (integration by parts, y = a x + b):

    I(a, b, c) = sgn(a) (sqrt(pi)/2 - I(1/|a|, -b/a, sgn(a)(a c + b)))
                 - sqrt(pi)/2 erf(a c + b) erf(c).

Near |a| = 1 (|rho| near 0.707) both expansions converge slowly and not monotonically:
with the default 5 terms that is where the error is (tests/analytic/test_series.py: up to
~1e-3 of Phi2 there, 3e-3 of the largest output covariance entry on a random 8-unit
layer, 2e-6 with 40 terms; on the trained 784-1024-10 MLP at sigma 0.1, where nearly all
|rho| < 0.3, the output variances match the exact method's to 4 digits). The diagonal
(variances) is exact, as in the reference (which copies the exact second moment onto
it); the edges, which the reference does not treat (a constant unit, |rho| -> 1), take
the exact forms of :mod:`analytic.relu`. The covariance is E[relu relu] - E[relu] E[relu]
as the reference forms it (in float32 the difference loses digits when |m| >> s, unlike
:func:`analytic.relu.relu_covariance`). Run side by side with the authors' PyTorch code
(benchmarks/analytic_bench.py, both importable from a local checkout) on LeNet-5 the
output variance errors agreed to 4 digits.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import erf, erfc, ndtr

from analytic import relu

Array = jax.Array
TERMS = 5  # the reference's default (forward_gaussian(..., terms=5))
_SQRT_PI = math.sqrt(math.pi)


def _erf_exp_series(a: Array, b: Array, c: Array, terms: int) -> Array:
    """I(a, b, c) = int_c^inf erf(a x + b) e^{-x^2} dx by the Taylor series in a, powers
    1..2 ``terms`` (module docstring). The Hermite factors are carried as the bounded
    p_n = e^{-b^2} H_n(b) a^n / n!, p_{n+1} = (2 a b p_n - 2 a^2 p_{n-1}) / (n + 1)."""
    ec = jnp.exp(-c * c) / 2
    g_prev, g = _SQRT_PI / 2 * erfc(c), ec  # G_0, G_1
    p_prev, p = jnp.zeros_like(b), jnp.exp(-b * b)  # p_{-1}, p_0
    total = erf(b) * g_prev
    ck = jnp.ones_like(c)  # c^{k-1}
    for k in range(1, 2 * terms + 1):
        if k > 1:  # advance G_k and p_{k-1}
            ck = ck * c
            g_prev, g = g, jnp.where(ec > 0, ck * ec, 0.0) + (k - 1) / 2 * g_prev
            p_prev, p = p, (2 * a * b * p - 2 * a * a * p_prev) / (k - 1)
        total = total + (2 / _SQRT_PI) * (1 if k % 2 else -1) * p * (a / k) * g
    return total


def erf_exp_integral(a: Array, b: Array, c: Array, terms: int = TERMS) -> Array:
    """int_c^inf erf(a x + b) e^{-x^2} dx by the truncated series, swapped for |a| >= 1
    (module docstring). Finite a, b; c may be +-inf."""
    a, b, c = jnp.broadcast_arrays(*(jnp.asarray(v, jnp.result_type(float, a, b, c))
                                     for v in (a, b, c)))
    big = jnp.abs(a) >= 1
    direct = _erf_exp_series(jnp.where(big, 0.0, a), b, c, terms)
    sa = jnp.where(a < 0, -1.0, 1.0)
    a_safe = jnp.where(big, a, 1.0)
    acb = a_safe * c + b
    swapped = (sa * (_SQRT_PI / 2 - _erf_exp_series(1 / jnp.abs(a_safe), -b / a_safe, sa * acb,
                                                    terms))
               - _SQRT_PI / 2 * erf(acb) * erf(c))
    return jnp.where(big, swapped, direct)


def bvn_cdf_series(h: Array, k: Array, rho: Array, terms: int = TERMS) -> Array:
    """Phi2(h, k; rho) by the truncated series: Phi(k)/2 + I(rho/r, h/(sqrt 2 r),
    -k/sqrt 2)/(2 sqrt pi); |rho| < 1 (the caller masks the edge)."""
    h, k, rho = relu._float(h, k, rho)
    r = jnp.sqrt((1 - rho) * (1 + rho))
    i = erf_exp_integral(rho / r, h / (math.sqrt(2) * r), -k / math.sqrt(2), terms)
    return jnp.clip(ndtr(k) / 2 + i / (2 * _SQRT_PI), 0.0, 1.0)


def relu_cross_moment_series(mi: Array, mj: Array, si: Array, sj: Array, rho: Array,
                             terms: int = TERMS) -> Array:
    """E[relu(z_i) relu(z_j)]: Rosenbaum's formula with Phi2 from :func:`bvn_cdf_series`;
    exact at the edges (a constant unit, |rho| -> 1), as :func:`analytic.relu.relu_cross_moment`."""
    mi, mj, si, sj, rho = relu._float(mi, mj, si, sj, rho)
    oki, ssi, hi = relu._standardize(mi, si)
    okj, ssj, hj = relu._standardize(mj, sj)
    rho = jnp.clip(rho, -1.0, 1.0)
    edge = jnp.abs(rho) >= 1 - relu._rho_edge(rho.dtype)
    rho_g = jnp.where(oki & okj & ~edge, rho, 0.0)
    # |h| beyond 40 moves Phi2 by < 1e-349 (as analytic.bvn clips): keeps b, c finite
    hic, hjc = jnp.clip(hi, -40.0, 40.0), jnp.clip(hj, -40.0, 40.0)
    ell = bvn_cdf_series(hic, hjc, rho_g, terms)
    gen = relu._cross_general(mi, mj, ssi, ssj, hi, hj, rho_g, ell)
    both = jnp.where(edge, relu._cross_degenerate(ssi, ssj, hi, hj, rho), gen)
    return relu._constant_cases(oki, okj, both, mi, mj, si, sj)


def relu_covariance_series(mi: Array, mj: Array, si: Array, sj: Array, rho: Array,
                           terms: int = TERMS) -> Array:
    """Cov[relu(z_i), relu(z_j)] = E[relu relu] (series) - E[relu(z_i)] E[relu(z_j)], the
    reference's form (the difference, not the cancellation-free form of analytic.relu);
    exactly 0 where a unit is constant (s = 0)."""
    mi, mj, si, sj, rho = relu._float(mi, mj, si, sj, rho)
    diff = (relu_cross_moment_series(mi, mj, si, sj, rho, terms)
            - relu.relu_mean(mi, si) * relu.relu_mean(mj, sj))
    s_min = relu._s_min(diff.dtype)
    return jnp.where((si > s_min) & (sj > s_min), diff, 0.0)
