"""95% intervals for findings: across seeds, and across seeds and images.

Every number the report calls a finding is an :class:`Interval`. Two constructions:

* :func:`over_seeds`: S models trained side by side (one vmapped run), one value each.
  Student t: mean +- t_{0.975, S-1} * sd / sqrt(S) (sd with S-1 in the denominator).
* :func:`over_seeds_and_images`: a per-image quantity, shape (S, N), the same N images
  for every seed. The estimate is the mean over seeds of a statistic over images
  (default: the mean). Its standard error adds two parts in quadrature:
  the seed part, sd over seeds of the per-seed statistic / sqrt(S) (the images are
  fixed, so this is seed-to-seed variation), and the image part, the sd over B bootstrap
  resamples of the images (one resample shared by all seeds, so the pairing across
  seeds is kept) of the seed-averaged statistic. The interval is estimate +- t * SE with
  Welch-Satterthwaite degrees of freedom (seed part S-1, image part N-1).

A difference between two conditions measured on the same seeds and images (PGD vs FGSM,
lambda=100 vs lambda=0) is an interval of the paired differences: pass ``a - b``.
With one seed there is no seed part: :func:`over_seeds` gives no interval (NaN ends,
so a rule says "inconclusive") and :func:`over_seeds_and_images` covers images only,
and says so in ``method``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
from scipy import stats

LEVEL = 0.95
RESAMPLES = 1000  # bootstrap resamples of the images


@dataclasses.dataclass(frozen=True)
class Interval:
    """An estimate with its 95% interval [lo, hi] and how the interval was formed."""

    estimate: float
    lo: float
    hi: float
    method: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Interval:
        """From ``to_dict`` output as saved in results.json, where NaN ends are null."""
        def value(name: str):
            v = d[name]
            return math.nan if v is None and name != "method" else v
        return cls(**{f.name: value(f.name) for f in dataclasses.fields(cls)})

    def fmt(self, digits: int = 3, percent: bool = False) -> str:
        """``0.123 [0.100, 0.150]`` (or ``12.3% [10.0%, 15.0%]``)."""
        def num(v: float) -> str:
            if not math.isfinite(v):
                return "n/a"
            return f"{100 * v:.{max(digits - 2, 0)}f}%" if percent else f"{v:.{digits}f}"
        if not (math.isfinite(self.lo) and math.isfinite(self.hi)):
            return f"{num(self.estimate)} [no interval]"
        return f"{num(self.estimate)} [{num(self.lo)}, {num(self.hi)}]"


def _t_interval(estimate: float, se: float, df: float, method: str) -> Interval:
    if not (math.isfinite(se) and df > 0):
        return Interval(float(estimate), math.nan, math.nan, method)
    half = float(stats.t.ppf(0.5 + LEVEL / 2, df)) * se
    return Interval(float(estimate), float(estimate - half), float(estimate + half), method)


def seed_band(ys) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, lo, hi) over the first axis of ``ys`` (seeds, points): the Student-t 95%
    interval of the mean at every point; lo = hi = mean for one seed."""
    ys = np.atleast_2d(np.asarray(ys, np.float64))
    m, s = ys.mean(0), ys.shape[0]
    if s < 2:
        return m, m, m
    half = stats.t.ppf(0.5 + LEVEL / 2, s - 1) * ys.std(0, ddof=1) / math.sqrt(s)
    return m, m - half, m + half


def over_seeds(values) -> Interval:
    """Student-t 95% interval of the mean of one value per seed."""
    v = np.asarray(values, np.float64).ravel()
    s = v.size
    if s == 0 or not np.all(np.isfinite(v)):
        raise ValueError(f"over_seeds needs finite values, got {v.tolist()}")
    if s == 1:
        return Interval(float(v[0]), math.nan, math.nan, "1 seed: no interval")
    m, lo, hi = seed_band(v[:, None])
    return Interval(float(m[0]), float(lo[0]), float(hi[0]), f"t over {s} seeds")


def _mean_last(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=-1)


def over_seeds_and_images(
    values,
    statistic: Callable[[np.ndarray], np.ndarray] = _mean_last,
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Interval:
    """95% interval of mean_s statistic(values[s, :]) over seeds and images.

    ``values`` has shape (S, N) (or (N,) for one seed); ``statistic`` maps (..., N) to
    (...) (vectorized over the leading axes), the mean by default. The bootstrap draws
    are fixed by ``seed``, so the same input gives the same interval.
    """
    v = np.asarray(values, np.float64)
    if v.ndim == 1:
        v = v[None]
    if v.ndim != 2 or v.shape[1] < 2:
        raise ValueError(f"over_seeds_and_images needs shape (seeds, images >= 2), got {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError("over_seeds_and_images needs finite values")
    s, n = v.shape
    per_seed = np.asarray(statistic(v), np.float64)  # (S,)
    estimate = float(per_seed.mean())
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    boot = np.asarray(statistic(v[:, idx]), np.float64).mean(axis=0)  # (B,)
    var_img = float(boot.var(ddof=1))
    if s == 1:
        return _t_interval(estimate, math.sqrt(var_img), n - 1,
                           f"bootstrap over {n} images, 1 seed (images only)")
    var_seed = float(per_seed.var(ddof=1)) / s
    var = var_seed + var_img
    terms = var_seed ** 2 / (s - 1) + var_img ** 2 / (n - 1)
    df = var ** 2 / terms if terms > 0 else math.inf
    return _t_interval(estimate, math.sqrt(var), df,
                       f"t over {s} seeds + bootstrap over {n} images")
