"""The ``minmax`` task: does training lower the fuzziness of conv weights, and does the
Min-Max loss make a network more robust?

Seed 000 (Shen, Chen & Wang, arXiv 2011.13719) claims, in its abstract (the only part
available; the statistics are this project's formulation, see :mod:`minmax.stats`):
(a) during ordinary back-propagation training of LeNet the conv weights move away from
the centers of their intervals, i.e. their fuzziness falls; (b) a model with this
property is more robust to adversarial examples, so it can be put into the loss.

Protocol: ``minmax.lambdas`` (must include 0) x ``minmax.seeds`` models trained side by
side in ONE vmapped :func:`nets.train.fit` call with loss ``CE + lambda * F`` (checkpoints
in the run folder, so a rerun resumes); every conv layer's statistics are logged for all
models once per epoch (an epoch is one ``lax.scan``, so not every N steps) into
metrics.jsonl. Then, per model: clean test accuracy, per-layer statistics at init and at
the end, robust accuracy under FGSM and PGD (linf) over ``minmax.linf_eps``.

Verdicts, written plainly into report.md and results.json:

* (a) per conv layer of the lambda = 0 models, the change ``F_end - F_init``: "falls"
  when it is negative in every seed and by at least ``FLAT`` on average;
* (b) per lambda > 0 against lambda = 0: clean accuracy "similar" when the mean differs
  by at most ``minmax.clean_tolerance``; robustness = mean robust accuracy over the eps > 0
  of the grid; "more robust" when the difference exceeds ``2 x`` its standard error over
  seeds (sample std, ddof = 1). (b) holds when some lambda > 0 with similar clean accuracy
  is more robust under both FGSM and PGD.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import jax
import matplotlib.pyplot as plt
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from attacks.common import model_logits_fn
from attacks.evaluate import make_attack, robust_accuracy
from experiments import rundir as report
from experiments.config import ConfigError, sweepable
from experiments.rundir import RunDir
from experiments.train import protocol as experiment
from minmax import regularizer as reg_lib
from minmax import stats as stats_lib
from nets.train import fit, init_states, make_optimizer, select

ATTACKS = ("fgsm", "pgd")
TRACKED = ("fuzziness", "minmax_index", "near_ends", "small_fraction", "kurtosis")
FLAT = 0.01  # a mean change of fuzziness smaller than this counts as "no change"
GRANULARITY_TEXT = {
    "kernel": "one kh x kw slice of a conv kernel per (in, out) channel pair",
    "filter": "all weights of one output channel (kh x kw x in)",
    "layer": "the whole kernel of a conv layer",
}


@sweepable
def defaults() -> ml_collections.ConfigDict:
    """The ``train`` task's keys (minus ``train.seeds``) plus a ``minmax`` section."""
    c = experiment.defaults()
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
        "clean_tolerance": 0.02,  # |clean accuracy difference| counted as "similar"
    })
    return c


def _check(cfg: ml_collections.ConfigDict) -> None:
    """Raise :class:`ConfigError` before training for values we cannot run."""
    lambdas = [float(v) for v in cfg.lambdas]
    if 0.0 not in lambdas or any(v < 0 for v in lambdas) or len(set(lambdas)) != len(lambdas):
        raise ConfigError(f"minmax.lambdas must be distinct, >= 0 and include 0 (the "
                          f"unregularized baseline), got {tuple(cfg.lambdas)}")
    if not cfg.seeds:
        raise ConfigError("minmax.seeds must not be empty")
    if cfg.granularity not in stats_lib.GRANULARITIES:
        raise ConfigError(f"minmax.granularity {cfg.granularity!r}: choose one of "
                          f"{stats_lib.GRANULARITIES}")
    eps = list(cfg.linf_eps)
    if not eps or eps != sorted(eps) or eps[0] < 0 or eps[-1] > 1:
        raise ConfigError(f"minmax.linf_eps must be ascending in [0, 1], got {tuple(eps)}")
    if cfg.pgd_steps < 1 or cfg.chunk < 1 or cfg.images < 0:
        raise ConfigError("minmax.pgd_steps and minmax.chunk must be >= 1, images >= 0")


def lam_key(lam: float) -> str:
    """JSON key of a lambda: ``10.0`` -> ``"10"``."""
    return f"{float(lam):g}"


def summary(values: Sequence[float] | np.ndarray) -> dict:
    """``{"mean", "std", "per_seed"}`` (population std over seeds, as elsewhere)."""
    arr = np.asarray(values, np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std()), "per_seed": arr.tolist()}


def std_error(a: np.ndarray, b: np.ndarray) -> float:
    """Standard error of ``mean(a) - mean(b)`` over seeds (sample std; 0 for one seed)."""
    def var_of_mean(x: np.ndarray) -> float:
        return float(np.var(x, ddof=1)) / len(x) if len(x) > 1 else 0.0
    return math.sqrt(var_of_mean(a) + var_of_mean(b))


def run(config: ml_collections.ConfigDict, run_dir: RunDir, progress: bool = True) -> dict:
    """Train the lambda x seed grid, attack every model, write results.json and report.md."""
    cfg = config.minmax
    _check(cfg)
    t_start = time.perf_counter()
    train, test = experiment.load_data(config.data)
    net = experiment.build_model(config.model, train.num_classes)
    convs = net.names_of("conv")
    if not convs:
        raise ConfigError(f"model {config.model.name!r} has no conv layers to study")
    bad = [n for n in cfg.layers if n not in convs]
    if bad:
        raise ConfigError(f"minmax.layers: {bad} are not conv layers of "
                          f"{config.model.name}; its conv layers are {list(convs)}")
    lambdas, seeds = [float(v) for v in cfg.lambdas], list(cfg.seeds)
    model_seeds = tuple(s for _ in lambdas for s in seeds)  # model i = (lambda i // n, seed)
    model_lams = tuple(lam for lam in lambdas for _ in seeds)
    spec = experiment.train_spec(config.train)
    track = {"granularity": cfg.granularity, "near": cfg.near, "small": cfg.small}

    # The models' parameters at init, exactly as fit() makes them (same seeds and keys).
    init_params = init_states(net, make_optimizer(spec), model_seeds,
                              train.images.shape[1:], model_lams)["params"]
    stats_fn = reg_lib.stacked_stats(**track)
    init_stats = reg_lib.flatten(jax.device_get(stats_fn(init_params)))
    del init_params

    def on_epoch(epoch: int, states: dict) -> dict:  # = reg_lib.tracker, one compile less
        return reg_lib.flatten(jax.device_get(stats_fn(states["params"])))

    penalty = reg_lib.fuzziness_penalty(cfg.layers, cfg.granularity,
                                        stop_gradient=cfg.stop_gradient)
    states, history = fit(
        net, train, test, spec, model_seeds, reg_weights=model_lams, regularizer=penalty,
        checkpoint_dir=run_dir.checkpoints, log=run_dir.log,
        on_epoch=on_epoch, progress=progress,
    )
    t_trained = time.perf_counter()

    n = cfg.images or test.images.shape[0]
    x, y = test.images[:n], test.labels[:n]
    eps = [float(e) for e in cfg.linf_eps]
    attacks = {"fgsm": make_attack("fgsm"), "pgd": make_attack("pgd", steps=cfg.pgd_steps)}
    robust = np.zeros((len(ATTACKS), len(model_seeds), len(eps)))
    for i in tqdm(range(len(model_seeds)), desc="attacks", unit="model", disable=not progress):
        out = robust_accuracy(model_logits_fn(net, select(states, i)["params"]), x, y, attacks,
                              {"linf": eps}, key=jax.random.PRNGKey(cfg.seed), chunk=cfg.chunk)
        for a, name in enumerate(ATTACKS):
            robust[a, i] = out[name]["accuracy"]
    t_attacked = time.perf_counter()

    results = _results(config, lambdas, seeds, convs, eps, int(n), init_stats, history, robust)
    results["seconds"] = {"train": t_trained - t_start, "attacks": t_attacked - t_trained,
                          "total": time.perf_counter() - t_start}
    run_dir.write_json("results.json", results)
    run_dir.write_report(_report(config, results, history, init_stats, run_dir))
    return results


def _results(config: ml_collections.ConfigDict, lambdas: list[float], seeds: list[int],
             convs: Sequence[str], eps: list[float], n: int, init_stats: dict[str, list],
             history: list[dict], robust: np.ndarray) -> dict:
    """results.json: per lambda, mean/std/per-seed of every number, and the verdicts."""
    k = len(seeds)
    final = history[-1]
    positive = [i for i, e in enumerate(eps) if e > 0] or list(range(len(eps)))
    by_lambda = {}
    for li, lam in enumerate(lambdas):
        rows = slice(li * k, (li + 1) * k)
        entry = {
            "test_accuracy": summary(final["test_accuracy"][rows]),
            "layers": {layer: {stat: {
                "init": summary(init_stats[f"{stat}/{layer}"][rows]),
                "end": summary(final[f"{stat}/{layer}"][rows])} for stat in TRACKED}
                for layer in convs},
            "robust_accuracy": {}, "robust_mean": {},
        }
        for a, name in enumerate(ATTACKS):
            acc = robust[a, rows]  # (k, E)
            entry["robust_accuracy"][name] = {"mean": acc.mean(0).tolist(),
                                              "std": acc.std(0).tolist(),
                                              "per_seed": acc.tolist()}
            entry["robust_mean"][name] = summary(acc[:, positive].mean(1))
        by_lambda[lam_key(lam)] = entry
    return {
        "model": config.model.name, "data": config.data.name,
        "epochs": config.train.epochs, "lambdas": lambdas, "seeds": seeds,
        "granularity": config.minmax.granularity,
        "regularized_layers": list(config.minmax.layers or convs), "conv_layers": list(convs),
        "stop_gradient": config.minmax.stop_gradient,
        "eps": eps, "images": n, "pgd_steps": config.minmax.pgd_steps,
        "by_lambda": by_lambda,
        "verdict": {"a": verdict_a(by_lambda["0"], convs),
                    "b": verdict_b(by_lambda, lambdas, config.minmax.clean_tolerance)},
    }


def verdict_a(base: dict, convs: Sequence[str]) -> dict:
    """(a) Does the fuzziness of each conv layer fall during ordinary (lambda = 0) training?"""
    layers, falls = {}, []
    for layer in convs:
        f = base["layers"][layer]["fuzziness"]
        delta = np.asarray(f["end"]["per_seed"]) - np.asarray(f["init"]["per_seed"])
        fell = bool(np.all(delta < 0) and delta.mean() <= -FLAT)
        rose = bool(np.all(delta > 0) and delta.mean() >= FLAT)
        index = base["layers"][layer]["minmax_index"]
        layers[layer] = {"init": f["init"]["mean"], "end": f["end"]["mean"],
                         "index_init": index["init"]["mean"], "index_end": index["end"]["mean"],
                         "change": summary(delta), "seeds_falling": int(np.sum(delta < 0)),
                         "falls": fell, "rises": rose}
        falls.append(fell)
    answer = "yes" if all(falls) else "partly" if any(falls) else "no"
    k = len(delta)
    parts = [f"{layer} {v['init']:.3f} -> {v['end']:.3f} (change {v['change']['mean']:+.3f} "
             f"± {v['change']['std']:.3f}, falling in {v['seeds_falling']}/{k} seeds; "
             f"Min-Max index {v['index_init']:.3f} -> {v['index_end']:.3f})"
             for layer, v in layers.items()]
    lead = {"yes": "Yes: the fuzziness of every conv layer falls during ordinary training",
            "partly": "Partly: the fuzziness falls in "
                      + ", ".join(n for n, v in layers.items() if v["falls"]) + " only",
            "no": "No: the fuzziness of the conv weights does not fall during ordinary "
                  "training (lambda = 0); the data do not support claim (a) here"}[answer]
    return {"answer": answer, "layers": layers,
            "text": f"{lead}: " + "; ".join(parts) + f". (A fall counts when it is negative "
                    f"in every seed and at least {FLAT} on average.)"}


def verdict_b(by_lambda: dict, lambdas: Sequence[float], tolerance: float) -> dict:
    """(b) Are the regularized models more robust at similar clean accuracy?"""
    base = by_lambda["0"]
    per, supported = {}, []
    for lam in lambdas:
        if lam == 0:
            continue
        entry = by_lambda[lam_key(lam)]
        clean = entry["test_accuracy"]["mean"] - base["test_accuracy"]["mean"]
        row = {"clean_change": clean, "similar_clean": abs(clean) <= tolerance}
        for name in ATTACKS:
            a = np.asarray(entry["robust_mean"][name]["per_seed"])
            b = np.asarray(base["robust_mean"][name]["per_seed"])
            diff, se = float(a.mean() - b.mean()), std_error(a, b)
            call = ("more robust" if diff > 2 * se and diff > 0 else
                    "less robust" if diff < -2 * se and diff < 0 else "no clear difference")
            row[name] = {"change": diff, "std_error": se, "call": call}
        row["supports"] = row["similar_clean"] and all(
            row[n]["call"] == "more robust" for n in ATTACKS)
        per[lam_key(lam)] = row
        supported.append(row["supports"])
    answer = "yes" if any(supported) else "no"
    parts = []
    for lam, row in per.items():
        attacks = ", ".join(f"{n.upper()} {row[n]['change']:+.3f} ± {row[n]['std_error']:.3f} "
                            f"({row[n]['call']})" for n in ATTACKS)
        parts.append(f"lambda={lam}: clean accuracy {row['clean_change']:+.3f} "
                     f"({'similar' if row['similar_clean'] else 'not similar'}); mean robust "
                     f"accuracy over eps > 0 {attacks}")
    lead = ("Yes: a regularized model is more robust under both attacks at similar clean "
            "accuracy" if answer == "yes" else
            "No: no regularized model is clearly more robust under both FGSM and PGD at "
            "similar clean accuracy; the data do not support claim (b) here")
    notes = ""
    worse = [lam for lam, row in per.items() if any(row[n]["call"] == "less robust"
                                                     for n in ATTACKS)]
    if worse:
        notes += (f" The regularized model(s) lambda={', '.join(worse)} are clearly LESS "
                  "robust under at least one attack.")
    masked = [lam for lam, row in per.items()
              if row["pgd"]["call"] == "less robust" and row["fgsm"]["call"] != "less robust"]
    if masked:
        notes += (f" For lambda={', '.join(masked)} the one-step FGSM shows no loss of "
                  "robustness but the iterative PGD does: FGSM alone would overstate their "
                  "robustness (a pattern typical of gradient masking, not of robustness).")
    return {"answer": answer, "per_lambda": per,
            "text": f"{lead}. Against lambda=0: " + "; ".join(parts) + "." + notes
                    + " (Changes are differences of means over seeds ± their standard "
                    "error; 'more robust' needs a change above 2 standard errors.)"}


def _curves(history: list[dict], init_stats: dict[str, list], stat: str,
            convs: Sequence[str], lambdas: Sequence[float], k: int) -> plt.Figure:
    """One panel per conv layer: ``stat`` over epochs (0 = init), a line per lambda."""
    epochs = [0] + [r["epoch"] + 1 for r in history]
    fig, axes = plt.subplots(1, len(convs), figsize=(4.6 * len(convs), 3.4), squeeze=False)
    for ax, layer in zip(axes[0], convs):
        key = f"{stat}/{layer}"
        ys = np.array([init_stats[key]] + [r[key] for r in history]).T  # (S, epochs+1)
        for li, lam in enumerate(lambdas):
            block = ys[li * k:(li + 1) * k]
            m, s = block.mean(0), block.std(0)
            ax.plot(epochs, m, marker="o", ms=2.5, label=f"lambda={lam:g}")
            if k > 1:
                ax.fill_between(epochs, m - s, m + s, alpha=0.2)
        ax.set_title(layer)
        ax.set_xlabel("epoch (0 = init)")
        ax.set_ylabel(stat.replace("_", " "))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _robust_figure(results: dict) -> plt.Figure:
    fig, axes = plt.subplots(1, len(ATTACKS), figsize=(4.6 * len(ATTACKS), 3.4), squeeze=False)
    for ax, name in zip(axes[0], ATTACKS):
        for lam in results["lambdas"]:
            r = results["by_lambda"][lam_key(lam)]["robust_accuracy"][name]
            ax.errorbar(results["eps"], r["mean"], yerr=r["std"], marker="o", ms=3,
                        capsize=2, label=f"lambda={lam:g}")
        ax.set_title(name.upper())
        ax.set_xlabel("eps (linf)")
        ax.set_ylabel("robust accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _report(config: ml_collections.ConfigDict, results: dict, history: list[dict],
            init_stats: dict[str, list], run_dir: RunDir) -> str:
    convs, lambdas, k = results["conv_layers"], results["lambdas"], len(results["seeds"])
    by = results["by_lambda"]
    figs = {stat: run_dir.figure(f"{stat}_curves.png",
                                 _curves(history, init_stats, stat, convs, lambdas, k))
            for stat in ("fuzziness", "minmax_index")}
    evaluated = [r for r in history if "test_accuracy" in r]
    acc = np.array([r["test_accuracy"] for r in evaluated]).T
    fig_acc = run_dir.figure("test_accuracy.png", report.curves(
        [r["epoch"] + 1 for r in evaluated],
        {f"lambda={lam:g}": acc[i * k:(i + 1) * k] for i, lam in enumerate(lambdas)},
        "epoch", "test accuracy"))
    fig_rob = run_dir.figure("robust_accuracy.png", _robust_figure(results))

    def ms(d: dict, digits: int = 3) -> str:
        return report.fmt_mean_std(d["per_seed"], digits)

    stat_rows = []
    for lam in lambdas:
        e = by[lam_key(lam)]
        row = [f"{lam:g}", ms(e["test_accuracy"])]
        for layer in convs:
            for stat in ("fuzziness", "minmax_index"):
                s = e["layers"][layer][stat]
                row.append(f"{ms(s['init'])} → {ms(s['end'])}")
        stat_rows.append(row)
    stat_head = ["lambda", "clean accuracy"] + [f"{stat} {layer} (init → end)"
                                                for layer in convs
                                                for stat in ("F", "index")]
    sparse_rows = [[f"{lam:g}", layer] + [
        f"{ms(by[lam_key(lam)]['layers'][layer][stat]['init'])} → "
        f"{ms(by[lam_key(lam)]['layers'][layer][stat]['end'])}"
        for stat in ("near_ends", "small_fraction", "kurtosis")]
        for lam in lambdas for layer in convs]
    rob_text = ""
    for name in ATTACKS:
        rows = [[f"{lam:g}"] + [
            report.fmt_mean_std([s[j] for s in by[lam_key(lam)]["robust_accuracy"][name]
                                 ["per_seed"]], 3) for j in range(len(results["eps"]))]
            + [ms(by[lam_key(lam)]["robust_mean"][name])] for lam in lambdas]
        rob_text += f"### {name.upper()}\n\n" + report.table(
            ["lambda"] + [f"eps={e:g}" for e in results["eps"]] + ["mean over eps>0"],
            rows) + "\n"
    mc = config.minmax
    secs = results["seconds"]
    return (
        f"# Min-Max property and fuzziness of conv weights: {config.model.name} on "
        f"{config.data.name}\n\n"
        "Seed 000: Shen, Chen & Wang, *A Study on the Uncertainty of Convolutional Layers "
        "in DNNs* (arXiv 2011.13719). **Only the paper's abstract is available**; the "
        "statistics and the Min-Max loss below are this project's own formulation of it "
        "(`minmax/stats.py`, `../shared/DESIGN.md`), not the paper's equations.\n\n"
        f"Interval = {GRANULARITY_TEXT[results['granularity']]}; center distance "
        "d = |w - c| / r, Min-Max index = mean d (1: all weights at the ends); fuzziness "
        "F = mean H(mu)/ln 2 with membership mu = (w - lo)/(hi - lo) (0: all at the ends, "
        "1: all at the center). Loss = CE + lambda * mean F over the conv layers "
        f"{', '.join(results['regularized_layers'])} (interval ends held fixed in the "
        f"gradient: {results['stop_gradient']}).\n\n"
        f"Setup: {len(lambdas)} lambdas × {k} seeds = {len(lambdas) * k} models trained side "
        f"by side in one vmapped run ({config.train.epochs} epochs, {config.train.optimizer} "
        f"lr {config.train.learning_rate:g}, batch {config.train.batch_size}); statistics "
        "logged once per epoch (an epoch is one `lax.scan`; epoch 0 = init). Robust "
        f"accuracy on {results['images']} test images, FGSM and PGD ({results['pgd_steps']} "
        "steps, random start), linf; the same attack key for every model. "
        "± is the std over seeds. Wall-clock time on the machine that ran it (noisy when "
        "it is shared): "
        f"{secs['train']:.0f} s training, {secs['attacks']:.0f} s attacks.\n\n"
        "## Verdict\n\n"
        f"**(a) Does fuzziness fall during ordinary training (lambda = 0)?** "
        f"{results['verdict']['a']['text']}\n\n"
        f"**(b) Are the regularized models more robust at similar clean accuracy?** "
        f"{results['verdict']['b']['text']} (Clean accuracy counts as similar within "
        f"{mc.clean_tolerance:g}.)\n\n"
        "These are findings for this model, data set, optimizer and budget only.\n\n"
        "## Fuzziness and Min-Max index, init → end\n\n"
        + report.table(stat_head, stat_rows)
        + f"\n![fuzziness curves]({figs['fuzziness']})\n\n"
        f"![Min-Max index curves]({figs['minmax_index']})\n\n"
        f"![test accuracy]({fig_acc})\n\n"
        "## Robust accuracy\n\n" + rob_text
        + f"![robust accuracy]({fig_rob})\n\n"
        f"## Near the ends (d >= {mc.near:g}) and the sparsity view (|w| <= {mc.small:g} "
        "max|w|, excess kurtosis), init → end\n\n"
        + report.table(["lambda", "layer", "near ends", "small fraction", "kurtosis"],
                       sparse_rows)
    )
