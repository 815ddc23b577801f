"""The ``minmax`` lens: the Min-Max loss under each reading of "interval" (group,
trajectory, init) x lambda x seed (its own models), PGD-AT models for the reverse test,
the fuzziness of the conv weights during training under every reading, and robust
accuracy."""

from experiments.lens import Lens
from experiments.minmax import claims, protocol, report

LENS = Lens("minmax", "Min-Max property of conv weights", protocol.defaults, protocol.run,
            claims.findings, report.write, own_models=True)

__all__ = ["LENS", "claims", "protocol", "report"]
