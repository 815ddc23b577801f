"""The ``minmax`` lens's protocol: the Min-Max loss of each reading of "interval" x lambda
x seed, PGD-AT models for the reverse test, the conv statistics of every reading per
epoch, and clean and robust accuracy per model and image.

Seed 000 (Shen, Chen & Wang, arXiv 2011.13719) claims, in its abstract (the only part
available; the statistics are this project's formulation, see :mod:`minmax.stats`):
(a) during ordinary training the conv weights move to the ends of their intervals, i.e.
their fuzziness falls; (b) a model with this property is more robust to adversarial
examples, so it can be put into the loss. The claims and their rules are in
:mod:`experiments.minmax.claims`; this module only measures.

Readings of "interval" (:mod:`minmax.readings`): ``group`` (a kernel slice's spread),
``trajectory`` (each weight's running range over training, against a random walk of the
same step sizes), ``init`` (the initializer's support +-b).

Protocol: *conditions* = the shared baseline ``"0"`` (lambda = 0) and, for every reading
in ``minmax.readings`` and every lambda > 0 in ``minmax.lambdas``, ``"reading/lambda"``
(loss ``CE + lambda * F_reading``); conditions x ``minmax.seeds`` models are trained side
by side in ONE vmapped :func:`nets.train.fit` call (a vector penalty, one per reading, with
a per-model weight vector; checkpoints in ``ctx.checkpoints``, so a rerun resumes), with
the trajectory tracker in the train step. With ``minmax.reverse``, the same seeds are
also trained with PGD-AT (condition ``"pgd-at"``, one more vmapped fit, checkpoints in
``<checkpoints>_adversarial``): the reverse test compares them with the baseline. Every
reading's statistics of every conv layer for all models once per epoch (epoch 0 = init).
Then, per model: clean correctness of each attacked test image and its robust
correctness under FGSM and PGD (linf) over ``minmax.linf_eps``, with the same attack key
for every model (common random numbers), so conditions are compared image by image.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from attacks.common import model_logits_fn
from attacks.evaluate import make_attack, robust_accuracy
from experiments.config import ConfigError, sweepable
from experiments.lens import Context
from experiments.progress import iterate, logging_bar
from experiments.rundir import float_key
from experiments.train import protocol as train_protocol
from minmax import readings as readings_lib
from minmax import stats as stats_lib
from nets.evaluate import logits as net_logits
from nets.models import Net
from nets.train import fit, init_states, make_optimizer, select

ATTACKS = ("fgsm", "pgd")
BASELINE, ROBUST = "0", "pgd-at"  # condition keys of lambda = 0 and of the PGD-AT models


def condition(reading: str, lam: float) -> str:
    """The key of the models penalized by ``reading`` at ``lam`` (``"0"`` at lambda 0)."""
    return BASELINE if lam == 0 else f"{reading}/{float_key(lam)}"


@sweepable
def defaults() -> ml_collections.ConfigDict:
    """The ``train`` lens's keys (minus ``train.seeds``) plus a ``minmax`` section."""
    c = train_protocol.defaults()
    c.task = "minmax"
    del c.train["seeds"]  # the models are minmax.lambdas x minmax.seeds
    c.minmax = ml_collections.ConfigDict({
        # weights of the fuzziness penalty of each reading; must include 0 (the one
        # baseline shared by all readings)
        "lambdas": (0.0, 10.0, 100.0),
        "seeds": (0, 1, 2),  # seeds per condition (init and data order)
        # readings of "interval" measured and penalized: group | trajectory | init
        "readings": ("group", "trajectory", "init"),
        "granularity": "kernel",  # group reading: kernel | filter | layer is one interval
        "layers": (),  # conv layers penalized; empty = all (statistics: always all)
        "stop_gradient": True,  # group reading: hold interval ends fixed in the gradient
        # the reverse test: PGD-AT models of the same seeds (Linf, inputs in [0, 1];
        # eps ramps up over adv_warmup epochs, see configs/adversarial.py)
        "reverse": True,
        "adv_eps": 0.1,
        "adv_steps": 7,
        "adv_warmup": 3,
        "near": 0.9,  # d >= near counts as "near the ends"
        "small": 0.1,  # |w| <= small * max|w| counts as "small" (sparsity view)
        "linf_eps": (0.0, 0.05, 0.1, 0.2, 0.3),  # attack budgets (inputs in [0, 1])
        "pgd_steps": 10,
        "images": 200,  # test images attacked; 0 = all
        "chunk": 200,  # images per jitted attack call
        "seed": 0,  # attack key (the same for every model: common random numbers)
    })
    return c


def _check(cfg: ml_collections.ConfigDict) -> None:
    """Raise :class:`ConfigError` before training for values we cannot run."""
    lambdas = [float(v) for v in cfg.lambdas]
    if 0.0 not in lambdas or any(v < 0 for v in lambdas) or len(set(lambdas)) != len(lambdas):
        raise ConfigError(f"minmax.lambdas must be distinct, >= 0 and include 0 (the "
                          f"unregularized baseline), got {tuple(cfg.lambdas)}")
    if not cfg.seeds or len(set(cfg.seeds)) != len(cfg.seeds):
        raise ConfigError(f"minmax.seeds must be distinct and not empty, got {tuple(cfg.seeds)}")
    try:
        readings_lib.check(cfg.readings)
    except ValueError as e:
        raise ConfigError(f"minmax.readings: {e}") from None
    if cfg.reverse and not (0 < cfg.adv_eps <= 1 and cfg.adv_steps >= 1 and cfg.adv_warmup >= 0):
        raise ConfigError(f"minmax.adv_eps must be in (0, 1], adv_steps >= 1, adv_warmup >= 0, "
                          f"got {cfg.adv_eps}, {cfg.adv_steps}, {cfg.adv_warmup}")
    if cfg.granularity not in stats_lib.GRANULARITIES:
        raise ConfigError(f"minmax.granularity {cfg.granularity!r}: choose one of "
                          f"{stats_lib.GRANULARITIES}")
    eps = [float(e) for e in cfg.linf_eps]
    if not eps or eps != sorted(eps) or eps[0] < 0 or eps[-1] > 1:
        raise ConfigError(f"minmax.linf_eps must be ascending in [0, 1], got {tuple(eps)}")
    if not any(e > 0 for e in eps):
        raise ConfigError("minmax.linf_eps needs at least one eps > 0 (robustness is the "
                          "mean robust accuracy over them)")
    if cfg.pgd_steps < 1 or cfg.chunk < 1 or cfg.images < 0:
        raise ConfigError("minmax.pgd_steps and minmax.chunk must be >= 1, images >= 0")
    if cfg.images == 1:
        raise ConfigError("minmax.images must be 0 (all) or >= 2 (the intervals bootstrap "
                          "over images)")


@functools.partial(jax.jit, static_argnames=("net", "chunk"))
def _clean_correct(net: Net, stacked_params, x: jax.Array, y: jax.Array,
                   chunk: int) -> jax.Array:
    """(S, N) bool: model s classifies image n correctly (vmapped over the S models)."""
    return jax.vmap(lambda p: net_logits(net, p, x, chunk).argmax(-1) == y)(stacked_params)


def _by_condition(values: np.ndarray, conditions: list[str], k: int) -> dict[str, list]:
    """Split the model axis (condition-major, k seeds each) of ``values`` by condition."""
    return {c: np.asarray(values[i * k:(i + 1) * k]).tolist() for i, c in enumerate(conditions)}


def _robust_context(ctx: Context) -> Context:
    if ctx.checkpoints is None:
        return ctx
    path = Path(ctx.checkpoints)
    return dataclasses.replace(ctx, checkpoints=str(path.with_name(path.name + "_adversarial")))


def run(config: ml_collections.ConfigDict, ctx: Context) -> dict:
    """Train the condition x seed grid (and the PGD-AT seeds), attack every model;
    per-seed and per-image results keyed by condition.

    Model ``i`` of the grid is condition ``conditions[i // k]`` with seed ``seeds[i % k]``
    (k seeds); the PGD-AT models follow, in seed order.
    """
    cfg = config.minmax
    _check(cfg)
    if config.train.adversarial != "none":
        raise ConfigError("minmax trains standard models (and, with minmax.reverse, PGD-AT "
                          "ones set by minmax.adv_*); leave train.adversarial = 'none'")
    t_start = time.perf_counter()
    train, test = train_protocol.load_data(config.data)
    net = train_protocol.build_model(config.model, train.num_classes)
    spec = train_protocol.train_spec(config.train)
    convs = net.names_of("conv")
    if not convs:
        raise ConfigError(f"model {config.model.name!r} has no conv layers to study; "
                          f"choose a conv net such as lenet5")
    bad = [n for n in cfg.layers if n not in convs]
    if bad:
        raise ConfigError(f"minmax.layers: {bad} are not conv layers of "
                          f"{config.model.name}; its conv layers are {list(convs)}")
    lambdas, seeds = [float(v) for v in cfg.lambdas], [int(s) for s in cfg.seeds]
    readings = list(readings_lib.check(cfg.readings))
    k = len(seeds)
    # conditions: the shared baseline, then reading x lambda > 0; weights: one per reading
    groups = [(BASELINE, [0.0] * len(readings))]
    for j, reading in enumerate(readings):
        for lam in lambdas:
            if lam > 0:
                groups.append((condition(reading, lam),
                               [lam if jj == j else 0.0 for jj in range(len(readings))]))
    conditions = [c for c, _ in groups]
    model_seeds = tuple(s for _ in groups for s in seeds)
    model_weights = [w for _, w in groups for _ in seeds]

    # All readings' statistics of all models at init (epoch 0), from the state exactly
    # as fit() makes it (same seeds, keys and track), and after every epoch.
    tracker = readings_lib.step_tracker(readings)
    on_epoch = readings_lib.readings_tracker(readings, cfg.granularity, near=cfg.near,
                                             small=cfg.small)
    init_stats = on_epoch(-1, init_states(net, make_optimizer(spec), model_seeds,
                                          train.images.shape[1:], model_weights,
                                          step_tracker=tracker))
    penalty = readings_lib.penalties(readings, cfg.layers, cfg.granularity,
                                     stop_gradient=cfg.stop_gradient)
    log, close = logging_bar(ctx.log, spec.epochs, "minmax train", ctx.progress)
    try:
        states, history = fit(net, train, test, spec, model_seeds, reg_weights=model_weights,
                              regularizer=penalty, step_tracker=tracker,
                              checkpoint_dir=ctx.checkpoints, log=log, on_epoch=on_epoch)
    finally:
        close()
    params = [states["params"]]
    curves = [history]
    if cfg.reverse:  # the same seeds, PGD-AT, no penalty; the same trackers
        robust_spec = dataclasses.replace(spec, adversarial="pgd", adv_eps=float(cfg.adv_eps),
                                          adv_steps=int(cfg.adv_steps),
                                          adv_warmup=int(cfg.adv_warmup))
        log, close = logging_bar(lambda r: None, spec.epochs, "minmax PGD-AT", ctx.progress)
        try:
            robust, robust_history = fit(
                net, train, test, robust_spec, tuple(seeds), step_tracker=tracker,
                checkpoint_dir=_robust_context(ctx).checkpoints, log=log, on_epoch=on_epoch)
        finally:
            close()
        conditions = [*conditions, ROBUST]
        params.append(robust["params"])
        curves.append(robust_history)
    all_params = jax.tree.map(lambda *p: jnp.concatenate(p), *params)
    num_models = len(conditions) * k
    t_trained = time.perf_counter()

    n = cfg.images or test.images.shape[0]
    x, y = jnp.asarray(test.images[:n]), jnp.asarray(test.labels[:n])
    n = int(x.shape[0])
    eps = [float(e) for e in cfg.linf_eps]
    positive = [j for j, e in enumerate(eps) if e > 0]
    clean = np.asarray(_clean_correct(net, all_params, x, y, min(cfg.chunk, n)))
    attacks = {"fgsm": make_attack("fgsm"), "pgd": make_attack("pgd", steps=cfg.pgd_steps)}
    accuracy = np.zeros((len(ATTACKS), num_models, len(eps)))  # per model and eps
    per_image = np.zeros((len(ATTACKS), num_models, n))  # mean over eps > 0
    # A Python loop over the models calling the same compiled attack programs: the params
    # travel as arguments (model_logits_fn), so there is no recompile per model; vmapping
    # the models would mean reaching inside robust_accuracy's chunked evaluation.
    for i in iterate(range(num_models), "minmax attacks", ctx.progress):
        out = robust_accuracy(model_logits_fn(net, select({"params": all_params}, i)["params"]),
                              x, y,
                              attacks, {"linf": eps}, key=jax.random.PRNGKey(cfg.seed),
                              chunk=min(cfg.chunk, n))
        for a, name in enumerate(ATTACKS):
            correct = np.asarray(out[name]["correct"], np.float64)  # (E, N)
            accuracy[a, i] = correct.mean(1)
            per_image[a, i] = correct[positive].mean(0)
    t_attacked = time.perf_counter()

    def curve(key: str) -> np.ndarray:  # (models, epochs + 1), epoch 0 = init
        # The PGD-AT models start from the same init (and track) as the baseline's k
        # seeds: the init depends on the seed only.
        init = np.asarray(init_stats[key])
        starts = [init, init[:k]][:len(curves)]
        return np.concatenate([np.array([s0] + [r[key] for r in hist]).T
                               for s0, hist in zip(starts, curves)])

    evaluated = [r for r in history if "test_accuracy" in r]
    test_acc = np.concatenate([np.asarray(h[-1]["test_accuracy"]) for h in curves])
    acc_curve = np.concatenate([np.array([r["test_accuracy"] for r in h
                                          if "test_accuracy" in r]).T for h in curves])
    by = functools.partial(_by_condition, conditions=conditions, k=k)
    return {
        "model": config.model.name, "data": config.data.name, "epochs": spec.epochs,
        "lambdas": lambdas, "seeds": seeds, "readings": readings, "conditions": conditions,
        "granularity": cfg.granularity,
        "regularized_layers": list(cfg.layers or convs), "conv_layers": list(convs),
        "stop_gradient": bool(cfg.stop_gradient), "near": cfg.near, "small": cfg.small,
        "reverse": bool(cfg.reverse),
        "adversarial": {"eps": float(cfg.adv_eps), "steps": int(cfg.adv_steps),
                        "warmup": int(cfg.adv_warmup)} if cfg.reverse else None,
        "eps": eps, "images": n, "pgd_steps": cfg.pgd_steps,
        # Per condition: lists over seeds (and epochs / eps / images where named).
        "test_accuracy": by(test_acc),
        "test_accuracy_epochs": [r["epoch"] + 1 for r in evaluated],
        "test_accuracy_curve": by(acc_curve),
        # stats[reading][stat][layer][condition]: (seeds, epochs + 1)
        "stats": {r: {stat: {layer: by(curve(f"{r}/{stat}/{layer}")) for layer in convs}
                      for stat in readings_lib.STATS[r]} for r in readings},
        "clean_correct": by(clean.astype(np.int8)),  # (seeds, images)
        "robust_accuracy": {name: by(accuracy[a])  # (seeds, eps)
                            for a, name in enumerate(ATTACKS)},
        "robust_per_image": {name: by(per_image[a])  # (seeds, images)
                             for a, name in enumerate(ATTACKS)},
        "seconds": {"train": t_trained - t_start, "attacks": t_attacked - t_trained,
                    "total": time.perf_counter() - t_start},
    }
