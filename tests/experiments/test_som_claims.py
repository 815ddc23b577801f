"""The som lens's claims on hand-built results: yes / no / inconclusive, and intervals
equal to an independent computation (scipy's t, the bootstrap written out here)."""

import math

import numpy as np
import pytest
from scipy import stats

from experiments.som import claims

SHALLOW, DEEP = ["conv1", "conv2"], ["fc1", "fc2", "fc3"]


def make_results(nmi: dict[str, list[float]], shallow_excess=None, deep_excess=None,
                 attacks=("pgd", "fgsm", "noise")) -> dict:
    """Results in the protocol's layout (after JSON: lists), with only what claims read."""
    seeds = len(next(iter(nmi.values())))
    per_layer = {}
    for i, name in enumerate(SHALLOW + DEEP):
        per_layer[name] = {"nmi_corrected": list(nmi[name]),
                           "class_dispersion_ratio": [0.8 - 0.1 * i] * seeds}
        for a in attacks:
            per_layer[name][a] = {"moved_fraction": [0.5] * seeds}
    per_image = {}
    if shallow_excess is not None:
        per_image["pgd"] = {"shallow": np.asarray(shallow_excess).tolist(),
                            "deep": np.asarray(deep_excess).tolist()}
    return {"layers": SHALLOW + DEEP, "shallow_layers": SHALLOW, "deep_layers": DEEP,
            "attacks": list(attacks), "per_layer": per_layer,
            "moved_over_noise_per_image": per_image}


def nmi_results(shallow: list[float], deep: list[float]) -> dict:
    """conv1/conv2 at shallow -+ 0.05, fc layers at deep - 0.1, deep, deep + 0.1."""
    s, d = np.asarray(shallow), np.asarray(deep)
    return make_results({"conv1": s - 0.05, "conv2": s + 0.05, "fc1": d - 0.1, "fc2": d,
                         "fc3": d + 0.1})


@pytest.mark.parametrize("shallow, deep, verdict", [
    ([0.10, 0.15, 0.12], [0.60, 0.62, 0.58], "yes"),
    ([0.60, 0.62, 0.58], [0.10, 0.15, 0.12], "no"),
    ([0.30, 0.40, 0.35], [0.40, 0.30, 0.36], "inconclusive"),
])
def test_homogeneity_verdicts(shallow, deep, verdict):
    assert claims.homogeneity(nmi_results(shallow, deep)).verdict == verdict


def test_homogeneity_interval_is_the_t_interval_of_deep_minus_shallow():
    shallow, deep = [0.10, 0.15, 0.12], [0.60, 0.52, 0.58]
    finding = claims.findings(nmi_results(shallow, deep))[0]
    d = np.asarray(deep) - np.asarray(shallow)  # layer means: the offsets cancel
    half = stats.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
    iv = finding.interval
    assert iv.estimate == pytest.approx(d.mean(), rel=1e-9)
    assert (iv.lo, iv.hi) == pytest.approx((d.mean() - half, d.mean() + half), rel=1e-9)
    assert finding.claim is claims.HOMOGENEOUS_SHALLOW and finding.verdict == "yes"


def test_homogeneity_uses_the_results_split_of_layers():
    r = nmi_results([0.1, 0.12, 0.11], [0.6, 0.62, 0.61])
    # Moving fc1 (0.5) into the shallow group changes both means.
    r["shallow_layers"], r["deep_layers"] = ["conv1", "conv2", "fc1"], ["fc2", "fc3"]
    nmi = {n: np.asarray(r["per_layer"][n]["nmi_corrected"]) for n in r["layers"]}
    d = (nmi["fc2"] + nmi["fc3"]) / 2 - (nmi["conv1"] + nmi["conv2"] + nmi["fc1"]) / 3
    assert claims.homogeneity(r).interval.estimate == pytest.approx(d.mean(), rel=1e-9)


def excess(means: list[float], n: int = 200, seed: int = 0) -> np.ndarray:
    """(S, n) per-image excess in {-1, 0, 1} with about the given per-seed means."""
    rng = np.random.default_rng(seed)
    out = []
    for m in means:
        p_up, p_down = max(m, 0) + 0.1, max(-m, 0) + 0.1
        out.append(rng.choice([1.0, -1.0, 0.0], size=n, p=[p_up, p_down, 1 - p_up - p_down]))
    return np.asarray(out)


def test_vulnerability_verdicts():
    zero = excess([0.0, 0.0, 0.0], seed=9)
    yes = make_results({n: [0.1] * 3 for n in SHALLOW + DEEP},
                       excess([0.5, 0.45, 0.55], seed=1), zero)
    assert claims.vulnerability(yes).verdict == "yes"
    no = make_results({n: [0.1] * 3 for n in SHALLOW + DEEP}, zero,
                      excess([0.6, 0.65, 0.7], seed=2))
    assert claims.vulnerability(no).verdict == "no"
    tie = make_results({n: [0.1] * 3 for n in SHALLOW + DEEP}, excess([0.0, 0.02, -0.02],
                       seed=3), excess([0.0, 0.0, 0.01], seed=4))
    assert claims.vulnerability(tie).verdict == "inconclusive"


def test_vulnerability_interval_is_seeds_plus_bootstrap_over_images():
    sh, dp = excess([0.3, 0.28, 0.33], seed=5), excess([0.1, 0.12, 0.08], seed=6)
    finding = claims.findings(make_results({n: [0.1] * 3 for n in SHALLOW + DEEP}, sh, dp))[1]
    v = sh - dp
    s, n = v.shape
    per_seed = v.mean(1)
    idx = np.random.default_rng(0).integers(0, n, size=(1000, n))
    var_img = v[:, idx].mean(-1).mean(0).var(ddof=1)
    var_seed = per_seed.var(ddof=1) / s
    var = var_seed + var_img
    df = var**2 / (var_seed**2 / (s - 1) + var_img**2 / (n - 1))
    half = stats.t.ppf(0.975, df) * math.sqrt(var)
    iv = finding.interval
    assert iv.estimate == pytest.approx(v.mean(), rel=1e-9)
    assert (iv.lo, iv.hi) == pytest.approx((v.mean() - half, v.mean() + half), rel=1e-6)
    assert finding.claim is claims.SHALLOW_VULNERABLE and finding.verdict == "yes"
    assert f"{sh.mean():+.3f} (shallow)" in finding.detail  # quoted from the results


def test_vulnerability_without_pgd_or_noise_is_inconclusive():
    r = make_results({n: [0.1] * 3 for n in SHALLOW + DEEP}, attacks=("fgsm",))
    finding = claims.vulnerability(r)
    assert finding.verdict == "inconclusive" and math.isnan(finding.interval.lo)
    assert "not measured" in finding.interval.method


def test_one_seed_gives_no_seed_interval():
    r = nmi_results([0.1], [0.6])
    assert claims.homogeneity(r).verdict == "inconclusive"


def test_one_mapped_layer_is_inconclusive_not_an_error():
    r = make_results({n: [0.1] * 3 for n in SHALLOW + DEEP}, excess([0.1] * 3), excess([0.0] * 3))
    r["shallow_layers"], r["deep_layers"] = ["conv1"], []
    for finding in claims.findings(r):
        assert finding.verdict == "inconclusive" and "not measured" in finding.interval.method
