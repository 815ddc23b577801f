"""The ``minmax`` lens's protocol: a lambda x seed grid trained with the Min-Max loss,
the conv statistics per epoch, and clean and robust accuracy per model and image.

Seed 000 (Shen, Chen & Wang, arXiv 2011.13719) claims, in its abstract (the only part
available; the statistics are this project's formulation, see :mod:`minmax.stats`):
(a) during ordinary training the conv weights move to the ends of their intervals, i.e.
their fuzziness falls; (b) a model with this property is more robust to adversarial
examples, so it can be put into the loss. The claims and their rules are in
:mod:`experiments.minmax.claims`; this module only measures.

Protocol: ``minmax.lambdas`` (must include 0) x ``minmax.seeds`` models trained side by
side in ONE vmapped :func:`nets.train.fit` call with loss ``CE + lambda * F`` (checkpoints
in ``ctx.checkpoints``, so a rerun resumes); every conv layer's statistics for all models
once per epoch (epoch 0 = init). Then, per model: clean correctness of each attacked
test image and its robust correctness under FGSM and PGD (linf) over ``minmax.linf_eps``,
with the same attack key for every model (common random numbers), so lambda > 0 and
lambda = 0 can be compared image by image.
"""

from __future__ import annotations

import functools
import time

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
from minmax import regularizer as reg_lib
from minmax import stats as stats_lib
from nets.evaluate import logits as net_logits
from nets.models import Net
from nets.train import fit, init_states, make_optimizer, select

ATTACKS = ("fgsm", "pgd")
TRACKED = ("fuzziness", "minmax_index", "near_ends", "small_fraction", "kurtosis")


@sweepable
def defaults() -> ml_collections.ConfigDict:
    """The ``train`` lens's keys (minus ``train.seeds``) plus a ``minmax`` section."""
    c = train_protocol.defaults()
    c.task = "minmax"
    del c.train["seeds"]  # the models are minmax.lambdas x minmax.seeds
    c.minmax = ml_collections.ConfigDict({
        "lambdas": (0.0, 10.0, 100.0),  # weights of the fuzziness penalty; must include 0
        "seeds": (0, 1, 2),  # seeds per lambda (init and data order)
        "granularity": "kernel",  # kernel | filter | layer: what one interval is
        "layers": (),  # conv layers penalized; empty = all (statistics: always all)
        "stop_gradient": True,  # hold interval ends fixed in the penalty's gradient
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


def _by_lambda(values: np.ndarray, lambdas: list[float], k: int) -> dict[str, list]:
    """Split the model axis (lambda-major, k seeds per lambda) of ``values`` by lambda."""
    return {float_key(lam): values[i * k:(i + 1) * k].tolist() for i, lam in enumerate(lambdas)}


def run(config: ml_collections.ConfigDict, ctx: Context) -> dict:
    """Train the lambda x seed grid, attack every model; per-seed and per-image results.

    Model ``i`` is lambda ``lambdas[i // k]`` with seed ``seeds[i % k]`` (k seeds).
    """
    cfg = config.minmax
    _check(cfg)
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
    k = len(seeds)
    model_seeds = tuple(s for _ in lambdas for s in seeds)
    model_lams = tuple(lam for lam in lambdas for _ in seeds)

    # The statistics of all models at init (epoch 0), from the params exactly as fit()
    # makes them (same seeds and keys), and after every epoch: one compiled function.
    on_epoch = reg_lib.tracker(cfg.granularity, near=cfg.near, small=cfg.small)
    init_stats = on_epoch(-1, init_states(net, make_optimizer(spec), model_seeds,
                                          train.images.shape[1:], model_lams))

    penalty = reg_lib.fuzziness_penalty(cfg.layers, cfg.granularity,
                                        stop_gradient=cfg.stop_gradient)
    log, close = logging_bar(ctx.log, spec.epochs, "minmax train", ctx.progress)
    try:
        states, history = fit(net, train, test, spec, model_seeds, reg_weights=model_lams,
                              regularizer=penalty, checkpoint_dir=ctx.checkpoints, log=log,
                              on_epoch=on_epoch)
    finally:
        close()
    t_trained = time.perf_counter()

    n = cfg.images or test.images.shape[0]
    x, y = jnp.asarray(test.images[:n]), jnp.asarray(test.labels[:n])
    n = int(x.shape[0])
    eps = [float(e) for e in cfg.linf_eps]
    positive = [j for j, e in enumerate(eps) if e > 0]
    clean = np.asarray(_clean_correct(net, states["params"], x, y, min(cfg.chunk, n)))
    attacks = {"fgsm": make_attack("fgsm"), "pgd": make_attack("pgd", steps=cfg.pgd_steps)}
    accuracy = np.zeros((len(ATTACKS), len(model_seeds), len(eps)))  # per model and eps
    per_image = np.zeros((len(ATTACKS), len(model_seeds), n))  # mean over eps > 0
    # A Python loop over the models calling the same compiled attack programs: the params
    # travel as arguments (model_logits_fn), so there is no recompile per model; vmapping
    # the models would mean reaching inside robust_accuracy's chunked evaluation.
    for i in iterate(range(len(model_seeds)), "minmax attacks", ctx.progress):
        out = robust_accuracy(model_logits_fn(net, select(states, i)["params"]), x, y,
                              attacks, {"linf": eps}, key=jax.random.PRNGKey(cfg.seed),
                              chunk=min(cfg.chunk, n))
        for a, name in enumerate(ATTACKS):
            correct = np.asarray(out[name]["correct"], np.float64)  # (E, N)
            accuracy[a, i] = correct.mean(1)
            per_image[a, i] = correct[positive].mean(0)
    t_attacked = time.perf_counter()

    def curve(key: str) -> np.ndarray:  # (models, epochs + 1), epoch 0 = init
        return np.array([init_stats[key]] + [r[key] for r in history]).T

    evaluated = [r for r in history if "test_accuracy" in r]
    return {
        "model": config.model.name, "data": config.data.name, "epochs": spec.epochs,
        "lambdas": lambdas, "seeds": seeds, "granularity": cfg.granularity,
        "regularized_layers": list(cfg.layers or convs), "conv_layers": list(convs),
        "stop_gradient": bool(cfg.stop_gradient), "near": cfg.near, "small": cfg.small,
        "eps": eps, "images": n, "pgd_steps": cfg.pgd_steps,
        # Per lambda: lists over seeds (and epochs / eps / images where named).
        "test_accuracy": _by_lambda(np.asarray(history[-1]["test_accuracy"]), lambdas, k),
        "test_accuracy_epochs": [r["epoch"] + 1 for r in evaluated],
        "test_accuracy_curve": _by_lambda(
            np.array([r["test_accuracy"] for r in evaluated]).T, lambdas, k),
        "stats": {stat: {layer: _by_lambda(curve(f"{stat}/{layer}"), lambdas, k)
                         for layer in convs} for stat in TRACKED},
        "clean_correct": _by_lambda(clean.astype(np.int8), lambdas, k),  # (seeds, images)
        "robust_accuracy": {name: _by_lambda(accuracy[a], lambdas, k)  # (seeds, eps)
                            for a, name in enumerate(ATTACKS)},
        "robust_per_image": {name: _by_lambda(per_image[a], lambdas, k)  # (seeds, images)
                             for a, name in enumerate(ATTACKS)},
        "seconds": {"train": t_trained - t_start, "attacks": t_attacked - t_trained,
                    "total": time.perf_counter() - t_start},
    }
