"""The one registry of lenses: it drives the command line (one task per lens, plus
``study``), the default study (every lens but ``train`` is a part) and the findings table.

Lenses are imported when first asked for, so a notebook that uses one lens does not pay
for the others.
"""

from __future__ import annotations

import importlib

from experiments.config import ConfigError
from experiments.lens import Lens

# name -> the sub-package that exports LENS, in the order the study runs them.
MODULES = {
    "train": "experiments.train",
    "attacks": "experiments.attacks",
    "weights": "experiments.weights",
    "som": "experiments.som",
    "minmax": "experiments.minmax",
    "analytic": "experiments.analytic",
}
PARTS = tuple(name for name in MODULES if name != "train")  # what the study runs after training


def get(name: str) -> Lens:
    """The lens called ``name``; a ConfigError naming the choices if there is none."""
    if name not in MODULES:
        raise ConfigError(f"unknown lens {name!r}; choose one of {sorted(MODULES)}")
    return importlib.import_module(MODULES[name]).LENS
