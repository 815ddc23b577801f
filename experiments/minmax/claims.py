"""The ``minmax`` lens's claims (seed 000, Shen, Chen & Wang, arXiv 2011.13719).

Only the paper's abstract is available; the statistics are this project's formulation
(:mod:`minmax.stats`). Two claims:

* :data:`FUZZINESS_FALLS`: during ordinary training (lambda = 0) the conv weights move to
  the ends of their intervals: end-of-training minus initial fuzziness, mean over the
  conv layers, one value per seed, Student-t interval over seeds; below 0.
* :data:`MORE_ROBUST`: models trained with the Min-Max loss (the largest lambda) are
  more robust than lambda = 0: the difference of PGD robust accuracy (mean over eps > 0),
  paired by seed and image, interval over seeds and images; above 0.

:func:`fuzziness_changes` and :func:`robustness_changes` give the intervals behind both
(per layer; per lambda, with FGSM and clean accuracy too) for the findings and the report.
"""

from __future__ import annotations

import numpy as np

from experiments.claims import Claim, Finding, Rule
from experiments.intervals import Interval, over_seeds, over_seeds_and_images
from experiments.rundir import float_key

SOURCE = "Shen et al. 2020"

FUZZINESS_FALLS = Claim(
    lens="minmax", source=SOURCE,
    text="Conv weights move to the ends of their intervals: fuzziness falls during "
         "ordinary training",
    statistic="end-of-training minus initial fuzziness of the conv weights at lambda = 0, "
              "mean over conv layers, per seed",
    rule=Rule("below", 0.0), figure="fuzziness_curves.png")

MORE_ROBUST = Claim(
    lens="minmax", source=SOURCE,
    text="Models with the Min-Max property are more robust",
    statistic="PGD robust accuracy (mean over eps > 0) of the largest lambda minus "
              "lambda = 0, paired by seed and image",
    rule=Rule("above", 0.0), figure="robust_accuracy.png")

CLAIMS = (FUZZINESS_FALLS, MORE_ROBUST)


def fuzziness_changes(results: dict, lam: float = 0.0) -> dict[str, Interval]:
    """End minus init fuzziness at ``lam``: ``{layer: Interval over seeds}`` and, under
    ``"mean"``, the mean over conv layers (the statistic of :data:`FUZZINESS_FALLS`)."""
    curves = results["stats"]["fuzziness"]
    deltas = {}
    for layer in results["conv_layers"]:
        c = np.asarray(curves[layer][float_key(lam)], np.float64)  # (seeds, epochs + 1)
        deltas[layer] = c[:, -1] - c[:, 0]
    out = {layer: over_seeds(d) for layer, d in deltas.items()}
    out["mean"] = over_seeds(np.mean(list(deltas.values()), axis=0))
    return out


def robustness_changes(results: dict, lam: float) -> dict[str, Interval]:
    """``lam`` minus lambda = 0, paired by seed and image, interval over seeds and
    images: ``{"clean", "fgsm", "pgd"}`` (clean accuracy; robust accuracy, mean over
    eps > 0)."""
    a, b = float_key(lam), float_key(0.0)

    def diff(per_lambda: dict) -> Interval:
        return over_seeds_and_images(np.asarray(per_lambda[a], np.float64)
                                     - np.asarray(per_lambda[b], np.float64))

    out = {"clean": diff(results["clean_correct"])}
    out.update({name: diff(per_image) for name, per_image in results["robust_per_image"].items()})
    return out


def findings(results: dict) -> list[Finding]:
    """One finding per claim, decided by its rule on intervals from ``results`` only."""
    fuzz = fuzziness_changes(results)
    layers = "; ".join(f"{layer} {fuzz[layer].fmt()}" for layer in results["conv_layers"])
    falls = FUZZINESS_FALLS.decide(fuzz["mean"], f"change per layer: {layers}")
    top = max(results["lambdas"])
    if top == 0:  # no regularized model: nothing to compare
        return [falls, MORE_ROBUST.decide(
            Interval(float("nan"), float("nan"), float("nan"), "no lambda > 0"),
            "no model trained with lambda > 0")]
    ch = robustness_changes(results, top)
    detail = (f"lambda = {top:g} vs 0 on {results['images']} test images: FGSM "
              f"{ch['fgsm'].fmt()}, clean accuracy {ch['clean'].fmt()}")
    return [falls, MORE_ROBUST.decide(ch["pgd"], detail)]
