"""analytic/uses.py: class means vs noise, confusion, one-pixel sensitivity maps."""

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from analytic import linearize, uses
from analytic.moments import moments
from nets import models

SHAPE = (3, 3, 1)


def _mlp():
    net = models.mlp(num_classes=4, hidden=(6,))
    params = models.init_params(net, jax.random.PRNGKey(0), SHAPE)
    params["fc1"]["bias"] = 0.3 * jax.random.normal(jax.random.PRNGKey(1), (6,))
    return net, params, linearize.affine_relu_affine(net, params)


def test_expected_logits_start_at_the_clean_output_and_match_moments():
    net, params, lin = _mlp()
    x = jax.random.uniform(jax.random.PRNGKey(2), SHAPE)
    sig = jnp.array([0.0, 0.5, 2.0])
    out = jax.jit(uses.expected_logits_vs_noise)(lin, x, sig)
    assert out.mean.shape == (3, 4) and out.cov.shape == (3, 4, 4)
    np.testing.assert_allclose(out.mean[0], net.apply({"params": params}, x[None])[0], rtol=1e-5)
    np.testing.assert_allclose(out.cov[2], jax.jit(moments)(lin, x, 4.0).cov, rtol=1e-5)


def test_pairwise_and_confusion():
    mean = jnp.array([1.0, 0.0, 2.0])
    cov = jnp.array([[1.0, 0.2, 0.0], [0.2, 2.0, 0.1], [0.0, 0.1, 0.5]])
    p = uses.pairwise_exceed(mean, cov)
    np.testing.assert_allclose(p[0, 1], stats.norm.cdf(-1.0 / np.sqrt(1 + 2 - 0.4)), rtol=1e-5)
    np.testing.assert_allclose(p + p.T, 1 - jnp.eye(3), rtol=1e-6)
    det = uses.pairwise_exceed(mean, jnp.zeros((3, 3)))  # no noise: a step function
    np.testing.assert_array_equal(det, [[0, 0, 1], [1, 0, 1], [0, 0, 0]])
    means = jnp.stack([mean, mean + 1, mean[::-1]])
    covs = jnp.stack([cov] * 3)
    conf = uses.confusion_matrix(means, covs, jnp.array([0, 0, 2]), 3)
    assert conf.shape == (3, 3)
    np.testing.assert_allclose(conf[0], p[0], rtol=1e-6)  # a shift of all logits: same row twice
    np.testing.assert_allclose(conf[2], uses.pairwise_exceed(mean[::-1], cov)[2], rtol=1e-6)
    np.testing.assert_array_equal(conf[1], 0.0)  # no image of class 1
    assert float(jnp.trace(conf)) == 0.0


def test_sensitivity_map_is_one_pixel_moments():
    _, _, lin = _mlp()
    x = jax.random.uniform(jax.random.PRNGKey(2), SHAPE)
    lin = lin._replace(A=lin.A.at[:, 4].set(0.0))  # pixel 4 is ignored by the network
    smap = jax.jit(uses.sensitivity_map, static_argnames=("method", "batch_size"))(
        lin, x, 1, 0.7, batch_size=4)
    assert smap.std.shape == SHAPE
    assert all(bool(jnp.isfinite(v).all()) for v in smap)
    p = 5
    var = jnp.zeros(SHAPE).reshape(-1).at[p].set(0.49).reshape(SHAPE)
    ref = jax.jit(moments)(lin, x, var)
    clean = linearize.apply(lin, x)
    np.testing.assert_allclose(smap.std.reshape(-1)[p], jnp.sqrt(ref.cov[1, 1]), rtol=1e-4)
    np.testing.assert_allclose(smap.mean_shift.reshape(-1)[p], ref.mean[1] - clean[1], atol=1e-5)
    assert float(smap.std.reshape(-1)[4]) == 0.0 and float(smap.mean_shift.reshape(-1)[4]) == 0.0
    assert bool(((smap.flip_prob >= 0) & (smap.flip_prob <= 1)).all())


def test_true_vs_best_other_by_hand_and_vmapped():
    mean = jnp.array([[1.0, 3.0, 2.0], [5.0, -1.0, 4.0]])
    labels = jnp.array([1, 2])
    true, best = jax.jit(jax.vmap(uses.true_vs_best_other))(mean, labels)
    np.testing.assert_array_equal(true, [3.0, 4.0])
    np.testing.assert_array_equal(best, [2.0, 5.0])  # the label's own logit is excluded
    assert list(np.asarray(true > best)) == [True, False]  # argmax correct / wrong
