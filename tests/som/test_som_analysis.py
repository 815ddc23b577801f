"""The per-network analysis: the noise baseline, code scaling, one map per layer for
clean and perturbed sets, and vmapping it over seeds."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nets import models
from som import analysis, codes
from som.bmu import bmus
from som.grid import Grid
from som.train import SOMSpec, fit_many

SPEC = SOMSpec(Grid(3, 4, "hexagonal"), steps=5, chunk=32)


def test_sign_noise_is_eps_signs_clipped_to_the_input_range():
    x = jnp.concatenate([jnp.full((50, 4), 0.5), jnp.zeros((50, 4)), jnp.ones((50, 4))])
    out = np.asarray(analysis.sign_noise(jax.random.PRNGKey(0), x, 0.1))
    mid = out[:50] - 0.5
    np.testing.assert_allclose(np.abs(mid), 0.1, rtol=1e-6)  # every entry moves by eps
    assert 0.35 < (mid > 0).mean() < 0.65  # random signs
    low, high = out[50:100], out[100:]
    assert np.all(np.isclose(low, 0.0) | np.isclose(low, 0.1))  # clipped at 0
    assert np.all(np.isclose(high, 0.9) | np.isclose(high, 1.0))  # clipped at 1
    assert np.isclose(low, 0.0).any() and np.isclose(high, 1.0).any()


def test_scale_codes_against_numpy():
    rng = np.random.default_rng(0)
    ref = {"a": rng.normal(2.0, 3.0, (40, 3)), "b": np.c_[rng.normal(size=(40, 1)),
                                                          np.full((40, 1), 5.0)]}
    new = {k: v[:7] + 1.0 for k, v in ref.items()}
    rms = codes.scale_codes(new, ref, "rms")
    for k, r in ref.items():
        np.testing.assert_allclose(rms[k], new[k] / np.sqrt((r**2).mean()), rtol=1e-5)
    z = codes.scale_codes(new, ref, "zscore")
    np.testing.assert_allclose(z["a"], (new["a"] - ref["a"].mean(0)) / ref["a"].std(0),
                               rtol=1e-4)
    # a constant feature keeps scale 1: only the shift applies
    np.testing.assert_allclose(z["b"][:, 1], new["b"][:, 1] - 5.0, atol=1e-5)
    np.testing.assert_allclose(codes.scale_codes(new, ref, "none")["a"], new["a"], rtol=1e-6)
    with pytest.raises(ValueError, match="unknown scale"):
        codes.scale_codes(new, ref, "minmax")


def _codes(seed: int, n_train: int = 60, n: int = 24):
    """Two layers' (zero-padded) codes: training, clean, a shifted copy and an identical copy."""
    rng = np.random.default_rng(seed)
    train = rng.normal(size=(2, n_train, 5)).astype(np.float32)
    train[0, :, 3:] = 0.0  # layer 0 has 3 real dimensions
    clean = train[:, :n] + 0.01
    sets = {"clean": clean, "same": clean.copy(), "shifted": clean + 0.8}
    labels = rng.integers(0, 3, n_train)
    return jnp.asarray(train), jnp.asarray(labels), {k: jnp.asarray(v) for k, v in sets.items()}


def _map(key, train, y_train, sets, labels):
    preds = {k: labels for k in sets}
    return analysis.map_codes(SPEC, key, train, y_train, sets, labels, preds, num_classes=3,
                              permutations=4, chunk=16)


def test_map_codes_moves_are_bmu_changes():
    train, y_train, sets = _codes(0)
    labels = y_train[:24]
    key = jax.random.PRNGKey(3)
    out = _map(key, train, y_train, sets, labels)
    weights = fit_many(SPEC, jax.random.split(jax.random.split(key)[0], 2), train)
    np.testing.assert_allclose(out["weights"], weights, rtol=1e-6)
    clean = jax.vmap(lambda w, x: bmus(w, x))(weights, sets["clean"])
    shifted = jax.vmap(lambda w, x: bmus(w, x))(weights, sets["shifted"])
    mv = out["moves"]["shifted"]
    np.testing.assert_array_equal(mv["moved"], clean != shifted)
    np.testing.assert_allclose(mv["moved_fraction"], (clean != shifted).mean(1), rtol=1e-6)
    xy = SPEC.grid.coords
    dist = np.linalg.norm(xy[np.asarray(clean)] - xy[np.asarray(shifted)], axis=-1)
    np.testing.assert_allclose(mv["distance"], dist, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mv["mean_distance"], dist.mean(1), rtol=1e-5)
    assert mv["moved"].shape == (2, 24) and np.asarray(mv["moved"]).any()
    assert not np.asarray(out["moves"]["same"]["moved"]).any()  # identical codes never move
    assert "clean" not in out["moves"]
    assert out["hits"]["clean"].shape == (2, 12, 3)
    assert np.asarray(out["hits"]["clean"]).sum() == 2 * 24
    for v in out["codes"].values():
        assert v.shape == (2,) and np.all(np.isfinite(v))


def test_map_codes_vmapped_over_seeds_equals_one_at_a_time():
    (t0, y0, s0), (t1, y1, s1) = _codes(0), _codes(1)
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    stack = jax.tree.map(lambda a, b: jnp.stack([a, b]), (t0, y0, s0), (t1, y1, s1))
    both = jax.vmap(lambda k, t, y, s: _map(k, t, y, s, y[:24]))(keys, *stack)
    for i, (t, y, s) in enumerate([(t0, y0, s0), (t1, y1, s1)]):
        one = _map(keys[i], t, y, s, y[:24])
        jax.tree.map(lambda a, b, i=i: np.testing.assert_allclose(a[i], b, rtol=1e-4,
                                                                  atol=1e-5), both, one)


def test_analyze_matches_the_network_codes_and_predictions():
    net = models.mlp(num_classes=3, hidden=(8,))
    params = models.init_params(net, jax.random.PRNGKey(0), (4, 4, 1))
    rng = np.random.default_rng(0)
    x_train = jnp.asarray(rng.uniform(size=(50, 4, 4, 1)), jnp.float32)
    y_train = jnp.asarray(rng.integers(0, 3, 50))
    x = x_train[:20]
    inputs = {"clean": x, "noise": analysis.sign_noise(jax.random.PRNGKey(1), x, 0.2)}
    out = analysis.analyze(net, params, jax.random.PRNGKey(2), x_train, y_train, inputs,
                           y_train[:20], spec=SPEC, layers=("fc1", "fc2"), num_classes=3,
                           permutations=3, chunk=16)
    raw = codes.layer_codes(net, params, x_train, ("fc1", "fc2"))
    rms = {k: float(np.sqrt((np.asarray(v) ** 2).mean())) for k, v in raw.items()}
    train_codes, set_codes, preds = analysis.network_codes(
        net, params, x_train, inputs, layers=("fc1", "fc2"), chunk=16)
    np.testing.assert_allclose(train_codes[1, :, :3], raw["fc2"] / rms["fc2"], rtol=1e-5)
    assert float(jnp.abs(train_codes[1, :, 3:]).max()) == 0.0  # fc2 (3) padded to fc1 (8)
    noisy = codes.layer_codes(net, params, inputs["noise"], ("fc1",))["fc1"]
    np.testing.assert_allclose(set_codes["noise"][0], noisy / rms["fc1"], rtol=1e-5,
                               atol=1e-6)
    logits = net.apply({"params": params}, inputs["noise"])
    np.testing.assert_array_equal(out["predictions"]["noise"], logits.argmax(-1))
    np.testing.assert_array_equal(preds["clean"], out["predictions"]["clean"])
    assert out["moves"]["noise"]["moved"].shape == (2, 20)
    assert out["u_matrix"].shape == (2, 3, 4)
