"""experiments/weights/claims.py: the two headline claims decided from hand-made results.

Each case builds results in the shape the protocol writes (accuracy[perturbation][layer]
[float_key(p)] = (seeds, trials), clean top-1 per seed) and checks the verdict, and that
the interval equals an independent Student-t computation on the per-seed numbers.
"""

import math

import numpy as np
import pytest
from scipy import stats

from experiments.weights import claims

CHANCE = 0.1
HEADLINE = "synapse_knockout/weights"


def results(top: list[list[float]], first: list[list[float]], clean: list[float],
            p_key: str = "0.7", perturbation: str = HEADLINE) -> dict:
    """Results with the top layer ``fc2`` and first conv ``conv1`` at p = ``p_key``;
    ``top`` and ``first`` are (seeds, trials) accuracies."""
    other = {"0": [[c] * len(top[0]) for c in clean]}
    return {
        "chance": CHANCE, "trials": len(top[0]), "clean": {"top1": clean},
        "top_layer": "fc2", "first_conv": "conv1", "output_layer": "fc3",
        "accuracy": {perturbation: {"fc2": {p_key: top, **other},
                                    "conv1": {p_key: first, **other}}},
    }


def t_interval(values) -> tuple[float, float, float]:
    """The 95% Student-t interval of the mean, written out with scipy."""
    v = np.asarray(values, float)
    half = stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
    return v.mean(), v.mean() - half, v.mean() + half


def by_claim(found) -> dict:
    return {f.claim.text: f for f in found}


CLEAN = [0.90, 0.92, 0.88]
NEAR_CHANCE = [[0.11, 0.10], [0.12, 0.11], [0.10, 0.12]]  # first conv: margin left ~1-2%


# --- top layer: relative loss below 0.30 -------------------------------------------------

@pytest.mark.parametrize("top, verdict", [
    ([[0.85, 0.83], [0.86, 0.88], [0.80, 0.82]], "yes"),  # ~7% lost
    ([[0.40, 0.42], [0.45, 0.41], [0.38, 0.44]], "no"),   # ~53% lost
    ([[0.80, 0.78], [0.40, 0.42], [0.70, 0.50]], "inconclusive"),  # 12%..55% across seeds
])
def test_top_layer_verdicts(top, verdict):
    f = by_claim(claims.findings(results(top, NEAR_CHANCE, CLEAN)))[claims.TOP_LAYER.text]
    assert f.verdict == verdict


def test_top_layer_interval_is_t_over_seeds_of_trial_means():
    top = [[0.85, 0.75], [0.70, 0.66], [0.62, 0.70]]
    f = by_claim(claims.findings(results(top, NEAR_CHANCE, CLEAN)))[claims.TOP_LAYER.text]
    loss = [1 - np.mean(a) / c for a, c in zip(top, CLEAN)]
    est, lo, hi = t_interval(loss)
    assert (f.interval.estimate, f.interval.lo, f.interval.hi) == pytest.approx((est, lo, hi),
                                                                                 rel=1e-9)
    assert f.interval.method == "t over 3 seeds"
    assert "fc2" in f.detail


# --- first conv layer: margin over chance left below 0.10 --------------------------------

TOP_OK = [[0.85, 0.83], [0.86, 0.88], [0.80, 0.82]]


@pytest.mark.parametrize("first, verdict", [
    (NEAR_CHANCE, "yes"),
    ([[0.70, 0.72], [0.75, 0.70], [0.66, 0.68]], "no"),  # ~75% of the margin left
    ([[0.10, 0.11], [0.40, 0.38], [0.12, 0.25]], "inconclusive"),
])
def test_first_conv_verdicts(first, verdict):
    f = by_claim(claims.findings(results(TOP_OK, first, CLEAN)))[claims.FIRST_CONV.text]
    assert f.verdict == verdict


def test_first_conv_interval_is_t_over_seeds_of_the_margin_left():
    first = [[0.30, 0.20], [0.25, 0.15], [0.40, 0.30]]
    f = by_claim(claims.findings(results(TOP_OK, first, CLEAN)))[claims.FIRST_CONV.text]
    left = [(np.mean(a) - CHANCE) / (c - CHANCE) for a, c in zip(first, CLEAN)]
    est, lo, hi = t_interval(left)
    assert (f.interval.estimate, f.interval.lo, f.interval.hi) == pytest.approx((est, lo, hi),
                                                                                 rel=1e-9)
    assert "conv1" in f.detail


def test_clean_at_chance_gives_no_interval_and_inconclusive():
    clean = [0.9, 0.1, 0.9]  # seed 1 never learned: no margin over chance to divide by
    f = by_claim(claims.findings(results(TOP_OK, NEAR_CHANCE, clean)))[claims.FIRST_CONV.text]
    assert f.verdict == "inconclusive" and math.isnan(f.interval.lo)


def test_one_seed_is_inconclusive():
    found = claims.findings(results([[0.85, 0.86]], [[0.10, 0.10]], [0.9]))
    assert [f.verdict for f in found] == ["inconclusive", "inconclusive"]


def test_claims_not_swept_are_left_out():
    assert claims.findings(results(TOP_OK, NEAR_CHANCE, CLEAN, p_key="0.6")) == []
    assert claims.findings(results(TOP_OK, NEAR_CHANCE, CLEAN, perturbation="mutation/weights")) == []
    r = results(TOP_OK, NEAR_CHANCE, CLEAN)
    r["first_conv"] = None  # an MLP has no conv layer
    assert [f.claim for f in claims.findings(r)] == [claims.TOP_LAYER]


def test_findings_serialize_with_the_rule_beside_the_verdict():
    d = [f.to_dict() for f in claims.findings(results(TOP_OK, NEAR_CHANCE, CLEAN))]
    assert [x["verdict"] for x in d] == ["yes", "yes"]
    assert "below 0.3" in d[0]["rule"] and "below 0.1" in d[1]["rule"]
    assert all(x["figure"] == "weights_headline.png" for x in d)
