"""analytic/montecarlo.py: the streaming (chunked, scanned) estimator."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from analytic import montecarlo


def test_streaming_sums_equal_the_two_pass_estimate_on_the_same_draws():
    mu = jnp.array([[0.5, -1.0], [2.0, 0.0]])
    var = jnp.array([[0.1, 0.2], [0.3, 0.4]])
    W = jax.random.normal(jax.random.PRNGKey(0), (4, 3))

    def fn(x):
        return jnp.tanh(x.reshape(x.shape[0], -1) @ W) + 5.0

    key = jax.random.PRNGKey(1)
    out = montecarlo.mc_moments(fn, mu, var, key, samples=600, chunk=200)
    draws = [fn(mu + (jnp.sqrt(var.reshape(-1)) * jax.random.normal(
        jax.random.fold_in(key, i), (200, 4))).reshape(200, *mu.shape)) for i in range(3)]
    y = np.asarray(jnp.concatenate(draws), np.float64)
    np.testing.assert_allclose(out.mean, y.mean(0), rtol=1e-5)
    np.testing.assert_allclose(out.cov, np.cov(y.T), rtol=1e-4, atol=1e-6)
    assert out.mean_se.shape == (3,) and out.cov_se.shape == (3, 3)


def test_linear_map_moments_within_standard_errors_full_singular_cov():
    W = jax.random.normal(jax.random.PRNGKey(0), (3, 4))
    mu = jnp.array([1.0, -2.0, 0.5, 0.0])
    L = jax.random.normal(jax.random.PRNGKey(1), (4, 2))
    cov = L @ L.T  # rank 2: singular, still sampled exactly
    out = jax.jit(lambda k: montecarlo.mc_moments(lambda x: x @ W.T, mu, cov, k,
                                                  samples=200_000, chunk=10_000))(jax.random.PRNGKey(2))
    assert float(jnp.abs((out.mean - W @ mu) / out.mean_se).max()) < 4
    assert float(jnp.abs((out.cov - W @ cov @ W.T) / out.cov_se).max()) < 4
    x = montecarlo.sample_inputs(jax.random.PRNGKey(3), mu, cov, 5)
    assert x.shape == (5, 4)


def test_bad_arguments():
    with pytest.raises(ValueError, match="multiple of chunk"):
        montecarlo.mc_moments(lambda x: x, jnp.zeros(2), 1.0, jax.random.PRNGKey(0),
                              samples=150, chunk=100)
    with pytest.raises(ValueError, match="neither"):
        montecarlo.sample_inputs(jax.random.PRNGKey(0), jnp.zeros(2), jnp.ones((3, 3)), 4)


def test_batch_is_one_mc_moments_per_input_with_split_keys():
    W = jax.random.normal(jax.random.PRNGKey(0), (4, 3))

    def fn(x):
        return jnp.tanh(x.reshape(x.shape[0], -1) @ W)

    mus = jax.random.uniform(jax.random.PRNGKey(1), (5, 2, 2))
    key = jax.random.PRNGKey(2)
    out = montecarlo.mc_moments_batch(fn, mus, 0.2, key, samples=400, chunk=200, batch_size=2)
    assert out.mean.shape == (5, 3) and out.cov.shape == (5, 3, 3)
    for i, k in enumerate(jax.random.split(key, 5)):
        one = montecarlo.mc_moments(fn, mus[i], 0.2, k, samples=400, chunk=200)
        np.testing.assert_allclose(out.mean[i], one.mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out.cov[i], one.cov, rtol=1e-4, atol=1e-6)
