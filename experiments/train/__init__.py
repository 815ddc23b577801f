"""The ``train`` lens: S models side by side, the learning curves, a sanity claim."""

from experiments.lens import Lens
from experiments.train import claims, protocol, report

LENS = Lens("train", "Training", protocol.defaults, protocol.run, claims.findings, report.write)

__all__ = ["LENS", "claims", "protocol", "report"]
