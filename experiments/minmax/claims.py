"""The ``minmax`` lens's claims (seed 000, Shen, Chen & Wang, arXiv 2011.13719), under
each reading of "interval" (:mod:`minmax.readings`).

Only the paper's abstract is available; the statistics are this project's formulation.
Three claims, each tested once per reading (so one finding per claim and reading):

* :data:`TO_ENDS`: during ordinary training (lambda = 0) the conv weights move to the
  ends of their intervals. Statistic per seed, mean over the conv layers:
  ``group`` and ``init``: end-of-training minus initial fuzziness; ``trajectory``: the
  weights' end-of-training fuzziness in their running ranges minus that of the random
  walk with the same step sizes (the init has no range to compare with). Student-t
  interval over seeds; below 0.
* :data:`MORE_ROBUST`: models trained with the reading's Min-Max loss (its largest
  lambda) are more robust than the shared lambda = 0 baseline: the difference of PGD
  robust accuracy (mean over eps > 0), paired by seed and image, interval over seeds and
  images; above 0.
* :data:`REVERSE`: robust (PGD-AT) models show the property more strongly than standard
  ones (the lambda = 0 baseline) of the same seeds: PGD-AT minus standard of the
  reading's end-of-training statistic (``group``, ``init``: fuzziness; ``trajectory``:
  fuzziness minus the random walk's), paired by seed, Student t over seeds; below 0.

:func:`end_changes`, :func:`robustness_changes` and :func:`reverse_changes` give the
intervals behind them (per layer; per condition) for the findings and the report.
"""

from __future__ import annotations

import numpy as np

from experiments.claims import Claim, Finding, Rule
from experiments.intervals import Interval, over_seeds, over_seeds_and_images
from experiments.rundir import float_key

SOURCE = "Shen et al. 2020"
BASELINE, ROBUST = "0", "pgd-at"
READINGS = ("group", "trajectory", "init")
READING_WORDS = {
    "group": "interval = spread of a kernel slice at one moment",
    "trajectory": "interval = each weight's own range over training",
    "init": "interval = the initializer's support +-b",
}
TO_ENDS_STATISTIC = {
    "group": "end-of-training minus initial fuzziness (group intervals) at lambda = 0",
    "trajectory": "end-of-training fuzziness of the weights in their running ranges minus "
                  "that of a random walk with the same step sizes, at lambda = 0",
    "init": "end-of-training minus initial fuzziness against +-b at lambda = 0",
}
REVERSE_STATISTIC = {
    "group": "end-of-training fuzziness (group intervals)",
    "trajectory": "end-of-training fuzziness in the running ranges minus the random walk's",
    "init": "end-of-training fuzziness against +-b",
}


def _to_ends(reading: str) -> Claim:
    return Claim(
        lens="minmax", source=SOURCE,
        text=f"Conv weights move to the ends of their intervals during ordinary training "
             f"({reading} reading: {READING_WORDS[reading]})",
        statistic=f"{TO_ENDS_STATISTIC[reading]}, mean over conv layers, per seed",
        rule=Rule("below", 0.0), figure=f"fuzziness_{reading}.png")


def _more_robust(reading: str) -> Claim:
    return Claim(
        lens="minmax", source=SOURCE,
        text=f"Models trained with the Min-Max loss are more robust ({reading} reading)",
        statistic=f"PGD robust accuracy (mean over eps > 0) of the {reading} penalty at its "
                  f"largest lambda minus lambda = 0, paired by seed and image",
        rule=Rule("above", 0.0), figure="robust_accuracy.png")


def _reverse(reading: str) -> Claim:
    return Claim(
        lens="minmax", source=SOURCE,
        text=f"Robust (PGD-AT) models show the Min-Max property more strongly ({reading} "
             f"reading)",
        statistic=f"PGD-AT minus standard (lambda = 0) models of the same seeds: "
                  f"{REVERSE_STATISTIC[reading]}, mean over conv layers, paired by seed",
        rule=Rule("below", 0.0), figure="reverse_test.png")


TO_ENDS = {r: _to_ends(r) for r in READINGS}
MORE_ROBUST = {r: _more_robust(r) for r in READINGS}
REVERSE = {r: _reverse(r) for r in READINGS}
CLAIMS = tuple(c for r in READINGS for c in (TO_ENDS[r], MORE_ROBUST[r], REVERSE[r]))


def _curves(results: dict, reading: str, stat: str, layer: str, cond: str) -> np.ndarray:
    """(seeds, epochs + 1) of one statistic."""
    return np.asarray(results["stats"][reading][stat][layer][cond], np.float64)


def per_seed_end_statistic(results: dict, reading: str, layer: str, cond: str) -> np.ndarray:
    """The reading's end-of-training Min-Max statistic per seed (lower: more Min-Max):
    fuzziness (group, init), fuzziness minus the random walk's (trajectory)."""
    f = _curves(results, reading, "fuzziness", layer, cond)[:, -1]
    if reading == "trajectory":
        return f - _curves(results, reading, "walk_fuzziness", layer, cond)[:, -1]
    return f


def _per_seed_to_ends(results: dict, reading: str, layer: str, cond: str) -> np.ndarray:
    if reading == "trajectory":
        return per_seed_end_statistic(results, reading, layer, cond)
    c = _curves(results, reading, "fuzziness", layer, cond)
    return c[:, -1] - c[:, 0]


def _with_mean(deltas: dict[str, np.ndarray]) -> dict[str, Interval]:
    out = {layer: over_seeds(d) for layer, d in deltas.items()}
    out["mean"] = over_seeds(np.mean(list(deltas.values()), axis=0))
    return out


def end_changes(results: dict, reading: str = "group", cond: str = BASELINE
                ) -> dict[str, Interval]:
    """The :data:`TO_ENDS` statistic of ``reading`` for the models of ``cond``:
    ``{layer: Interval over seeds}`` and, under ``"mean"``, the mean over conv layers."""
    return _with_mean({layer: _per_seed_to_ends(results, reading, layer, cond)
                       for layer in results["conv_layers"]})


def near_ends_changes(results: dict, cond: str = BASELINE) -> dict[str, Interval]:
    """Trajectory reading: fraction of weights within 5% of an end of their range minus
    the random walk's (above 0: more weights at an end than chance), per seed."""
    return _with_mean({layer: _curves(results, "trajectory", "near_ends", layer, cond)[:, -1]
                       - _curves(results, "trajectory", "walk_near_ends", layer, cond)[:, -1]
                       for layer in results["conv_layers"]})


def reverse_changes(results: dict, reading: str) -> dict[str, Interval]:
    """PGD-AT minus standard of the reading's end statistic, paired by seed (per layer
    and the mean over layers)."""
    return _with_mean({layer: per_seed_end_statistic(results, reading, layer, ROBUST)
                       - per_seed_end_statistic(results, reading, layer, BASELINE)
                       for layer in results["conv_layers"]})


def robustness_changes(results: dict, cond: str, base: str = BASELINE) -> dict[str, Interval]:
    """``cond`` minus ``base`` (default lambda = 0), paired by seed and image, interval
    over seeds and images: ``{"clean", "fgsm", "pgd"}`` (clean accuracy; robust accuracy,
    mean over eps > 0)."""
    def diff(per_cond: dict) -> Interval:
        return over_seeds_and_images(np.asarray(per_cond[cond], np.float64)
                                     - np.asarray(per_cond[base], np.float64))

    out = {"clean": diff(results["clean_correct"])}
    out.update({name: diff(per_image) for name, per_image in results["robust_per_image"].items()})
    return out


def _none(claim: Claim, why: str) -> Finding:
    return claim.decide(Interval(float("nan"), float("nan"), float("nan"), why), why)


def _layers(changes: dict[str, Interval], results: dict) -> str:
    return "; ".join(f"{layer} {changes[layer].fmt()}" for layer in results["conv_layers"])


def findings(results: dict) -> list[Finding]:
    """Per reading of the run: the three claims, decided by their rules on intervals
    from ``results`` only."""
    out = []
    top = max(results["lambdas"])
    for r in results["readings"]:
        ch = end_changes(results, r)
        detail = f"per layer: {_layers(ch, results)}"
        if r == "trajectory":
            near = near_ends_changes(results)
            detail += (f"; near the ends (mu <= .05 or >= .95), weights minus random walk: "
                       f"{near['mean'].fmt()}")
        out.append(TO_ENDS[r].decide(ch["mean"], detail))
        if top == 0:
            out.append(_none(MORE_ROBUST[r], "no model trained with lambda > 0"))
        else:
            cond = f"{r}/{float_key(top)}"
            rob = robustness_changes(results, cond)
            out.append(MORE_ROBUST[r].decide(rob["pgd"], (
                f"lambda = {top:g} vs 0 on {results['images']} test images: FGSM "
                f"{rob['fgsm'].fmt()}, clean accuracy {rob['clean'].fmt()}")))
        if ROBUST not in results["conditions"]:
            out.append(_none(REVERSE[r], "no PGD-AT models (minmax.reverse = False)"))
        else:
            rev = reverse_changes(results, r)
            out.append(REVERSE[r].decide(rev["mean"], f"per layer: {_layers(rev, results)}"))
    return out
