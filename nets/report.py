"""The run folder: config.json, metrics.jsonl, results.json, report.md, figures.

This is the only module (with scripts/run.py) that writes files; the libraries return
arrays and dicts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def jsonable(x: Any) -> Any:
    """``x`` with arrays, tuples and numpy scalars turned into JSON types."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray) or hasattr(x, "__array__"):
        return jsonable(np.asarray(x).tolist())
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return x.item()
    return x


class RunDir:
    """One run's folder. ``metrics.jsonl`` is rewritten from the start of each run:
    a resumed run re-logs the history restored from its checkpoint first.

    ``checkpoints`` defaults to ``path/checkpoints``; a study whose parts live in
    sub-folders points them all at one checkpoint folder so the model trains once.
    """

    def __init__(self, path: str | Path, checkpoints: str | Path | None = None):
        self.path = Path(path)
        self.checkpoints = str(checkpoints or self.path / "checkpoints")
        self._metrics = self.path / "metrics.jsonl"
        self.writes = jax.process_index() == 0  # in a multi-host run only process 0 writes
        if self.writes:
            self.path.mkdir(parents=True, exist_ok=True)
            self._metrics.write_text("")

    def write_json(self, name: str, obj: Any) -> None:
        if self.writes:
            (self.path / name).write_text(json.dumps(jsonable(obj), indent=2) + "\n")

    def log(self, record: dict) -> None:
        if self.writes:
            with self._metrics.open("a") as f:
                f.write(json.dumps(jsonable(record)) + "\n")

    def figure(self, name: str, fig) -> str:
        """Save a matplotlib figure as ``name`` (png) and return its file name."""
        if self.writes:
            fig.savefig(self.path / name, dpi=110, bbox_inches="tight")
        plt.close(fig)
        return name

    def write_report(self, text: str) -> None:
        if self.writes:
            (self.path / "report.md").write_text(text)

    def mark_done(self, record: Any, results: dict, **extra: Any) -> None:
        """Write ``done.json``: this folder's run finished with ``record`` (its config)."""
        self.write_json("done.json", {"record": record, "results": results, **extra})


def finished(folder: str | Path, record: Any) -> dict | None:
    """The results saved by :meth:`RunDir.mark_done` in ``folder`` for the same ``record``,
    else None: a study part or sweep point that finished is reused, not run again."""
    done = Path(folder) / "done.json"
    if done.is_file():
        saved = json.loads(done.read_text())
        if saved.get("record") == jsonable(record):
            return saved["results"]
    return None


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    arr = np.asarray(values, float)
    return float(arr.mean()), float(arr.std())


def fmt_mean_std(values: Sequence[float], digits: int = 4) -> str:
    m, s = mean_std(values)
    return f"{m:.{digits}f}" if len(values) == 1 or math.isclose(s, 0) else f"{m:.{digits}f} ± {s:.{digits}f}"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def curves(x: Sequence[float], series: dict[str, np.ndarray], xlabel: str, ylabel: str,
           title: str = ""):
    """Line plot of ``series[name]`` with shape (S, len(x)): mean line, ±std band."""
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for name, ys in series.items():
        ys = np.atleast_2d(np.asarray(ys, float))
        m, s = ys.mean(0), ys.std(0)
        ax.plot(x, m, label=name)
        if ys.shape[0] > 1:
            ax.fill_between(x, m - s, m + s, alpha=0.25)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig
