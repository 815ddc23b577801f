"""Mehler's expansion of Cov(relu, relu) (analytic/mehler.py) against scipy quadrature.

The oracle integrates E[(U - c1)_+ (V - c2)_+] over U with V | U Gaussian (scipy's
adaptive quad at rtol 1e-13), minus the product of the closed-form means; the series
must meet its own truncation bound |rho|^(K+1) sqrt(Var_i Var_j), far out in the tails
too (c up to 8.1, where Genz's bivariate cdf loses ~1e-11 of sqrt(Var_i Var_j)).
"""

import jax
import numpy as np
import pytest
from scipy import integrate, stats

from analytic import mehler


def _quad_cov(c1: float, c2: float, rho: float) -> float:
    sr = np.sqrt(1 - rho * rho)

    def inner(u):  # E[(V - c2)_+ | U = u] phi(u) (u - c1)
        mu = rho * u - c2
        return (u - c1) * (mu * stats.norm.cdf(mu / sr) + sr * stats.norm.pdf(mu / sr)) \
            * stats.norm.pdf(u)

    e = integrate.quad(inner, c1, np.inf, epsabs=0, epsrel=1e-13, limit=200)[0]
    m1, m2 = (stats.norm.pdf(c) - c * stats.norm.sf(c) for c in (c1, c2))
    return e - m1 * m2


def _var(c: float) -> float:  # Var((U - c)_+), closed form
    m = stats.norm.pdf(c) - c * stats.norm.sf(c)
    return (1 + c * c) * stats.norm.sf(c) - c * stats.norm.pdf(c) - m * m


def _series(c1, c2, s1, s2, rho, terms, limit=80):
    v1 = mehler.coefficients(np.float64(c1), np.float64(s1), limit)[None]
    v2 = mehler.coefficients(np.float64(c2), np.float64(s2), limit)[None]
    return float(mehler.covariance(v1, v2, np.array([[rho]]), terms)[0, 0])


@pytest.mark.parametrize("tol", [1e-4, 1e-8, 2.2e-16])
def test_the_series_meets_its_truncation_bound_against_quadrature(tol):
    rng = np.random.default_rng(int(-np.log10(tol)))
    worst = 0.0
    with jax.enable_x64(True):
        for _ in range(12):
            c1, c2 = rng.uniform(0, 8.1, 2)
            s1, s2 = rng.uniform(0.2, 3.0, 2)
            rho = rng.uniform(-0.6, 0.6)
            terms = int(mehler.terms_for(np.float64(rho), tol, 80))
            got = _series(c1, c2, s1, s2, rho, terms)
            ref = s1 * s2 * _quad_cov(c1, c2, rho)
            scale = s1 * s2 * np.sqrt(_var(c1) * _var(c2))
            # the bound, plus quadrature's own error (rtol 1e-13 of the covariance)
            assert abs(got - ref) <= tol * scale + 1e-12 * abs(ref), (c1, c2, rho, terms)
            worst = max(worst, abs(got - ref) / scale)
    if tol > 1e-10:  # the bound is not vacuous: the truncation error is of its order
        assert worst > tol / 1e3


def test_terms_for():
    # K = ceil(log tol / log|rho|) - 1: 0.5^(K+1) <= 1e-3 needs K + 1 = 10
    assert [int(mehler.terms_for(np.float32(r), 1e-3, 50)) for r in (0.5, -0.5, 0.0, 1.0)] \
        == [9, 9, 0, 51]
    # float32 eps at |rho| = 0.3 (the 6-point cdf rule's class): 13 terms
    assert int(mehler.terms_for(np.float32(0.3), float(np.finfo(np.float32).eps), 50)) == 13


def test_the_squared_coefficients_sum_to_the_variance():
    # sum_k v_k^2 = Var relu(w), the identity behind the bound: the partial sums rise to it
    # from below, the gap shrinking like k^(-3/2) (2.83x per doubling; measured 1.2e-4 of
    # Var after 100 terms at c = 0, 1.4e-2 at c = 6); coefficients 10% too large would
    # overshoot Var, 10% too small would stall 19% below it
    with jax.enable_x64(True):
        for c, s in [(0.0, 1.0), (0.7, 2.0), (2.5, 0.5), (6.0, 1.0)]:
            v = np.asarray(mehler.coefficients(np.float64(c), np.float64(s), 800))
            gap = 1 - np.cumsum(v ** 2)[[199, 399, 799]] / (s * s * _var(c))
            assert np.all(gap > 0) and gap[-1] < 1e-3, (c, gap)
            np.testing.assert_allclose(gap[:-1] / gap[1:], 2 ** 1.5, rtol=0.1)
