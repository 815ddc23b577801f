"""Layer codes: conv -> spatial mean of the post-ReLU map, dense -> activations."""

import jax
import jax.numpy as jnp
import numpy as np

from nets import models
from som import codes


def _random_params(net, shape):
    """Random weights of the right shapes (eval_shape: no slow initializer compiles)."""
    rng = np.random.default_rng(0)
    shapes = jax.eval_shape(lambda: models.init_params(net, jax.random.PRNGKey(0), shape))
    return jax.tree.map(lambda s: (0.3 * rng.normal(size=s.shape)).astype(np.float32), shapes)


def test_lenet5_codes_are_post_relu_means_and_activations():
    net = models.lenet5()
    params = _random_params(net, (28, 28, 1))
    x = jax.random.uniform(jax.random.PRNGKey(1), (5, 28, 28, 1))
    assert codes.code_sources(net) == {
        "conv1": ("relu1", "conv"), "conv2": ("relu2", "conv"), "fc1": ("relu3", "dense"),
        "fc2": ("relu4", "dense"), "fc3": ("fc3", "dense")}
    out = codes.layer_codes(net, params, x, chunk=2)  # chunks of 2, last one padded
    _, acts = jax.jit(lambda p, v: net.apply({"params": p}, v, capture=True))(params, x)
    np.testing.assert_allclose(out["conv1"], acts["relu1"].mean((1, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["conv2"], acts["relu2"].mean((1, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["fc2"], acts["relu4"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["fc3"], acts["fc3"], rtol=1e-5, atol=1e-5)
    assert [v.shape[1] for v in out.values()] == [6, 16, 120, 84, 10]
    stacked = codes.pad_stack(out)
    assert stacked.shape == (5, 5, 120)
    np.testing.assert_array_equal(stacked[0, :, :6], out["conv1"])
    assert float(jnp.abs(stacked[0, :, 6:]).max()) == 0.0


def test_code_sources_follow_the_relu_wherever_it_is():
    assert codes.code_sources(models.lenet_bibi())["conv1"] == ("relu1", "conv")  # after pool
    assert codes.code_sources(models.mlp(hidden=(8,))) == {"fc1": ("relu1", "dense"),
                                                           "fc2": ("fc2", "dense")}
    assert codes.check_layers(models.lenet5(), ()) == ("conv1", "conv2", "fc1", "fc2", "fc3")
