"""The ``som`` lens: internal codes of every layer through self-organizing maps
(Lee & Vijayan, arXiv 2205.10952), on every trained seed."""

from experiments.lens import Lens
from experiments.som import claims, protocol, report

LENS = Lens("som", "Internal codes through self-organizing maps", protocol.defaults,
            protocol.run, claims.findings, report.write)

__all__ = ["LENS", "claims", "protocol", "report"]
