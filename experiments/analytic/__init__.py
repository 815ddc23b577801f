"""The ``analytic`` lens: closed-form Gaussian moments of every trained seed vs Monte
Carlo through the real network, and their uses (Bibi, Alfadly, Ghanem, CVPR 2018).

The computation lives in the ``analytic`` package (moments, linearization, Monte Carlo,
tightness measures, uses, and the Gaussian attack in ``analytic/gaussian_attack.py``,
moved there from ``attacks/gaussian.py``); this sub-package composes it: ``protocol``
(numbers), ``claims`` (verdicts), ``report`` (figures and text).
"""

from experiments.analytic import claims, protocol, report
from experiments.lens import Lens

LENS = Lens("analytic", "Analytic Gaussian moments", protocol.defaults, protocol.run,
            claims.findings, report.write)

__all__ = ["LENS", "claims", "protocol", "report"]
