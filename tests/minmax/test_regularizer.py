"""The Min-Max loss: its gradient lowers fuzziness, and a lambda x seed grid trained in
one vmapped run equals the same models trained one by one."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from minmax import regularizer, stats
from nets import data, models, train
from nets.data import Dataset

SPEC = train.TrainSpec(epochs=2, batch_size=32, learning_rate=3e-3)


def conv_params(key=0) -> dict:
    """A small params pytree: two conv layers and a dense one (which is never penalized)."""
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(key), 3)
    return {
        "conv1": {"kernel": jax.random.normal(k1, (5, 5, 1, 6)) * 0.2, "bias": jnp.zeros(6)},
        "conv2": {"kernel": jax.random.normal(k2, (5, 5, 6, 16)) * 0.08, "bias": jnp.zeros(16)},
        "fc1": {"kernel": jax.random.normal(k3, (64, 10)), "bias": jnp.zeros(10)},
    }


def _ranges(params) -> dict:
    per = {k: stats.per_interval(params[k]["kernel"]) for k in ("conv1", "conv2")}
    return {k: v["hi"] - v["lo"] for k, v in per.items()}


def _one_step(params, stop: bool) -> dict:
    penalty = regularizer.fuzziness_penalty(stop_gradient=stop)
    value, grads = jax.value_and_grad(penalty)(params)
    # Move the largest-gradient weight by 0.0025 (about 1% of a typical slice range).
    biggest = jnp.maximum(jnp.abs(grads["conv1"]["kernel"]).max(),
                          jnp.abs(grads["conv2"]["kernel"]).max())
    new = jax.tree.map(lambda p, g: p - 0.0025 / biggest * g, params, grads)
    return {"before": value, "after": penalty(new), "grads": grads,
            "layers_before": stats.layer_stats(params), "layers_after": stats.layer_stats(new),
            "range_before": _ranges(params), "range_after": _ranges(new)}


@jax.jit
def _step(params):
    """One small gradient step on the penalty, for each choice of stop_gradient."""
    return {stop: _one_step(params, stop) for stop in (True, False)}


def test_one_gradient_step_lowers_fuzziness_without_nans():
    params = conv_params()
    out = _step(params)
    for stop, o in out.items():
        assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(o["grads"]))
        assert float(o["after"]) < float(o["before"]), stop
        for layer in ("conv1", "conv2"):  # every penalized layer gets less fuzzy
            assert o["layers_after"][layer]["fuzziness"] < o["layers_before"][layer]["fuzziness"]
            assert o["layers_after"][layer]["minmax_index"] > o["layers_before"][layer]["minmax_index"]
        np.testing.assert_array_equal(o["grads"]["fc1"]["kernel"], 0.0)  # dense: untouched
        np.testing.assert_array_equal(o["grads"]["conv1"]["bias"], 0.0)
    # The penalty's value is the mean of the layers' fuzziness.
    per_layer = out[True]["layers_before"]
    assert float(out[True]["before"]) == pytest.approx(
        float(per_layer["conv1"]["fuzziness"] + per_layer["conv2"]["fuzziness"]) / 2, rel=1e-6)
    # Interval ends held fixed: the min and max weight of each slice get no push, so no
    # range shrinks (one can grow when a weight next to an end steps past it); with the
    # gradient through the ends, ranges shrink (the reason for stop_gradient=True).
    held, free = out[True], out[False]
    for layer in ("conv1", "conv2"):
        assert bool(jnp.all(held["range_after"][layer] >= held["range_before"][layer] - 1e-7))
        assert bool(jnp.all(free["range_after"][layer] <= free["range_before"][layer] + 1e-7))
        assert bool(jnp.any(free["range_after"][layer] < free["range_before"][layer]))
    w, g = params["conv2"]["kernel"], held["grads"]["conv2"]["kernel"]
    at_ends = (w == w.min(axis=(0, 1), keepdims=True)) | (w == w.max(axis=(0, 1), keepdims=True))
    np.testing.assert_array_equal(g[at_ends], 0.0)
    assert bool(jnp.all(g[~at_ends] != 0.0))


def test_layer_selection_and_bad_arguments():
    params = conv_params()
    grads = jax.jit(jax.grad(regularizer.fuzziness_penalty(layers=("conv2",))))(params)
    np.testing.assert_array_equal(grads["conv1"]["kernel"], 0.0)
    assert bool(jnp.any(grads["conv2"]["kernel"] != 0))
    with pytest.raises(ValueError, match="not conv layers"):
        regularizer.fuzziness_penalty(layers=("fc1",))(params)
    with pytest.raises(ValueError, match="unknown granularity"):
        regularizer.fuzziness_penalty(granularity="row")
    with pytest.raises(ValueError, match="no conv layers"):
        regularizer.fuzziness_penalty()({"fc1": params["fc1"]})


def test_stacked_stats_equal_each_models_stats_and_flatten_to_record_keys():
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *(conv_params(k) for k in (0, 1, 2)))
    got = regularizer.stacked_stats("filter", near=0.8, small=0.2)(stacked)
    for i in range(3):
        one = stats.layer_stats(conv_params(i), "filter", near=0.8, small=0.2)
        for layer in ("conv1", "conv2"):
            for name, value in one[layer].items():
                np.testing.assert_allclose(got[layer][name][i], value, rtol=1e-4, atol=1e-5)
    flat = regularizer.flatten(got)
    assert set(flat) == {f"{s}/{c}" for s in stats.STATS for c in ("conv1", "conv2")}
    assert flat["fuzziness/conv2"] == pytest.approx(np.asarray(got["conv2"]["fuzziness"]).tolist())
    # The tracker is the same numbers as an on_epoch callback of fit.
    on_epoch = regularizer.tracker("filter", near=0.8, small=0.2)
    record = on_epoch(0, {"params": stacked})
    assert set(record) == set(flat)
    for key, values in flat.items():
        np.testing.assert_allclose(record[key], values, rtol=1e-6)


@pytest.fixture(scope="module")
def small():
    full, test = data.load("digits", "train"), data.load("digits", "test")
    return Dataset(full.images[:128], full.labels[:128], 10), Dataset(
        test.images[:64], test.labels[:64], 10)


def tiny_convnet() -> models.Net:
    """Two small conv layers and a dense head: compiles and trains in a few seconds."""
    L = models.Layer
    return models.Net((L("conv1", "conv", 4, 3), L("relu1", "relu"), L("pool1", "maxpool"),
                       L("conv2", "conv", 8, 3), L("relu2", "relu"), L("pool2", "maxpool"),
                       L("flatten", "flatten"), L("fc1", "dense", 10)))


def test_vmapped_lambda_seed_grid_equals_separate_runs_and_is_tracked(small):
    net, lam = tiny_convnet(), 10.0
    penalty = regularizer.fuzziness_penalty()
    seeds, weights = (0, 1, 0, 1), (0.0, 0.0, lam, lam)
    together, history = train.fit(net, *small, SPEC, seeds=seeds, reg_weights=weights,
                                  regularizer=penalty, on_epoch=regularizer.tracker())
    # Tolerance as in tests/nets/test_train.py (float32 reordering of grouped convs).
    # Two of the four models, one per lambda and per seed, each trained alone (every
    # separate fit compiles anew; lambda = 0 alone is also covered by test_train.py).
    for i in (1, 2):
        alone, _ = train.fit(net, *small, SPEC, seeds=(seeds[i],), reg_weights=(weights[i],),
                             regularizer=penalty)
        chex.assert_trees_all_close(train.select(together, i)["params"],
                                    train.select(alone, 0)["params"], rtol=1e-3, atol=1e-4)
    # Every epoch's record holds every conv layer's statistics for all four models,
    # and the last one equals the statistics of the final parameters.
    assert [len(r["fuzziness/conv2"]) for r in history] == [4, 4]
    assert {f"{s}/{c}" for s in stats.STATS for c in ("conv1", "conv2")} <= set(history[-1])
    final = jax.jit(jax.vmap(stats.layer_stats))(together["params"])
    np.testing.assert_allclose(history[-1]["fuzziness/conv1"], final["conv1"]["fuzziness"],
                               rtol=1e-5)
    # Same seed, only lambda differs: the penalized model is less fuzzy in both layers.
    for layer in ("conv1", "conv2"):
        f = np.asarray(history[-1][f"fuzziness/{layer}"])
        assert f[2] < f[0] and f[3] < f[1]
