"""Input attacks, their evaluation, and internal weight perturbations.

* :mod:`attacks.common`: the calling convention ``attack(logits_fn, x, y, *, eps, ...,
  key)``, :func:`model_logits_fn` (a network as a jittable argument), projections onto
  eps-balls, per-example keys (:func:`example_keys`);
* :mod:`attacks.gradient`: FGSM, BIM, PGD (linf, l2; restarts), MI-FGSM as one loop;
* :mod:`attacks.minimal`: DeepFool and Carlini-Wagner L2 (minimal perturbations);
* :mod:`attacks.apgd`: APGD (CE, DLR; linf, l2, l1) and APGD-T (Croce & Hein 2020),
  with :mod:`attacks.l1` (projection onto the l1-ball ∩ box);
* :mod:`attacks.fab`: FAB and FAB-T (minimal perturbations; linf, l2, l1);
* :mod:`attacks.square`: the Square attack (score-based black box, no gradients);
* :mod:`attacks.autoattack`: the AutoAttack ensemble (standard, plus, rand, custom),
  each member on the examples still robust;
* :mod:`attacks.outcome`: per-example success masks and perturbation norms of any
  attack, and :func:`minimal_eps` (per-example bisection for budgeted attacks);
* :mod:`attacks.evaluate`: the attacks by name (:data:`ATTACKS`, :func:`make_attack`) and
  :func:`robust_accuracy`, per example (robust-correct masks) and on average, over an eps
  grid;
* :mod:`attacks.weights`, :mod:`attacks.weights_sweep`: internal weight perturbations
  (Cheney et al., arXiv 1703.08245): ``attacks.weights.perturb``, ``attacks.weights_sweep.sweep``.

The experiment that draws robust accuracy curves for every trained seed and tests
"PGD is at least as strong as FGSM" is the ``attacks`` lens (``experiments/attacks/``).
"""

from attacks import weights, weights_sweep
from attacks.apgd import apgd, apgd_t
from attacks.autoattack import AutoAttackResult, autoattack
from attacks.common import example_keys, model_logits_fn
from attacks.evaluate import ATTACKS, Attack, make_attack, robust_accuracy
from attacks.fab import fab
from attacks.gradient import bim, fgsm, mifgsm, pgd
from attacks.minimal import carlini_wagner_l2, deepfool
from attacks.outcome import Outcome, minimal_eps, outcome
from attacks.square import square

__all__ = [
    "ATTACKS",
    "Attack",
    "AutoAttackResult",
    "Outcome",
    "apgd",
    "apgd_t",
    "autoattack",
    "bim",
    "carlini_wagner_l2",
    "deepfool",
    "example_keys",
    "fab",
    "fgsm",
    "make_attack",
    "mifgsm",
    "minimal_eps",
    "model_logits_fn",
    "outcome",
    "pgd",
    "robust_accuracy",
    "square",
    "weights",
    "weights_sweep",
]
