"""The ``attacks`` task: robust accuracy curves of a trained model for each input attack.

results.json holds ``robust_accuracy[attack][eps]`` (mean over the trained seeds) with
the per-seed values, the median minimal eps per attack, and timings; report.md the table
and the plot (linf attacks and l2 attacks on their own axes).
"""

from __future__ import annotations

import time

import jax
import matplotlib.pyplot as plt
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from attacks.common import model_logits_fn
from attacks.evaluate import ATTACKS, make_attack, robust_accuracy
from experiments import rundir as report
from experiments.config import ConfigError, sweepable
from experiments.rundir import RunDir
from experiments.train import protocol as experiment
from nets.train import select

ITERATIVE = ("bim", "pgd", "mifgsm", "pgd_l2")


@sweepable
def defaults() -> ml_collections.ConfigDict:
    """The ``train`` task's keys plus an ``attacks`` section."""
    c = experiment.defaults()
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
        "images": 0,  # test images attacked; 0 = all
        "chunk": 256,  # images per jitted call (bounds memory)
        "seed": 0,
    })
    return c


def build_attacks(cfg: ml_collections.ConfigDict) -> dict:
    """The configured attacks with their settings; unknown names are a ConfigError."""
    bad = [n for n in cfg.names if n not in ATTACKS]
    if bad:
        raise ConfigError(f"attacks.names: unknown {bad}; choose from {sorted(ATTACKS)}")
    if any(e < 0 for e in (*cfg.linf_eps, *cfg.l2_eps)) or max(cfg.linf_eps, default=0) > 1:
        raise ConfigError("attacks eps must be >= 0, and linf eps <= 1 for inputs in [0, 1]")
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


def run(config: ml_collections.ConfigDict, run_dir: RunDir, progress: bool = True) -> dict:
    cfg = config.attacks
    attacks = build_attacks(cfg)
    net, states, _, (_, test) = experiment.train_models(config, run_dir, progress)
    n = cfg.images or test.images.shape[0]
    x, y = test.images[:n], test.labels[:n]
    grids = {"linf": sorted(cfg.linf_eps), "l2": sorted(cfg.l2_eps)}
    seeds = list(config.train.seeds)
    per_seed, seconds = {name: [] for name in attacks}, {name: 0.0 for name in attacks}
    min_eps = {name: [] for name in attacks}
    bar = tqdm(total=len(attacks) * len(seeds), desc="attacks", unit="attack",
               disable=not progress)
    for i in range(len(seeds)):
        fn = model_logits_fn(net, select(states, i)["params"])
        for name, attack in attacks.items():
            t0 = time.perf_counter()
            out = robust_accuracy(fn, x, y, {name: attack}, grids, chunk=cfg.chunk,
                                  key=jax.random.fold_in(jax.random.PRNGKey(cfg.seed), i))
            seconds[name] += time.perf_counter() - t0
            per_seed[name].append(out[name]["accuracy"])
            min_eps[name].append(np.median(out[name]["min_eps"]))
            bar.set_postfix_str(name)
            bar.update(1)
    bar.close()

    results = {"images": int(n), "seeds": seeds, "eps": grids, "robust_accuracy": {},
               "robust_accuracy_std": {}, "robust_accuracy_per_seed": {},
               "median_min_eps": {}, "norm": {}, "seconds": seconds}
    for name, attack in attacks.items():
        acc = np.asarray(per_seed[name])  # (S, E)
        eps = grids[attack.norm]
        results["norm"][name] = attack.norm
        results["robust_accuracy"][name] = {f"{e:g}": float(a) for e, a in zip(eps, acc.mean(0))}
        results["robust_accuracy_std"][name] = {f"{e:g}": float(s) for e, s in zip(eps, acc.std(0))}
        results["robust_accuracy_per_seed"][name] = acc.tolist()
        results["median_min_eps"][name] = float(np.mean(min_eps[name]))
    run_dir.write_json("results.json", results)
    run_dir.write_report(_report(config, results, attacks, run_dir))
    return results


def _report(config, results: dict, attacks: dict, run_dir: RunDir) -> str:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, norm in zip(axes, ("linf", "l2")):
        for name, attack in attacks.items():
            if attack.norm != norm:
                continue
            acc = np.asarray(results["robust_accuracy_per_seed"][name])
            eps = results["eps"][norm]
            ax.errorbar(eps, acc.mean(0), yerr=acc.std(0) if len(acc) > 1 else None,
                        marker="o", ms=3, capsize=2, label=name)
        ax.set_xlabel(f"eps ({norm})")
        ax.set_ylabel("robust accuracy")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    fig_name = run_dir.figure("robust_accuracy.png", fig)
    text = (f"# Input attacks: {config.model.name} on {config.data.name}\n\n"
            f"Untargeted robust accuracy on {results['images']} test images, mean over "
            f"{len(results['seeds'])} trained seed(s); iterative attacks use "
            f"{config.attacks.steps} steps. DeepFool and CW-L2 find minimal perturbations; "
            f"an example counts as broken at eps when theirs is at most eps.\n\n")
    for norm in ("linf", "l2"):
        names = [n for n, a in attacks.items() if a.norm == norm]
        if not names:
            continue
        eps = results["eps"][norm]
        rows = [[name] + [f"{results['robust_accuracy'][name][f'{e:g}']:.3f}" for e in eps]
                + [f"{results['median_min_eps'][name]:.3g}", f"{results['seconds'][name]:.1f}"]
                for name in names]
        text += f"## {norm}\n\n" + report.table(
            ["attack"] + [f"eps={e:g}" for e in eps] + ["median min eps", "seconds"], rows) + "\n"
    return text + f"![robust accuracy]({fig_name})\n"
