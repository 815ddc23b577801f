"""analytic/moments.py (and montecarlo.py): Affine-ReLU-Affine output moments vs 10^6
Monte Carlo samples through the real network, PSD covariances, special cases, batching."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from analytic import linearize, montecarlo
from analytic import moments as moments_lib
from analytic.moments import (
    METHODS,
    _input_cov,
    _row_var,
    _sandwich,
    _unit_terms,
    batched_moments,
    exact_output_cov,
    hidden_moments,
    moments,
    output_mean,
    preactivation,
)
from nets import models

# Jitted once per shape and method: the closed form is a few hundred fused ops, and
# compiling beats dispatching them one by one.
jmoments = jax.jit(moments, static_argnames="method")

SHAPE = (2, 3, 1)  # d = 6 inputs
D, H, K = 6, 12, 3


@pytest.fixture(scope="module")
def net_params():
    net = models.mlp(num_classes=K, hidden=(H,))
    params = models.init_params(net, jax.random.PRNGKey(0), SHAPE)
    # Non-zero biases: pre-activation means of both signs (the general-mean case).
    params["fc1"]["bias"] = 0.5 * jax.random.normal(jax.random.PRNGKey(5), (H,))
    params["fc2"]["bias"] = jax.random.normal(jax.random.PRNGKey(6), (K,))
    return net, params


def _inputs():
    mu = 0.5 * jax.random.normal(jax.random.PRNGKey(1), SHAPE)
    w = 0.4 * jax.random.normal(jax.random.PRNGKey(2), (D, D))
    return mu, w @ w.T, 0.1 + jax.random.uniform(jax.random.PRNGKey(3), SHAPE)


@pytest.mark.parametrize("kind", ["full", "diagonal"])
def test_exact_moments_agree_with_a_million_samples(net_params, kind):
    net, params = net_params
    lin = linearize.affine_relu_affine(net, params)
    mu, full, diag = _inputs()
    cov = full if kind == "full" else diag
    mc = jax.jit(lambda k: montecarlo.mc_moments(montecarlo.net_fn(net, params), mu, cov, k,
                                                 samples=10**6, chunk=10**4))(jax.random.PRNGKey(4))
    out = jmoments(lin, mu, cov, "exact")
    z_mean = (out.mean - mc.mean) / mc.mean_se
    z_cov = (out.cov - mc.cov) / mc.cov_se
    assert float(jnp.abs(z_mean).max()) < 4, z_mean
    assert float(jnp.abs(z_cov).max()) < 4, z_cov
    # The approximations are measurably off on the same problem (sanity of the test's power).
    approx = jmoments(lin, mu, cov, "zero_mean")
    assert float(jnp.abs((approx.cov - mc.cov) / mc.cov_se).max()) > 4


@pytest.mark.parametrize("method", METHODS)
def test_covariances_are_symmetric_psd_and_the_mean_is_shared(net_params, method):
    net, params = net_params
    lin = linearize.affine_relu_affine(net, params)
    mu, full, diag = _inputs()
    for cov in (full, diag):
        out = jmoments(lin, mu, cov, method)
        np.testing.assert_array_equal(out.cov, out.cov.T)
        eig = np.linalg.eigvalsh(np.asarray(out.cov, np.float64))
        assert eig.min() >= -1e-6 * max(eig.max(), 1e-12), eig
        np.testing.assert_allclose(out.mean, jmoments(lin, mu, cov, "exact").mean, rtol=1e-6)
        np.testing.assert_allclose(out.mean, jax.jit(output_mean)(lin, mu, cov), rtol=1e-6)
    # No noise: the deterministic output and zero covariance.
    out = jmoments(lin, mu, jnp.zeros(SHAPE), method)
    np.testing.assert_allclose(out.mean, net.apply({"params": params}, mu[None])[0], rtol=1e-5)
    assert float(jnp.abs(out.cov).max()) == 0.0


def test_covariance_forms_agree():
    lin = linearize.Linearization(jax.random.normal(jax.random.PRNGKey(0), (5, 4)), jnp.zeros(5),
                                  jnp.eye(5), jnp.zeros(5))
    mu, v = jnp.ones(4), jnp.array([0.1, 0.2, 0.3, 0.4])
    a = preactivation(lin, mu, v)[1]
    b = preactivation(lin, mu, jnp.diag(v))[1]
    np.testing.assert_allclose(a, b, rtol=1e-5)
    np.testing.assert_allclose(preactivation(lin, mu, v, full=False)[1], jnp.diag(a), rtol=1e-5)
    np.testing.assert_allclose(preactivation(lin, mu, 0.2)[1], 0.2 * lin.A @ lin.A.T, rtol=1e-5)
    with pytest.raises(ValueError, match="neither"):
        preactivation(lin, mu, jnp.ones((3, 3)))
    with pytest.raises(ValueError, match="unknown method"):
        moments(lin, mu, v, "taylor")


def test_special_cases_of_the_methods():
    # Shapes as in the tests above, so the compiled programs are reused.
    B = jax.random.normal(jax.random.PRNGKey(1), (K, H))
    mu = jax.random.normal(jax.random.PRNGKey(2), SHAPE)
    # Orthonormal rows (and zero rows: constant units) with Sigma = I: independent hidden
    # units, so diagonal == exact.
    q, _ = jnp.linalg.qr(jax.random.normal(jax.random.PRNGKey(0), (D, D)))
    A = jnp.concatenate([q, jnp.zeros((H - D, D))])
    c1 = jax.random.normal(jax.random.PRNGKey(4), (H,))
    lin = linearize.Linearization(A, c1, B, jnp.zeros(K))
    np.testing.assert_allclose(jmoments(lin, mu, jnp.ones(SHAPE), "diagonal").cov,
                               jmoments(lin, mu, jnp.ones(SHAPE), "exact").cov, atol=1e-5)
    # c1 = -A mu: zero-mean pre-activations, the paper's zero_mean form is exact.
    A = jax.random.normal(jax.random.PRNGKey(3), (H, D))
    lin = linearize.Linearization(A, -A @ mu.reshape(-1), B, jnp.zeros(K))
    _, full, _ = _inputs()
    np.testing.assert_allclose(jmoments(lin, mu, full, "zero_mean").cov,
                               jmoments(lin, mu, full, "exact").cov, rtol=1e-4, atol=1e-5)


def test_batched_jitted_and_differentiable(net_params):
    net, params = net_params
    lin = linearize.affine_relu_affine(net, params)
    mus = 0.5 * jax.random.normal(jax.random.PRNGKey(7), (5, *SHAPE))
    covs = 0.1 + jax.random.uniform(jax.random.PRNGKey(8), (5, *SHAPE))
    # zero_mean: the same pairwise code path as exact, cheaper to compile (the exact
    # method runs batched, through lax.map, in tests/experiments/test_analytic_lens.py).
    one = jmoments(lin, mus[3], covs[3], "zero_mean")
    fn = jax.jit(chex.assert_max_traces(
        lambda m, c: batched_moments(lin, m, c, "zero_mean", shared_lin=True, batch_size=2), n=1))
    for _ in range(2):
        out = fn(mus, covs)
    np.testing.assert_allclose(out.cov[3], one.cov, rtol=1e-5, atol=1e-7)
    # Gradients w.r.t. the noise parameters, incl. one-pixel (rank-one) noise and no noise
    # at all: finite (the exact covariance's own gradients: tests/analytic/test_relu_moments.py).
    grad = jax.jit(jax.vmap(jax.grad(lambda m, v: jnp.sum(output_mean(lin, m, v))
                                     + jnp.sum(moments(lin, m, v, "diagonal").cov), argnums=(0, 1))))
    var = jnp.stack([covs[0], jnp.zeros(SHAPE).at[0, 0, 0].set(0.5), jnp.zeros(SHAPE)])
    g = grad(mus[:3], var)
    assert all(bool(jnp.isfinite(t).all()) for t in g)


def test_batch_moments_baseline_is_exact_on_the_diagonal_zero_mean_off_it():
    """The authors' released ``batch_moments`` form: exact variances, zero-mean
    off-diagonals; for units of negative mean (tiny variances, zero-mean cross terms of
    order s^2) it is indefinite, where the exact covariance is PSD."""
    m = jnp.array([-3.0, -3.0, 0.5])
    S = jnp.array([[1.0, 0.9, 0.2], [0.9, 1.0, 0.1], [0.2, 0.1, 1.0]])
    exact, zero, batch = jax.jit(lambda m, S: [hidden_moments(m, S, k)[1] for k in (
        "exact", "zero_mean", "batch_moments")])(m, S)
    np.testing.assert_allclose(jnp.diag(batch), jnp.diag(exact), rtol=1e-6)
    off = ~np.eye(3, dtype=bool)
    np.testing.assert_allclose(np.asarray(batch)[off], np.asarray(zero)[off], rtol=1e-6)
    assert np.linalg.eigvalsh(np.asarray(batch, np.float64)).min() < -0.1
    assert np.linalg.eigvalsh(np.asarray(exact, np.float64)).min() > -1e-7


@pytest.mark.parametrize(("kind", "mehler_rho"), [("scalar", None), ("full", 0.0),
                                                  ("full", 0.8)])
def test_tiled_exact_covariance_equals_the_full_pairwise_form(kind, mehler_rho, monkeypatch):
    """exact_output_cov (no n x n matrices; W only on the tiles of units near their kink,
    sorted to the front) equals B C B^T from the full pairwise C to rounding, in float64,
    with several tiles, units on both sides of the tolerance, a constant unit and a
    perfectly correlated pair (the dropped units obey |W_ij| <= |S_ij| min(q_i, q_j), which
    makes it exact to rounding); its gradient is the dense form's. ``mehler_rho``: the
    largest tile |rho| that takes Mehler's expansion (0: every tile by quadrature; 0.8:
    all but the tiles of the |rho| = 1 pair by the expansion)."""
    if mehler_rho is not None:
        monkeypatch.setattr(moments_lib, "MEHLER_RHO", mehler_rho or 1e-300)
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        n, d, k = 100, 20, 4
        A = rng.normal(size=(n, d)) / np.sqrt(d)
        A[7], A[9] = 0.0, 2 * A[8]
        A, c1 = jnp.asarray(A), jnp.asarray(rng.normal(0, 4, n))
        B = jnp.asarray(rng.normal(size=(k, n)))
        mu = jnp.asarray(rng.normal(size=d))
        w = rng.normal(size=(d, d))
        cov = jnp.asarray(0.3) if kind == "scalar" else jnp.asarray(0.3 * w @ w.T / d)
        m = A @ mu + c1
        sig = _input_cov(cov, mu, d, A.dtype)
        S = _sandwich(A, A, sig)
        active = np.asarray(_unit_terms(m, _row_var(A, sig), None)[3])
        assert 16 < active.sum() < n - 20, active.sum()  # several tiles, and units dropped

        def tiled(m):
            return exact_output_cov(A, sig, m, B, tile=16)

        def dense(m):
            return B @ hidden_moments(m, S, "exact", grouped=False)[1] @ B.T

        if kind == "scalar":
            out, ref, g, g0 = jax.jit(lambda m: (tiled(m), dense(m)) + tuple(
                jax.grad(lambda m, f=f: jnp.sum(f(m) ** 2))(m) for f in (tiled, dense)))(m)
            np.testing.assert_allclose(g, g0, rtol=1e-10, atol=1e-12 * float(jnp.abs(g0).max()))
        else:
            out, ref = jax.jit(lambda m: (tiled(m), dense(m)))(m)
        np.testing.assert_allclose(out, ref, atol=1e-13 * float(jnp.abs(ref).max()))


def test_a_batch_sharing_A_and_sigma_computes_S_once_with_the_same_values():
    """batched_moments(shared_lin, shared_cov): S = A Sigma A^T once for the batch, each
    input's tiles sliced from it; the same moments as each input alone by the full pairwise
    form (float64, 100 units: tiles of 16 by per-tile products otherwise)."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        n, d, k = 100, 20, 3
        lin = linearize.Linearization(A=jnp.asarray(rng.normal(size=(n, d)) / 5),
                                      c1=jnp.asarray(rng.normal(0, 0.3, n)),
                                      B=jnp.asarray(rng.normal(size=(k, n))), c2=jnp.zeros(k))
        mu = jnp.asarray(rng.normal(size=(3, d)))
        for cov in (jnp.asarray(0.3), jnp.asarray(rng.uniform(0.1, 0.4, d))):
            out = batched_moments(lin, mu, cov, shared_lin=True, shared_cov=True)
            ref = jax.vmap(lambda m, c=cov: moments(lin, m, c, tiled=False, grouped=False,
                                                    check=False))(mu)
            np.testing.assert_allclose(out.mean, ref.mean, rtol=1e-12)
            np.testing.assert_allclose(out.cov, ref.cov, atol=1e-12 * float(jnp.abs(ref.cov).max()))
