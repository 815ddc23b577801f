"""The ``train`` task: config -> trained models, results, report.

Other tasks reuse :func:`train_models` to get their trained networks (a checkpoint in
the run folder makes the second call free).
"""

from __future__ import annotations

import dataclasses
import inspect
import time

import jax
import ml_collections
import numpy as np

from nets import data as data_lib
from nets import models, report
from nets.config import ConfigError, sweepable
from nets.distributed import fetch
from nets.report import RunDir
from nets.train import LOOPS, OPTIMIZERS, TrainSpec, fit, hyperparameters, select

# Config keys a sweep can stack as models of one vmapped run: they change numbers in the
# optimizer state, not shapes (see nets.train.make_optimizer and study/sweep.py).
STACKABLE = tuple(f"train.{name}" for name in ("learning_rate", "momentum", "weight_decay"))


@sweepable
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


def stacked_hparams(points: list[dict], spec: TrainSpec, num_seeds: int) -> dict[str, list]:
    """Per-model optimizer hyperparameters of ``points`` (``{"train.learning_rate": v}``
    each) x seeds: model ``i * num_seeds + j`` is point ``i`` with seed ``j``."""
    known = hyperparameters(spec)
    out: dict[str, list] = {}
    for key in points[0]:
        name = key.removeprefix("train.")
        if key not in STACKABLE or name not in known:
            raise ConfigError(f"{key!r} cannot be stacked: optimizer {spec.optimizer!r} takes "
                              f"{', '.join('train.' + k for k in known)}")
        out[name] = [p[key] for p in points for _ in range(num_seeds)]
    return out


def train_models(config: ml_collections.ConfigDict, run: RunDir, progress: bool = True,
                 points: list[dict] | None = None):
    """Load data, build the model and fit ``config.train.seeds`` side by side.

    With ``points`` (hyperparameter settings such as ``{"train.learning_rate": 3e-3}``,
    from a sweep), every point is trained with every seed, all in one vmapped run.
    Returns (net, states, history, (train, test)). Resumes from ``run.checkpoints``.
    """
    train, test = load_data(config.data)
    net = build_model(config.model, train.num_classes)
    spec, seeds = train_spec(config.train), tuple(config.train.seeds)
    hparams = stacked_hparams(points, spec, len(seeds)) if points else None
    states, history = fit(
        net, train, test, spec, seeds * len(points or [{}]), hparams=hparams,
        checkpoint_dir=run.checkpoints, log=run.log, progress=progress,
    )
    if jax.process_count() > 1:  # models trained across hosts: every process gets them all
        states = fetch(states)
    return net, states, history, (train, test)


def run(config: ml_collections.ConfigDict, run_dir: RunDir, progress: bool = True,
        points: list[dict] | None = None) -> dict:
    """Train, then write results.json (``test_accuracy``: mean over seeds) and report.md.

    With sweep ``points`` (stackable hyperparameters, see :func:`train_models`) the models
    of all points train together and results.json holds ``{"points": [one run's
    results per point]}``.
    """
    t0 = time.perf_counter()
    _net, states, history, (train, test) = train_models(config, run_dir, progress, points)
    seconds = time.perf_counter() - t0
    seeds = list(config.train.seeds)
    accs = np.asarray(history[-1]["test_accuracy"]).reshape(-1, len(seeds))  # (points, seeds)
    per_point = [{
        **point,
        "test_accuracy": float(acc.mean()),
        "test_accuracy_std": float(acc.std()),
        "test_accuracy_per_seed": acc.tolist(),
        "seeds": seeds,
        "parameters": models.count_params(select(states, 0)["params"]),
        "train_images": int(train.images.shape[0]),
        "test_images": int(test.images.shape[0]),
        "seconds": seconds,
    } for point, acc in zip(points or [{}], accs)]
    results = {"points": per_point} if points else per_point[0]
    run_dir.write_json("results.json", results)

    def by_point(key: str, records: list[dict]) -> dict[str, np.ndarray]:
        """{series label: (seeds, epochs)}: one line (mean ± std over seeds) per point."""
        values = np.array([r[key] for r in records]).T.reshape(len(per_point), len(seeds), -1)
        labels = [", ".join(f"{k.split('.')[-1]}={v:g}" for k, v in p.items()) or key
                  for p in (points or [{}])]
        return dict(zip(labels, values))

    evaluated = [r for r in history if "test_accuracy" in r]
    fig_loss = run_dir.figure("train_loss.png", report.curves(
        [r["epoch"] + 1 for r in history], by_point("train_loss", history),
        "epoch", "cross-entropy"))
    fig_acc = run_dir.figure("test_accuracy.png", report.curves(
        [r["epoch"] + 1 for r in evaluated], by_point("test_accuracy", evaluated),
        "epoch", "accuracy"))
    swept = list(points[0]) if points else []
    rows = [[*(p[k] for k in swept), config.model.name, config.data.name, len(seeds),
             report.fmt_mean_std(acc), p["parameters"], f"{seconds:.1f}"]
            for p, acc in zip(per_point, accs)]
    header = [*swept, "model", "data", "seeds", "test accuracy", "parameters", "seconds"]
    run_dir.write_report(
        f"# Training: {config.model.name} on {config.data.name}\n\n"
        + report.table(header, rows)
        + f"\n![train loss]({fig_loss})\n\n![test accuracy]({fig_acc})\n"
    )
    return results

