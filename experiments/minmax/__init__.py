"""The ``minmax`` lens: a lambda x seed grid trained with the Min-Max loss (its own
models), the fuzziness of the conv weights during training, and robust accuracy."""

from experiments.lens import Lens
from experiments.minmax import claims, protocol, report

LENS = Lens("minmax", "Min-Max property of conv weights", protocol.defaults, protocol.run,
            claims.findings, report.write, own_models=True)

__all__ = ["LENS", "claims", "protocol", "report"]
