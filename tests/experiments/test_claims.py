"""The decision rule: yes / no / inconclusive from where the interval lies, and the
findings table built from findings as saved in results.json."""

import math

import pytest

from experiments.claims import Claim, Rule
from experiments.intervals import Interval
from experiments.runner import findings_table

CLAIM = Claim("attacks", "Madry et al.", "PGD is stronger", "FGSM minus PGD",
              Rule("above", 0.0), "robust.png")


@pytest.mark.parametrize("lo, hi, side, verdict", [
    (0.01, 0.05, "above", "yes"), (-0.05, -0.01, "above", "no"), (-0.01, 0.05, "above", "inconclusive"),
    (0.0, 0.05, "above", "inconclusive"),  # touching the threshold is not "entirely above"
    (-0.05, -0.01, "below", "yes"), (0.01, 0.05, "below", "no"), (-0.01, 0.01, "below", "inconclusive"),
    (math.nan, math.nan, "above", "inconclusive"),
])
def test_rule_decides_from_the_interval(lo, hi, side, verdict):
    iv = Interval((lo + hi) / 2 if math.isfinite(lo) else 0.0, lo, hi, "test")
    assert Rule(side, 0.0).decide(iv) == verdict


def test_threshold_and_rule_text():
    rule = Rule("below", 0.3)
    assert rule.decide(Interval(0.2, 0.1, 0.29, "t")) == "yes"
    assert rule.decide(Interval(0.35, 0.31, 0.4, "t")) == "no"
    assert rule.text == ("yes if the 95% interval lies entirely below 0.3, no if entirely "
                         "above, else inconclusive")
    with pytest.raises(ValueError, match="side"):
        Rule("over", 0.0)


def test_findings_table_quotes_the_saved_numbers():
    saved = CLAIM.decide(Interval(0.123, 0.101, 0.145, "t over 3 seeds"), "eps 0.1").to_dict()
    assert saved["verdict"] == "yes" and saved["estimate"] == 0.123
    in_study = dict(saved, figure=f"attacks/{saved['figure']}")  # as experiments/study.py saves it
    table = findings_table([in_study])
    assert "0.123 [0.101, 0.145] (t over 3 seeds)" in table
    assert "**yes**" in table and "(attacks/robust.png)" in table
    assert saved["rule"] in table and "FGSM minus PGD; eps 0.1" in table
