"""analytic/gaussian_attack.py (moved from attacks/gaussian.py): Gaussian attacks
through the closed-form moments."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from analytic.gaussian_attack import gaussian_attack, gaussian_attack_models
from nets import models

SHAPE = (4, 4, 1)


@pytest.fixture(scope="module")
def setup():
    net = models.mlp(num_classes=5, hidden=(24,))
    params = models.init_params(net, jax.random.PRNGKey(0), SHAPE)
    params["fc1"]["bias"] = 0.2 * jax.random.normal(jax.random.PRNGKey(1), (24,))
    x = jax.random.uniform(jax.random.PRNGKey(2), (6, *SHAPE))
    y = net.apply({"params": params}, x).argmax(-1)  # attack the network's own predictions
    return net, params, x, y


@pytest.mark.parametrize("mode, targeted", [("mean", False), ("variance", False), ("both", True)])
def test_stays_in_the_eps_ball_bounds_and_sigma(setup, mode, targeted):
    net, params, x, y = setup
    eps, sigma = 0.1, 0.3
    target = (y + 1) % 5 if targeted else None
    res = gaussian_attack(net, params, x, y, eps=eps, sigma=sigma, steps=20, target=target,
                          key=jax.random.PRNGKey(3), mode=mode, samples=200)
    assert res.mean.shape == x.shape and res.std.shape == x.shape
    assert float(jnp.abs(res.mean - x).max()) <= eps + 1e-6
    assert float(res.mean.min()) >= 0.0 and float(res.mean.max()) <= 1.0
    assert float(res.std.min()) >= 0.0 and float(res.std.max()) <= sigma + 1e-6
    assert bool(((res.success_rate >= 0) & (res.success_rate <= 1)).all())
    if mode == "mean":
        np.testing.assert_allclose(res.std, sigma)
    if mode == "variance":
        np.testing.assert_array_equal(res.mean, x)
    # the optimization ascends the closed-form objective from its starting point
    start = gaussian_attack(net, params, x, y, eps=eps, sigma=sigma, steps=0, target=target,
                            key=jax.random.PRNGKey(3), mode=mode, samples=200)
    np.testing.assert_array_equal(start.mean, x)
    assert bool((res.objective >= start.objective - 1e-5).all()), (res.objective, start.objective)
    assert bool((res.objective > start.objective).any())


def test_untargeted_mean_attack_fools_the_sampled_network(setup):
    net, params, x, y = setup
    res = gaussian_attack(net, params, x, y, eps=1.0, sigma=0.05, steps=50, lr=0.1,
                          key=jax.random.PRNGKey(4), mode="mean", samples=200)
    clean = gaussian_attack(net, params, x, y, eps=0.0, sigma=0.05, steps=1,
                            key=jax.random.PRNGKey(4), mode="mean", samples=200)
    np.testing.assert_array_equal(clean.mean, x)
    # the closed form is exact for an Affine-ReLU-Affine net: expected-logit fooling
    # shows up in the samples
    fooled = res.objective > 0.5
    assert bool(fooled.any())
    assert float(res.success_rate[fooled].min()) > 0.5
    assert float(res.success_rate.mean()) > float(clean.success_rate.mean())


def test_probability_objective_and_bad_arguments(setup):
    net, params, x, y = setup
    res = gaussian_attack(net, params, x[:2], y[:2], eps=0.2, sigma=0.2, steps=5,
                          target=(y[:2] + 2) % 5, key=jax.random.PRNGKey(5), mode="both",
                          objective="probability", method="zero_mean", samples=200)
    assert bool(jnp.isfinite(res.objective).all())
    with pytest.raises(ValueError, match="unknown mode"):
        gaussian_attack(net, params, x, y, eps=0.1, sigma=0.1, key=jax.random.PRNGKey(0), mode="x")
    with pytest.raises(ValueError, match="unknown objective"):
        gaussian_attack(net, params, x, y, eps=0.1, sigma=0.1, key=jax.random.PRNGKey(0),
                        objective="x")
    with pytest.raises(ValueError, match="eps >= 0"):
        gaussian_attack(net, params, x, y, eps=-0.1, sigma=0.1, key=jax.random.PRNGKey(0))


def test_stacked_models_equal_one_attack_per_model(setup):
    net, params, x, y = setup
    other = jax.tree.map(lambda p: 0.9 * p, params)
    stacked = jax.tree.map(lambda *p: jnp.stack(p), params, other)
    key = jax.random.PRNGKey(7)
    kw = {"eps": 0.1, "sigma": 0.2, "steps": 10, "mode": "both", "samples": 100}
    both = gaussian_attack_models(net, stacked, x, y, key=key, **kw)
    assert both.mean.shape == (2, *x.shape) and both.success_rate.shape == (2, x.shape[0])
    for i, (p, k) in enumerate(zip((params, other), jax.random.split(key, 2))):
        one = gaussian_attack(net, p, x, y, key=k, **kw)
        np.testing.assert_allclose(both.mean[i], one.mean, atol=1e-5)
        np.testing.assert_allclose(both.std[i], one.std, atol=1e-5)
        np.testing.assert_allclose(both.success_rate[i], one.success_rate, atol=1e-6)
    with pytest.raises(ValueError, match="unknown mode"):
        gaussian_attack_models(net, stacked, x, y, key=key, eps=0.1, sigma=0.1, mode="x")


@pytest.mark.parametrize("targeted", [False, True])
def test_attack_convention_adapter_is_the_same_attack(setup, targeted):
    """``gaussian(logits_fn, x, y, *, eps, targeted, key)`` (the attacks convention, y the
    target when targeted) gives exactly what ``gaussian_attack`` gives."""
    from analytic import gaussian
    from attacks import model_logits_fn

    net, params, x, y = setup
    cls = (y + 1) % 5 if targeted else y
    key = jax.random.PRNGKey(4)
    ours = gaussian(model_logits_fn(net, params), x, cls, eps=0.1, sigma=0.2,
                    targeted=targeted, key=key, steps=5, samples=50)
    ref = gaussian_attack(net, params, x, y, eps=0.1, sigma=0.2, steps=5, samples=50,
                          target=cls if targeted else None, key=key)
    for a, b in zip(ours, ref, strict=True):
        np.testing.assert_array_equal(a, b)


def test_adapter_needs_the_network_not_a_plain_function(setup):
    from analytic import gaussian

    net, params, x, y = setup
    with pytest.raises(ValueError, match="model_logits_fn"):
        gaussian(lambda v: net.apply({"params": params}, v), x, y, eps=0.1, sigma=0.2,
                 key=jax.random.PRNGKey(0))
