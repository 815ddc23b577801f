"""What a lens is: a protocol, its claims and its report, and what its protocol may use.

Each lens sub-package (``experiments/<name>/``) has three modules and exports one
:class:`Lens` built from them:

* ``protocol``: ``defaults() -> ConfigDict`` (every key it reads) and
  ``run(config, ctx) -> results`` (a JSON-able dict; no file I/O except the checkpoints
  that ``nets.train.fit`` keeps in ``ctx.checkpoints``);
* ``claims``: the papers' claims, each with its statistic and decision rule, and
  ``findings(results) -> [Finding]``, the only place verdicts are decided;
* ``report``: ``write(config, results, save) -> markdown``, figures (matplotlib)
  and text only; ``save(name, figure) -> file name`` stores a figure.

:mod:`experiments.runner` runs a lens into a run folder; :mod:`experiments.registry`
lists the lenses for the command line and the default study.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import ml_collections

from experiments.claims import Finding

SaveFigure = Callable[[str, Any], str]


@dataclasses.dataclass(frozen=True)
class Context:
    """What a protocol may use of its run folder.

    ``checkpoints``: the orbax folder for ``nets.train.fit`` (resume, reuse across
    lenses); ``log``: one record per epoch into metrics.jsonl; ``progress``: show
    progress bars; ``points``: stacked hyperparameter settings of a sweep (train only).
    """

    checkpoints: str | None = None
    log: Callable[[dict], None] = lambda record: None
    progress: bool = False
    points: list[dict] | None = None


@dataclasses.dataclass(frozen=True)
class Lens:
    """One lens of the toolkit as the command line and the study see it."""

    name: str
    title: str
    defaults: Callable[[], ml_collections.ConfigDict]
    run: Callable[[ml_collections.ConfigDict, Context], dict]
    findings: Callable[[dict], list[Finding]]
    report: Callable[[ml_collections.ConfigDict, dict, SaveFigure], str]
    own_models: bool = False  # trains its own models (minmax) instead of the study's
