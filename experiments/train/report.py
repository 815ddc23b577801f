"""The ``train`` lens's report: learning curves with their seed intervals, and a table."""

from __future__ import annotations

import ml_collections
import numpy as np

from experiments import render
from experiments.lens import SaveFigure


def _series(results: dict, key: str, records: list[dict]) -> dict[str, np.ndarray]:
    """{line label: (seeds, epochs)}: one line per sweep point (one without a sweep)."""
    points = results.get("points") or [{}]
    seeds = len((results.get("points") or [results])[0]["seeds"])
    values = np.array([r[key] for r in records]).T.reshape(len(points), seeds, -1)
    labels = [", ".join(f"{k.split('.')[-1]}={v:g}" for k, v in p.items()
                        if k.startswith("train.")) or "all seeds" for p in points]
    return dict(zip(labels, values))


def write(config: ml_collections.ConfigDict, results: dict, save: SaveFigure) -> str:
    history = results["history"]
    points = results.get("points") or [results]
    adversarial = any(p.get("training", "standard") != "standard" for p in points)
    evaluated = [r for r in history if "test_accuracy" in r]
    loss = save("train_loss.png", render.curves(
        [r["epoch"] + 1 for r in history], _series(results, "train_loss", history),
        "epoch", "training loss" if adversarial else "training cross-entropy",
        "Training loss"))
    acc = save("test_accuracy.png", render.curves(
        [r["epoch"] + 1 for r in evaluated], _series(results, "test_accuracy", evaluated),
        "epoch", "test accuracy", "Test accuracy"))
    swept = [k for k in points[0] if k.startswith("train.")]
    rows = [[*(p[k] for k in swept), config.model.name, config.data.name, len(p["seeds"]),
             p.get("training", "standard"), render.fmt_mean_std(p["test_accuracy_per_seed"]),
             p["parameters"], f"{p['seconds']:.1f}"] for p in points]
    header = [*swept, "model", "data", "seeds", "training",
              "test accuracy (mean ± sd over seeds)", "parameters", "seconds"]
    trainings = "; ".join(sorted({p.get("training", "standard") for p in points}))
    note = (f"Training objective: {trainings} (nets.adversarial: PGD-AT of Madry et al. "
            "2018, TRADES of Zhang et al. 2019); test accuracy is on clean images.\n\n"
            if adversarial else "")
    return ("## Training\n\n" + note + render.table(header, rows)
            + f"\n![train loss]({loss})\n\n![test accuracy]({acc})\n")
