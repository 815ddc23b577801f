"""MiniSom-familiar views against MiniSom itself on the same weights: winners, win_map,
labels_map and distance_map (rectangular grids, where both use the 8-neighborhood)."""

import numpy as np
import pytest
from minisom import MiniSom

from som import Grid
from som.views import distance_map, labels_map, win_map, winners

ROWS, COLS, D = 5, 7, 4


@pytest.fixture(scope="module")
def peer():
    """A MiniSom with random weights, its data, labels, and our (M, d) codebook."""
    rng = np.random.default_rng(0)
    ms = MiniSom(ROWS, COLS, D, random_seed=0)
    ms._weights = rng.normal(size=(ROWS, COLS, D))
    x = rng.normal(size=(300, D)).astype(np.float32)
    labels = rng.integers(0, 3, size=300)
    w = ms._weights.reshape(ROWS * COLS, D).astype(np.float32)
    return ms, x, labels, w


def test_winners_are_minisoms_winner_for_every_sample(peer):
    ms, x, _, w = peer
    ours = np.asarray(winners(w, x, Grid(ROWS, COLS)))
    theirs = np.array([ms.winner(xi) for xi in x])
    assert ours.shape == (300, 2) and ours.dtype == np.int32
    np.testing.assert_array_equal(ours, theirs)


def test_win_map_and_labels_map_equal_minisoms(peer):
    ms, x, labels, w = peer
    ours = win_map(w, x, Grid(ROWS, COLS), return_indices=True)
    theirs = ms.win_map(x, return_indices=True)
    assert ours == dict(theirs) and sum(map(len, ours.values())) == 300
    rows = win_map(w, x, Grid(ROWS, COLS))
    pos = next(iter(rows))
    np.testing.assert_array_equal(np.stack(rows[pos]), x[ours[pos]])
    assert labels_map(w, x, labels, Grid(ROWS, COLS)) == dict(ms.labels_map(x, labels))


@pytest.mark.parametrize("scaling", ["sum", "mean"])
def test_distance_map_equals_minisoms(peer, scaling):
    ms, _, _, w = peer
    ours = np.asarray(distance_map(w, Grid(ROWS, COLS), scaling))
    np.testing.assert_allclose(ours, ms.distance_map(scaling), rtol=1e-5, atol=1e-6)


def test_bad_labels_and_scaling_are_clear_errors(peer):
    _, x, labels, w = peer
    with pytest.raises(ValueError, match="300 rows of x but 299 labels"):
        labels_map(w, x, labels[:-1], Grid(ROWS, COLS))
    with pytest.raises(ValueError, match="unknown scaling 'max'"):
        distance_map(w, Grid(ROWS, COLS), "max")
