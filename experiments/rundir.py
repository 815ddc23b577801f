"""The run folder: config.json, metrics.jsonl, results.json, report.md, figures.

With the checkpoints that ``nets.train.fit`` saves, this is the only place that writes
files; the libraries and the lens protocols return arrays and dicts.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from experiments.lens import Context


def float_key(x: float) -> str:
    """The one way a number becomes a JSON object key: ``f"{x:g}"`` (0.1 -> "0.1",
    1.0 -> "1", 100.0 -> "100"). Read back with the same function, never with str()."""
    return f"{float(x):g}"


def jsonable(x: Any) -> Any:
    """``x`` with arrays, tuples and numpy scalars turned into JSON types; NaN and
    infinities become None (null), so results.json is strict JSON."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray) or hasattr(x, "__array__"):
        return jsonable(np.asarray(x).tolist())
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return jsonable(x.item())
    return x


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename, so a crash
    leaves either the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class RunDir:
    """One run's folder. ``metrics.jsonl`` is rewritten from the start of each run, at
    its first record (a resumed run re-logs the history restored from its checkpoint
    first), so a run that fails before training leaves the old metrics as they were.
    config.json, results.json, done.json, report.md and figures are written atomically.

    ``checkpoints`` defaults to ``path/checkpoints``; a study whose parts live in
    sub-folders points them all at one checkpoint folder so the model trains once.
    """

    def __init__(self, path: str | Path, checkpoints: str | Path | None = None):
        self.path = Path(path)
        self.checkpoints = str(checkpoints or self.path / "checkpoints")
        self._metrics = self.path / "metrics.jsonl"
        self.writes = jax.process_index() == 0  # in a multi-host run only process 0 writes
        self._records: list[str] = []  # this run's metrics lines, to rebuild the file
        if self.writes:
            self.path.mkdir(parents=True, exist_ok=True)

    def context(self, progress: bool = True, points: list[dict] | None = None) -> Context:
        """What a lens protocol may use of this folder: checkpoints and the metrics log."""
        return Context(self.checkpoints, self.log, progress, points)

    def write_json(self, name: str, obj: Any) -> None:
        if self.writes:
            write_atomic(self.path / name, json.dumps(jsonable(obj), indent=2) + "\n")

    def log(self, record: dict) -> None:
        """Append one record to metrics.jsonl; the first record of a run rewrites the
        file, and so does any record that finds it gone (deleted mid-run): it is rebuilt
        from every record of this run."""
        if self.writes:
            line = json.dumps(jsonable(record)) + "\n"
            self._records.append(line)
            if len(self._records) > 1 and self._metrics.is_file():
                with self._metrics.open("a") as f:
                    f.write(line)
            else:
                write_atomic(self._metrics, "".join(self._records))

    def figure(self, name: str, fig) -> str:
        """Save a matplotlib figure as ``name`` (png) and return its file name."""
        if self.writes:
            tmp = self.path / f".{name}.tmp"
            fig.savefig(tmp, dpi=110, bbox_inches="tight", format=Path(name).suffix[1:] or "png")
            os.replace(tmp, self.path / name)
        plt.close(fig)
        return name

    def write_report(self, text: str) -> None:
        if self.writes:
            write_atomic(self.path / "report.md", text)

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
