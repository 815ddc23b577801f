"""The ``attacks`` lens's claim: iterative PGD is at least as strong as one-step FGSM.

Madry et al. (2018) use PGD as the strongest first-order adversary; FGSM is its one-step
special case, so PGD should break at least the images FGSM breaks. The statistic pairs
the two attacks on the same seeds and images at one linf budget: per image and seed,
d = [correct under FGSM] - [correct under PGD] (in {-1, 0, 1}); its mean is the robust
accuracy under FGSM minus that under PGD, and its 95% interval is over seeds and images
(:func:`~experiments.intervals.over_seeds_and_images` of the paired differences).

Rule: **yes** when the interval lies entirely above 0 (PGD strictly stronger, which
shows "at least as strong"), **no** when entirely below 0 (FGSM stronger), inconclusive
otherwise: an interval containing 0 cannot tell "as strong" from "slightly weaker".
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
