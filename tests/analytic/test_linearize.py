"""analytic/linearize.py: two-stage linearization of nets models."""

import jax
import numpy as np
import pytest

from analytic import linearize
from nets import models


def _init(net, shape):
    """Parameters, initialized under jit (one compilation instead of eager dispatch)."""
    return jax.jit(lambda k: models.init_params(net, k, shape))(jax.random.PRNGKey(0))


def test_mlp_linearization_returns_its_weights_exactly():
    net = models.mlp(num_classes=4, hidden=(7,))
    params = _init(net, (3, 3, 1))
    params["fc1"]["bias"] = jax.random.normal(jax.random.PRNGKey(1), (7,))
    params["fc2"]["bias"] = jax.random.normal(jax.random.PRNGKey(2), (4,))
    x = jax.random.uniform(jax.random.PRNGKey(3), (3, 3, 1))
    lin = jax.jit(lambda v: linearize.linearize(net, params, v))(x)
    np.testing.assert_array_equal(lin.A, params["fc1"]["kernel"].T)
    np.testing.assert_array_equal(lin.B, params["fc2"]["kernel"].T)
    np.testing.assert_allclose(lin.c1, params["fc1"]["bias"], atol=1e-6)
    np.testing.assert_allclose(lin.c2, params["fc2"]["bias"], atol=1e-6)
    direct = linearize.affine_relu_affine(net, params)
    np.testing.assert_array_equal(direct.A, lin.A)
    np.testing.assert_array_equal(direct.c1, params["fc1"]["bias"])
    # the Affine-ReLU-Affine net is its own linearization, at any input
    y = jax.random.normal(jax.random.PRNGKey(4), (3, 3, 1))
    np.testing.assert_allclose(linearize.apply(lin, y), net.apply({"params": params}, y[None])[0],
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="not an Affine-ReLU-Affine"):
        linearize.affine_relu_affine(models.mlp(hidden=(4, 4)), None)


@pytest.fixture(scope="module")
def lenet():
    net = models.lenet5()
    return net, _init(net, (28, 28, 1))


def test_lenet_linearization_is_exact_at_and_near_the_clean_input(lenet):
    net, params = lenet
    x = jax.random.uniform(jax.random.PRNGKey(1), (28, 28, 1))
    lin, logits = jax.jit(lambda v: (linearize.linearize(net, params, v),
                                     net.apply({"params": params}, v[None])[0]))(x)
    assert linearize.last_hidden_relu(net) == "relu4"
    assert lin.A.shape == (84, 784) and lin.B.shape == (10, 84)
    np.testing.assert_allclose(linearize.apply(lin, x), logits, rtol=1e-4, atol=1e-5)
    # A is the Jacobian of the pre-activation; B of the rest (fc3: its weights).
    np.testing.assert_array_equal(lin.B, params["fc3"]["kernel"].T)
    d = 1e-3 * jax.random.normal(jax.random.PRNGKey(2), x.shape)
    pre = net.apply({"params": params}, (x + d)[None], stop="relu4")[0]
    np.testing.assert_allclose(lin.A @ (x + d).reshape(-1) + lin.c1, pre, rtol=1e-3, atol=1e-4)


def test_other_layers_and_errors(lenet):
    net, params = lenet
    x = jax.random.uniform(jax.random.PRNGKey(1), (28, 28, 1))
    lin, logits = jax.jit(lambda v: (linearize.linearize(net, params, v, layer="relu3"),
                                     net.apply({"params": params}, v[None])[0]))(x)
    assert lin.A.shape == (120, 784) and lin.B.shape == (10, 120)
    np.testing.assert_allclose(linearize.apply(lin, x), logits, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="not a relu"):
        linearize.linearize(net, params, x, layer="fc1")
    with pytest.raises(ValueError, match="unknown layer"):
        linearize.linearize(net, params, x, layer="relu9")
    with pytest.raises(ValueError, match="no ReLU"):
        linearize.last_hidden_relu(models.Net((models.Layer("flatten", "flatten"),)))


def test_batch_equals_one_linearization_per_input():
    net = models.mlp(num_classes=3, hidden=(8, 6))  # split at relu2: a real Jacobian
    params = _init(net, (3, 3, 1))
    xs = jax.random.uniform(jax.random.PRNGKey(5), (5, 3, 3, 1))
    batch = jax.jit(lambda v: linearize.linearize_batch(net, params, v, batch_size=2))(xs)
    assert batch.A.shape == (5, 6, 9) and batch.c2.shape == (5, 3)
    one = jax.jit(lambda v: linearize.linearize(net, params, v))
    for i in range(5):  # 5 = two groups of 2 and a remainder
        for got, want in zip(batch, one(xs[i])):
            np.testing.assert_allclose(got[i], want, rtol=1e-5, atol=1e-6)
