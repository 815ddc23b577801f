"""analytic/relu.py: ReLU moments against numerical integration (SciPy), float64."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from analytic import relu

# Jitted: one compilation per shape instead of a few hundred eagerly dispatched ops.
cross = jax.jit(relu.relu_cross_moment)
cov = jax.jit(relu.relu_covariance)
mean1 = jax.jit(relu.relu_mean)
second1 = jax.jit(relu.relu_second_moment)
var1 = jax.jit(relu.relu_variance)


pytestmark = pytest.mark.usefixtures("enable_x64")


T = 11.0  # the standard normal mass beyond +-11 is < 1e-27: finite limits keep QUADPACK robust


def dblquad_cross(mi, mj, si, sj, rho):
    """E[relu(z_i) relu(z_j)] by scipy.integrate.dblquad over standardized coordinates:
    u ~ N(0,1) for z_i, v ~ N(0,1) independent, z_j = mj + sj (rho u + r v)."""
    r = np.sqrt((1 - rho) * (1 + rho))
    lo = max(-mi / si, -T)
    if lo >= T:
        return 0.0

    def f(v, u):
        return ((mi + si * u) * (mj + sj * (rho * u + r * v))
                * np.exp(-(u * u + v * v) / 2) / (2 * np.pi))

    def v_lo(u):
        return min(max((-mj / sj - rho * u) / r, -T), T)

    return integrate.dblquad(f, lo, T, v_lo, T, epsabs=1e-14, epsrel=1e-13)[0]


def quad_cross(mi, mj, si, sj, rho):
    """The same integral with the inner (v) integral in closed form, for |rho| near 1
    where the dblquad integrand is a ridge: E[(mj + sj(rho u + r v))_+ | u] is the
    univariate truncated-normal mean."""
    r = np.sqrt((1 - rho) * (1 + rho))
    lo = max(-mi / si, -T)
    if lo >= T:
        return 0.0

    def f(u):
        mean, sd = mj + sj * rho * u, sj * r
        inner = (mean * stats.norm.cdf(mean / sd) + sd * stats.norm.pdf(mean / sd)
                 if sd > 0 else max(mean, 0.0))
        return (mi + si * u) * stats.norm.pdf(u) * inner

    # The inner mean crosses zero at u = kink, a smoothed step of width ~ sj r / |sj rho|:
    # give QUADPACK the breakpoints so it cannot step over it.
    kink, width = -mj / (sj * rho), 8 * r / abs(rho)
    points = [p for p in (kink - width, kink, kink + width) if lo < p < T] or None
    return integrate.quad(f, lo, T, epsabs=1e-14, epsrel=1e-13, limit=200, points=points)[0]


def scale(mi, mj, si, sj):
    return (abs(mi) + si) * (abs(mj) + sj)


means = st.floats(-4, 4)
stds = st.floats(-2, 1).map(lambda e: 10.0 ** e)  # 0.01 .. 10


@settings(max_examples=30, deadline=None)
@given(means, means, stds, stds, st.floats(-0.99, 0.99))
def test_cross_moment_agrees_with_dblquad(mi, mj, si, sj, rho):
    ours = float(cross(mi, mj, si, sj, rho))
    ref = dblquad_cross(mi, mj, si, sj, rho)
    assert abs(ours - ref) <= 1e-10 * (1 + scale(mi, mj, si, sj)), (ours, ref)


@settings(max_examples=30, deadline=None)
@given(means, means, stds, stds, st.floats(1e-15, 1e-2), st.sampled_from([-1.0, 1.0]))
def test_cross_moment_near_perfect_correlation(mi, mj, si, sj, gap, sign):
    rho = sign * (1 - gap)
    ours = float(cross(mi, mj, si, sj, rho))
    ref = quad_cross(mi, mj, si, sj, rho)
    assert abs(ours - ref) <= 1e-10 * (1 + scale(mi, mj, si, sj)), (ours, ref)


@pytest.mark.parametrize("rho", [-1.0, 1.0])
@pytest.mark.parametrize("mi, mj, si, sj", [(0.5, -0.3, 1.0, 2.0), (2.0, 3.0, 0.5, 0.1),
                                            (-1.0, 1.0, 1.0, 1.0), (0.0, 0.0, 1.0, 1.0)])
def test_cross_moment_at_perfect_correlation(mi, mj, si, sj, rho):
    # z_j = mj + sj * rho * (z_i - mi) / si: a one-dimensional integral
    def f(u):
        return max(mi + si * u, 0) * max(mj + sj * rho * u, 0) * stats.norm.pdf(u)

    ref = integrate.quad(f, -T, T, epsabs=1e-14, epsrel=1e-13, limit=200,
                         points=[-mi / si, -mj / (sj * rho)])[0]
    assert abs(float(cross(mi, mj, si, sj, rho)) - ref) <= 1e-10


@settings(max_examples=30, deadline=None)
@given(st.floats(-30, 30), st.floats(-3, 1).map(lambda e: 10.0 ** e))
def test_univariate_moments_agree_with_quad(m, s):
    def moment(p):
        lo = max(-m / s, -T)
        if lo >= T:
            return 0.0
        return integrate.quad(lambda u: (m + s * u) ** p * stats.norm.pdf(u), lo, T,
                              epsabs=1e-14, epsrel=1e-13, limit=200)[0]

    m1, m2 = moment(1), moment(2)
    sc = (abs(m) + s)
    assert abs(float(mean1(m, s)) - m1) <= 1e-10 * (1 + sc)
    assert abs(float(second1(m, s)) - m2) <= 1e-10 * (1 + sc * sc)
    assert abs(float(var1(m, s)) - (m2 - m1 * m1)) <= 1e-10 * (1 + sc * sc)


def test_zero_variance_limits():
    for m in (-1.5, 0.0, 2.0):
        assert float(relu.relu_mean(m, 0.0)) == max(m, 0)
        assert float(relu.relu_second_moment(m, 0.0)) == max(m, 0) ** 2
        assert float(relu.relu_variance(m, 0.0)) == 0.0
        # one constant unit: E[relu(m) relu(z_j)] = relu(m) E[relu(z_j)], for any rho
        for rho in (-1.0, 0.3, 1.0):
            np.testing.assert_allclose(relu.relu_cross_moment(m, 0.7, 0.0, 1.3, rho),
                                       max(m, 0) * relu.relu_mean(0.7, 1.3), rtol=1e-14)
            assert float(relu.relu_covariance(m, 0.7, 0.0, 1.3, rho)) == 0.0
    # s -> 0 is continuous
    np.testing.assert_allclose(relu.relu_cross_moment(1.0, 0.5, 1e-9, 1.0, 0.4),
                               relu.relu_cross_moment(1.0, 0.5, 0.0, 1.0, 0.4), atol=1e-8)


@settings(max_examples=30, deadline=None)
@given(means, means, stds, stds, st.one_of(st.floats(-1, 1), st.sampled_from([-1.0, 1.0])))
def test_covariance_form_equals_moment_difference(mi, mj, si, sj, rho):
    direct = cross(mi, mj, si, sj, rho) - mean1(mi, si) * mean1(mj, sj)
    np.testing.assert_allclose(cov(mi, mj, si, sj, rho), direct,
                               atol=1e-12 * (1 + scale(mi, mj, si, sj)))


def test_perfect_correlation_shortcut_equals_the_general_path():
    rng = np.random.default_rng(0)
    args = [rng.normal(size=64), rng.normal(size=64), np.exp(rng.normal(size=64)),
            np.exp(rng.normal(size=64)), rng.choice([-1.0, 1.0], 64)]
    args[2][:4] = 0.0  # constant units too
    fast = jax.jit(lambda *a: relu.relu_covariance(*a, perfect=True))(*args)
    np.testing.assert_allclose(fast, cov(*args), rtol=1e-13, atol=1e-15)


def test_zero_mean_form_is_the_exact_form_at_zero_mean():
    for rho in np.linspace(-1, 1, 21):
        np.testing.assert_allclose(relu.relu_cross_moment_zero_mean(1.3, 0.4, rho),
                                   cross(0.0, 0.0, 1.3, 0.4, rho), atol=1e-14)
        np.testing.assert_allclose(relu.relu_covariance_zero_mean(1.3, 0.4, rho),
                                   cov(0.0, 0.0, 1.3, 0.4, rho), atol=1e-14)
    np.testing.assert_allclose(relu.relu_covariance_zero_mean(2.0, 2.0, 1.0),
                               4 * (np.pi - 1) / (2 * np.pi), rtol=1e-14)


def test_covariance_is_accurate_in_float32_when_mean_dominates():
    # m >> s: E[relu relu] - E E cancels ~7 digits; the flipped form keeps them.
    args = (8.0, 6.0, 0.01, 0.02, 0.6)
    ref = float(cov(*args))  # float64
    np.testing.assert_allclose(ref, 0.6 * 0.01 * 0.02, rtol=1e-12)
    jax.config.update("jax_enable_x64", False)
    try:
        f32 = relu.relu_covariance(*args)
        naive = relu.relu_cross_moment(*args) - relu.relu_mean(8.0, 0.01) * relu.relu_mean(6.0, 0.02)
        assert f32.dtype == jnp.float32
        np.testing.assert_allclose(f32, ref, rtol=1e-5)
        assert abs(float(naive) - ref) > 100 * abs(float(f32) - ref)
    finally:
        jax.config.update("jax_enable_x64", True)


FNS = (relu.relu_cross_moment, relu.relu_covariance,
       lambda mi, mj, si, sj, r: relu.relu_cross_moment_zero_mean(si, sj, r),
       lambda mi, mj, si, sj, r: relu.relu_covariance_zero_mean(si, sj, r),
       lambda mi, mj, si, sj, r: relu.relu_mean(mi, si) + relu.relu_variance(mj, sj))


def _grads(fns):
    """Gradients of each fn w.r.t. (mi, mj, si, sj, rho), vmapped, in one compilation."""
    return jax.jit(jax.vmap(lambda *a: tuple(jax.grad(f, argnums=(0, 1, 2, 3, 4))(*a) for f in fns)))


# float32 (what the attacks differentiate): every moment; float64: the exact cross moment
# (whose gradient also serves the finite-difference check), one program each.
GRADS = {False: _grads(FNS), True: _grads(FNS[:1])}

EDGES = [(0.5, -0.2, 1.0, 0.5, 1.0), (0.5, -0.2, 1.0, 0.5, -1.0), (0.5, 0.5, 1.0, 1.0, 1.0),
         (0.0, 0.0, 0.0, 0.0, 0.5), (1.0, -1.0, 0.0, 1.0, 1.0), (0.3, 0.2, 1e-30, 1.0, 0.2),
         (40.0, -40.0, 1.0, 1.0, 0.3), (0.5, 0.2, 1.0, 1.0, 1 - 1e-7), (0.0, 0.0, 1.0, 1.0, 0.0),
         (-0.5, 0.3, 1.0, 0.0, -1.0), (2.0, 3.0, 1e-3, 1e-3, 0.999),
         (0.4, -0.3, 1.2, 0.7, 0.35)]  # the last one is interior: finite differences below


def _columns(points, x64):
    return [jnp.asarray(c, jnp.float64 if x64 else jnp.float32) for c in zip(*points)]


@pytest.mark.parametrize("x64", [True, False])
def test_gradients_are_finite_at_the_edges(x64):
    jax.config.update("jax_enable_x64", x64)
    try:
        out = GRADS[x64](*_columns(EDGES, x64))
        finite = np.all([np.isfinite(np.asarray(g)) for per_fn in out for g in per_fn], axis=0)
        assert finite.all(), [e for e, ok in zip(EDGES, finite) if not ok]
    finally:
        jax.config.update("jax_enable_x64", True)


def test_gradients_match_finite_differences():
    args = np.array(EDGES[-1])
    g = np.array(GRADS[True](*_columns(EDGES, True))[0])[:, -1]  # cross moment, interior point
    for i in range(5):
        e = np.zeros(5)
        e[i] = 1e-6
        fd = (cross(*(args + e)) - cross(*(args - e))) / 2e-6
        np.testing.assert_allclose(g[i], fd, rtol=1e-6, atol=1e-9)


@pytest.fixture
def small_tiles(monkeypatch):
    """The grouped evaluation on small arrays: tiles of 64 pairs, no size threshold."""
    monkeypatch.setattr(relu, "PAIR_TILE", 64)
    monkeypatch.setattr(relu, "MIN_GROUPED", 0)


def _pairs(n, seed=0):
    """Pairs of every class: each bivariate cdf rule, |rho| = 1 and the edge, s = 0."""
    rng = np.random.default_rng(seed)
    mi, mj = rng.normal(0, 2, n), rng.normal(0, 2, n)
    si, sj = np.abs(rng.normal(0, 1, n)), np.abs(rng.normal(0, 1, n))
    si[:7] = 0.0
    sj[7:12] = 1e-300
    rho = rng.uniform(-1, 1, n)
    rho[20:30], rho[30:40], rho[40:45] = 1.0, -1.0, 1 - 1e-15
    return [jnp.asarray(a) for a in (mi, mj, si, sj, rho)]


def test_grouped_evaluation_equals_the_elementwise_form(small_tiles):
    """Sorted by class, one formula per tile (``grouped``, the default) gives the values
    of the one-expression form to rounding, under nested vmap too, each class's rule on
    its own pairs, and the same gradients. (One compiled program: the suite's time.)"""
    args = _pairs(1000)

    def loss(*a, grouped=True):
        return jnp.sum(relu.relu_covariance(*a, grouped=grouped) ** 2)

    @jax.jit
    def everything(*a):
        shaped = [b.reshape(2, 5, 100) for b in a]
        return {
            "cov": (jax.vmap(jax.vmap(lambda *b: relu.relu_covariance(*b)))(*shaped),
                    relu.relu_covariance(*shaped, grouped=False)),
            "rules": ([relu._cross_in_class(c, *a) for c in range(5)],
                      relu.relu_cross_moment(*a, grouped=False), relu.pair_class(*a)),
            "grads": [jax.grad(functools.partial(loss, grouped=g), argnums=(0, 1, 2, 3, 4))(*a)
                      for g in (True, False)],
        }

    out = everything(*args)
    np.testing.assert_allclose(*out["cov"], rtol=1e-12, atol=1e-14)
    by_class, want, cls = out["rules"]
    assert set(np.unique(np.asarray(cls))) == {0, 1, 2, 3, 4}
    for c, got in enumerate(by_class):
        sel = np.asarray(cls) == c
        np.testing.assert_allclose(np.asarray(got)[sel], np.asarray(want)[sel], rtol=1e-12,
                                   atol=1e-14)
    for a, b in zip(*out["grads"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_counting_sort_positions_are_a_stable_sort():
    cls = jnp.asarray(np.random.default_rng(1).integers(0, 5, 999))
    pos = np.asarray(relu._counting_sort_positions(cls, 5))
    np.testing.assert_array_equal(np.sort(pos), np.arange(999))
    order = np.empty(999, int)
    order[pos] = np.arange(999)
    np.testing.assert_array_equal(order, np.argsort(np.asarray(cls), kind="stable"))
