"""experiments/analytic/claims.py: verdicts and intervals from hand-built results."""

import math

import numpy as np
import pytest
from scipy import stats

from experiments.analytic import claims
from experiments.rundir import float_key, jsonable

LEVELS = (0.01, 0.03, 0.3)


def make_results(exact, zero_mean=None, levels=LEVELS):
    """Results shaped as the protocol makes them: ``exact`` and ``zero_mean`` map each
    noise level to the variance errors, shape (seeds, images)."""
    methods = {"exact": exact} | ({"zero_mean": zero_mean} if zero_mean is not None else {})
    shape = np.shape(exact[levels[0]])
    tight = {m: {float_key(v): {"mean_error": np.full(shape, 0.01), "var_error": errs[v],
                                "var_ratio": np.ones(shape)} for v in levels}
             for m, errs in methods.items()}
    return jsonable({
        "noise_levels": list(levels), "methods": [*methods, "diagonal"], "mc_samples": 2000,
        "tightness": tight | {"diagonal": tight["exact"]},
        "mc_var_relative_error": {float_key(v): np.full(shape, 0.03) for v in levels},
    })


def noisy(center, spread, seeds=3, images=40, seed=0):
    return center + spread * np.random.default_rng(seed).standard_normal((seeds, images))


def by_claim(results):
    return {f.claim: f for f in claims.findings(results)}


def t_interval(per_seed):
    v = np.asarray(per_seed, float)
    half = stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
    return v.mean(), v.mean() - half, v.mean() + half


@pytest.mark.parametrize("center, verdict", [(0.05, "yes"), (0.6, "no"), (0.25, "inconclusive")])
def test_tracking_verdicts_at_the_smallest_and_largest_level(center, verdict):
    # the other levels are far on the other side: a claim reading the wrong level fails
    other = 0.6 if center < 0.25 else 0.05
    exact = {0.01: noisy(center, 0.02), 0.03: noisy(other, 0.02, seed=1),
             0.3: noisy(center, 0.02, seed=2)}
    f = by_claim(make_results(exact))
    assert f[claims.TRACKS].verdict == verdict
    assert f[claims.TRACKS_LARGEST].verdict == verdict
    assert f[claims.TRACKS].interval.estimate == pytest.approx(np.mean(exact[0.01]))
    assert f[claims.TRACKS_LARGEST].interval.estimate == pytest.approx(np.mean(exact[0.3]))
    assert "sigma=0.01" in f[claims.TRACKS].detail and "0.030" in f[claims.TRACKS].detail


def test_tracking_interval_is_the_t_interval_over_seeds_when_images_agree():
    """With every image of a seed equal, the bootstrap part is 0 and the interval is
    Student t over the seed means (scipy)."""
    per_seed = np.array([0.10, 0.16, 0.13, 0.20])
    errs = np.repeat(per_seed[:, None], 25, axis=1)
    exact = {v: errs * (1 + i) for i, v in enumerate(LEVELS)}
    f = by_claim(make_results(exact))
    for claim, scale in ((claims.TRACKS, 1), (claims.TRACKS_LARGEST, 3)):
        iv = f[claim].interval
        np.testing.assert_allclose((iv.estimate, iv.lo, iv.hi), t_interval(scale * per_seed),
                                   rtol=1e-9)


def test_smallest_and_largest_levels_are_found_in_an_unsorted_grid():
    levels = (0.3, 0.01, 0.1)
    exact = {0.3: noisy(0.6, 0.01), 0.01: noisy(0.05, 0.01), 0.1: noisy(0.2, 0.01)}
    f = by_claim(make_results(exact, levels=levels))
    assert "sigma=0.01" in f[claims.TRACKS].detail and f[claims.TRACKS].verdict == "yes"
    assert "sigma=0.3" in f[claims.TRACKS_LARGEST].detail
    assert f[claims.TRACKS_LARGEST].verdict == "no"


@pytest.mark.parametrize("gap, verdict", [(0.4, "yes"), (-0.4, "no"), (0.0, "inconclusive")])
def test_exact_tighter_verdicts(gap, verdict):
    exact = {v: noisy(0.1, 0.02, seed=i) for i, v in enumerate(LEVELS)}
    zero = {v: exact[v] + noisy(gap, 0.05, seed=10 + i) for i, v in enumerate(LEVELS)}
    f = by_claim(make_results(exact, zero))
    assert f[claims.EXACT_TIGHTER].verdict == verdict


def test_exact_tighter_pools_the_levels_and_its_interval_is_the_t_interval():
    diffs = {0.01: [0.5, 0.7, 0.6], 0.03: [0.2, 0.1, 0.3], 0.3: [-0.1, 0.0, -0.2]}
    exact = {v: np.full((3, 10), 0.1) for v in LEVELS}
    zero = {v: exact[v] + np.asarray(d)[:, None] for v, d in diffs.items()}
    f = by_claim(make_results(exact, zero))[claims.EXACT_TIGHTER]
    pooled = np.mean([diffs[v] for v in LEVELS], axis=0)  # per seed, mean over the levels
    np.testing.assert_allclose((f.interval.estimate, f.interval.lo, f.interval.hi),
                               t_interval(pooled), rtol=1e-9)
    assert "sigma=0.3: -0.100" in f.detail and "not every level" in f.detail


def test_no_zero_mean_method_no_comparison_and_one_seed_is_inconclusive():
    exact = {v: noisy(0.05, 0.01, seeds=1) for v in LEVELS}
    found = claims.findings(make_results(exact))
    assert [f.claim for f in found] == [claims.TRACKS, claims.TRACKS_LARGEST]
    # one seed: images only, still an interval (method says so)
    assert "1 seed" in found[0].interval.method
