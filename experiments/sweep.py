"""Sweeps: a config field given a list runs once per value, over the Cartesian product of
all such fields (``--config.train.learning_rate=[1e-3,3e-3] --config.model.name=[lenet5,mlp]``).

Where the swept fields change only numbers, not shapes (the optimizer hyperparameters of
the ``train`` task: ``STACKABLE``), all their points train as stacked models of
ONE vmapped run, sharded over the devices like seeds (nets.train.shard_models). Every other
field (model, data, epochs, a lens's settings) gets one sub-run per value. Layout::

    sweep/<key=value,...>/   one complete run folder per sequential point
                             (``sweep/stacked/`` when every axis is stacked)
    results.json             {"axes": {...}, "points": [{axis values..., metrics...}]}
    report.md                the table of points and a plot of the first metric

A sub-run that finished for the same config is reused when the sweep starts again; an
unfinished one resumes from its checkpoints.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import matplotlib.pyplot as plt
import ml_collections

from experiments import render
from experiments.config import merge, nest, sweep_points
from experiments.rundir import RunDir, finished
from experiments.train.protocol import STACKABLE
from nets.distributed import agree

RunFn = Callable[..., dict]
PRIMARY = ("test_accuracy",)  # plotted first when a sub-run reports it


def label(point: dict[str, Any]) -> str:
    """A folder name for a point: ``train.learning_rate=0.001,model.name=mlp``."""
    text = ",".join(f"{k}={v}" for k, v in point.items())
    return re.sub(r"[^A-Za-z0-9._=,+-]", "-", text) or "stacked"


def split_axes(task: str, axes: dict[str, list]) -> tuple[dict[str, list], dict[str, list]]:
    """(axes run one after another, axes stacked in one vmapped run)."""
    stacked = {k: v for k, v in axes.items() if task == "train" and k in STACKABLE}
    return {k: v for k, v in axes.items() if k not in stacked}, stacked


def scalars(results: dict) -> dict[str, float]:
    """The numeric top-level entries of a run's results (the sweep table's columns)."""
    return {k: v for k, v in results.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def run(task: str, run_fn: RunFn, config: ml_collections.ConfigDict, axes: dict[str, list],
        run_dir: RunDir, progress: bool = True) -> dict:
    """Run every point of ``axes`` (the product) with ``run_fn``; write the sweep's
    results.json and report.md, and return ``{"axes", "points"}``."""
    outer, stacked = split_axes(task, axes)
    inner = sweep_points(stacked) if stacked else None
    outer_points = sweep_points(outer)
    rows: list[dict] = []
    for i, point in enumerate(outer_points):
        cfg = merge(config, nest(point.items()))
        folder = run_dir.path / "sweep" / label(point)
        record = {"config": cfg.to_dict(), "stacked": inner}
        print(f"sweep point {i + 1}/{len(outer_points)}: {label(point)}"
              + (f" ({len(inner)} settings of {', '.join(stacked)} stacked in one run)"
                 if inner else ""), flush=True)
        results = finished(folder, record)
        if not agree(results is not None):
            sub = RunDir(folder)
            sub.write_json("config.json", cfg.to_dict())
            results = (run_fn(cfg, sub, progress=progress, points=inner) if inner
                       else run_fn(cfg, sub, progress=progress))
            sub.mark_done(record, results)
        for r in results["points"] if inner else [results]:
            rows.append({**point, **r, "run": str(folder.relative_to(run_dir.path))})
    out = {"axes": axes, "points": rows}
    run_dir.write_json("results.json", out)
    write_report(run_dir, task, axes, rows)
    return out


def write_report(run_dir: RunDir, task: str, axes: dict[str, list], rows: list[dict]) -> None:
    """A table with one row per point (axis values, then the numeric results) and, when
    an axis is numeric, the first metric against it (one line per other-axis setting)."""
    keys = list(axes)
    metrics = [m for m in scalars(rows[0]) if m not in keys]
    metrics = sorted(metrics, key=lambda m: (m not in PRIMARY, metrics.index(m)))

    def fmt(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    table = render.table([*keys, *metrics, "run"],
                         [[fmt(r[k]) for k in [*keys, *metrics]] + [f"[{r['run']}]({r['run']}/report.md)"]
                          for r in rows])
    text = f"# Sweep ({task}): {len(rows)} points\n\n" + table
    numeric = [k for k in keys if all(isinstance(v, (int, float)) for v in axes[k])]
    if numeric and metrics:
        text += f"\n![{metrics[0]}]({run_dir.figure('sweep.png', plot(rows, numeric[0], keys, metrics[0]))})\n"
    run_dir.write_report(text)


def plot(rows: list[dict], x: str, keys: list[str], metric: str):
    """``metric`` against axis ``x``, one line per setting of the other axes."""
    others = [k for k in keys if k != x]
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(", ".join(f"{k}={r[k]}" for k in others) or metric, []).append(r)
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for name, rs in groups.items():
        rs = sorted(rs, key=lambda r: r[x])
        ax.plot([r[x] for r in rs], [r[metric] for r in rs], "o-", label=name)
    xs = [r[x] for r in rows]
    if min(xs) > 0 and max(xs) / min(xs) >= 10:
        ax.set_xscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
