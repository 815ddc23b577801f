"""The ``attacks`` lens's AutoAttack part: the standard and an adversarially trained model.

Per trained seed, :func:`attacks.autoattack.autoattack` (Croce & Hein 2020) at one linf
eps on the lens's test images, for the study's standard models and, with
``attacks.autoattack.robust_model``, for PGD-AT models (Madry et al. 2018) trained with
the same seeds and settings (``train.adversarial="pgd"`` at the same eps; checkpoints in
``<checkpoints>_adversarial`` so a rerun resumes). PGD with the lens's steps runs at the
same eps on both, so the claims can pair AutoAttack with PGD and the two trainings per
image and seed.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import jax
import ml_collections
import numpy as np

from attacks.autoattack import autoattack, members
from attacks.common import model_logits_fn
from attacks.evaluate import make_attack, robust_accuracy
from experiments.config import ConfigError
from experiments.intervals import over_seeds_and_images
from experiments.lens import Context
from experiments.progress import iterate
from experiments.train import protocol as train_protocol
from nets.train import select

MODELS = ("standard", "adversarial")


def defaults() -> ml_collections.ConfigDict:
    """The ``attacks.autoattack`` section: full reference budgets by default."""
    return ml_collections.ConfigDict({
        "enabled": True,
        "eps": 0.1,  # linf; digits' grey levels are 1/16 apart (see nets.train.TrainSpec)
        "version": "standard",
        "steps": 100,  # APGD and FAB iterations
        "targets": 9,  # target classes of APGD-T and FAB-T
        "queries": 5000,  # Square's query budget
        "robust_model": True,  # also train and attack PGD-AT models
        "adv_steps": 7,  # PGD-AT's inner steps (of 2.5 eps / steps)
        "adv_warmup": 3,  # epochs of eps ramp (without it PGD-AT can stall at chance)
    })


def check(cfg: ml_collections.ConfigDict) -> None:
    """ConfigErrors for an AutoAttack section that cannot run."""
    if not 0 < cfg.eps <= 1:
        raise ConfigError(f"attacks.autoattack.eps must be in (0, 1], got {cfg.eps}")
    if cfg.adv_warmup < 0:
        raise ConfigError(f"attacks.autoattack.adv_warmup must be >= 0, got {cfg.adv_warmup}")
    for key in ("steps", "targets", "queries", "adv_steps"):
        if cfg[key] < 1:
            raise ConfigError(f"attacks.autoattack.{key} must be >= 1, got {cfg[key]}")
    try:
        members(cfg.version, "linf")
    except ValueError as e:
        raise ConfigError(f"attacks.autoattack.version: {e}") from None


def settings(cfg: ml_collections.ConfigDict, num_classes: int) -> dict[str, dict]:
    """Member settings from the section (targets capped at the classes minus one)."""
    targets = min(cfg.targets, num_classes - 1)
    out = {"apgd-ce": {"steps": cfg.steps}, "apgd-dlr": {"steps": cfg.steps},
           "apgd-t": {"steps": cfg.steps, "n_target_classes": targets},
           "fab": {"steps": cfg.steps}, "fab-t": {"steps": cfg.steps, "n_target_classes": targets},
           "square": {"queries": cfg.queries}}
    used = {name for name, _, _ in members(cfg.version, "linf")}
    return {k: v for k, v in out.items() if k in used}


def robust_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The study's config with PGD-AT training at the AutoAttack eps."""
    c = copy.deepcopy(config)
    with c.unlocked():
        c.train.adversarial = "pgd"
        c.train.adv_eps = float(config.attacks.autoattack.eps)
        c.train.adv_steps = int(config.attacks.autoattack.adv_steps)
        c.train.adv_warmup = int(config.attacks.autoattack.adv_warmup)
    return c


def _robust_context(ctx: Context) -> Context:
    if ctx.checkpoints is None:
        return ctx
    path = Path(ctx.checkpoints)
    return Context(checkpoints=str(path.with_name(path.name + "_adversarial")),
                   progress=ctx.progress)


def run(config: ml_collections.ConfigDict, ctx: Context, x, y, standard) -> dict:
    """AutoAttack and PGD at ``eps`` on ``x, y`` for each model kind and seed.

    ``standard`` is (net, states) of the study's models. Returns per model kind the
    per-seed robust masks (S, N) of AutoAttack and of PGD, the robust accuracy after
    each member per seed, the seconds, and the models' clean test accuracy per seed.
    """
    cfg = config.attacks.autoattack
    if config.train.adversarial != "none":  # the study's models are the robust ones
        models = {"adversarial": standard}
    else:
        models = {"standard": standard}
    if cfg.robust_model and "standard" in models:
        net, states, _, _ = train_protocol.train_models(robust_config(config),
                                                              _robust_context(ctx))
        models["adversarial"] = (net, states)
    num_classes = int(np.asarray(standard[0].apply(
        {"params": select(standard[1], 0)["params"]}, x[:1])).shape[-1])
    member_settings = settings(cfg, num_classes)
    pgd = make_attack("pgd", steps=config.attacks.steps, restarts=config.attacks.restarts)
    seeds = list(config.train.seeds)
    out = {"eps": float(cfg.eps), "version": cfg.version, "settings": member_settings,
           "models": {}}
    for kind, (net, states) in models.items():
        aa, pg, after, secs, clean = [], [], [], 0.0, []
        for i in iterate(range(len(seeds)), f"autoattack ({kind})", ctx.progress):
            fn = model_logits_fn(net, select(states, i)["params"])
            key = jax.random.fold_in(jax.random.PRNGKey(config.attacks.seed), i)
            t0 = time.perf_counter()
            res = autoattack(fn, x, y, eps=cfg.eps, version=cfg.version,
                             settings=member_settings, key=key)
            secs += time.perf_counter() - t0
            aa.append(res.robust)
            after.append(res.robust_after)
            clean.append(float(res.clean_correct.mean()))
            pg.append(robust_accuracy(fn, x, y, {"pgd": pgd}, [cfg.eps], key=key,
                                      chunk=config.attacks.chunk or None)["pgd"]["correct"][0])
        aa_mask, pgd_mask = np.stack(aa).astype(np.int8), np.stack(pg).astype(np.int8)
        out["models"][kind] = {
            "training": train_protocol.training(
                (robust_config(config) if kind != "standard" and config.train.adversarial == "none"
                 else config).train),
            "clean_accuracy_per_seed": clean,
            "robust": aa_mask.tolist(), "pgd_robust": pgd_mask.tolist(),
            "robust_accuracy_interval": over_seeds_and_images(aa_mask).to_dict(),
            "pgd_robust_accuracy_interval": over_seeds_and_images(pgd_mask).to_dict(),
            "robust_after_per_seed": after, "seconds": secs,
        }
    return out
