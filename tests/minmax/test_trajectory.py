"""The trajectory reading: constructed paths, the tracker against a brute-force record of
a real run, and the random-walk baseline against numpy (same signs) and against the
exact distribution of a simple random walk."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from minmax import readings, trajectory
from nets import data, models, train
from nets.data import Dataset


def run_path(path: np.ndarray, key=0):
    """Feed a path of kernels (T + 1, kh, kw, in, out) through the tracker."""
    tracker = trajectory.TrajectoryTracker()
    params = [{"conv1": {"kernel": jnp.asarray(w, jnp.float32)}} for w in path]
    track = tracker.init(params[0], jax.random.PRNGKey(key))
    for t in range(1, len(params)):
        track = tracker.update(track, params[t - 1], params[t],
                               jax.random.fold_in(jax.random.PRNGKey(key), t))
    return params[-1], track


def test_monotone_weights_end_at_an_end_and_a_returning_one_in_the_middle():
    up = np.linspace(0.0, 1.0, 11)
    down = -np.linspace(0.0, 0.7, 11) ** 2
    back = np.array([0.0, 0.5, 1.0, 0.5, 0.0, -0.5, -1.0, -0.5, 0.0, 0.0, 0.0])
    third = np.array([0.0, 0.3, 0.6, 0.9, 0.9, 0.6, 0.3, 0.3, 0.3, 0.3, 0.3])  # mu = 1/3
    path = np.stack([up, down, back, third], axis=1).reshape(11, 2, 2, 1, 1)
    params, track = run_path(path)
    lo = np.asarray(track["conv1"]["lo"]).ravel()
    hi = np.asarray(track["conv1"]["hi"]).ravel()
    np.testing.assert_allclose(lo, [0.0, -0.49, -1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(hi, [1.0, 0.0, 1.0, 0.9], atol=1e-6)
    mu, degenerate = trajectory.range_membership(params["conv1"]["kernel"], track["conv1"]["lo"],
                                                 track["conv1"]["hi"])
    np.testing.assert_allclose(np.asarray(mu).ravel(), [1.0, 0.0, 0.5, 1 / 3], atol=1e-6)
    assert not np.any(degenerate)
    s = trajectory.trajectory_stats(params, track)["conv1"]
    h_third = -(np.log2(1 / 3) / 3 + 2 / 3 * np.log2(2 / 3))
    assert float(s["fuzziness"]) == pytest.approx((0 + 0 + 1 + h_third) / 4, rel=1e-5)
    assert float(s["near_ends"]) == pytest.approx(0.5)
    assert float(s["minmax_index"]) == pytest.approx((1 + 1 + 0 + 1 / 3) / 4, rel=1e-5)


def test_a_weight_that_never_moves_is_degenerate_and_counts_at_an_end():
    path = np.zeros((4, 1, 2, 1, 1))
    path[:, 0, 1] = np.array([0.0, 0.2, 0.1, 0.15])[:, None, None]
    params, track = run_path(path)
    s = trajectory.trajectory_stats(params, track)["conv1"]
    assert float(s["degenerate"]) == 0.5
    # weight 2: lo 0, hi .2, end .15 -> mu .75, H(.75) = .811; weight 1 (degenerate): 0
    h = -(0.75 * np.log2(0.75) + 0.25 * np.log2(0.25))
    assert float(s["fuzziness"]) == pytest.approx(h / 2, rel=1e-5)
    assert float(s["near_ends"]) == 0.5
    # the walk never moves where the weight does not: degenerate there too
    assert float(s["walk_near_ends"]) >= 0.5


def test_walk_has_the_same_steps_with_random_signs():
    rng = np.random.default_rng(0)
    path = np.cumsum(rng.normal(size=(13, 3, 3, 2, 4)), axis=0).astype(np.float32)
    _, track = run_path(path, key=5)
    z = path[0].copy()
    zs = [z.copy()]
    for t in range(1, len(path)):
        key = jax.random.fold_in(jax.random.PRNGKey(5), t)
        s = np.asarray(trajectory.walk_signs(key, 0, path[0].shape))
        assert set(np.unique(s)) <= {-1.0, 1.0}
        z = z + s * np.abs(path[t] - path[t - 1])
        zs.append(z.copy())
    zs = np.stack(zs)
    t1 = track["conv1"]
    np.testing.assert_allclose(t1["walk"], zs[-1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(t1["walk_lo"], zs.min(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(t1["walk_hi"], zs.max(0), rtol=1e-5, atol=1e-5)


def exact_walk_stats(n: int) -> tuple[float, float]:
    """E[F] and P(near an end) of a simple +-1 random walk of n steps in its own
    running range, by enumerating all 2^n sign sequences."""
    signs = np.array(list(itertools.product((-1, 1), repeat=n)), np.int64)
    z = np.concatenate([np.zeros((len(signs), 1), np.int64), np.cumsum(signs, 1)], axis=1)
    lo, hi, end = z.min(1), z.max(1), z[:, -1]
    mu = (end - lo) / (hi - lo)
    inside = (mu > 0) & (mu < 1)
    m = np.where(inside, mu, 0.5)
    h = np.where(inside, -(m * np.log2(m) + (1 - m) * np.log2(1 - m)), 0.0)
    return float(h.mean()), float(((mu <= 0.05) | (mu >= 0.95)).mean())


def test_walk_distribution_matches_the_exact_simple_random_walk():
    # The weights climb by exactly 1 every step (monotone: F = 0, all at an end); the
    # walk of 20,000 weights is then a simple random walk of 12 steps.
    n, shape = 12, (10, 10, 20, 10)
    path = np.arange(n + 1, dtype=np.float32)[:, None, None, None, None] * np.ones(shape, np.float32)
    params, track = run_path(path, key=3)
    s = trajectory.trajectory_stats(params, track)["conv1"]
    assert float(s["fuzziness"]) == 0.0 and float(s["near_ends"]) == 1.0
    f_exact, near_exact = exact_walk_stats(n)
    size = np.prod(shape)
    # 5 standard errors of a mean of `size` draws (H in [0, 1], sd < 0.5)
    assert float(s["walk_fuzziness"]) == pytest.approx(f_exact, abs=5 * 0.5 / np.sqrt(size))
    assert float(s["walk_near_ends"]) == pytest.approx(near_exact, abs=5 * 0.5 / np.sqrt(size))
    assert 0.3 < near_exact < 0.7 and 0.3 < f_exact < 0.7  # far from the monotone 1 and 0


def tiny_net():
    L = models.Layer
    return models.Net((L("conv1", "conv", 3, 3), L("relu1", "relu"),
                       L("conv2", "conv", 4, 3, "VALID"), L("relu2", "relu"),
                       L("flatten", "flatten"), L("fc1", "dense", 10)))


def test_tracked_range_equals_a_brute_force_record_of_a_real_run():
    full = data.load("digits", "train")
    tiny = Dataset(full.images[:64, ::4, ::4], full.labels[:64], 10)
    net, tracker = tiny_net(), trajectory.TrajectoryTracker()
    spec = train.TrainSpec(epochs=2, batch_size=16, learning_rate=1e-2)
    states, _ = train.fit(net, tiny, None, spec, seeds=(4,), step_tracker=tracker)
    # Brute force: the same steps one by one, every conv kernel recorded after each.
    opt = train.make_optimizer(spec)
    s = train.init_states(net, opt, (4,), tiny.images.shape[1:], step_tracker=tracker)
    step = jax.jit(jax.vmap(train.make_train_step(net, opt, step_tracker=tracker)))
    record = [jax.device_get(s["params"])]
    keys = []
    for epoch in range(2):
        perm = jax.random.permutation(jax.random.fold_in(s["key"][0], epoch), 64)
        for i in range(4):
            idx = perm[i * 16:(i + 1) * 16]
            keys.append(train.track_key(s["key"][0], s["step"][0] + 1))
            s, _ = step(s, tiny.images[idx][None], tiny.labels[idx][None])
            record.append(jax.device_get(s["params"]))
    for j, layer in enumerate(("conv1", "conv2")):
        ws = np.stack([r[layer]["kernel"][0] for r in record])  # (steps + 1, ...)
        t = jax.device_get(states["track"][layer])
        np.testing.assert_allclose(ws[-1], states["params"][layer]["kernel"][0], atol=1e-6)
        np.testing.assert_allclose(t["lo"][0], ws.min(0), atol=1e-6)
        np.testing.assert_allclose(t["hi"][0], ws.max(0), atol=1e-6)
        assert np.all(ws.max(0) > ws.min(0))  # every weight moved
        # the walk, re-simulated in numpy with the same signs and the recorded steps
        z = ws[0].copy()
        zs = [z]
        for k, key in enumerate(keys):
            sign = np.asarray(trajectory.walk_signs(key, j, z.shape))
            z = z + sign * np.abs(ws[k + 1] - ws[k])
            zs.append(z)
        zs = np.stack(zs)
        np.testing.assert_allclose(t["walk"][0], zs[-1], atol=1e-5)
        np.testing.assert_allclose(t["walk_lo"][0], zs.min(0), atol=1e-5)
        np.testing.assert_allclose(t["walk_hi"][0], zs.max(0), atol=1e-5)
    # and the per-epoch statistics of every reading read that track
    out = readings.readings_tracker()(0, states)
    assert {"group/fuzziness/conv1", "trajectory/walk_near_ends/conv2",
            "init/outside/conv1"} <= set(out)
    assert len(out["trajectory/fuzziness/conv1"]) == 1


def test_trajectory_penalty_pushes_each_weight_to_the_nearer_end_of_its_range():
    lo = jnp.zeros((1, 1, 1, 4))
    hi = jnp.ones((1, 1, 1, 4))
    w = jnp.asarray([0.2, 0.45, 0.55, 0.9]).reshape(1, 1, 1, 4)
    penalty = trajectory.trajectory_penalty()
    assert penalty.uses_track
    track = {"conv1": {"lo": lo, "hi": hi}}
    grads = jax.grad(penalty)({"conv1": {"kernel": w}}, track)["conv1"]["kernel"].ravel()
    # descent moves w by -grad: below the middle down, above it up
    assert np.all(np.sign(-np.asarray(grads)) == [-1, -1, 1, 1])
    expected = np.log2((1 - w.ravel()) / w.ravel()) / 4  # d/dw of mean H/ln2, width 1
    np.testing.assert_allclose(grads, expected, rtol=1e-5)
