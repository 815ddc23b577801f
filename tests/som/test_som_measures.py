"""Per-layer measures: mutual information, class dispersion and BMU moves by hand."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import mutual_info_score

from som import measures
from som.grid import Grid


def test_mutual_information_matches_sklearn_in_bits():
    rng = np.random.default_rng(0)
    units = rng.integers(0, 12, 500)
    labels = (units % 4 + rng.integers(0, 2, 500)) % 5
    ours = measures.mutual_information(jnp.asarray(units), jnp.asarray(labels), 12, 5)
    np.testing.assert_allclose(ours, mutual_info_score(labels, units) / math.log(2), rtol=1e-5)


def test_mutual_information_limits_and_shuffled_floor():
    labels = jnp.asarray(np.repeat(np.arange(4), 50))
    # BMU determines the label: I = H(Y) = 2 bits; BMU independent of the label: I = 0.
    assert measures.mutual_information(labels * 3, labels, 12, 4) == pytest.approx(2.0, rel=1e-5)
    independent = jnp.asarray(np.tile(np.arange(5), 40))
    assert measures.mutual_information(independent, labels, 5, 4) == pytest.approx(0, abs=1e-5)
    # Random relabelings: positive bias, well below the true MI.
    shuffled = measures.shuffle_labels(jax.random.PRNGKey(0), labels, 10)
    assert sorted(np.asarray(shuffled[0])) == sorted(np.asarray(labels))
    floor = float(measures.shuffled_mutual_information(labels * 3, shuffled, 12, 4))
    assert 0 < floor < 0.3
    out = measures.code_measures(labels * 3, labels, shuffled, jnp.asarray(Grid(3, 4).coords),
                                 12, 4)
    assert out["nmi"] == pytest.approx(1.0, rel=1e-5)
    assert out["nmi_corrected"] == pytest.approx(1.0 - floor / 2.0, rel=1e-4)


def test_class_dispersion_and_distinct_units_by_hand():
    coords = jnp.asarray(Grid(2, 3).coords)  # unit j at (j % 3, j // 3)
    units = jnp.asarray([0, 2, 4, 4])
    labels = jnp.asarray([0, 0, 1, 1])
    # class 0 at (0,0), (2,0): centroid (1,0), mean distance 1; class 1 twice at (1,1): 0.
    assert measures.class_dispersion(units, labels, coords, 3) == pytest.approx(0.5)
    assert measures.distinct_units(units, 6) == 3
    # all four around centroid (1, 0.5): distances sqrt(1.25), sqrt(1.25), 0.5, 0.5
    assert measures.spread(units, coords) == pytest.approx((math.sqrt(1.25) + 0.5) / 2)


def test_bmu_moves_and_agreement_by_hand():
    coords = jnp.asarray(Grid(3, 3).coords)
    clean, adv = jnp.asarray([0, 1, 2, 3]), jnp.asarray([0, 2, 2, 8])
    out = measures.bmu_moves(clean, adv, coords)
    # moves: unit 1 -> 2 (distance 1), unit 3 (0,1) -> unit 8 (2,2) (distance sqrt 5)
    assert out["moved_fraction"] == pytest.approx(0.5)
    assert out["mean_distance"] == pytest.approx((1 + math.sqrt(5)) / 4, rel=1e-6)
    assert out["mean_distance_moved"] == pytest.approx((1 + math.sqrt(5)) / 2, rel=1e-6)
    unit_class = jnp.asarray([0, 1, 2, 3, -1, -1, -1, -1, 7])
    assert measures.agreement(adv, unit_class, jnp.asarray([0, 2, 1, 7])) == pytest.approx(0.75)
