"""The attacks lens's claim on hand-built results: yes, no and inconclusive cases, the
eps it compares, and its interval against an independent computation."""

import math

import numpy as np
import pytest
from scipy import stats

from experiments.attacks import claims
from experiments.rundir import float_key

S, N = 3, 120


def _masks(rate: float, seed: int) -> np.ndarray:
    """(S, N) 0/1: each seed correct on about ``rate`` of the images, varying by seed."""
    rng = np.random.default_rng(seed)
    return (rng.random((S, N)) < rate + 0.03 * np.arange(S)[:, None]).astype(int)


def _results(at_eps: dict[str, np.ndarray], grid=(0.0, 0.05, 0.1, 0.2), eps=0.1) -> dict:
    """Results shaped as the protocol makes them: ``correct[name]`` is (S, E, N); at
    ``eps`` it holds ``at_eps[name]``, elsewhere unrelated masks (a claim reading the
    wrong eps gets a different number)."""
    grid = list(grid)
    correct, ra = {}, {}
    for k, (name, mask) in enumerate(at_eps.items()):
        full = np.stack([mask if e == eps else _masks(0.9 - 0.3 * j, 100 + 10 * k + j)
                         for j, e in enumerate(grid)], axis=1)
        correct[name] = full.tolist()
        ra[name] = {float_key(e): float(full[:, j].mean()) for j, e in enumerate(grid)}
    return {"eps": {"linf": grid, "l2": [0.0, 1.0]}, "correct": correct,
            "robust_accuracy": ra, "seeds": list(range(S)), "images": N}


def _reference(d: np.ndarray, resamples: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """95% interval of the mean of d (S, N): seed variance of the per-seed means plus the
    variance of a shared image bootstrap, Welch-Satterthwaite df, Student t."""
    s, n = d.shape
    per_seed = d.mean(1)
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    boot = np.array([d[:, i].mean() for i in idx])
    v_seed, v_img = per_seed.var(ddof=1) / s, boot.var(ddof=1)
    df = (v_seed + v_img) ** 2 / (v_seed ** 2 / (s - 1) + v_img ** 2 / (n - 1))
    half = stats.t.ppf(0.975, df) * math.sqrt(v_seed + v_img)
    return per_seed.mean(), per_seed.mean() - half, per_seed.mean() + half


def _verdict(results: dict) -> str:
    (finding,) = claims.findings(results)
    return finding.verdict


def test_pgd_clearly_stronger_is_yes():
    assert _verdict(_results({"fgsm": _masks(0.6, 1), "pgd": _masks(0.2, 2)})) == "yes"


def test_fgsm_clearly_stronger_is_no():
    assert _verdict(_results({"fgsm": _masks(0.2, 1), "pgd": _masks(0.6, 2)})) == "no"


def test_as_strong_is_inconclusive():
    fgsm = _masks(0.5, 3)
    pgd = fgsm.copy()  # per seed, 12 images flip each way: mean difference exactly 0
    for s in range(S):
        up, down = np.flatnonzero(fgsm[s] == 0)[:12], np.flatnonzero(fgsm[s] == 1)[:12]
        pgd[s, up], pgd[s, down] = 1, 0
    (finding,) = claims.findings(_results({"fgsm": fgsm, "pgd": pgd}))
    assert finding.interval.lo < 0 < finding.interval.hi and finding.verdict == "inconclusive"
    # identical attacks: a zero-width interval at 0 is not "above 0" either
    assert _verdict(_results({"fgsm": fgsm, "pgd": fgsm})) == "inconclusive"


def test_interval_is_the_paired_difference_at_eps_0_1():
    fgsm, pgd = _masks(0.55, 4), _masks(0.35, 5)
    (finding,) = claims.findings(_results({"fgsm": fgsm, "pgd": pgd}))
    est, lo, hi = _reference((fgsm - pgd).astype(float))
    assert finding.interval.estimate == pytest.approx(est, rel=1e-9)
    assert (finding.interval.lo, finding.interval.hi) == pytest.approx((lo, hi), rel=1e-9)
    assert finding.interval.method == f"t over {S} seeds + bootstrap over {N} images"
    assert f"FGSM {fgsm.mean():.3f} vs PGD {pgd.mean():.3f}" in finding.detail
    assert finding.claim.rule.side == "above" and finding.claim.rule.threshold == 0.0


def test_without_eps_0_1_the_middle_positive_eps_is_compared():
    grid = (0.0, 0.05, 0.2, 0.3)
    assert claims.claim_eps(list(grid)) == 0.2
    fgsm, pgd = _masks(0.5, 6), _masks(0.3, 7)
    (finding,) = claims.findings(_results({"fgsm": fgsm, "pgd": pgd}, grid=grid, eps=0.2))
    assert finding.interval.estimate == pytest.approx((fgsm - pgd).mean(), rel=1e-9)
    assert "linf eps 0.2" in finding.detail
    assert claims.claim_eps([0.3, 0.1, 0.0]) == 0.1 and claims.claim_eps([0.0]) is None


def test_no_finding_without_both_attacks_or_a_positive_eps():
    assert claims.findings(_results({"fgsm": _masks(0.5, 8)})) == []
    assert claims.findings(_results({"fgsm": _masks(0.5, 8), "pgd": _masks(0.5, 9)},
                                    grid=(0.0,), eps=0.0)) == []


def _aa_results(std: np.ndarray, adv: np.ndarray | None, pgd_adv: np.ndarray) -> dict:
    """Results with an AutoAttack part: robust masks (S, N) per model kind."""
    models = {"standard": {"robust": std.tolist(), "pgd_robust": _masks(0.3, 7).tolist()}}
    if adv is not None:
        models["adversarial"] = {"robust": adv.tolist(), "pgd_robust": pgd_adv.tolist()}
    return {"eps": {"linf": [0.0], "l2": []}, "correct": {}, "robust_accuracy": {},
            "autoattack": {"eps": 0.1, "models": models}}


def test_autoattack_findings_pair_images_and_match_the_reference_interval():
    std, adv = _masks(0.1, 1), _masks(0.6, 2)
    pgd_adv = np.maximum(adv, _masks(0.2, 3))  # PGD never breaks what AutoAttack keeps
    aa_vs_pgd, at = claims.findings(_aa_results(std, adv, pgd_adv))
    assert aa_vs_pgd.claim is claims.AA_AT_LEAST_PGD and at.claim is claims.AT_RAISES_ROBUSTNESS
    for finding, d in ((aa_vs_pgd, pgd_adv - adv), (at, adv - std)):
        est, lo, hi = _reference(d.astype(float))
        assert finding.interval.estimate == pytest.approx(est)
        assert finding.interval.lo == pytest.approx(lo, abs=0.01)
        assert finding.interval.hi == pytest.approx(hi, abs=0.01)
        assert finding.verdict == "yes"


def test_autoattack_findings_no_and_inconclusive():
    std, adv = _masks(0.6, 1), _masks(0.1, 2)  # "adversarial" models less robust: no
    (_, at) = claims.findings(_aa_results(std, adv, adv))
    assert at.verdict == "no"
    (aa_vs_pgd, _) = claims.findings(_aa_results(std, adv, adv))  # PGD == AutoAttack
    assert aa_vs_pgd.verdict == "inconclusive" and aa_vs_pgd.interval.estimate == 0
    (only,) = claims.findings(_aa_results(std, None, adv))  # no robust models: one finding
    assert only.claim is claims.AA_AT_LEAST_PGD and "standard models" in only.detail
