"""Input attacks, their evaluation, and internal weight perturbations.

* :mod:`attacks.common`: the calling convention ``attack(logits_fn, x, y, *, eps, ...,
  key)``, :func:`model_logits_fn` (a network as a jittable argument), projections onto
  eps-balls, per-example keys (:func:`example_keys`);
* :mod:`attacks.gradient`: FGSM, BIM, PGD (linf, l2; restarts), MI-FGSM as one loop;
* :mod:`attacks.minimal`: DeepFool and Carlini-Wagner L2 (minimal perturbations);
* :mod:`attacks.evaluate`: the attacks by name (:data:`ATTACKS`, :func:`make_attack`) and
  :func:`robust_accuracy`, per example (robust-correct masks) and on average, over an eps
  grid;
* :mod:`attacks.weights`, :mod:`attacks.weights_sweep`: internal weight perturbations
  (Cheney et al., arXiv 1703.08245), imported on their own.

The experiment that draws robust accuracy curves for every trained seed and tests
"PGD is at least as strong as FGSM" is the ``attacks`` lens (``experiments/attacks/``).
"""

from attacks.common import example_keys, model_logits_fn
from attacks.evaluate import ATTACKS, Attack, make_attack, robust_accuracy
from attacks.gradient import bim, fgsm, mifgsm, pgd
from attacks.minimal import carlini_wagner_l2, deepfool

__all__ = [
    "ATTACKS",
    "Attack",
    "bim",
    "carlini_wagner_l2",
    "deepfool",
    "example_keys",
    "fgsm",
    "make_attack",
    "mifgsm",
    "model_logits_fn",
    "pgd",
    "robust_accuracy",
]
