"""analytic/ asks for HIGHEST matmul precision in every product (issue 18).

On CPU float32 products are exact at any precision setting, so the values cannot show
it; the programs can: every dot_general and convolution in the jaxprs of the entry points
carries precision HIGHEST (on a TPU, DEFAULT is one bfloat16 pass; on an Ampere+ GPU, TF32).
"""

import jax
import jax.numpy as jnp
import pytest

import analytic
from analytic import linearize as L
from analytic import moments, montecarlo, propagate, uses
from nets import models

PRODUCTS = ("dot_general", "conv_general_dilated")


def _precisions(jaxpr) -> list:
    """(primitive, precision) of every product in a jaxpr, inner jaxprs included."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in PRODUCTS:
            found.append((eqn.primitive.name, eqn.params["precision"]))
        for param in eqn.params.values():
            for inner in param if isinstance(param, tuple | list) else (param,):
                inner = getattr(inner, "jaxpr", inner)  # ClosedJaxpr -> Jaxpr
                if hasattr(inner, "eqns"):
                    found += _precisions(inner)
    return found


def _all_highest(fn, *args) -> None:
    found = _precisions(jax.make_jaxpr(fn)(*args).jaxpr)
    assert found, "no products traced: the test would prove nothing"
    highest = (jax.lax.Precision.HIGHEST, jax.lax.Precision.HIGHEST)
    low = [(name, p) for name, p in found if p not in (highest, jax.lax.Precision.HIGHEST)]
    assert not low, f"{len(low)} of {len(found)} products below HIGHEST: {low[:3]}"


@pytest.fixture(scope="module")
def lenet():
    net = models.lenet5()
    return net, models.init_params(net, jax.random.PRNGKey(0), (28, 28, 1))


def test_linearize_and_moments_multiply_at_highest_precision(lenet):
    net, params = lenet
    x = jax.random.uniform(jax.random.PRNGKey(1), (28, 28, 1))
    _all_highest(lambda x: L.linearize(net, params, x), x)
    lin = L.linearize(net, params, x)
    for method in analytic.METHODS:
        for cov in (0.01, jnp.full((784,), 0.01)):
            _all_highest(lambda mu, c, m=method: moments._moments(lin, mu, c, m), x, cov)
    _all_highest(lambda mu: uses.sensitivity_map(lin, mu, 3, 0.1, check=False).std, x)
    _all_highest(lambda mu: montecarlo.sample_inputs(jax.random.PRNGKey(2), mu,
                                                     0.01 * jnp.eye(784), 8), x)


def test_propagate_multiplies_at_highest_precision(lenet):
    net, params = lenet
    x = jax.random.uniform(jax.random.PRNGKey(1), (28, 28, 1))
    _all_highest(lambda mu: propagate._propagate(net, params, mu, 0.01, "diagonal"), x)
