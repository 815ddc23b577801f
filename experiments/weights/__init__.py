"""The ``weights`` lens: internal weight perturbations of the trained seeds, one layer at a
time (Cheney, Schrimpf & Kreiman, arXiv 1703.08245)."""

from experiments.lens import Lens
from experiments.weights import claims, protocol, report

LENS = Lens("weights", "Internal weight perturbations", protocol.defaults, protocol.run,
            claims.findings, report.write)

__all__ = ["LENS", "claims", "protocol", "report"]
