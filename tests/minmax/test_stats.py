"""Interval statistics on constructed kernels whose values are known by hand."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from minmax import stats
from nets import models


def kernel_from_slices(slices: np.ndarray) -> jnp.ndarray:
    """(in, out, kh, kw) -> the (kh, kw, in, out) layout of a Flax conv kernel."""
    return jnp.asarray(np.transpose(np.asarray(slices, np.float32), (2, 3, 0, 1)))


def numpy_reference(values: np.ndarray) -> tuple[float, float]:
    """Fuzziness and Min-Max index of one interval by a plain loop over its weights."""
    lo, hi = min(values), max(values)
    fuzz = index = 0.0
    for w in values:
        mu = (w - lo) / (hi - lo)
        h = 0.0 if mu in (0.0, 1.0) else -mu * math.log(mu) - (1 - mu) * math.log(1 - mu)
        fuzz += h / math.log(2)
        index += abs(w - (lo + hi) / 2) / ((hi - lo) / 2)
    return fuzz / len(values), index / len(values)


# Jitted versions (one compiled program per shape instead of many eager op dispatches).
per_interval = jax.jit(stats.per_interval, static_argnums=1)
kernel_stats = jax.jit(stats.kernel_stats, static_argnums=1, static_argnames=("near", "small"))
interval = jax.jit(stats.interval, static_argnums=1)

JIT_OR_NOT = pytest.mark.parametrize("transform", [lambda f: f, jax.jit], ids=["eager", "jit"])


@JIT_OR_NOT
def test_all_weights_at_the_ends_give_fuzziness_0_and_index_1(transform):
    # Every 3x3 slice takes only two values (its min and its max), in any pattern.
    rng = np.random.default_rng(0)
    lo = rng.normal(size=(4, 5, 1, 1))
    hi = lo + rng.uniform(0.1, 2.0, size=(4, 5, 1, 1))
    pick = rng.integers(0, 2, size=(4, 5, 3, 3)).astype(bool)
    pick[..., 0, 0], pick[..., 0, 1] = True, False  # both ends present in every slice
    w = kernel_from_slices(np.where(pick, hi, lo))
    out = transform(stats.kernel_stats)(w)
    assert out["fuzziness"] == pytest.approx(0.0, abs=1e-6)
    assert out["minmax_index"] == pytest.approx(1.0, abs=1e-6)
    assert out["near_ends"] == pytest.approx(1.0)
    assert out["degenerate"] == 0.0


@JIT_OR_NOT
def test_evenly_spaced_weights_match_closed_form_and_a_numpy_loop(transform):
    # 5 evenly spaced weights: mu = 0, 1/4, 1/2, 3/4, 1 and d = 1, 1/2, 0, 1/2, 1.
    # F = (2 H2(1/4) + 1) / 5 with H2(1/4) = 2 - (3/4) log2 3;  index = 3/5.
    h_quarter = 2 - 0.75 * math.log2(3)
    w = kernel_from_slices(np.linspace(-0.3, 0.5, 5).reshape(1, 1, 1, 5))
    out = transform(stats.kernel_stats)(w)
    assert out["fuzziness"] == pytest.approx((2 * h_quarter + 1) / 5, rel=1e-5)
    assert out["minmax_index"] == pytest.approx(0.6, rel=1e-5)
    assert out["near_ends"] == pytest.approx(0.4)  # only the two ends have d >= 0.9
    # A 5x5 kernel of 25 evenly spaced weights, shuffled; compare with the numpy loop.
    values = np.random.default_rng(1).permutation(np.linspace(2.0, 7.0, 25))
    ref_f, ref_i = numpy_reference(values)
    w = kernel_from_slices(values.reshape(1, 1, 5, 5))
    out = transform(stats.kernel_stats)(w)
    assert out["fuzziness"] == pytest.approx(ref_f, rel=1e-5)
    assert out["minmax_index"] == pytest.approx(ref_i, rel=1e-5)
    assert ref_i == pytest.approx(13 / 25)  # sum_k |k - 12| / 12 over k = 0..24, / 25


def test_each_interval_matches_the_numpy_loop_at_every_granularity():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(3, 3, 2, 4)).astype(np.float64)
    for granularity, groups in (
        ("kernel", [w[:, :, i, o] for i in range(2) for o in range(4)]),
        ("filter", [w[..., o] for o in range(4)]),
        ("layer", [w]),
    ):
        per = per_interval(jnp.asarray(w, jnp.float32), granularity)
        ref = np.array([numpy_reference(g.ravel()) for g in groups])
        np.testing.assert_allclose(np.ravel(per["fuzziness"]), ref[:, 0], rtol=1e-5)
        np.testing.assert_allclose(np.ravel(per["minmax_index"]), ref[:, 1], rtol=1e-5)
        np.testing.assert_allclose(np.ravel(per["lo"]), [g.min() for g in groups], rtol=1e-6)
        # layer-level stats are the means over intervals (equal-sized intervals)
        out = kernel_stats(jnp.asarray(w, jnp.float32), granularity)
        assert out["fuzziness"] == pytest.approx(ref[:, 0].mean(), rel=1e-5)


@pytest.mark.parametrize("granularity, shape", [
    ("kernel", (3, 6)), ("filter", (6,)), ("layer", ()),
])
def test_granularity_shapes(granularity, shape):
    w = jax.random.normal(jax.random.PRNGKey(0), (5, 5, 3, 6))
    per = per_interval(w, granularity)
    assert {k: v.shape for k, v in per.items()} == dict.fromkeys(per, shape)
    lo, hi = interval(w, granularity)
    assert lo.ndim == 4 and jnp.all(lo <= w) and jnp.all(w <= hi)
    with pytest.raises(ValueError, match="unknown granularity"):
        stats.per_interval(w, "channel")
    with pytest.raises(ValueError, match=r"\(kh, kw, in, out\)"):
        stats.kernel_stats(w[0], granularity)


@pytest.mark.parametrize("granularity", stats.GRANULARITIES)
def test_invariant_to_positive_scaling_shifting_and_sign_flip(granularity):
    rng = np.random.default_rng(3)
    w = rng.normal(size=(5, 5, 3, 4)).astype(np.float32)
    base = per_interval(jnp.asarray(w), granularity)
    # One affine map per interval (broadcast over the interval's own axes).
    shape = {"kernel": (1, 1, 3, 4), "filter": (1, 1, 1, 4), "layer": (1, 1, 1, 1)}[granularity]
    a = rng.uniform(0.2, 5.0, size=shape).astype(np.float32)
    b = rng.normal(size=shape).astype(np.float32)
    for scale in (a, -a):  # a flip maps mu -> 1 - mu; H and d are symmetric
        moved = per_interval(jnp.asarray(scale * w + b), granularity)
        for key in ("fuzziness", "minmax_index", "near_ends"):
            np.testing.assert_allclose(moved[key], base[key], atol=2e-5, err_msg=key)


def test_degenerate_intervals_give_no_nan_values_or_gradients():
    w = jnp.zeros((5, 5, 2, 3)).at[:, :, 0, 0].set(jnp.arange(25.0).reshape(5, 5))
    out = jax.jit(stats.kernel_stats)(w)  # 5 of 6 slices are constant
    assert all(bool(jnp.isfinite(v)) for v in out.values())
    assert out["degenerate"] == pytest.approx(5 / 6)
    per = jax.jit(stats.per_interval)(w)
    np.testing.assert_array_equal(per["fuzziness"].ravel()[1:], 0.0)
    np.testing.assert_array_equal(per["minmax_index"].ravel()[1:], 1.0)

    @jax.jit
    def grads(w):
        return {(g, stop): jax.grad(functools.partial(stats.fuzziness, granularity=g,
                                                      stop_gradient=stop))(w)
                for g in stats.GRANULARITIES for stop in (True, False)}

    for g in jax.tree.leaves(grads(w)):
        assert bool(jnp.all(jnp.isfinite(g)))
    for g in jax.tree.leaves(grads(jnp.zeros((5, 5, 2, 3)))):  # all-zero kernel
        np.testing.assert_array_equal(g, 0.0)
    assert stats.excess_kurtosis(jnp.zeros(7)) == 0.0


def test_sparsity_view_matches_scipy_and_a_direct_count():
    w = jax.random.laplace(jax.random.PRNGKey(1), (5, 5, 6, 16))
    out = kernel_stats(w, small=0.1)
    flat = np.asarray(w, np.float64).ravel()
    assert out["kurtosis"] == pytest.approx(scipy.stats.kurtosis(flat, fisher=True), rel=1e-3)
    expected = np.mean(np.abs(flat) <= 0.1 * np.abs(flat).max())
    assert out["small_fraction"] == pytest.approx(expected)


@jax.jit
def _ranges(w):
    out = {g: stats.kernel_stats(w, g) for g in stats.GRANULARITIES}
    rel = {g: stats.center_distance(w, g) - jnp.abs(2 * stats.membership(w, g)[0] - 1)
           for g in stats.GRANULARITIES}
    return out, rel


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3, width=32), min_size=8, max_size=8))
def test_ranges_and_the_relation_d_equals_abs_2mu_minus_1(values):
    w = jnp.asarray(values, jnp.float32).reshape(1, 1, 1, -1)
    w = jnp.concatenate([w, w[..., ::-1] * 0.5], axis=2).reshape(2, 2, 2, 2)
    out, rel = _ranges(w)  # one compile for every example (fixed shape)
    for row in out.values():
        assert 0.0 <= row["fuzziness"] <= 1.0 and 0.0 <= row["minmax_index"] <= 1.0
        assert 0.0 <= row["near_ends"] <= 1.0 and 0.0 <= row["degenerate"] <= 1.0
    for r in rel.values():
        np.testing.assert_allclose(r, 0.0, atol=1e-6)


def test_layer_stats_pick_the_conv_layers_of_a_params_pytree():
    net = models.lenet5()
    shapes = jax.eval_shape(lambda: models.init_params(net, jax.random.PRNGKey(0), (28, 28, 1)))
    params = jax.tree.map(lambda s: jnp.linspace(-1.0, 1.0, s.size).reshape(s.shape), shapes)
    out = jax.jit(stats.layer_stats)(params)
    assert list(out) == list(net.names_of("conv")) == ["conv1", "conv2"]
    assert set(out["conv1"]) == set(stats.STATS)
    assert list(stats.conv_kernels(params, ("conv2",))) == ["conv2"]
    with pytest.raises(ValueError, match=r"not conv layers.*\['fc1'\]"):
        stats.layer_stats(params, layers=("fc1",))
    # vmapped over stacked models: one value per model
    stacked = jax.tree.map(lambda *x: jnp.stack(x), params, params)
    assert jax.jit(jax.vmap(stats.layer_stats))(stacked)["conv2"]["fuzziness"].shape == (2,)
