"""The ``som`` lens's claims (Lee & Vijayan, arXiv 2205.10952), decided from results only.

Shallow layers are the conv layers, deep layers the dense ones (first / second half of
the layers when the net has only one kind); the protocol stores which is which in
``shallow_layers`` / ``deep_layers``.
"""

from __future__ import annotations

import math

import numpy as np

from experiments.claims import Claim, Finding, Rule
from experiments.intervals import Interval, over_seeds, over_seeds_and_images

SOURCE = "Lee & Vijayan 2022"

HOMOGENEOUS_SHALLOW = Claim(
    lens="som", source=SOURCE,
    text="Shallow layers map inputs onto homogeneous codes, deep layers onto diverse ones",
    statistic="label information in the BMU (corrected NMI: plug-in MI minus its "
              "shuffled-label floor, over H(label)), mean over the deep (dense) layers minus "
              "mean over the shallow (conv) layers, per seed",
    rule=Rule("above", 0.0), figure="som_codes_vs_depth.png")

SHALLOW_VULNERABLE = Claim(
    lens="som", source=SOURCE,
    text="Homogeneous (shallow) codes underlie adversarial vulnerability",
    statistic="per test image: fraction of shallow (conv) layers whose BMU PGD moves minus "
              "the fraction random +-eps sign noise moves, minus the same in the deep "
              "(dense) layers; mean over images and seeds",
    rule=Rule("above", 0.0), figure="som_moves_vs_depth.png")

CLAIMS = (HOMOGENEOUS_SHALLOW, SHALLOW_VULNERABLE)
NEEDS_BOTH = "som.layers needs at least one shallow and one deep layer"


def _layer_mean(results: dict, layers: list[str], key: str, attack: str | None = None):
    """(S,) mean over ``layers`` of a per-layer, per-seed measure."""
    pl = results["per_layer"]
    rows = [pl[n][attack][key] if attack else pl[n][key] for n in layers]
    return np.mean(np.asarray(rows, np.float64), axis=0)


def _missing(reason: str) -> Interval:
    return Interval(math.nan, math.nan, math.nan, f"not measured: {reason}")


def homogeneity(results: dict) -> Finding:
    """Claim 1: deep minus shallow corrected NMI, a t interval over seeds."""
    shallow, deep = results["shallow_layers"], results["deep_layers"]
    if not shallow or not deep:
        return HOMOGENEOUS_SHALLOW.decide(_missing(NEEDS_BOTH))
    nmi_s = _layer_mean(results, shallow, "nmi_corrected")
    nmi_d = _layer_mean(results, deep, "nmi_corrected")
    ratio_s = _layer_mean(results, shallow, "class_dispersion_ratio")
    ratio_d = _layer_mean(results, deep, "class_dispersion_ratio")
    detail = (f"corrected NMI shallow ({', '.join(shallow)}) {nmi_s.mean():.3f} vs deep "
              f"({', '.join(deep)}) {nmi_d.mean():.3f}; class-dispersion ratio "
              f"{ratio_s.mean():.3f} vs {ratio_d.mean():.3f} (1 = classes mixed on the map)")
    return HOMOGENEOUS_SHALLOW.decide(over_seeds(nmi_d - nmi_s), detail)


def vulnerability(results: dict) -> Finding:
    """Claim 2: shallow minus deep excess of PGD's BMU moves over noise's, per image:
    seeds + bootstrap over images."""
    if not results["shallow_layers"] or not results["deep_layers"]:
        return SHALLOW_VULNERABLE.decide(_missing(NEEDS_BOTH))
    per_image = results.get("moved_over_noise_per_image", {}).get("pgd")
    if per_image is None:
        return SHALLOW_VULNERABLE.decide(_missing("som.attacks needs both 'pgd' and 'noise'"))
    shallow = np.asarray(per_image["shallow"], np.float64)  # (S, N)
    deep = np.asarray(per_image["deep"], np.float64)
    noise_s = _layer_mean(results, results["shallow_layers"], "moved_fraction", "noise")
    noise_d = _layer_mean(results, results["deep_layers"], "moved_fraction", "noise")
    detail = (f"PGD moves BMUs beyond noise by {shallow.mean():+.3f} (shallow) vs "
              f"{deep.mean():+.3f} (deep); noise alone moves {noise_s.mean():.3f} vs "
              f"{noise_d.mean():.3f}")
    return SHALLOW_VULNERABLE.decide(over_seeds_and_images(shallow - deep), detail)


def findings(results: dict) -> list[Finding]:
    """Both claims' findings from the ``som`` lens's results."""
    return [homogeneity(results), vulnerability(results)]
