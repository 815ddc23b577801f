"""analytic/bvn.py: the bivariate normal cdf against SciPy, edges and gradients (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from analytic.bvn import bvn_cdf, bvn_upper

pytestmark = pytest.mark.usefixtures("enable_x64")


def scipy_phi2(h: float, k: float, rho: float) -> float:
    cov = [[1.0, rho], [rho, 1.0]]
    return float(stats.multivariate_normal.cdf([h, k], mean=[0.0, 0.0], cov=cov,
                                               allow_singular=True))


EDGE_HK = [-np.inf, -1e3, -40.0, -38.0, -9.0, 0.0, 9.0, 38.0, 40.0, 1e3, np.inf]
EDGE_RHO = [-1.0, -1 + 1e-15, -1 + 1e-9, -0.925, -0.75, -0.3, 0.0, 0.3, 0.75, 0.925,
            1 - 1e-9, 1 - 1e-15, 1.0]
hk = st.one_of(st.floats(-9, 9), st.sampled_from(EDGE_HK))
rho = st.one_of(st.floats(-1, 1), st.sampled_from(EDGE_RHO),
                st.floats(1e-16, 1e-2).map(lambda e: 1 - e),
                st.floats(1e-16, 1e-2).map(lambda e: -1 + e))

_cdf = jax.jit(bvn_cdf)  # compiled per shape, instead of ~100 ops dispatched one by one
N = 32  # fixed batch size: one compilation for the whole sweep


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(hk, hk, rho), min_size=1, max_size=N))
def test_agrees_with_scipy_to_1e_10(points):
    pts = np.array(points + [(0.0, 0.0, 0.0)] * (N - len(points)))
    ours = np.asarray(_cdf(pts[:, 0], pts[:, 1], pts[:, 2]))
    assert np.isfinite(ours).all()
    for (h, k, r), value in zip(points, ours):
        ref = scipy_phi2(h, k, r) if np.isfinite(h) and np.isfinite(k) else _limit(h, k)
        assert abs(value - ref) <= 1e-10, (h, k, r, value, ref)


def _limit(h: float, k: float) -> float:
    """Phi2 with an infinite argument: 0 if one is -inf, else the other marginal."""
    if h == -np.inf or k == -np.inf:
        return 0.0
    return float(stats.norm.cdf(min(h, k)))


def test_known_values_and_symmetries():
    h, k = jnp.array([0.3, -1.2, 2.0]), jnp.array([-0.7, 0.4, 1.5])
    np.testing.assert_allclose(_cdf(h, k, 0.0), stats.norm.cdf(h) * stats.norm.cdf(k), atol=1e-15)
    np.testing.assert_allclose(_cdf(jnp.zeros(3), jnp.zeros(3), 0.5),
                               1 / 4 + np.arcsin(0.5) / (2 * np.pi), atol=1e-15)
    for r in (-0.95, -0.5, 0.2, 0.8, 0.99):
        np.testing.assert_allclose(_cdf(h, k, r), _cdf(k, h, r), atol=1e-15)
        # P(U1 < h) = P(U1 < h, U2 < k) + P(U1 < h, U2 > k), and U2 -> -U2 flips rho
        np.testing.assert_allclose(_cdf(h, k, r) + _cdf(h, -k, -r), stats.norm.cdf(h),
                                   atol=1e-14)
    np.testing.assert_allclose(jax.jit(bvn_upper)(h, k, 0.4), _cdf(-h, -k, 0.4))
    np.testing.assert_allclose(_cdf(h, k, 1.0), stats.norm.cdf(np.minimum(h, k)), atol=1e-15)
    np.testing.assert_allclose(_cdf(h, k, -1.0),
                               np.maximum(stats.norm.cdf(h) - stats.norm.cdf(-k), 0), atol=1e-15)


def test_broadcasts_and_float32_is_finite():
    out = bvn_cdf(jnp.zeros((3, 1)), jnp.zeros((1, 4)), 0.5)
    assert out.shape == (3, 4)
    jax.config.update("jax_enable_x64", False)
    try:
        h = jnp.array([-jnp.inf, -50.0, -3.0, 0.0, 3.0, 50.0, jnp.inf], jnp.float32)
        cdf32 = jax.jit(bvn_cdf)
        for r in (-1.0, -0.9999999, -0.5, 0.0, 0.5, 0.9999999, 1.0):
            v = cdf32(h[:, None], h[None, :], r)
            assert v.dtype == jnp.float32 and bool(jnp.isfinite(v).all())
            r = float(np.float32(r))  # the correlation float32 actually represents
            ref = np.array([[scipy_phi2(a, b, r) if np.isfinite(a) and np.isfinite(b) else _limit(a, b)
                             for b in np.asarray(h)] for a in np.asarray(h)])
            np.testing.assert_allclose(v, ref, atol=2e-6)
    finally:
        jax.config.update("jax_enable_x64", True)


def test_gradients_are_exact_and_nan_free_at_the_edges():
    grad = jax.jit(jax.grad(bvn_cdf, argnums=(0, 1, 2)))
    eps = 1e-6
    for h, k, r in [(0.3, -0.4, 0.5), (1.1, 0.2, -0.8), (0.3, -0.4, 0.95), (-2.0, 1.0, -0.97)]:
        gh, gk, gr = grad(h, k, r)
        np.testing.assert_allclose(gh, (_cdf(h + eps, k, r) - _cdf(h - eps, k, r)) / (2 * eps), rtol=1e-6)
        np.testing.assert_allclose(gk, (_cdf(h, k + eps, r) - _cdf(h, k - eps, r)) / (2 * eps), rtol=1e-6)
        np.testing.assert_allclose(gr, (_cdf(h, k, r + eps) - _cdf(h, k, r - eps)) / (2 * eps), rtol=1e-6)
    for h, k, r in [(0.3, 0.3, 1.0), (0.3, 0.3, -1.0), (0.3, -0.3, -1.0), (jnp.inf, 0.0, 0.5),
                    (-jnp.inf, 1.0, 1.0), (50.0, 50.0, 1 - 1e-15), (0.0, 0.0, 0.0)]:
        assert all(bool(jnp.isfinite(g)) for g in grad(h, k, r)), (h, k, r)
