"""The experiment layer: each lens as a protocol, its claims and its report, composed by
the command line (``scripts/run.py``) and the default study.

    from experiments import registry, run_lens, RunDir
    lens = registry.get("attacks")                    # protocol + claims + report
    results = run_lens(lens, config, RunDir("runs/x"))  # results.json, report.md

Findings carry their uncertainty: :mod:`experiments.intervals` forms the 95% intervals,
:mod:`experiments.claims` holds the decision rule (yes / no / inconclusive).
"""

from experiments import registry
from experiments.claims import Claim, Finding, Rule
from experiments.intervals import Interval, over_seeds, over_seeds_and_images
from experiments.lens import Context, Lens
from experiments.rundir import RunDir
from experiments.runner import run_lens

__all__ = ["Claim", "Context", "Finding", "Interval", "Lens", "Rule", "RunDir", "over_seeds",
           "over_seeds_and_images", "registry", "run_lens"]
