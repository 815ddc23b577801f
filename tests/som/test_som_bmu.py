"""BMU search by matmul equals a brute-force NumPy search."""

import jax
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from som.bmu import best_two, bmus, sq_distances


def _brute(w, x):
    d = ((x[:, None, :].astype(np.float64) - w[None].astype(np.float64)) ** 2).sum(-1)
    return d


def test_bmus_equal_brute_force_numpy_search_across_chunks():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(37, 12)).astype(np.float32)
    x = rng.normal(size=(1001, 12)).astype(np.float32)  # not a multiple of the chunk
    d = _brute(w, x)
    np.testing.assert_array_equal(bmus(w, x, chunk=128), d.argmin(1))
    np.testing.assert_array_equal(bmus(w, x), d.argmin(1))  # one chunk
    np.testing.assert_array_equal(best_two(w, x, chunk=100), np.argsort(d, 1)[:, :2])
    np.testing.assert_allclose(sq_distances(x, w), d, rtol=1e-4, atol=1e-4)


@settings(max_examples=10, deadline=None)
@given(m=st.integers(1, 20), n=st.integers(1, 60), d=st.integers(1, 9),
       seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([1e-2, 1.0, 1e2]))
def test_bmus_match_brute_force_up_to_float_ties(m, n, d, seed, scale):
    rng = np.random.default_rng(seed)
    w = (rng.normal(size=(m, d)) * scale).astype(np.float32)
    x = (rng.normal(size=(n, d)) * scale).astype(np.float32)
    ours = np.asarray(jax.jit(bmus, static_argnames="chunk")(w, x, chunk=16))
    dist = _brute(w, x)
    best = dist.min(1)
    # Same unit, or a unit whose distance ties the best within float32 resolution.
    picked = dist[np.arange(n), ours]
    scale2 = (x.astype(np.float64) ** 2).sum(1) + (w.astype(np.float64) ** 2).sum(1).max()
    assert np.all(picked <= best + 1e-5 * scale2)
