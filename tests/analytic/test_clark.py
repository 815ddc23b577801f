"""analytic/clark.py: Clark's (1961) moments of the maximum of Gaussians.

Two inputs (exact): against numerical integration of the defining integrals (scipy quad,
no Clark formula inside the oracle) and a 10^6-sample Monte Carlo for Cov(max, Y) with a
third correlated Y. The recursion for four inputs (an approximation): exact where it
must be (two inputs, one dominant input, the weights sum to one), and its error against
10^6-sample Monte Carlo measured and bounded where it is not.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate
from scipy.stats import norm

from analytic import clark

pytestmark = pytest.mark.usefixtures("enable_x64")

_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(12)
_WEIGHTS = _WEIGHTS / math.sqrt(2 * math.pi)


def expect(g, m: np.ndarray, S: np.ndarray) -> float:
    """E[g(X)] for X ~ N(m, S) in 2-D, g piecewise polynomial (degree <= 2) with its kink
    on x1 = x2: u standard normal, X = m + L u; along the direction of a = L^T (1, -1)
    (t) the kink is one point, where quad splits the integral; across it (s) g is a
    polynomial, integrated exactly by 12-node Gauss-Hermite."""
    w, U = np.linalg.eigh(S)
    L = U * np.sqrt(np.maximum(w, 0.0))
    a = L[0] - L[1]
    na = np.linalg.norm(a)
    e, e2 = a / na, np.array([-a[1], a[0]]) / na

    def inner(t: float) -> float:
        u = t * e[:, None] + _NODES[None, :] * e2[:, None]
        return float(np.sum(_WEIGHTS * g(m[:, None] + L @ u)) * norm.pdf(t))

    kink = -(m[0] - m[1]) / na
    lo, hi = min(kink, -12.0), max(kink, 12.0)
    opts = {"epsabs": 1e-13, "epsrel": 1e-12, "limit": 200}
    return integrate.quad(inner, lo, kink, **opts)[0] + integrate.quad(inner, kink, hi, **opts)[0]


CASES = [  # m1, m2, v1, v2, c12
    (0.0, 0.0, 1.0, 1.0, 0.0),
    (0.3, 0.1, 1.0, 2.0, 0.6),
    (0.3, 0.1, 1.0, 2.0, -1.2),
    (-1.0, 2.0, 0.5, 3.0, 0.9),
    (5.0, -1.0, 1.0, 1.0, 0.3),  # one input far ahead
    (1.0, 1.2, 0.04, 4.0, 0.1),  # very different spreads
]


@pytest.mark.parametrize("case", CASES)
def test_two_inputs_match_numerical_integration(case):
    m1, m2, v1, v2, c12 = case
    m, S = np.array([m1, m2]), np.array([[v1, c12], [c12, v2]])
    e_max = expect(lambda x: x.max(0), m, S)
    e_sq = expect(lambda x: x.max(0) ** 2, m, S)
    cov1 = expect(lambda x: x.max(0) * x[0], m, S) - e_max * m1
    cov2 = expect(lambda x: x.max(0) * x[1], m, S) - e_max * m2
    res = clark.clark_max(m1, m2, v1, v2, c12)
    np.testing.assert_allclose(float(res.mean), e_max, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(float(res.var), e_sq - e_max**2, rtol=1e-8, atol=1e-10)
    # Cov(max, X_j) through the weights: Cov(max, Y) = w1 Cov(X1, Y) + w2 Cov(X2, Y)
    np.testing.assert_allclose(float(clark.clark_max_cov(res.weights, v1, c12)), cov1,
                               rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(float(clark.clark_max_cov(res.weights, c12, v2)), cov2,
                               rtol=1e-8, atol=1e-10)


def test_textbook_form_agrees():
    """The cancellation-free form equals Clark's printed formulas (float64, moderate means)."""
    for m1, m2, v1, v2, c12 in CASES:
        theta = math.sqrt(v1 + v2 - 2 * c12)
        al = (m1 - m2) / theta
        mean = m1 * norm.cdf(al) + m2 * norm.cdf(-al) + theta * norm.pdf(al)
        second = ((m1**2 + v1) * norm.cdf(al) + (m2**2 + v2) * norm.cdf(-al)
                  + (m1 + m2) * theta * norm.pdf(al))
        res = clark.clark_max(m1, m2, v1, v2, c12)
        np.testing.assert_allclose(float(res.mean), mean, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(float(res.var), second - mean**2, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(np.asarray(res.weights), [norm.cdf(al), norm.cdf(-al)],
                                   rtol=1e-12, atol=1e-15)


def test_cov_with_a_third_gaussian_matches_monte_carlo():
    """Cov(max(X1, X2), Y) for a Y correlated with both, 10^6 samples, 4 standard errors."""
    m = np.array([0.2, 0.0, -0.5])
    A = np.array([[1.0, 0.0, 0.0], [0.5, 0.8, 0.0], [-0.7, 0.4, 0.6]])
    S = A @ A.T
    x = np.random.default_rng(0).multivariate_normal(m, S, size=10**6)
    mx = x[:, :2].max(1)
    prod = (mx - mx.mean()) * (x[:, 2] - x[:, 2].mean())
    se = prod.std() / math.sqrt(len(prod))
    res = clark.clark_max(m[0], m[1], S[0, 0], S[1, 1], S[0, 1])
    got = float(clark.clark_max_cov(res.weights, S[0, 2], S[1, 2]))
    assert abs(got - prod.mean()) < 4 * se, (got, prod.mean(), se)
    # the test has power: dropping the weights (an unweighted mean) is far off
    assert abs((S[0, 2] + S[1, 2]) / 2 - prod.mean()) > 20 * se


def test_constant_difference_and_identical_inputs():
    """theta = 0: the maximum is the input of the larger mean (X1 = X2 + 0.3 here), or
    X1 itself when X1 = X2; no NaN in values or gradients."""
    res = clark.clark_max(1.3, 1.0, 2.0, 2.0, 2.0)
    np.testing.assert_allclose([float(res.mean), float(res.var)], [1.3, 2.0])
    np.testing.assert_allclose(np.asarray(res.weights), [1.0, 0.0])
    same = clark.clark_max(0.5, 0.5, 2.0, 2.0, 2.0)
    np.testing.assert_allclose([float(same.mean), float(same.var)], [0.5, 2.0])
    grads = jax.grad(lambda a: clark.clark_max(a[0], a[1], a[2], a[2], a[2]).var)(
        jnp.array([0.5, 0.5, 2.0]))
    assert np.isfinite(np.asarray(grads)).all()


def test_float32_has_no_cancellation():
    """Means 100 with spreads 0.01: float32 keeps the variance to a few ulps of the
    float64 value (E[max^2] - E[max]^2 would lose every digit)."""
    args = (100.0, 100.004, 1e-4, 2e-4, 0.5e-4)
    ref = clark.clark_max(*args)
    with jax.enable_x64(False):
        got = clark.clark_max(*(np.float32(a) for a in args))
        assert got.var.dtype == jnp.float32
    np.testing.assert_allclose(float(got.var), float(ref.var), rtol=1e-4)
    np.testing.assert_allclose(float(got.mean), float(ref.mean), rtol=1e-7)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-3, 3), min_size=4, max_size=4),
       st.lists(st.floats(-1, 1), min_size=16, max_size=16))
def test_weights_are_convex_and_var_dominates_their_projection(means, entries):
    """w_j >= 0, sum w = 1 (so Cov(max, X + Z) = Cov(.) + Var Z for a common shift Z),
    and Var[max] >= w^T S w (what keeps the propagated covariances PSD)."""
    A = np.asarray(entries).reshape(4, 4)
    S = A @ A.T + 0.01 * np.eye(4)
    res = clark.max_moments(jnp.asarray(means), jnp.asarray(S))
    w = np.asarray(res.weights)
    assert (w >= 0).all() and abs(w.sum() - 1) < 1e-12
    assert float(res.var) >= w @ S @ w - 1e-12


def test_recursion_of_two_is_clark_and_diagonal_input_is_zero_covariance():
    m, S = jnp.array([0.3, -0.2]), jnp.array([[1.0, 0.4], [0.4, 0.5]])
    rec, two = clark.max_moments(m, S), clark.clark_max(0.3, -0.2, 1.0, 0.5, 0.4)
    np.testing.assert_allclose([rec.mean, rec.var], [two.mean, two.var], rtol=1e-14)
    np.testing.assert_allclose(rec.weights, two.weights, rtol=1e-14)
    m4, v4 = jnp.array([0.1, 0.5, -0.3, 0.4]), jnp.array([1.0, 0.3, 2.0, 0.7])
    for order in clark.ORDERS:
        a = clark.max_moments(m4, v4, order=order)
        b = clark.max_moments(m4, jnp.diag(v4), order=order)
        np.testing.assert_allclose([a.mean, a.var], [b.mean, b.var], rtol=1e-14)
    with pytest.raises(ValueError, match="order"):
        clark.max_moments(m4, v4, order="sorted")


def _mc_max(m, S, n=10**6, seed=0):
    x = np.random.default_rng(seed).multivariate_normal(m, S, size=n)
    mx = x.max(1)
    cov = ((mx - mx.mean())[:, None] * (x - x.mean(0))).mean(0)
    return mx.mean(), mx.var(), cov, mx.std() / math.sqrt(n)


def test_recursion_is_exact_with_one_dominant_input():
    """Input 0 ahead by > 6 standard deviations of every difference: the maximum is X_0
    up to terms below 1e-8 (Phi(-10 / sqrt 3) = 4e-9), in either order: mean and variance of X_0, weights e_0,
    within 4 standard errors of 10^6 samples as well."""
    m = np.array([10.0, 0.0, 0.5, -1.0])
    S = np.diag([1.0, 2.0, 0.5, 1.0])
    em, ev, _, se = _mc_max(m, S)
    for order in clark.ORDERS:
        res = clark.max_moments(jnp.asarray(m), jnp.asarray(S), order=order)
        np.testing.assert_allclose([float(res.mean), float(res.var)], [10.0, 1.0], atol=1e-8)
        np.testing.assert_allclose(np.asarray(res.weights), [1, 0, 0, 0], atol=1e-8)
        assert abs(float(res.mean) - em) < 4 * se
    assert abs(ev - 1.0) < 4 * math.sqrt(2 / 10**6)  # the sample itself agrees


# Four inputs where no input dominates: Clark's recursion is an approximation. Errors
# measured against the 10^6 samples below (mean in units of the max's standard deviation
# sd, variance relative; Monte Carlo's own standard errors are 0.001 sd and ~0.15%):
#                             descending (default)     given order (ascending means)
#   iid N(0, 1) (4-way tie):  mean +0.0031, var -4.5%  the same (exact mean: +0.0023 sd)
#   means 0,1,2,3, unit var:  mean +0.0024, var -1.2%  mean -0.0062, var -2.3%
#   means 0,2,4,6, unit var:  mean -0.0000, var +0.05% mean -0.0025, var +0.07%
#   equicorrelated 0.5:       mean +0.0023, var -1.2%  mean +0.0018, var -1.4%
# Cov(max, X_j): within 0.009 of Var[max] (descending), 0.03 (given).
# The bounds below (plus 4 Monte Carlo standard errors) are about 1.5x these, so the test
# fails if the recursion or its ordering gets materially worse.
APPROX = [  # name, means, covariance, mean bound (in sd), variance bound (relative)
    ("iid", np.zeros(4), np.eye(4), 0.005, 0.065),
    ("spread 1", np.arange(4.0), np.eye(4), 0.004, 0.02),
    ("spread 2", 2 * np.arange(4.0), np.eye(4), 0.001, 0.002),
    ("correlated", np.array([0.3, 0.0, 0.2, 0.1]), 0.5 * np.eye(4) + 0.5, 0.004, 0.02),
]


@pytest.mark.parametrize("name,m,S,mean_tol,var_tol", APPROX, ids=[a[0] for a in APPROX])
def test_recursion_error_for_four_inputs_is_bounded(name, m, S, mean_tol, var_tol):
    em, ev, ecov, se = _mc_max(m, S)
    res = clark.max_moments(jnp.asarray(m), jnp.asarray(S))
    sd = math.sqrt(ev)
    var_se = math.sqrt(2 / 10**6)  # relative, Gaussian-like
    assert abs(float(res.mean) - em) < mean_tol * sd + 4 * se, (float(res.mean), em)
    assert abs(float(res.var) / ev - 1) < var_tol + 4 * var_se, (float(res.var), ev)
    np.testing.assert_allclose(np.asarray(S @ res.weights), ecov, atol=0.013 * ev)


def test_the_tie_error_is_real():
    """The 4-way tie: the known E[max of 4 iid N(0, 1)] = 1.0293753730 (Tippett 1925)
    is missed by the recursion by ~0.0016, far beyond rounding: an approximation."""
    exact, _ = integrate.quad(lambda x: x * 4 * norm.pdf(x) * norm.cdf(x) ** 3,
                              -np.inf, np.inf)  # E[max] = int x d(Phi^4), 1.0293753730
    res = clark.max_moments(jnp.zeros(4), jnp.eye(4))
    assert 1e-3 < float(res.mean) - exact < 3e-3
