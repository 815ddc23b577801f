"""SOM training: the batch map and online rule against their formulas, errors fall with
training, and vmapped training of many maps equals training them one by one."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from som import quality, schedule
from som.grid import Grid
from som.init import pca_init
from som.train import SOMSpec, batch_step, fit, fit_many, online_step, train

# A 1x3 map on a line (units at 0, 1, 2) and four 2-D points whose BMUs are known:
# x1, x2 -> unit 0, x3 -> unit 1, x4 -> unit 2.
W0 = np.array([[0.0, 0.0], [5.0, 0.0], [10.0, 0.0]], np.float32)
X = np.array([[1.0, 0.0], [2.0, 0.0], [6.0, 0.0], [9.0, 1.0]], np.float32)
LINE = Grid(1, 3)


def test_batch_update_by_hand_bubble():
    # Bubble of radius 1: unit j averages the samples whose BMU is within 1 of j.
    w = batch_step(jnp.asarray(W0), jnp.asarray(X), jnp.asarray(LINE.distances), 1.0, "bubble")
    expected = [[(1 + 2 + 6) / 3, 0.0],           # BMUs 0, 0, 1
                [(1 + 2 + 6 + 9) / 4, 1 / 4],     # all four
                [(6 + 9) / 2, 1 / 2]]             # BMUs 1, 2
    np.testing.assert_allclose(w, expected, rtol=1e-6)


def test_batch_update_by_hand_gaussian_and_numpy_formula():
    a, b = math.exp(-0.5), math.exp(-2.0)  # h at grid distance 1 and 2, sigma = 1
    w = np.asarray(batch_step(jnp.asarray(W0), jnp.asarray(X), jnp.asarray(LINE.distances),
                              1.0, "gaussian"))
    # unit 0: weights 1, 1, a, b for x1..x4 (BMUs 0, 0, 1, 2)
    w0 = (np.array([1, 0]) + np.array([2, 0]) + a * np.array([6, 0]) + b * np.array([9, 1]))
    np.testing.assert_allclose(w[0], w0 / (2 + a + b), rtol=1e-6)
    # unit 1: weights a, a, 1, a
    w1 = a * np.array([1, 0]) + a * np.array([2, 0]) + np.array([6, 0]) + a * np.array([9, 1])
    np.testing.assert_allclose(w[1], w1 / (1 + 3 * a), rtol=1e-6)
    # The formula w_j = sum_i h(j, c_i) x_i / sum_i h(j, c_i), plainly in NumPy, on a
    # bigger hexagonal case.
    rng = np.random.default_rng(1)
    g = Grid(3, 4, "hexagonal")
    w0, x = rng.normal(size=(12, 3)), rng.normal(size=(50, 3))
    c = ((x[:, None] - w0[None]) ** 2).sum(-1).argmin(1)
    h = np.exp(-g.distances.astype(np.float64)[:, c] ** 2 / (2 * 0.8**2))  # (M, N)
    expected = h @ x / h.sum(1, keepdims=True)
    ours = batch_step(jnp.asarray(w0, jnp.float32), jnp.asarray(x, jnp.float32),
                      jnp.asarray(g.distances), 0.8, "gaussian", chunk=16)
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-5)


def test_batch_update_keeps_units_without_samples_in_their_bubble():
    w = batch_step(jnp.asarray(W0), jnp.asarray(X[:2]), jnp.asarray(LINE.distances), 0.5,
                   "bubble")
    np.testing.assert_allclose(w, [[1.5, 0.0], [5.0, 0.0], [10.0, 0.0]])


def test_online_step_by_hand():
    a = math.exp(-0.5)
    w = online_step(jnp.asarray(W0), jnp.asarray([6.0, 0.0]), jnp.asarray(LINE.distances),
                    1.0, 0.5, "gaussian")  # BMU = unit 1
    np.testing.assert_allclose(w, [[3 * a, 0.0], [5.5, 0.0], [10 - 2 * a, 0.0]], rtol=1e-6)


def test_schedules():
    t = jnp.arange(5)
    np.testing.assert_allclose(schedule.decay("exponential", 4.0, 0.5, t, 5),
                               4.0 * (0.5 / 4.0) ** (np.arange(5) / 4), rtol=1e-6)
    np.testing.assert_allclose(schedule.decay("linear", 4.0, 0.5, t, 5),
                               np.linspace(4.0, 0.5, 5), rtol=1e-6)
    np.testing.assert_allclose(schedule.decay("asymptotic", 3.0, 0.0, t, 5),
                               3.0 / (1 + np.arange(5) / (5 / 2)), rtol=1e-6)  # MiniSom's


def _clusters(n=600, d=5, k=4, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)) * 4
    return jnp.asarray(centers[rng.integers(0, k, n)] + 0.3 * rng.normal(size=(n, d)),
                       jnp.float32)


@pytest.mark.parametrize("algorithm, steps, topology, neighborhood", [
    ("batch", 15, "rectangular", "gaussian"),
    ("batch", 15, "hexagonal", "bubble"),
    ("online", 3000, "hexagonal", "gaussian"),
    ("online", 3000, "rectangular", "bubble"),
])
def test_errors_decrease_with_training_on_clustered_data(algorithm, steps, topology,
                                                         neighborhood):
    x = _clusters()
    grid = Grid(6, 6, topology)
    spec = SOMSpec(grid, algorithm=algorithm, steps=steps, neighborhood=neighborhood,
                   sigma=3.0, sigma_end=0.7, init="random")
    key = jax.random.PRNGKey(0)
    w0 = jax.random.normal(key, (grid.size, x.shape[1]))  # unordered, away from the data
    w = train(spec, w0, x, key)
    qe0, qe1 = quality.quantization_error(w0, x), quality.quantization_error(w, x)
    te0, te1 = quality.topographic_error(w0, x, grid), quality.topographic_error(w, x, grid)
    assert qe1 < 0.6 * qe0
    assert te1 < te0 and te1 < 0.3


@pytest.mark.parametrize("algorithm, steps, init", [("batch", 6, "pca"),
                                                     ("online", 300, "random")])
def test_vmapped_training_equals_one_map_at_a_time(algorithm, steps, init):
    spec = SOMSpec(Grid(4, 5, "hexagonal"), algorithm=algorithm, steps=steps, init=init,
                   sigma=2.0, sigma_end=0.5)
    xs = jnp.stack([_clusters(200, 6, 3, seed=s) for s in range(3)])
    keys = jax.random.split(jax.random.PRNGKey(3), 3)
    many = fit_many(spec, keys, xs)
    for k in range(3):
        np.testing.assert_allclose(many[k], fit(spec, keys[k], xs[k]), rtol=2e-4, atol=2e-4)


def test_zero_padded_codes_train_the_same_map():
    x = _clusters(150, 4, 3)
    xp = jnp.pad(x, ((0, 0), (0, 5)))
    for algorithm, steps in (("batch", 5), ("online", 200)):
        spec = SOMSpec(Grid(3, 4), algorithm=algorithm, steps=steps, init="random")
        w, wp = fit(spec, jax.random.PRNGKey(1), x), fit(spec, jax.random.PRNGKey(1), xp)
        np.testing.assert_allclose(wp[:, :4], w, rtol=1e-5, atol=1e-5)
        assert np.abs(np.asarray(wp[:, 4:])).max() == 0


def test_pca_init_spans_the_two_principal_axes():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 4)) * np.array([5.0, 2.0, 0.5, 0.1]) + np.array([1, 2, 3, 4])
    grid = Grid(4, 6)  # longer side (cols) along the first axis
    w = np.asarray(pca_init(jnp.asarray(x, jnp.float32), grid)).reshape(4, 6, 4)
    evals, evecs = np.linalg.eigh(np.cov(x, rowvar=False))
    v1, v2 = evecs[:, -1] * np.sqrt(evals[-1]), evecs[:, -2] * np.sqrt(evals[-2])
    centered = w - x.mean(0)
    rest = evecs[:, :2]
    np.testing.assert_allclose(centered.reshape(-1, 4) @ rest, 0, atol=1e-3)
    along_cols = centered[0, -1] - centered[0, 0]  # (-1 -> +1) along cols
    along_rows = centered[-1, 0] - centered[0, 0]
    np.testing.assert_allclose(np.abs(along_cols @ v1) / (v1 @ v1), 2.0, rtol=1e-3)
    np.testing.assert_allclose(np.abs(along_rows @ v2) / (v2 @ v2), 2.0, rtol=1e-3)


def test_bad_spec_values_are_errors():
    with pytest.raises(ValueError, match="unknown neighborhood"):
        SOMSpec(Grid(2, 2), neighborhood="mexican")
    with pytest.raises(ValueError, match="unknown decay"):
        SOMSpec(Grid(2, 2), decay="cosine")
