"""Closed-form Gaussian moments of Affine-ReLU-Affine nets (Bibi, Alfadly, Ghanem, CVPR
2018; DESIGN.md, analytic/), the two-stage linearization of deeper nets, and their uses.

Modules: ``bvn`` (bivariate normal cdf, Genz 2004), ``clark`` (Clark's 1961 moments of
the maximum of Gaussians: exact for two, his recursion beyond), ``propagate`` (mean and
covariance through the whole network, layer by layer, no linearization: exact affine and
ReLU steps, Clark's max-pooling; ``full`` and ``diagonal`` modes), ``padded_relu`` (the exact ReLU moments of the first n units of a padded state, n as data: one
compiled pair formula for every layer of a propagation), ``relu`` (ReLU moments of Gaussians,
zero-mean and exact general-mean), ``moments`` (output mean and covariance of
B relu(A x + c1) + c2), ``mehler`` (Mehler's expansion of Cov(relu, relu): products only), ``series`` (the authors' 2020 truncated-series cross moment,
``method="series"``; xmodar/network_moments, branch no-assumptions), ``linearize`` (with ``count_ties``: the kinks of the net at the
expansion point, and the ``at_ties`` remedies), ``montecarlo`` (the sampled reference),
``tightness`` (analytic vs Monte Carlo: symmetric relative errors, variance ratios),
``uses`` (class means vs noise, confusion, sensitivity maps) and ``gaussian_attack``
(targeted and untargeted Gaussian attacks through the closed form, verified by sampling;
it lived in ``attacks/gaussian.py`` before and moved here so that ``attacks`` does not
import ``analytic``); ``checks`` holds the input checks of these entry points (one
ValueError for a negative or NaN variance, a non-PSD covariance, a shape that does not
fit the linearization; ``check=False`` skips them). The ``analytic`` task of scripts/run.py is
:mod:`experiments.analytic`.

    from analytic.linearize import linearize
    from analytic.moments import moments
    from analytic import mc_moments, net_fn, sym_rel_error
    lin = linearize(net, params, x)                  # A, c1, B, c2 at the image x
    out = moments(lin, x, 0.1 ** 2, method="exact")  # x + N(0, 0.01 I): out.mean, out.cov
    prop = propagate(net, params, x, 0.1 ** 2)      # from analytic.propagate import propagate
    mc = mc_moments(net_fn(net, params), x, 0.1 ** 2, key)  # the real network, sampled
    sym_rel_error(out.mean, mc.mean)                 # 2|a - b| / (|a| + |b|)

The functions named like their modules (``linearize``, ``moments``, ``propagate``, ``tightness``) are
imported from the modules, so ``from analytic import linearize`` stays the module.
"""

from analytic.clark import MaxMoments, clark_max, max_moments
from analytic.gaussian_attack import (
    MODES,
    OBJECTIVES,
    GaussianAttack,
    gaussian,
    gaussian_attack,
    gaussian_attack_models,
)
from analytic.linearize import (
    TIE_RULES,
    Linearization,
    affine_relu_affine,
    count_ties,
    last_hidden_relu,
    linearize_batch,
    tie_direction,
)
from analytic.moments import (
    METHODS,
    Moments,
    batched_moments,
    exact_output_cov,
    output_mean,
)
from analytic.montecarlo import MCMoments, mc_moments, mc_moments_batch, net_fn
from analytic.propagate import propagate_batch
from analytic.tightness import Tightness, mc_relative_error, sym_rel_error
from analytic.uses import (
    SensitivityMap,
    confusion_matrix,
    expected_logits_vs_noise,
    pairwise_exceed,
    sensitivity_map,
    true_vs_best_other,
)

__all__ = [
    "METHODS",
    "MODES",
    "OBJECTIVES",
    "TIE_RULES",
    "GaussianAttack",
    "Linearization",
    "MCMoments",
    "MaxMoments",
    "Moments",
    "SensitivityMap",
    "Tightness",
    "affine_relu_affine",
    "batched_moments",
    "clark_max",
    "confusion_matrix",
    "count_ties",
    "exact_output_cov",
    "expected_logits_vs_noise",
    "gaussian",
    "gaussian_attack",
    "gaussian_attack_models",
    "last_hidden_relu",
    "linearize_batch",
    "max_moments",
    "mc_moments",
    "mc_moments_batch",
    "mc_relative_error",
    "net_fn",
    "output_mean",
    "pairwise_exceed",
    "propagate_batch",
    "sensitivity_map",
    "sym_rel_error",
    "tie_direction",
    "true_vs_best_other",
]
