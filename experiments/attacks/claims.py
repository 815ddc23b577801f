"""The ``attacks`` lens's claims: iterative PGD is at least as strong as one-step FGSM;
AutoAttack is at least as strong as PGD; adversarial training raises robust accuracy.

Madry et al. (2018) use PGD as the strongest first-order adversary; FGSM is its one-step
special case, so PGD should break at least the images FGSM breaks. The statistic pairs
the two attacks on the same seeds and images at one linf budget: per image and seed,
d = [correct under FGSM] - [correct under PGD] (in {-1, 0, 1}); its mean is the robust
accuracy under FGSM minus that under PGD, and its 95% interval is over seeds and images
(:func:`~experiments.intervals.over_seeds_and_images` of the paired differences).

Rule: **yes** when the interval lies entirely above 0 (PGD strictly stronger, which
shows "at least as strong"), **no** when entirely below 0 (FGSM stronger), inconclusive
otherwise: an interval containing 0 cannot tell "as strong" from "slightly weaker".

The AutoAttack claims (``results["autoattack"]``, :mod:`experiments.attacks.ensemble`)
are paired the same way at the AutoAttack eps: PGD minus AutoAttack robust-correct per
image and seed, on the adversarially trained models when there are any (on standard
models both attacks break nearly everything, so the pair says little); and PGD-AT minus
standard AutoAttack robust-correct, image i of seed s of each training paired. Both with
the same rule: yes above 0, no below 0, inconclusive when the interval contains 0.
"""

from __future__ import annotations

import numpy as np

from experiments.claims import Claim, Finding, Rule
from experiments.intervals import over_seeds_and_images
from experiments.rundir import float_key

EPS = 0.1  # the linf budget compared; else the middle eps > 0 of the grid

PGD_AT_LEAST_FGSM = Claim(
    lens="attacks", source="Madry et al. 2018",
    text="Iterative PGD is at least as strong as one-step FGSM",
    statistic=(f"robust accuracy under FGSM minus under PGD at linf eps {EPS:g} (else the "
               "middle eps > 0 of the grid), paired per image and seed; above 0: PGD breaks "
               "more images"),
    rule=Rule("above", 0.0), figure="robust_accuracy.png")


def claim_eps(grid: list[float]) -> float | None:
    """The linf eps the claim compares: 0.1 if in ``grid``, else the middle eps > 0."""
    positive = sorted(e for e in grid if e > 0)
    if not positive:
        return None
    return EPS if any(float_key(e) == float_key(EPS) for e in positive) \
        else positive[len(positive) // 2]


def findings(results: dict) -> list[Finding]:
    """The PGD-vs-FGSM finding and the AutoAttack findings (those the run has data for)."""
    return pgd_vs_fgsm(results) + autoattack_findings(results)


def pgd_vs_fgsm(results: dict) -> list[Finding]:
    """The PGD-vs-FGSM finding, or none when the run lacks either attack or a linf eps > 0."""
    correct = results.get("correct", {})
    grid = results["eps"]["linf"]
    eps = claim_eps(grid)
    if "fgsm" not in correct or "pgd" not in correct or eps is None:
        return []
    j = [float_key(e) for e in grid].index(float_key(eps))
    fgsm = np.asarray(correct["fgsm"], np.float64)[:, j]  # (S, N)
    pgd = np.asarray(correct["pgd"], np.float64)[:, j]
    interval = over_seeds_and_images(fgsm - pgd)
    ra = results["robust_accuracy"]
    positive = [float_key(e) for e in grid if e > 0]
    weaker = sum(ra["pgd"][k] <= ra["fgsm"][k] for k in positive)
    s, n = fgsm.shape
    detail = (f"linf eps {eps:g}: robust accuracy FGSM {fgsm.mean():.3f} vs PGD {pgd.mean():.3f} "
              f"(mean over {s} seeds x {n} images); PGD at or below FGSM at {weaker} of "
              f"{len(positive)} eps > 0")
    return [PGD_AT_LEAST_FGSM.decide(interval, detail)]


AA_AT_LEAST_PGD = Claim(
    lens="attacks", source="Croce & Hein 2020",
    text="AutoAttack is at least as strong as PGD",
    statistic=("robust accuracy under PGD minus under AutoAttack at the AutoAttack linf eps, "
               "paired per image and seed, on the PGD-AT models (standard ones if none); "
               "above 0: AutoAttack breaks more images"),
    rule=Rule("above", 0.0), figure="autoattack.png")

AT_RAISES_ROBUSTNESS = Claim(
    lens="attacks", source="Madry et al. 2018",
    text="Adversarial training (PGD-AT) raises robust accuracy under AutoAttack",
    statistic=("AutoAttack robust accuracy of PGD-AT models minus standard models at the "
               "AutoAttack linf eps, paired per image and seed; above 0: more robust"),
    rule=Rule("above", 0.0), figure="autoattack.png")


def autoattack_findings(results: dict) -> list[Finding]:
    """The two AutoAttack findings, when the run has an AutoAttack part."""
    aa = results.get("autoattack")
    if not aa:
        return []
    models, eps = aa["models"], aa["eps"]
    kind = "adversarial" if "adversarial" in models else "standard"
    robust = np.asarray(models[kind]["robust"], np.float64)  # (S, N)
    pgd = np.asarray(models[kind]["pgd_robust"], np.float64)
    s, n = robust.shape
    out = [AA_AT_LEAST_PGD.decide(
        over_seeds_and_images(pgd - robust),
        f"{kind} models, linf eps {eps:g}: robust accuracy PGD {pgd.mean():.3f} vs AutoAttack "
        f"{robust.mean():.3f} ({s} seeds x {n} images)")]
    if "adversarial" in models:
        std = np.asarray(models["standard"]["robust"], np.float64)
        out.append(AT_RAISES_ROBUSTNESS.decide(
            over_seeds_and_images(robust - std),
            f"linf eps {eps:g}: AutoAttack robust accuracy PGD-AT {robust.mean():.3f} vs "
            f"standard {std.mean():.3f} ({s} seeds x {n} images)"))
    return out
