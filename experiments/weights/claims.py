"""The ``weights`` lens's claims: Cheney, Schrimpf & Kreiman's headline (arXiv 1703.08245).

Paper (AlexNet on ImageNet): "less than a 30% decrease in classification performance when
randomly removing over 70% of weight connections in the top convolutional or dense layers
but performance is almost at chance with the same perturbation in the first
convolutional layer". Here the perturbation is synapse knockout of a layer's weights
(its biases untouched) at p = 0.7, on every trained seed; each seed's accuracy is the
mean over the random trials (different masks), and the interval is Student t over seeds.

* **top layer**: the last weighted layer below the output layer (``fc2`` in LeNet-5,
  ``results["top_layer"]``), the network's top hidden dense layer.
* **near chance**: under 10% of the clean margin over chance (1 / classes) is left.
"""

from __future__ import annotations

import math

import numpy as np

from experiments.claims import Claim, Finding, Rule
from experiments.intervals import Interval, over_seeds
from experiments.rundir import float_key

PERTURBATION = "synapse_knockout/weights"  # the paper's "randomly removing weight connections"
P = 0.7
FIGURE = "weights_headline.png"

TOP_LAYER = Claim(
    lens="weights", source="Cheney et al. 2017",
    text="Removing 70% of the weights of the top layer (the last hidden layer, below the "
         "output layer) costs less than 30% of accuracy",
    statistic="relative top-1 accuracy loss 1 - acc(p=0.7) / acc(clean) of the top layer "
              "under synapse knockout of its weights, trials averaged per seed",
    rule=Rule("below", 0.30), figure=FIGURE)

FIRST_CONV = Claim(
    lens="weights", source="Cheney et al. 2017",
    text="Removing 70% of the weights of the first conv layer drops accuracy to chance",
    statistic="fraction of the clean margin over chance left, (acc(p=0.7) - chance) / "
              "(acc(clean) - chance), first conv layer, synapse knockout of its weights, "
              "trials averaged per seed (near chance: under 0.10)",
    rule=Rule("below", 0.10), figure=FIGURE)


def at_p(results: dict, layer: str) -> np.ndarray | None:
    """Top-1 accuracy of ``layer`` under the headline perturbation at p = 0.7, averaged
    over trials: one value per seed; None when the run did not measure it."""
    by_p = results["accuracy"].get(PERTURBATION, {}).get(layer)
    if not by_p or float_key(P) not in by_p:
        return None
    return np.asarray(by_p[float_key(P)], np.float64).mean(-1)


def interval(values: np.ndarray) -> Interval:
    """The 95% interval across seeds of one value per seed (:func:`over_seeds`; the
    report's tables use it too), or no interval (so "inconclusive") when a value is not
    finite (a clean accuracy at chance leaves no margin to divide by)."""
    if not np.all(np.isfinite(values)):
        return Interval(math.nan, math.nan, math.nan, "not finite: no interval")
    return over_seeds(values)


def _per_seed(values: np.ndarray) -> str:
    return ", ".join(f"{v:.3f}" for v in values)


def findings(results: dict) -> list[Finding]:
    """The two headline findings; a claim whose layer, perturbation or p = 0.7 was not
    swept (``weights.layers``, ``weights.kinds``, ``weights.p``) is left out."""
    out = []
    clean = np.asarray(results["clean"]["top1"], np.float64)
    chance = float(results["chance"])
    top = results.get("top_layer")
    acc = at_p(results, top) if top else None
    if acc is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            loss = 1.0 - acc / clean
        out.append(TOP_LAYER.decide(interval(loss), (
            f"top layer {top}: accuracy {_per_seed(acc)} vs clean {_per_seed(clean)} per "
            f"seed, {results['trials']} trials each")))
    first = results.get("first_conv")
    acc = at_p(results, first) if first else None
    if acc is not None:
        # No margin to divide by when a seed's clean accuracy is at or below chance.
        margin = np.where(clean > chance, clean - chance, np.nan)
        left = (acc - chance) / margin
        out.append(FIRST_CONV.decide(interval(left), (
            f"first conv layer {first}: accuracy {_per_seed(acc)} per seed vs chance "
            f"{chance:.3f} and clean {_per_seed(clean)}, {results['trials']} trials each")))
    return out
