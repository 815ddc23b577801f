"""95% intervals: the seed interval against scipy, the seeds + images interval by its
coverage in simulation, and the edge cases (one seed, constant values)."""

import math

import numpy as np
import pytest
from scipy import stats

from experiments.intervals import Interval, over_seeds, over_seeds_and_images


def test_over_seeds_is_the_student_t_interval():
    values = [0.91, 0.95, 0.88, 0.93]
    lo, hi = stats.t.interval(0.95, 3, loc=np.mean(values), scale=stats.sem(values))
    iv = over_seeds(values)
    assert iv.estimate == pytest.approx(np.mean(values))
    assert (iv.lo, iv.hi) == pytest.approx((lo, hi), rel=1e-12)
    assert iv.method == "t over 4 seeds"


def test_one_seed_gives_no_interval_and_bad_values_are_refused():
    iv = over_seeds([0.5])
    assert iv.estimate == 0.5 and math.isnan(iv.lo) and math.isnan(iv.hi)
    assert iv.fmt() == "0.500 [no interval]"
    with pytest.raises(ValueError, match="finite"):
        over_seeds([0.5, float("nan")])
    with pytest.raises(ValueError, match="images >= 2"):
        over_seeds_and_images(np.zeros((3, 1)))


def test_seeds_and_images_without_seed_spread_is_the_image_standard_error():
    rng = np.random.default_rng(1)
    per_image = rng.normal(size=400)
    values = np.stack([per_image] * 3)  # three identical seeds: only images vary
    iv = over_seeds_and_images(values)
    se = per_image.std(ddof=1) / math.sqrt(400)
    half = (iv.hi - iv.lo) / 2
    assert half == pytest.approx(stats.t.ppf(0.975, 399) * se, rel=0.1)
    assert iv.estimate == pytest.approx(per_image.mean())


def test_seeds_and_images_covers_the_true_mean_95_percent_of_the_time():
    """Simulated crossed design: seed effects, image effects and noise; the interval
    must cover the population mean (0) in about 95% of repetitions."""
    rng = np.random.default_rng(0)
    reps, s, n = 300, 5, 60
    covered = 0
    for r in range(reps):
        seed_fx = rng.normal(0, 0.05, size=(s, 1))
        image_fx = rng.normal(0, 0.2, size=(1, n))
        values = seed_fx + image_fx + rng.normal(0, 0.1, size=(s, n))
        iv = over_seeds_and_images(values, resamples=300, seed=r)
        covered += iv.lo <= 0.0 <= iv.hi
    assert 0.90 <= covered / reps <= 0.995, covered / reps


def test_a_non_mean_statistic_and_determinism():
    rng = np.random.default_rng(3)
    values = rng.random((3, 50))
    med = over_seeds_and_images(values, lambda v: np.median(v, axis=-1))
    assert med.estimate == pytest.approx(np.median(values, axis=1).mean())
    assert med.lo < med.estimate < med.hi
    assert over_seeds_and_images(values) == over_seeds_and_images(values)


def test_interval_round_trips_through_a_dict():
    iv = Interval(0.2, 0.1, 0.3, "t over 3 seeds")
    assert Interval.from_dict(iv.to_dict()) == iv
    assert iv.fmt(percent=True) == "20.0% [10.0%, 30.0%]"


def test_seeds_and_images_without_image_spread_is_the_seed_interval():
    seed_means = np.array([0.80, 0.86, 0.83])
    values = seed_means[:, None] + np.zeros((3, 200))
    values[:, ::2] += 1e-9  # images nearly identical: only seeds vary
    iv = over_seeds_and_images(values)
    ref = over_seeds(seed_means)
    assert (iv.lo, iv.hi) == pytest.approx((ref.lo, ref.hi), rel=1e-4)
