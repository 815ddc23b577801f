"""A model trained the way the ``train`` task trains it, for the benchmarks that need one."""

from __future__ import annotations

from pathlib import Path

from experiments.rundir import RunDir
from experiments.train import protocol as experiment
from nets.train import select


def trained_model(model: str, workdir: str, hidden: tuple[int, ...] = (), epochs: int = 0):
    """(name, net, params, test set) of ``model`` trained with the ``train`` task's
    defaults on digits, seed 0 (``hidden``: an mlp's widths; ``epochs``: 0 for the
    default), restored from ``workdir/name`` when it was trained there before."""
    config = experiment.defaults()
    config.model.name = model
    config.train.seeds = (0,)
    if hidden:
        config.model.hidden = tuple(hidden)
    if epochs:
        config.train.epochs = epochs
    name = model + "-".join(map(str, hidden))
    net, states, _history, (_train, test) = experiment.train_models(
        config, RunDir(Path(workdir) / name).context(progress=False))
    return name, net, select(states, 0)["params"], test
