"""The ``attacks`` lens: robust accuracy curves of every trained seed under input attacks,
and the claim that iterative PGD is at least as strong as one-step FGSM."""

from experiments.attacks import claims, protocol, report
from experiments.lens import Lens

LENS = Lens("attacks", "Input attacks", protocol.defaults, protocol.run, claims.findings,
            report.write)

__all__ = ["LENS", "claims", "protocol", "report"]
