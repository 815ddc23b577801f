"""The ``attacks`` lens's protocol: robust accuracy curves of the trained seeds under each
input attack, per image.

For every trained seed and every attack, :func:`attacks.evaluate.robust_accuracy` gives
the per-image robust-correct mask over the attack's eps grid (linf or l2). The results
hold, per attack and eps, the robust accuracy (mean over seeds; per seed) with its 95%
interval over seeds and images, the median minimal eps, the timings, and the per-image
masks of the attacks the claims compare (:data:`PER_IMAGE`), shape (seeds, eps, images).
"""

from __future__ import annotations

import time

import jax
import ml_collections
import numpy as np

from attacks.common import model_logits_fn
from attacks.evaluate import ATTACKS, Attack, make_attack, robust_accuracy
from experiments.attacks import ensemble
from experiments.config import ConfigError, sweepable
from experiments.intervals import over_seeds_and_images
from experiments.lens import Context
from experiments.progress import iterate
from experiments.rundir import float_key
from experiments.train import protocol as train_protocol
from nets.train import select

ITERATIVE = ("bim", "pgd", "mifgsm", "pgd_l2")
# Attacks whose per-image masks are kept in results.json (the claims pair them); the
# others keep their per-seed accuracy and interval only, so results.json stays small.
PER_IMAGE = ("fgsm", "pgd")


@sweepable
def defaults() -> ml_collections.ConfigDict:
    """The ``train`` task's keys plus an ``attacks`` section."""
    c = train_protocol.defaults()
    c.task = "attacks"
    c.attacks = ml_collections.ConfigDict({
        "names": ("fgsm", "bim", "pgd", "mifgsm", "pgd_l2", "deepfool", "cw_l2"),
        "linf_eps": (0.0, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3),
        "l2_eps": (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0),
        "steps": 20,  # iterations of bim, pgd, mifgsm, pgd_l2
        "restarts": 1,  # pgd random restarts
        "deepfool_steps": 50,
        "cw_steps": 100,
        "cw_search_steps": 5,
        "images": 0,  # test images attacked (the first ones); 0 = all
        # images per jitted call (bounds memory; results do not depend on it);
        # 0 = attacks.evaluate's choice: 16 on CPU (fastest there), all elsewhere
        "chunk": 0,
        "seed": 0,  # random starts: seed i's key is fold_in(PRNGKey(seed), i)
        # AutoAttack at one linf eps, on the standard and on PGD-AT models (ensemble.py)
        "autoattack": ensemble.defaults(),
    })
    return c


def _check(cfg: ml_collections.ConfigDict) -> None:
    """ConfigErrors for settings that cannot run, raised before any training."""
    bad = [n for n in cfg.names if n not in ATTACKS]
    if bad:
        raise ConfigError(f"attacks.names: unknown {bad}; choose from {sorted(ATTACKS)}")
    for key in ("linf_eps", "l2_eps"):
        grid = [float(e) for e in cfg[key]]
        if any(e < 0 for e in grid):
            raise ConfigError(f"attacks.{key}: eps must be >= 0, got {tuple(grid)}")
        if len({float_key(e) for e in grid}) < len(grid):
            raise ConfigError(f"attacks.{key}: repeated eps in {tuple(grid)}; give each once")
    if max(cfg.linf_eps, default=0) > 1:
        raise ConfigError("attacks.linf_eps: eps must be <= 1 for inputs in [0, 1]")
    if cfg.images == 1 or cfg.images < 0:
        raise ConfigError(f"attacks.images: give 0 (all test images) or at least 2, "
                          f"got {cfg.images}")
    for key in ("steps", "restarts", "deepfool_steps", "cw_steps", "cw_search_steps"):
        if cfg[key] < 1:
            raise ConfigError(f"attacks.{key} must be >= 1, got {cfg[key]}")
    if cfg.chunk < 0:
        raise ConfigError(f"attacks.chunk must be >= 1, or 0 for the default; got {cfg.chunk}")
    ensemble.check(cfg.autoattack)


def build_attacks(cfg: ml_collections.ConfigDict) -> dict[str, Attack]:
    """The configured attacks with their settings; bad settings are a ConfigError."""
    _check(cfg)
    out = {}
    for name in cfg.names:
        kw = {}
        if name in ITERATIVE:
            kw["steps"] = cfg.steps
        if name in ("pgd", "pgd_l2"):
            kw["restarts"] = cfg.restarts
        if name.startswith("deepfool"):
            kw["steps"] = cfg.deepfool_steps
        if name == "cw_l2":
            kw.update(steps=cfg.cw_steps, search_steps=cfg.cw_search_steps)
        out[name] = make_attack(name, **kw)
    return out


def run(config: ml_collections.ConfigDict, ctx: Context) -> dict:
    """Attack the first ``attacks.images`` test images of every trained seed.

    Seeds go through a Python loop over ONE compiled program per attack (the parameters
    travel as jit arguments: no recompile per seed). vmap over the stacked models was
    measured 5-17x slower on XLA:CPU (a convolution with a batched kernel becomes a
    grouped convolution): FGSM 0.9 s vs 15.7 s, PGD-20 13 s vs 77 s (3 seeds, 200
    images, 8 eps, loaded 2-core CPU).
    """
    cfg = config.attacks
    attacks = build_attacks(cfg)
    net, states, _, (_, test) = train_protocol.train_models(config, ctx)
    n = min(cfg.images or test.images.shape[0], test.images.shape[0])
    x, y = test.images[:n], test.labels[:n]
    grids = {"linf": sorted(float(e) for e in cfg.linf_eps),
             "l2": sorted(float(e) for e in cfg.l2_eps)}
    seeds = list(config.train.seeds)
    correct = {name: [] for name in attacks}  # name -> per seed (E, N) bool
    min_eps = {name: [] for name in attacks}  # name -> per seed median minimal eps
    seconds = {name: 0.0 for name in attacks}
    pairs = [(i, name) for i in range(len(seeds)) for name in attacks]
    for i, name in iterate(pairs, "attacks", ctx.progress):
        fn = model_logits_fn(net, select(states, i)["params"])
        t0 = time.perf_counter()
        out = robust_accuracy(fn, x, y, {name: attacks[name]}, grids, chunk=cfg.chunk or None,
                              key=jax.random.fold_in(jax.random.PRNGKey(cfg.seed), i))[name]
        seconds[name] += time.perf_counter() - t0
        correct[name].append(out["correct"])
        min_eps[name].append(float(np.median(out["min_eps"])))

    results = {"images": int(n), "seeds": seeds, "eps": grids,
               "norm": {name: a.norm for name, a in attacks.items()},
               "robust_accuracy": {}, "robust_accuracy_per_seed": {},
               "robust_accuracy_interval": {}, "median_min_eps": {},
               "median_min_eps_per_seed": min_eps, "correct": {}, "seconds": seconds}
    for name, attack in attacks.items():
        mask = np.stack(correct[name]).astype(np.int8)  # (S, E, N)
        acc = mask.mean(-1)  # (S, E)
        keys = [float_key(e) for e in grids[attack.norm]]
        results["robust_accuracy"][name] = dict(zip(keys, acc.mean(0).tolist()))
        results["robust_accuracy_per_seed"][name] = acc.tolist()
        results["robust_accuracy_interval"][name] = {
            k: over_seeds_and_images(mask[:, j]).to_dict() for j, k in enumerate(keys)}
        results["median_min_eps"][name] = float(np.mean(min_eps[name]))
        if name in PER_IMAGE:
            results["correct"][name] = mask.tolist()
    if cfg.autoattack.enabled:
        results["autoattack"] = ensemble.run(config, ctx, x, y, (net, states))
    return results
