"""analytic/series.py: the authors' truncated-series cross moment (xmodar/network_moments,
branch no-assumptions) against independent oracles (SciPy quadrature, SciPy's bivariate
normal cdf) and against the exact method, float64; and method="series" in moments."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special, stats

from analytic import relu, series
from analytic.linearize import Linearization
from analytic.moments import hidden_moments, moments

pytestmark = pytest.mark.usefixtures("enable_x64")

T = 11.0


def quad_erf_exp(a: float, b: float, c: float) -> float:
    """int_c^inf erf(a x + b) e^{-x^2} dx by QUADPACK."""
    return integrate.quad(lambda x: special.erf(a * x + b) * np.exp(-x * x), c, np.inf,
                          epsabs=1e-14, epsrel=1e-13, limit=200)[0]


def quad_cross(mi, mj, si, sj, rho):
    """E[relu(z_i) relu(z_j)] by one-dimensional quadrature (the inner expectation over
    z_j given z_i in closed form: a univariate truncated-normal mean)."""
    r = np.sqrt((1 - rho) * (1 + rho))

    def f(u):
        mean, sd = mj + sj * rho * u, sj * r
        inner = mean * stats.norm.cdf(mean / sd) + sd * stats.norm.pdf(mean / sd)
        return (mi + si * u) * stats.norm.pdf(u) * inner

    return integrate.quad(f, max(-mi / si, -T), T, epsabs=1e-14, epsrel=1e-13, limit=200)[0]


# (a, b, c) on both sides of the swap at |a| = 1, away from it (where the series converges
# geometrically, like max(|a|, 1/|a|)^(2 terms))
ABC = [(0.3, 0.2, -0.5), (-0.5, 0.4, 0.1), (0.6, -1.0, 0.7), (2.0, 0.5, -0.3), (-3.0, 1.0, 0.5),
       (1.6, -0.8, -1.2)]
erf_exp = jax.jit(series.erf_exp_integral, static_argnames="terms")


def test_erf_exp_integral_converges_to_quadrature():
    a, b, c = (np.array(v) for v in zip(*ABC))
    ref = np.array([quad_erf_exp(*p) for p in ABC])
    errs = [np.abs(np.asarray(erf_exp(a, b, c, terms=t)) - ref).max() for t in (2, 5, 10, 30)]
    assert errs[-1] < 1e-12, errs
    assert errs[0] > errs[1] > errs[2] > errs[3], errs
    assert errs[0] > 1e-4  # the truncation is visible: the oracle can tell the terms apart


PAIRS = [(0.4, -0.3, 1.2, 0.7, 0.35), (1.0, 0.5, 0.5, 1.0, -0.2), (-0.5, 0.8, 1.0, 0.3, 0.55),
         (0.2, 0.1, 0.8, 1.1, 0.9), (-1.0, -0.4, 0.6, 0.9, -0.85), (2.0, -1.0, 1.0, 2.0, 0.6)]
cross_series = jax.jit(series.relu_cross_moment_series, static_argnames="terms")


def test_cross_moment_converges_to_quadrature_and_to_the_exact_method():
    """E[relu(z_i) relu(z_j)]: the series with many terms agrees with QUADPACK and with
    the exact method; with the reference's 5 terms the error is measured (and bounded)."""
    cols = [np.array(v) for v in zip(*PAIRS)]
    ref = np.array([quad_cross(*p) for p in PAIRS])
    exact = np.asarray(jax.jit(relu.relu_cross_moment)(*cols))
    np.testing.assert_allclose(exact, ref, rtol=1e-10, atol=1e-12)
    err = {t: np.abs(np.asarray(cross_series(*cols, terms=t)) - ref) for t in (5, 40)}
    assert err[40].max() < 1e-10, err[40]
    # 5 terms (the reference's default): off in the 4th digit at worst on these pairs
    assert 1e-7 < err[5].max() < 1e-2, err[5]


def test_bvn_series_near_the_swap_is_slow():
    """|rho| near 1/sqrt(2) (|a| near 1): both expansions converge slowly, the series'
    weak point; Phi2 against SciPy, which the error there reaches ~1e-3 with 5 terms."""
    cdf = jax.jit(series.bvn_cdf_series, static_argnames="terms")
    h, k, rho = 0.5, 0.5, 0.7
    ref = stats.multivariate_normal.cdf([h, k], cov=[[1, rho], [rho, 1]])
    e5 = abs(float(cdf(h, k, rho, terms=5)) - ref)
    e40 = abs(float(cdf(h, k, rho, terms=40)) - ref)
    assert 1e-5 < e5 < 1e-1 and e40 < e5 / 3, (e5, e40)


def test_series_method_in_moments():
    """method="series": the exact mean and variances; off-diagonals converge to the exact
    method's, slowly and not monotonically here (one pair has rho = -0.687, |a| = 0.94:
    next to the swap): 3e-3 relative with the reference's 5 terms, 2e-6 with 40; the edges (a constant
    unit, |rho| = 1) without NaN."""
    rng = np.random.default_rng(0)
    n, d = 8, 5
    A = jnp.asarray(rng.normal(size=(n, d)))
    A = A.at[3].set(0.0).at[5].set(2 * A[4])  # a constant unit, a perfectly correlated pair
    lin = Linearization(A, jnp.asarray(rng.normal(size=n)), jnp.asarray(rng.normal(size=(3, n))),
                        jnp.zeros(3))
    mu, var = jnp.asarray(rng.normal(size=d)), 0.3
    one = jax.jit(moments, static_argnames=("method", "check", "terms"))
    ex = one(lin, mu, var, "exact", check=False)
    scale = float(jnp.abs(ex.cov).max())
    err = {}
    for terms in (5, 40):
        se = one(lin, mu, var, "series", check=False, terms=terms)
        assert bool(jnp.isfinite(se.cov).all())
        np.testing.assert_allclose(se.mean, ex.mean, rtol=1e-14)
        err[terms] = float(jnp.abs(se.cov - ex.cov).max()) / scale
    assert 1e-4 < err[5] < 1e-2 and err[40] < 1e-5, err
    m = lin.A @ mu + lin.c1
    S = var * lin.A @ lin.A.T
    hidden = jax.jit(hidden_moments, static_argnames="method")
    np.testing.assert_allclose(jnp.diag(hidden(m, S, "series")[1]),
                               jnp.diag(hidden(m, S, "exact")[1]), rtol=1e-12)
