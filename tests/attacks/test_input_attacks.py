"""Input attacks: eps-ball and bounds properties, independent checks of the maths,
strength ordering on a trained model, targeted success, and no recompiles."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.tree_util import Partial

from attacks import evaluate, gradient, minimal
from attacks.common import example_keys, model_logits_fn, random_start
from nets import models

BUDGETED = {
    "fgsm": functools.partial(gradient.fgsm),
    "bim": functools.partial(gradient.bim, steps=5),
    "pgd": functools.partial(gradient.pgd, steps=5),
    "pgd_restarts": functools.partial(gradient.pgd, steps=3, restarts=2),
    "mifgsm": functools.partial(gradient.mifgsm, steps=5),
    "pgd_l2": functools.partial(gradient.pgd, steps=5, norm="l2"),
    "fgm_l2": functools.partial(gradient.fgsm, norm="l2"),
    "deepfool": functools.partial(minimal.deepfool, steps=5),
    "deepfool_linf": functools.partial(minimal.deepfool, steps=5, norm="linf"),
    "cw_l2": functools.partial(minimal.carlini_wagner_l2, steps=5, search_steps=2),
}
L2 = {"pgd_l2", "fgm_l2", "deepfool", "cw_l2"}


def _linear(W, b, x):
    return x.reshape(x.shape[0], -1) @ W + b


@pytest.fixture(scope="module")
def tiny():
    """A random 2-layer net on 6x6x1 inputs: cheap to compile, nonlinear."""
    net = models.mlp(num_classes=4, hidden=(16,))
    params = models.init_params(net, jax.random.PRNGKey(0), (6, 6, 1))
    return model_logits_fn(net, params)


@pytest.fixture(scope="module")
def trained(digits_mlp):
    """An MLP trained briefly on digits (about 95% test accuracy)."""
    net, params, te = digits_mlp
    fn = model_logits_fn(net, params)
    return fn, jnp.asarray(te.images[:200]), jnp.asarray(te.labels[:200])


def _dist(a, b, norm):
    d = np.asarray(a - b).reshape(a.shape[0], -1)
    return np.abs(d).max(1) if norm == "linf" else np.sqrt((d**2).sum(1))


@pytest.mark.parametrize("name", sorted(BUDGETED))
@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**16), eps_frac=st.floats(0.0, 1.0), targeted=st.booleans(),
       shifted=st.booleans())
def test_stays_in_eps_ball_and_bounds(tiny, name, seed, eps_frac, targeted, shifted):
    norm = "l2" if name in L2 else "linf"
    bounds = (-1.0, 2.0) if shifted else (0.0, 1.0)
    eps = eps_frac * (3.0 if norm == "l2" else 0.5)
    kx, ky, ka = jax.random.split(jax.random.PRNGKey(seed), 3)
    x = jax.random.uniform(kx, (3, 6, 6, 1), minval=bounds[0], maxval=bounds[1])
    y = jax.random.randint(ky, (3,), 0, 4)
    xa = BUDGETED[name](tiny, x, y, eps=eps, targeted=targeted, bounds=bounds, key=ka)
    assert xa.shape == x.shape and bool(jnp.all(jnp.isfinite(xa)))
    assert np.all(_dist(xa, x, norm) <= eps * (1 + 1e-5) + 1e-6)
    assert float(xa.min()) >= bounds[0] and float(xa.max()) <= bounds[1]


@pytest.mark.parametrize("name", sorted(BUDGETED))
def test_eps_zero_returns_the_input(tiny, name):
    x = jax.random.uniform(jax.random.PRNGKey(1), (4, 6, 6, 1))
    y = jnp.array([0, 1, 2, 3])
    xa = BUDGETED[name](tiny, x, y, eps=0.0, key=jax.random.PRNGKey(2))
    np.testing.assert_array_equal(xa, x)


def test_bad_eps_and_bounds_are_clear_errors(tiny):
    x, y = jnp.zeros((1, 6, 6, 1)), jnp.zeros((1,), int)
    with pytest.raises(ValueError, match="eps must be >= 0"):
        gradient.pgd(tiny, x, y, eps=-0.1)
    with pytest.raises(ValueError, match="exceeds the input range"):
        gradient.fgsm(tiny, x, y, eps=1.5)
    with pytest.raises(ValueError, match="lo < hi"):
        gradient.fgsm(tiny, x, y, eps=0.1, bounds=(1.0, 0.0))
    with pytest.raises(ValueError, match="unknown norm"):
        gradient.pgd(tiny, x, y, eps=0.1, norm="l1")


def test_fgsm_equals_a_hand_computed_sign_gradient():
    rng = np.random.default_rng(0)
    W, b = rng.normal(size=(36, 5)).astype(np.float32), rng.normal(size=5).astype(np.float32)
    x = rng.random((8, 6, 6, 1), dtype=np.float32)
    y = rng.integers(0, 5, 8)
    fn = Partial(_linear, jnp.asarray(W), jnp.asarray(b))
    z = x.reshape(8, -1) @ W + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    grad = ((p - np.eye(5)[y]) @ W.T).reshape(x.shape)  # d CE / d x for softmax regression
    for targeted, sign in ((False, 1.0), (True, -1.0)):
        expected = np.clip(x + sign * 0.1 * np.sign(grad), 0, 1)
        got = gradient.fgsm(fn, jnp.asarray(x), jnp.asarray(y), eps=0.1, targeted=targeted)
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_mifgsm_first_step_is_fgsm_and_bim_one_step_is_fgsm(tiny):
    x = jax.random.uniform(jax.random.PRNGKey(3), (5, 6, 6, 1))
    y = jnp.arange(5) % 4
    f = gradient.fgsm(tiny, x, y, eps=0.05)
    np.testing.assert_allclose(gradient.mifgsm(tiny, x, y, eps=0.05, steps=1), f, atol=1e-7)
    np.testing.assert_allclose(gradient.bim(tiny, x, y, eps=0.05, steps=1), f, atol=1e-7)


def test_deepfool_lands_on_the_nearest_boundary_of_a_linear_model():
    rng = np.random.default_rng(1)
    W, b = rng.normal(size=(36, 4)).astype(np.float32), rng.normal(size=4).astype(np.float32)
    x = (0.4 + 0.2 * rng.random((6, 6, 6, 1))).astype(np.float32)
    z = x.reshape(6, -1) @ W + b
    y = z.argmax(1)
    # Closed form: distance to the nearest pairwise boundary Z_k = Z_y is
    # min_k (Z_y - Z_k) / ||W_y - W_k||_2.
    expected = np.array([min((z[i, y[i]] - z[i, k]) / np.linalg.norm(W[:, y[i]] - W[:, k])
                             for k in range(4) if k != y[i]) for i in range(6)])
    fn = Partial(_linear, jnp.asarray(W), jnp.asarray(b))
    xa = minimal.deepfool(fn, jnp.asarray(x), jnp.asarray(y), overshoot=0.0,
                          bounds=(-100.0, 100.0))
    np.testing.assert_allclose(_dist(xa, x, "l2"), expected, rtol=1e-3, atol=1e-3)
    assert np.all(np.asarray(fn(xa).argmax(-1)) != y)


def test_cw_finds_near_minimal_perturbations_of_a_linear_model():
    rng = np.random.default_rng(2)
    w = rng.normal(size=36).astype(np.float32)
    W = np.stack([np.zeros(36, np.float32), w], 1)
    b = np.zeros(2, np.float32)
    x = (0.45 + 0.1 * rng.random((6, 6, 6, 1))).astype(np.float32)
    z = x.reshape(6, -1) @ W
    y = z.argmax(1)
    exact = np.abs(z[:, 1] - z[:, 0]) / np.linalg.norm(w)  # distance to the hyperplane
    fn = Partial(_linear, jnp.asarray(W), jnp.asarray(b))
    xa = minimal.carlini_wagner_l2(fn, jnp.asarray(x), jnp.asarray(y), steps=200,
                                   search_steps=6, lr=0.01)
    d = _dist(xa, x, "l2")
    assert np.all(np.asarray(fn(xa).argmax(-1)) != y)
    assert np.all(d >= exact * (1 - 1e-3))  # nothing beats the true minimum
    assert np.all(d <= exact * 1.15)  # and CW gets close to it


def test_pgd_at_least_as_strong_as_fgsm_on_a_trained_model(trained):
    fn, x, y = trained
    clean = float((fn(x).argmax(-1) == y).mean())
    assert clean > 0.9
    for eps in (0.05, 0.1):
        acc_f = float((fn(gradient.fgsm(fn, x, y, eps=eps)).argmax(-1) == y).mean())
        acc_p = float((fn(gradient.pgd(fn, x, y, eps=eps, steps=20,
                                       key=jax.random.PRNGKey(0))).argmax(-1) == y).mean())
        assert acc_p <= acc_f < clean


@pytest.mark.parametrize("name", ["pgd", "bim", "mifgsm", "pgd_l2", "deepfool", "cw_l2"])
def test_targeted_attacks_reach_the_target(trained, name):
    fn, x, y = trained
    target = (y + 3) % 10
    eps = 6.0 if name in L2 else 0.3
    attack = {**BUDGETED, "pgd": functools.partial(gradient.pgd, steps=20),
              "bim": functools.partial(gradient.bim, steps=20),
              "mifgsm": functools.partial(gradient.mifgsm, steps=20),
              "pgd_l2": functools.partial(gradient.pgd, steps=20, norm="l2"),
              "deepfool": functools.partial(minimal.deepfool, steps=30),
              "cw_l2": functools.partial(minimal.carlini_wagner_l2, steps=50, search_steps=3,
                                         lr=0.05)}[name]
    xa = attack(fn, x[:50], target[:50], eps=eps, targeted=True, key=jax.random.PRNGKey(0))
    assert float((fn(xa).argmax(-1) == target[:50]).mean()) >= 0.9


def test_no_recompilation_on_new_data_eps_or_params(trained):
    fn, x, y = trained
    key = jax.random.PRNGKey(0)
    gradient.pgd(fn, x[:64], y[:64], eps=0.1, steps=7, key=key)
    before = gradient._iterate.compiled()._cache_size()
    moved = Partial(fn.func, jax.tree.map(lambda p: p * 1.01, fn.args[0]))
    gradient.pgd(fn, x[64:128], y[64:128], eps=0.2, steps=7, key=jax.random.PRNGKey(1))
    gradient.pgd(moved, x[:64] * 0.5, y[:64], eps=0.05, steps=7, key=key)
    assert gradient._iterate.compiled()._cache_size() == before


@pytest.mark.parametrize("restarts", [1, 3])
def test_chunked_batches_equal_the_whole_batch(trained, restarts):
    # the random starts are drawn for the whole batch, so the chunk size changes nothing
    fn, x, y = trained
    kw = {"eps": 0.1, "steps": 5, "restarts": restarts, "key": jax.random.PRNGKey(3)}
    whole = gradient.pgd(fn, x[:50], y[:50], chunk=50, **kw)
    before = gradient._iterate.compiled()._cache_size()
    chunked = gradient.pgd(fn, x[:50], y[:50], chunk=16, **kw)  # 16, 16, 16, 2 padded to 16
    assert gradient._iterate.compiled()._cache_size() == before + 1  # one program for all 4
    np.testing.assert_array_equal(np.asarray(chunked), np.asarray(whole))
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        gradient.pgd(fn, x[:50], y[:50], chunk=0, **kw)


def test_robust_accuracy_matches_direct_attacks_and_min_eps(trained):
    fn, x, y = trained
    x, y = x[:100], y[:100]
    attacks = {"fgsm": evaluate.make_attack("fgsm"), "bim": evaluate.make_attack("bim", steps=5),
               "deepfool": evaluate.make_attack("deepfool", steps=20)}
    grids = {"linf": [0.0, 0.05, 0.1], "l2": [0.0, 1.0, 2.0]}
    out = evaluate.robust_accuracy(fn, x, y, attacks, grids, key=jax.random.PRNGKey(0), chunk=32)
    clean = float((fn(x).argmax(-1) == y).mean())
    for name in attacks:
        assert out[name]["accuracy"][0] == pytest.approx(clean)  # eps = 0
        assert out[name]["min_eps"].shape == (100,)
    for j, eps in enumerate(grids["linf"]):  # chunked + vmapped over eps == one direct call
        direct = gradient.bim(fn, x, y, eps=eps, steps=5)
        ok = np.asarray((fn(direct).argmax(-1) == y) & (fn(x).argmax(-1) == y))
        assert out["bim"]["accuracy"][j] == pytest.approx(ok.mean())
        m = out["bim"]["min_eps"]
        assert np.all(ok[m > eps]) and not np.any(ok[m == eps])  # first breaking eps
    d = out["deepfool"]["min_eps"]
    for j, eps in enumerate(grids["l2"]):
        assert out["deepfool"]["accuracy"][j] == pytest.approx(np.mean(d > eps))
    for name in attacks:  # the per-example mask is what the accuracy averages
        correct = out[name]["correct"]
        assert correct.shape == (3, 100) and correct.dtype == bool
        np.testing.assert_array_equal(out[name]["accuracy"], correct.mean(1))


def test_robust_accuracy_per_example_does_not_depend_on_the_chunking(trained):
    # PGD draws a random start per example from fold_in(key, i): chunks of 64 (the last
    # padded) and 23 (five chunks) give the same per-example masks as one chunk of 128.
    fn, x, y = trained
    attacks = {"pgd": evaluate.make_attack("pgd", steps=3),
               "pgd_l2": evaluate.make_attack("pgd_l2", steps=3, restarts=2)}
    grids = {"linf": [0.0, 0.1, 0.2], "l2": [0.0, 1.5]}
    runs = [evaluate.robust_accuracy(fn, x[:128], y[:128], attacks, grids,
                                     key=jax.random.PRNGKey(5), chunk=c) for c in (128, 64, 23)]
    for name in attacks:
        for other in runs[1:]:
            np.testing.assert_array_equal(other[name]["correct"], runs[0][name]["correct"])
            np.testing.assert_array_equal(other[name]["min_eps"], runs[0][name]["min_eps"])
    # and the first 64 examples alone get the same results as inside the batch of 128
    head = evaluate.robust_accuracy(fn, x[:64], y[:64], attacks, grids,
                                    key=jax.random.PRNGKey(5), chunk=64)
    np.testing.assert_array_equal(head["pgd"]["correct"], runs[0]["pgd"]["correct"][:, :64])
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        evaluate.robust_accuracy(fn, x[:8], y[:8], attacks, grids, key=jax.random.PRNGKey(0),
                                 chunk=0)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_random_start_with_one_key_per_example_draws_each_row_from_its_key(norm):
    x = jax.random.uniform(jax.random.PRNGKey(0), (5, 6, 6, 1))
    keys = example_keys(jax.random.PRNGKey(1), 5)
    assert keys.shape == (5, 2)
    np.testing.assert_array_equal(keys[3], jax.random.fold_in(jax.random.PRNGKey(1), 3))
    batch = random_start(keys, x, 0.3, norm, (0.0, 1.0))
    for i in range(5):
        alone = random_start(keys[i], x[i:i + 1], 0.3, norm, (0.0, 1.0))
        np.testing.assert_array_equal(batch[i], alone[0])
    assert not np.array_equal(batch[0] - x[0], batch[1] - x[1])  # rows differ
    typed = jax.random.key(1)  # typed keys: one per example too
    batch_typed = random_start(example_keys(typed, 5), x, 0.3, norm, (0.0, 1.0))
    assert batch_typed.shape == x.shape


def _linear_fn():
    w = jax.random.normal(jax.random.PRNGKey(7), (12, 3))
    return lambda x: x.reshape(x.shape[0], -1) @ w


@pytest.mark.parametrize("attack", ["fgsm", "bim", "pgd", "mifgsm"])
@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_eps_inf_is_no_constraint_not_nan(attack, norm):
    """eps = inf: finite results inside the bounds, and the attack at least as strong as
    with the largest finite eps that covers the box."""
    import attacks

    fn = _linear_fn()
    x = jax.random.uniform(jax.random.PRNGKey(1), (5, 2, 2, 3))
    y = jnp.arange(5) % 3
    kw = {"key": jax.random.PRNGKey(0)} if attack == "pgd" else {}
    out = getattr(attacks, attack)(fn, x, y, eps=jnp.inf, norm=norm, **kw)
    assert np.all(np.isfinite(out)) and out.min() >= 0.0 and out.max() <= 1.0
    box = 1.0 if norm == "linf" else float(np.sqrt(12))
    same = getattr(attacks, attack)(fn, x, y, eps=box, norm=norm, **kw)
    np.testing.assert_allclose(out, same, atol=1e-6)


def test_bad_attack_inputs_are_one_clear_error():
    import attacks

    fn = _linear_fn()
    x = jax.random.uniform(jax.random.PRNGKey(1), (4, 2, 2, 3))
    y = jnp.arange(4) % 3
    with pytest.raises(ValueError, match="steps must be >= 1, got 0"):
        attacks.pgd(fn, x, y, eps=0.1, steps=0)
    with pytest.raises(ValueError, match="steps must be >= 1, got -3"):
        attacks.bim(fn, x, y, eps=0.1, steps=-3)
    with pytest.raises(ValueError, match=r"outside bounds \(0.0, 1.0\); scale them"):
        attacks.fgsm(fn, x * 255.0, y, eps=0.1)
    with pytest.raises(ValueError, match=r"one-hot labels\? use y.argmax"):
        attacks.fgsm(fn, x, jax.nn.one_hot(y, 3), eps=0.1)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        attacks.fgsm(fn, x, y[:1], eps=0.1)
