"""The map's lattice: unit coordinates on the plane, grid distances and adjacency.

Units are numbered row-major, ``j = r * cols + c``. Coordinates (x, y) on the plane:

* ``rectangular``: x = c, y = r. Adjacent units are the 8 that touch a unit's square
  (edge or corner; grid distance 1 or sqrt 2), as in MiniSom's topographic error and
  U-matrix.
* ``hexagonal``: "odd-r" offset rows (Kohonen 2013, Fig. 1 of *Essentials of the SOM*;
  SOM Toolbox ``hexa``): x = c + 0.5 * (r mod 2), y = r * sqrt(3) / 2. Every interior
  unit then has exactly 6 neighbors at distance 1 (the hexagons sharing an edge), the
  next ring at sqrt 3 and 2. Adjacent = distance 1.

All of this is static structure, computed once in NumPy (a :class:`Grid` is hashable and
is passed to jitted functions as a static argument); distances on the grid are plain
Euclidean distances between these coordinates.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from som.checks import check_int

TOPOLOGIES = ("rectangular", "hexagonal")
_TOL = 1e-6


@dataclasses.dataclass(frozen=True)
class Grid:
    """A ``rows`` x ``cols`` lattice of map units, ``rectangular`` or ``hexagonal``."""

    rows: int
    cols: int
    topology: str = "rectangular"

    def __post_init__(self) -> None:
        if self.topology not in TOPOLOGIES:
            raise ValueError(f"unknown topology {self.topology!r}; use one of {TOPOLOGIES}")
        check_int(self.rows, "grid rows")
        check_int(self.cols, "grid cols")

    @property
    def size(self) -> int:
        """Number of units M = rows * cols."""
        return self.rows * self.cols

    @property
    def shape(self) -> tuple[int, int]:
        return (self.rows, self.cols)

    @property
    def adjacent_radius(self) -> float:
        """Largest grid distance at which two units count as adjacent (1 hex, sqrt 2 rect)."""
        return 1.0 if self.topology == "hexagonal" else math.sqrt(2.0)

    @property
    def coords(self) -> np.ndarray:
        """(M, 2) float32 plane coordinates (x, y) of the units, row-major."""
        return _coords(self.rows, self.cols, self.topology)

    @property
    def distances(self) -> np.ndarray:
        """(M, M) float32 Euclidean distances between units on the plane."""
        return _distances(self.rows, self.cols, self.topology)

    @property
    def adjacency(self) -> np.ndarray:
        """(M, M) bool: units adjacent on the lattice (a unit is not its own neighbor)."""
        d = self.distances
        return (d > _TOL) & (d <= self.adjacent_radius + _TOL)

    def unit_rc(self, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row and column of unit index ``j``."""
        return np.divmod(np.asarray(j), self.cols)


@functools.cache
def _coords(rows: int, cols: int, topology: str) -> np.ndarray:
    r, c = np.divmod(np.arange(rows * cols), cols)
    x, y = c.astype(np.float64), r.astype(np.float64)
    if topology == "hexagonal":
        x = x + 0.5 * (r % 2)
        y = y * math.sqrt(3.0) / 2.0
    out = np.stack([x, y], axis=1).astype(np.float32)
    out.setflags(write=False)
    return out


@functools.cache
def _distances(rows: int, cols: int, topology: str) -> np.ndarray:
    xy = _coords(rows, cols, topology).astype(np.float64)
    d = np.sqrt(((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1)).astype(np.float32)
    d.setflags(write=False)
    return d
