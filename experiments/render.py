"""Markdown tables, number formats and line plots with interval bands, for the reports.

Bands are 95% intervals across seeds (Student t, :mod:`experiments.intervals`), and the
figures say so in their legends; with one seed there is no band.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from experiments.intervals import seed_band

BAND = "band: 95% interval across seeds"


def fmt_mean_std(values: Sequence[float], digits: int = 4) -> str:
    """``mean ± sd`` over seeds (sd with S-1), or the value alone for one seed."""
    arr = np.asarray(values, float)
    if arr.size == 1 or math.isclose(float(arr.std()), 0):
        return f"{arr.mean():.{digits}f}"
    return f"{arr.mean():.{digits}f} ± {arr.std(ddof=1):.{digits}f}"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def curves(x: Sequence[float], series: dict[str, np.ndarray], xlabel: str, ylabel: str,
           title: str, ax=None):
    """Line plot of ``series[name]`` with shape (S, len(x)): the mean over seeds and its
    95% interval as a band. Returns the figure (or draws on ``ax``)."""
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.2, 3.6))
    seeds = 1
    for name, ys in series.items():
        ys = np.atleast_2d(np.asarray(ys, float))
        seeds = max(seeds, ys.shape[0])
        m, lo, hi = seed_band(ys)
        (line,) = ax.plot(x, m, marker="o", ms=3, label=name)
        if ys.shape[0] > 1:
            ax.fill_between(x, lo, hi, alpha=0.25, color=line.get_color(), lw=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title + (f"\n(mean of {seeds} seeds; {BAND})" if seeds > 1 else ""),
                 fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best", framealpha=0.8)
    return fig if fig is not None else ax.figure
