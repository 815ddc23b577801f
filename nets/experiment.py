"""The ``train`` task: config -> trained models, results, report.

Other tasks reuse :func:`train_models` to get their trained networks (a checkpoint in
the run folder makes the second call free).
"""

from __future__ import annotations

import dataclasses
import inspect
import time

import ml_collections
import numpy as np

from nets import data as data_lib
from nets import models, report
from nets.config import ConfigError
from nets.report import RunDir
from nets.train import LOOPS, OPTIMIZERS, TrainSpec, fit, select


def defaults() -> ml_collections.ConfigDict:
    """Every key the ``train`` task knows, with its default."""
    c = ml_collections.ConfigDict()
    c.task = "train"
    c.data = ml_collections.ConfigDict({"name": "digits", "data_dir": "", "download": False})
    c.model = ml_collections.ConfigDict({"name": "lenet5", "width": 1.0, "hidden": (256,)})
    spec = dataclasses.asdict(TrainSpec())
    c.train = ml_collections.ConfigDict(dict(spec, seeds=(0,)))
    return c


def load_data(cfg: ml_collections.ConfigDict) -> tuple[data_lib.Dataset, data_lib.Dataset]:
    kw = {"data_dir": cfg.data_dir or None, "download": cfg.download}
    return data_lib.load(cfg.name, "train", **kw), data_lib.load(cfg.name, "test", **kw)


def build_model(cfg: ml_collections.ConfigDict, num_classes: int) -> models.Net:
    """The model named by ``cfg.name``, given only the config keys its builder takes."""
    builder = models.MODELS.get(cfg.name)
    if builder is None:
        raise ConfigError(f"unknown model {cfg.name!r}; choose one of {sorted(models.MODELS)}")
    accepted = inspect.signature(builder).parameters
    kwargs = {k: v for k, v in cfg.items() if k in accepted and k != "num_classes"}
    return models.get_model(cfg.name, num_classes, **kwargs)


def train_spec(cfg: ml_collections.ConfigDict) -> TrainSpec:
    if cfg.optimizer not in OPTIMIZERS:
        raise ConfigError(f"unknown train.optimizer {cfg.optimizer!r}; choose one of {OPTIMIZERS}")
    if cfg.loop not in LOOPS:
        raise ConfigError(f"unknown train.loop {cfg.loop!r}; choose one of {LOOPS}")
    fields = {f.name for f in dataclasses.fields(TrainSpec)}
    return TrainSpec(**{k: v for k, v in cfg.items() if k in fields})


def train_models(config: ml_collections.ConfigDict, run: RunDir, progress: bool = True):
    """Load data, build the model and fit ``config.train.seeds`` side by side.

    Returns (net, states, history, (train, test)). Resumes from ``run.checkpoints``.
    """
    train, test = load_data(config.data)
    net = build_model(config.model, train.num_classes)
    states, history = fit(
        net, train, test, train_spec(config.train), tuple(config.train.seeds),
        checkpoint_dir=run.checkpoints, log=run.log, progress=progress,
    )
    return net, states, history, (train, test)


def run(config: ml_collections.ConfigDict, run_dir: RunDir, progress: bool = True) -> dict:
    """Train, then write results.json (``test_accuracy``: mean over seeds) and report.md."""
    t0 = time.perf_counter()
    _net, states, history, (train, test) = train_models(config, run_dir, progress)
    seconds = time.perf_counter() - t0
    acc = np.asarray(history[-1]["test_accuracy"])
    results = {
        "test_accuracy": float(acc.mean()),
        "test_accuracy_std": float(acc.std()),
        "test_accuracy_per_seed": acc.tolist(),
        "seeds": list(config.train.seeds),
        "parameters": models.count_params(select(states, 0)["params"]),
        "train_images": int(train.images.shape[0]),
        "test_images": int(test.images.shape[0]),
        "seconds": seconds,
    }
    run_dir.write_json("results.json", results)

    evaluated = [r for r in history if "test_accuracy" in r]
    epochs = [r["epoch"] + 1 for r in history]
    fig_loss = run_dir.figure("train_loss.png", report.curves(
        epochs, {"train loss": np.array([r["train_loss"] for r in history]).T},
        "epoch", "cross-entropy"))
    fig_acc = run_dir.figure("test_accuracy.png", report.curves(
        [r["epoch"] + 1 for r in evaluated],
        {"test accuracy": np.array([r["test_accuracy"] for r in evaluated]).T},
        "epoch", "accuracy"))
    rows = [[config.model.name, config.data.name, len(config.train.seeds),
             report.fmt_mean_std(acc), results["parameters"], f"{seconds:.1f}"]]
    run_dir.write_report(
        f"# Training: {config.model.name} on {config.data.name}\n\n"
        + report.table(["model", "data", "seeds", "test accuracy", "parameters", "seconds"], rows)
        + f"\n![train loss]({fig_loss})\n\n![test accuracy]({fig_acc})\n"
    )
    return results

