"""Grid geometry: hexagonal neighbors at distance 1, rectangular 4 + 4 diagonals."""

import numpy as np
import pytest

from som.grid import Grid


def _cube(r, c):
    """Odd-r offset -> cube coordinates (redblobgames), an independent hex distance."""
    q = c - (r - (r & 1)) // 2
    return q, r, -q - r


def _hex_steps(a, b):
    return max(abs(x - y) for x, y in zip(a, b))


@pytest.mark.parametrize("rows, cols", [(6, 7), (5, 5)])
def test_hexagonal_interior_units_have_exactly_six_neighbors_at_distance_one(rows, cols):
    g = Grid(rows, cols, "hexagonal")
    d = g.distances.astype(np.float64)
    r, c = g.unit_rc(np.arange(g.size))
    interior = (r > 0) & (r < rows - 1) & (c > 0) & (c < cols - 1)
    near = np.isclose(d, 1.0, atol=1e-5)
    assert (near.sum(1)[interior] == 6).all()
    assert (g.adjacency.sum(1)[interior] == 6).all()
    # Grid distance 1 <=> one hex step; no unit is closer than 1; second ring at sqrt 3, 2.
    cube = [_cube(int(a), int(b)) for a, b in zip(r, c)]
    steps = np.array([[_hex_steps(a, b) for b in cube] for a in cube])
    np.testing.assert_array_equal(near, steps == 1)
    off = d[~np.eye(g.size, dtype=bool)]
    assert off.min() == pytest.approx(1.0, abs=1e-5)
    ring2 = d[steps == 2]
    assert np.all(np.isclose(ring2, np.sqrt(3), atol=1e-5) | np.isclose(ring2, 2.0, atol=1e-5))


def test_rectangular_neighbors():
    g = Grid(5, 6)
    d = g.distances
    r, c = g.unit_rc(np.arange(g.size))
    interior = (r > 0) & (r < 4) & (c > 0) & (c < 5)
    assert (np.isclose(d, 1.0).sum(1)[interior] == 4).all()
    assert (np.isclose(d, np.sqrt(2)).sum(1)[interior] == 4).all()
    assert (g.adjacency.sum(1)[interior] == 8).all()
    assert g.adjacency.sum(1)[0] == 3  # a corner touches 3 squares
    np.testing.assert_allclose(d[0, 7], np.hypot(1, 1), rtol=1e-6)  # (0,0) to (1,1)


def test_bad_topology_is_an_error():
    with pytest.raises(ValueError, match="unknown topology"):
        Grid(3, 3, "triangular")
