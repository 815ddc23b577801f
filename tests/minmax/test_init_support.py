"""The init reading: the support bound against the real initializer, the statistics on
constructed kernels, the penalty's direction, and the vector of penalties of all readings."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from minmax import init_support, readings
from nets import models


def test_bound_is_the_support_of_the_models_conv_initializer():
    net = models.lenet5()
    kernels = {"conv1": [], "conv2": []}
    for seed in range(6):
        params = models.init_params(net, jax.random.PRNGKey(seed), (28, 28, 1))
        for name, ks in kernels.items():
            ks.append(np.asarray(params[name]["kernel"]))
    for name, ks in kernels.items():
        w = np.stack(ks)
        b = init_support.support_bound(w.shape[1:])
        fan_in = np.prod(w.shape[1:4])
        assert b == pytest.approx(2 / np.sqrt(fan_in) / 0.87962566103423978)
        assert np.abs(w).max() <= b * (1 + 1e-6)  # all inside [-b, b]
        assert np.abs(w).max() >= 0.97 * b  # and the support is reached
        # the sd is 1/sqrt(fan_in) (LeCun normal), half of b * 0.8796
        assert w.std() == pytest.approx(1 / np.sqrt(fan_in), rel=0.08)
    s = init_support.init_stats(params)
    assert float(s["conv2"]["outside"]) == 0.0


def test_support_statistics_of_constructed_kernels():
    b = init_support.support_bound((1, 1, 4, 2))  # fan_in 4
    w = jnp.asarray([[0.0, b], [-b, 2 * b], [0.5 * b, -0.8 * b], [-3 * b, 0.96 * b]]
                    ).reshape(1, 1, 4, 2)
    s = init_support.support_stats(w)
    mu = np.array([0.5, 1, 0, 1, 0.75, 0.1, 0, 0.98])
    inside = (mu > 0) & (mu < 1)
    h = np.zeros(8)
    h[inside] = -(mu[inside] * np.log2(mu[inside]) + (1 - mu[inside]) * np.log2(1 - mu[inside]))
    assert float(s["fuzziness"]) == pytest.approx(h.mean(), rel=1e-5)
    assert float(s["outside"]) == pytest.approx(2 / 8)
    assert float(s["near_ends"]) == pytest.approx(5 / 8)  # mu <= .05 or >= .95
    assert float(s["minmax_index"]) == pytest.approx(np.abs(2 * mu - 1).mean(), rel=1e-5)


def test_init_penalty_pushes_towards_the_nearer_bound_and_leaves_outside_alone():
    shape = (1, 1, 4, 1)
    b = init_support.support_bound(shape)
    w = jnp.asarray([0.3 * b, -0.2 * b, 0.7 * b, 1.5 * b]).reshape(shape)
    g = jax.grad(init_support.init_penalty())({"conv1": {"kernel": w}})["conv1"]["kernel"]
    g = np.asarray(g).ravel()
    assert np.sign(-g[:3]).tolist() == [1, -1, 1] and g[3] == 0
    mu = (np.asarray(w).ravel()[:3] + b) / (2 * b)
    np.testing.assert_allclose(g[:3], np.log2((1 - mu) / mu) / (2 * b * 4), rtol=1e-5)


def test_vector_of_penalties_one_per_reading():
    rng = np.random.default_rng(0)
    params = {"conv1": {"kernel": jnp.asarray(rng.normal(size=(3, 3, 1, 4)) * 0.3, jnp.float32)}}
    track = {"conv1": {"lo": params["conv1"]["kernel"] - 0.1, "hi": params["conv1"]["kernel"] + 0.3}}
    fn = readings.penalties()
    assert fn.uses_track and not hasattr(readings.penalties(("group", "init")), "uses_track")
    v = np.asarray(fn(params, track))
    assert v.shape == (3,)
    # trajectory: every weight at mu = 0.25 of its range
    h = -(0.25 * np.log2(0.25) + 0.75 * np.log2(0.75))
    assert v[1] == pytest.approx(h, rel=1e-5)
    assert v[2] == pytest.approx(float(init_support.init_penalty()(params)), rel=1e-6)
    with pytest.raises(ValueError, match="readings must be distinct"):
        readings.penalties(("group", "orbit"))
