"""The ``weights`` lens's protocol: the trained seeds -> internal perturbation sweep -> results.

Reproduces the protocol of Cheney, Schrimpf & Kreiman (arXiv 1703.08245) on this
project's networks, on every trained seed: every weighted layer x perturbation kind x
target (weights, biases) x p in {0, 0.1, ..., 1} x trials, top-1 (and top-k) accuracy.
All S seeds and all perturbations of one layer go through one jitted call
(:func:`attacks.weights_sweep.sweep` with ``stacked=True``).

results (all per seed, in the order of ``seeds``):

* ``clean``: ``{"top1": [S], "topk": [S]}``, the unperturbed networks;
* ``accuracy[perturbation][layer][float_key(p)]``: top-1 accuracy, (S, trials);
* ``per_seed[perturbation][layer]``: trial means, each (S, len(p)) in the order of
  ``p``: ``top1``, ``relative`` (top1 / clean top1), ``margin_left``
  ((top1 - chance) / (clean top1 - chance)) and ``topk`` (when there are more than k
  classes);
* ``first_conv``, ``top_layer``, ``output_layer``: the layers the claims are about.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from attacks import weights_sweep
from attacks.weights import KINDS, TARGETS
from experiments.config import ConfigError, sweepable
from experiments.lens import Context
from experiments.progress import iterate
from experiments.rundir import float_key
from experiments.train import protocol as experiment
from nets.train import select

TOP_K = 5  # top-k accuracy alongside top-1 (k = min(5, classes))


@sweepable
def defaults() -> ml_collections.ConfigDict:
    """The ``train`` task's keys plus a ``weights`` section (every key this lens reads)."""
    c = experiment.defaults()
    c.task = "weights"
    c.weights = ml_collections.ConfigDict({
        "trials": 10,  # random perturbations per (seed, layer, kind, p)
        "p": weights_sweep.P_GRID,  # perturbation strengths
        "kinds": KINDS,
        "targets": ("weights", "biases"),  # entrywise kinds act on each separately
        "layers": (),  # empty: every conv and dense layer
        "seed": 0,  # base key of the perturbations (folded with each training seed)
        "chunk": 32,  # evaluation images per step; memory ~ p x trials x chunk x activations
    })
    return c


def _unknown(key: str, values, choices: tuple[str, ...]) -> None:
    bad = [v for v in values if v not in choices]
    if bad:
        raise ConfigError(f"weights.{key}: unknown {bad}; choose from {choices}")


def check(config: ml_collections.ConfigDict) -> tuple[str, ...]:
    """Raise :class:`ConfigError` for a ``weights`` value we cannot run, before any
    training; return the layers to sweep."""
    cfg = config.weights
    _unknown("kinds", cfg.kinds, KINDS)
    _unknown("targets", cfg.targets, tuple(TARGETS))
    if not cfg.kinds or not cfg.p or not cfg.targets:
        raise ConfigError("weights.kinds, weights.targets and weights.p must not be empty")
    if any(not 0.0 <= float(p) <= 1.0 for p in cfg.p):
        raise ConfigError(f"weights.p must lie in [0, 1], got {tuple(cfg.p)}")
    if len({float_key(p) for p in cfg.p}) != len(cfg.p):
        raise ConfigError(f"weights.p has repeated values: {tuple(cfg.p)}")
    if cfg.trials < 1 or cfg.chunk < 1:
        raise ConfigError("weights.trials and weights.chunk must be >= 1")
    # Layer names do not depend on the number of classes: build the net without data.
    all_layers = weights_sweep.layer_targets(experiment.build_model(config.model, 10))
    _unknown("layers", cfg.layers, all_layers)
    return tuple(cfg.layers) or all_layers


def _round(x) -> list:
    """Accuracies as lists with 6 decimals (they are counts / n; keeps results.json short)."""
    return np.round(np.asarray(x, np.float64), 6).tolist()


def run(config: ml_collections.ConfigDict, ctx: Context) -> dict:
    """Restore (or train) the seeds and sweep every perturbation on all of them."""
    cfg = config.weights
    layers = check(config)
    ps = tuple(float(p) for p in cfg.p)
    seeds = [int(s) for s in config.train.seeds]
    t0 = time.perf_counter()
    net, states, _history, (_train, test) = experiment.train_models(config, ctx)
    t_train = time.perf_counter() - t0
    params = states["params"]  # leaves stacked along a leading seed axis
    k = min(TOP_K, test.num_classes)
    chance = 1.0 / test.num_classes
    clean1, cleank = weights_sweep.clean_accuracy(net, params, test.images, test.labels,
                                                  chunk=cfg.chunk, k=k, stacked=True)
    # One key per seed: a seed's perturbations do not depend on which other seeds run.
    keys = jnp.stack([jax.random.fold_in(jax.random.PRNGKey(cfg.seed), s) for s in seeds])

    t1 = time.perf_counter()
    accuracy: dict = {}
    per_seed: dict = {}
    for layer in iterate(layers, "weights", ctx.progress):
        # One jitted call per layer: every perturbation of it, every seed (the trial keys
        # depend only on the setting and seed, so the numbers are those of one big sweep).
        swept = weights_sweep.sweep(
            net, params, test.images, test.labels, keys, ps=ps, trials=cfg.trials,
            kinds=cfg.kinds, targets=cfg.targets, layers=(layer,), chunk=cfg.chunk, k=k,
            stacked=True)
        for name, by_layer in swept.items():
            top1 = by_layer[layer]["top1"]  # (S, P, T)
            mean1 = top1.mean(-1)  # (S, P)
            accuracy.setdefault(name, {})[layer] = {
                float_key(p): _round(top1[:, i]) for i, p in enumerate(ps)}
            with np.errstate(divide="ignore", invalid="ignore"):  # a seed at 0 or chance
                summary = {
                    "top1": _round(mean1),
                    "relative": _round(mean1 / clean1[:, None]),
                    "margin_left": _round((mean1 - chance) / (clean1[:, None] - chance)),
                }
            if test.num_classes > k:
                summary["topk"] = _round(by_layer[layer]["topk"].mean(-1))
            per_seed.setdefault(name, {})[layer] = summary
            ctx.log({"perturbation": name, "layer": layer, "top1_mean": _round(mean1.mean(0))})
    t_sweep = time.perf_counter() - t1

    weighted = weights_sweep.layer_targets(net)
    first = select(params, 0)
    return {
        "model": config.model.name, "data": config.data.name, "seeds": seeds,
        "num_classes": test.num_classes, "chance": chance,
        "test_images": int(test.images.shape[0]), "trials": cfg.trials, "p": list(ps),
        "k": k, "layers": list(layers),
        "first_conv": next(iter(net.names_of("conv")), None),
        # "top layer": the last weighted layer below the output layer (fc2 in LeNet-5).
        "top_layer": weighted[-2] if len(weighted) > 1 else weighted[-1],
        "output_layer": weighted[-1],
        "layer_sizes": {layer: {leaf: int(np.size(v)) for leaf, v in first[layer].items()}
                        for layer in layers},
        "layer_rms": {layer: {leaf: np.sqrt(np.mean(np.square(np.asarray(v)),
                                                    axis=tuple(range(1, np.ndim(v))))).tolist()
                              for leaf, v in params[layer].items()} for layer in layers},
        "clean": {"top1": clean1.tolist(), "topk": cleank.tolist()},
        "accuracy": accuracy,
        "per_seed": per_seed,
        "train_seconds": t_train,
        "sweep_seconds": t_sweep,
    }
