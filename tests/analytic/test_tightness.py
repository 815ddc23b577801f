"""analytic/tightness.py: symmetric relative errors, variance ratios, MC's own error."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from analytic import linearize, montecarlo, tightness
from analytic.moments import Moments, batched_moments
from analytic.montecarlo import MCMoments
from nets import models


def _oracle(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return 2 * np.linalg.norm(a - b, axis=-1) / (np.linalg.norm(a, axis=-1)
                                                 + np.linalg.norm(b, axis=-1))


def test_sym_rel_error_matches_the_formula_and_its_properties():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    err = np.asarray(tightness.sym_rel_error(a, b))
    np.testing.assert_allclose(err, _oracle(a, b), rtol=1e-6)
    np.testing.assert_allclose(tightness.sym_rel_error(b, a), err, rtol=1e-6)  # symmetric
    np.testing.assert_allclose(tightness.sym_rel_error(3 * a, 3 * b), err, rtol=1e-5)  # scale-free
    assert float(tightness.sym_rel_error(a[0], a[0])) == 0.0
    assert float(tightness.sym_rel_error(a[0], np.zeros(4))) == pytest.approx(2.0)
    assert float(tightness.sym_rel_error(np.zeros(4), np.zeros(4))) == 0.0  # no NaN
    # 10% too large a variance: 2 * 0.1 / 2.1
    assert float(tightness.sym_rel_error(1.1 * np.ones(3), np.ones(3))) == pytest.approx(0.2 / 2.1)


def test_tightness_and_mc_relative_error_by_hand():
    out = Moments(jnp.array([1.0, 2.0]), jnp.array([[4.0, 1.0], [1.0, 1.0]]))
    mc = MCMoments(jnp.array([1.0, 2.5]), jnp.array([[2.0, 0.0], [0.0, 3.0]]),
                   jnp.zeros(2), jnp.array([[0.3, 9.0], [9.0, 0.4]]))
    t = jax.jit(tightness.tightness)(out, mc)
    assert float(t.mean_error) == pytest.approx(_oracle([1, 2], [1, 2.5]), rel=1e-6)
    assert float(t.var_error) == pytest.approx(_oracle([4, 1], [2, 3]), rel=1e-6)
    assert float(t.var_ratio) == pytest.approx((2 / 4 + 3 / 1) / 2, rel=1e-6)
    # only the diagonals count: off-diagonal standard errors are ignored
    assert float(tightness.mc_relative_error(mc)) == pytest.approx(0.5 / np.sqrt(13), rel=1e-6)


def test_exact_moments_of_an_affine_relu_affine_net_are_tight_against_its_samples():
    """Where the closed form is exact (an Affine-ReLU-Affine net is its own
    linearization), its error against Monte Carlo is Monte Carlo's own error, and the
    zero-mean form (wrong when the pre-activations have a mean) is clearly worse."""
    shape = (3, 3, 1)
    net = models.mlp(num_classes=4, hidden=(12,))
    params = models.init_params(net, jax.random.PRNGKey(0), shape)
    params["fc1"]["bias"] = 0.5 * jax.random.normal(jax.random.PRNGKey(1), (12,))
    x = jax.random.uniform(jax.random.PRNGKey(2), (3, *shape))
    lins = linearize.linearize_batch(net, params, x)
    var = 0.3 ** 2
    mc = montecarlo.mc_moments_batch(montecarlo.net_fn(net, params), x, var,
                                     jax.random.PRNGKey(3), samples=40_000, chunk=4_000)
    floor = np.asarray(jax.vmap(tightness.mc_relative_error)(mc))
    assert np.all(floor < 0.03)  # ~ sqrt(2 / 40000) * ... for these near-Gaussian outputs
    exact = jax.vmap(tightness.tightness)(batched_moments(lins, x, var, "exact", shared_cov=True), mc)
    zero = jax.vmap(tightness.tightness)(batched_moments(lins, x, var, "zero_mean", shared_cov=True), mc)
    assert np.all(np.asarray(exact.var_error) < 3 * floor + 0.01)
    assert np.all(np.asarray(exact.mean_error) < 0.01)
    np.testing.assert_allclose(exact.var_ratio, 1.0, atol=0.05)
    assert np.all(np.asarray(zero.var_error) > 3 * np.asarray(exact.var_error))
