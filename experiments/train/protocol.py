"""The ``train`` lens's protocol: config -> S models trained side by side -> results.

Every other lens gets its trained networks from :func:`train_models` (a checkpoint in
the run folder makes the second call free), so all lenses see the same seeds.
"""

from __future__ import annotations

import dataclasses
import inspect
import time

import jax
import ml_collections
import numpy as np

from experiments.config import ConfigError, sweepable
from experiments.lens import Context
from experiments.progress import logging_bar
from nets import data as data_lib
from nets import models
from nets.adversarial import Adversarial
from nets.distributed import fetch
from nets.train import LOOPS, OPTIMIZERS, TrainSpec, fit, hyperparameters, select

# Config keys a sweep can stack as models of one vmapped run: they change numbers in the
# optimizer state, not shapes (see nets.train.make_optimizer and experiments/sweep.py).
STACKABLE = tuple(f"train.{name}" for name in ("learning_rate", "momentum", "weight_decay"))


@sweepable
def defaults() -> ml_collections.ConfigDict:
    """Every key the ``train`` task knows, with its default."""
    c = ml_collections.ConfigDict()
    c.task = "train"
    c.data = ml_collections.ConfigDict({"name": "digits", "data_dir": "", "download": False})
    # dtype: the compute dtype of the forward pass (nets.models.Net.dtype: float32 |
    # bfloat16); parameters, losses and gradients stay float32
    c.model = ml_collections.ConfigDict({"name": "lenet5", "width": 1.0, "hidden": (256,),
                                         "dtype": "float32"})
    spec = dataclasses.asdict(TrainSpec())
    c.train = ml_collections.ConfigDict(dict(spec, seeds=(0, 1, 2)))
    return c


def load_data(cfg: ml_collections.ConfigDict) -> tuple[data_lib.Dataset, data_lib.Dataset]:
    kw = {"data_dir": cfg.data_dir or None, "download": cfg.download}
    return data_lib.load(cfg.name, "train", **kw), data_lib.load(cfg.name, "test", **kw)


def check_model(cfg: ml_collections.ConfigDict) -> None:
    """A ConfigError naming the key for an unknown ``model.name`` or ``model.dtype``
    (checked before anything runs, see experiments.cli.resolve)."""
    if cfg.name not in models.MODELS:
        raise ConfigError(f"unknown model {cfg.name!r}; choose one of {sorted(models.MODELS)}")
    dtype = cfg.get("dtype", "float32")
    if dtype not in models.COMPUTE_DTYPES:
        raise ConfigError(f"unknown model.dtype {dtype!r}; choose one of {models.COMPUTE_DTYPES}")


def build_model(cfg: ml_collections.ConfigDict, num_classes: int) -> models.Net:
    """The model named by ``cfg.name`` computing in ``cfg.dtype``, given only the config
    keys its builder takes."""
    check_model(cfg)
    accepted = inspect.signature(models.MODELS[cfg.name]).parameters
    kwargs = {k: v for k, v in cfg.items() if k in accepted and k != "num_classes"}
    return models.get_model(cfg.name, num_classes, dtype=cfg.get("dtype", "float32"), **kwargs)


def train_spec(cfg: ml_collections.ConfigDict) -> TrainSpec:
    """The ``train`` section as a TrainSpec; a ConfigError naming the key when a value
    cannot work (checked before anything runs, see experiments.cli.resolve)."""
    for key in ("epochs", "batch_size", "eval_every", "checkpoint_every"):
        if cfg[key] < 1:
            raise ConfigError(f"train.{key} must be >= 1, got {cfg[key]}")
    if not cfg.learning_rate > 0:
        raise ConfigError(f"train.learning_rate must be > 0, got {cfg.learning_rate}")
    if "seeds" in cfg and len(cfg.seeds) == 0:
        raise ConfigError("train.seeds is empty; give at least one seed, e.g. (0,)")
    if cfg.optimizer not in OPTIMIZERS:
        raise ConfigError(f"unknown train.optimizer {cfg.optimizer!r}; choose one of {OPTIMIZERS}")
    if cfg.loop not in LOOPS:
        raise ConfigError(f"unknown train.loop {cfg.loop!r}; choose one of {LOOPS}")
    fields = {f.name for f in dataclasses.fields(TrainSpec)}
    spec = TrainSpec(**{k: v for k, v in cfg.items() if k in fields})
    try:  # adversarial, adv_eps, adv_steps, adv_step_size, trades_beta, adv_warmup
        Adversarial.of(spec).check()
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return spec


def training(cfg: ml_collections.ConfigDict) -> str:
    """How the models were trained, in one line: ``standard``, or the adversarial
    objective with its settings (e.g. ``PGD-AT, Linf eps=0.1, 7 steps of 2.5 eps/7``)."""
    return Adversarial.of(train_spec(cfg)).describe()


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


def train_models(config: ml_collections.ConfigDict, ctx: Context,
                 points: list[dict] | None = None):
    """Load data, build the model and fit ``config.train.seeds`` side by side.

    With ``points`` (hyperparameter settings such as ``{"train.learning_rate": 3e-3}``,
    from a sweep), every point is trained with every seed, all in one vmapped run.
    Returns (net, states, history, (train, test)). Resumes from ``ctx.checkpoints``.
    """
    train, test = load_data(config.data)
    net = build_model(config.model, train.num_classes)
    spec, seeds = train_spec(config.train), tuple(config.train.seeds)
    hparams = stacked_hparams(points, spec, len(seeds)) if points else None
    log, close = logging_bar(ctx.log, spec.epochs, "train", ctx.progress)
    try:
        states, history = fit(
            net, train, test, spec, seeds * len(points or [{}]), hparams=hparams,
            checkpoint_dir=ctx.checkpoints, log=log,
        )
    finally:
        close()
    if jax.process_count() > 1:  # models trained across hosts: every process gets them all
        states = fetch(states)
    return net, states, history, (train, test)


def run(config: ml_collections.ConfigDict, ctx: Context) -> dict:
    """Train ``config.train.seeds`` (x the sweep's stacked ``ctx.points``) and return
    per-seed test accuracy and the learning curves (``history``: per epoch, one value
    per model). With points, results hold ``{"points": [one result per point]}``."""
    t0 = time.perf_counter()
    _net, states, history, (train, test) = train_models(config, ctx, ctx.points)
    seconds = time.perf_counter() - t0
    seeds = list(config.train.seeds)
    accs = np.asarray(history[-1]["test_accuracy"]).reshape(-1, len(seeds))  # (points, seeds)
    per_point = [{
        **point,
        "test_accuracy": float(acc.mean()),
        "test_accuracy_per_seed": acc.tolist(),
        "seeds": seeds,
        "training": training(config.train),
        "parameters": models.count_params(select(states, 0)["params"]),
        "train_images": int(train.images.shape[0]),
        "test_images": int(test.images.shape[0]),
        "seconds": seconds,
    } for point, acc in zip(ctx.points or [{}], accs)]
    results = {"points": per_point} if ctx.points else dict(per_point[0])
    results["history"] = [{k: r[k] for k in ("epoch", "train_loss", "test_accuracy") if k in r}
                          for r in history]
    return results
