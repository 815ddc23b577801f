"""The ``train`` lens's claim: the network learns the task (a sanity check every other
finding stands on)."""

from __future__ import annotations

from experiments.claims import Claim, Finding, Rule
from experiments.intervals import over_seeds

LEARNS = Claim(
    lens="train", source="sanity check",
    text="The network learns the task: test accuracy above 90%",
    statistic="test accuracy after training, mean over seeds",
    rule=Rule("above", 0.90), figure="test_accuracy.png")


def findings(results: dict) -> list[Finding]:
    """One finding for a single run; none for a sweep (its points are compared in the
    sweep's table instead)."""
    if "points" in results:
        return []
    acc = results["test_accuracy_per_seed"]
    return [LEARNS.decide(over_seeds(acc),
                          f"{results['parameters']:,} parameters, {results['test_images']} test images")]
