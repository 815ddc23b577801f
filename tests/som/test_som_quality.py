"""Quantization and topographic errors, U-matrix and hit maps against brute-force loops."""

import jax.numpy as jnp
import numpy as np
import pytest

from som import quality
from som.grid import Grid


def _offsets(topology, r):
    if topology == "rectangular":
        return [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0)]
    if r % 2 == 0:  # odd-r offset layout: even rows sit half a unit to the left
        return [(0, -1), (0, 1), (-1, -1), (-1, 0), (1, -1), (1, 0)]
    return [(0, -1), (0, 1), (-1, 0), (-1, 1), (1, 0), (1, 1)]


def _neighbors(grid, r, c):
    for dr, dc in _offsets(grid.topology, r):
        if 0 <= r + dr < grid.rows and 0 <= c + dc < grid.cols:
            yield r + dr, c + dc


@pytest.mark.parametrize("topology", ["rectangular", "hexagonal"])
def test_u_matrix_equals_a_brute_force_loop(topology):
    grid = Grid(4, 5, topology)
    w = np.random.default_rng(0).normal(size=(4, 5, 3))
    expected = np.zeros((4, 5))
    for r in range(4):
        for c in range(5):
            d = [np.linalg.norm(w[r, c] - w[rr, cc]) for rr, cc in _neighbors(grid, r, c)]
            expected[r, c] = np.mean(d)
    ours = quality.u_matrix(jnp.asarray(w.reshape(20, 3), jnp.float32), grid)
    np.testing.assert_allclose(ours, expected, rtol=1e-5)


@pytest.mark.parametrize("topology", ["rectangular", "hexagonal"])
def test_quantization_and_topographic_errors_equal_brute_force(topology):
    rng = np.random.default_rng(1)
    grid = Grid(3, 4, topology)
    w, x = rng.normal(size=(12, 2)), rng.normal(size=(300, 2))
    d = np.linalg.norm(x[:, None] - w[None], axis=-1)
    qe = d.min(1).mean()
    first, second = np.argsort(d, 1)[:, 0], np.argsort(d, 1)[:, 1]
    errors = [(int(b) // 4, int(b) % 4) not in set(_neighbors(grid, int(a) // 4, int(a) % 4))
              for a, b in zip(first, second)]
    wj, xj = jnp.asarray(w, jnp.float32), jnp.asarray(x, jnp.float32)
    np.testing.assert_allclose(quality.quantization_error(wj, xj, chunk=64), qe, rtol=1e-5)
    np.testing.assert_allclose(quality.topographic_error(wj, xj, grid, chunk=64),
                               np.mean(errors), atol=1e-6)


def test_hit_maps():
    grid = Grid(2, 3)
    units = jnp.asarray([0, 0, 5, 2, 0])
    labels = jnp.asarray([1, 0, 1, 1, 1])
    np.testing.assert_array_equal(quality.hit_map(units, grid), [[3, 0, 1], [0, 0, 1]])
    hits = quality.class_hits(units, labels, grid.size, 2)
    np.testing.assert_array_equal(hits[0], [1, 2])
    np.testing.assert_array_equal(quality.majority_class(hits), [1, -1, 1, -1, -1, 1])
