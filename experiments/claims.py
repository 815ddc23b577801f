"""A paper's claim, its decision rule, and the finding a run makes of it.

Each lens's ``claims`` module declares its :class:`Claim` objects (the claim in words,
the statistic, the :class:`Rule`) and one function ``findings(results) -> [Finding]``
that computes each statistic's :class:`~experiments.intervals.Interval` from the lens's
results and lets the rule decide. Nothing else in the code decides a verdict.

The rule (DESIGN.md, "Claims and their uncertainty"): **yes** when the 95% interval lies
entirely on the claimed side of the threshold, **no** when it lies entirely on the other
side, **inconclusive** otherwise (an interval that touches or straddles the threshold,
or no interval at all, e.g. one seed).
"""

from __future__ import annotations

import dataclasses
import math

from experiments.intervals import Interval

VERDICTS = ("yes", "no", "inconclusive")
SIDES = ("above", "below")


@dataclasses.dataclass(frozen=True)
class Rule:
    """The claim holds when the statistic is ``side`` (above/below) ``threshold``."""

    side: str
    threshold: float = 0.0

    def __post_init__(self):
        if self.side not in SIDES:
            raise ValueError(f"Rule.side must be one of {SIDES}, got {self.side!r}")

    def decide(self, interval: Interval) -> str:
        lo, hi, t = interval.lo, interval.hi, self.threshold
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return "inconclusive"
        above, below = lo > t, hi < t
        if self.side == "above":
            return "yes" if above else "no" if below else "inconclusive"
        return "yes" if below else "no" if above else "inconclusive"

    @property
    def text(self) -> str:
        other = "below" if self.side == "above" else "above"
        return (f"yes if the 95% interval lies entirely {self.side} {self.threshold:g}, "
                f"no if entirely {other}, else inconclusive")


@dataclasses.dataclass(frozen=True)
class Claim:
    """One paper's claim as this toolkit tests it."""

    lens: str       # the lens that tests it, e.g. "attacks"
    source: str     # whose claim: "Cheney et al. 2017", "this project"
    text: str       # the claim, in words
    statistic: str  # what is computed from the results, in words
    rule: Rule
    figure: str = ""  # the figure that shows it, relative to the lens's run folder

    def decide(self, interval: Interval, detail: str = "") -> Finding:
        return Finding(self, interval, self.rule.decide(interval), detail)


@dataclasses.dataclass(frozen=True)
class Finding:
    """A claim, the interval a run measured for its statistic, and the verdict."""

    claim: Claim
    interval: Interval
    verdict: str
    detail: str = ""  # supporting numbers (all from results.json), in words

    def to_dict(self) -> dict:
        c = self.claim
        return {"lens": c.lens, "source": c.source, "claim": c.text, "statistic": c.statistic,
                **self.interval.to_dict(), "rule": c.rule.text, "verdict": self.verdict,
                "figure": c.figure, "detail": self.detail}
