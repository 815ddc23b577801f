"""The ``weights`` task: train (or restore) a network, sweep internal perturbations, report.

Reproduces the protocol of Cheney, Schrimpf & Kreiman (arXiv 1703.08245) on this
project's networks: every weighted layer x perturbation kind x p in {0, 0.1, ..., 1} x
trials, top-1 (and top-5) accuracy absolute and relative to the unperturbed network,
mean and std over trials. Writes ``results.json`` (``accuracy[perturbation][layer][p]``),
``report.md`` with one figure per perturbation, and a statement comparing the result
with the paper's headline (removing 70% of the weights of a top conv or dense layer
costs under 30% of performance; the same in the first conv layer leaves it near chance).
"""

from __future__ import annotations

import time

import jax
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from attacks import weights_sweep
from attacks.weights import KINDS, TARGETS
from experiments import rundir as report_lib
from experiments.config import ConfigError, sweepable
from experiments.rundir import RunDir
from experiments.train import protocol as experiment
from nets.train import select

HEADLINE = "synapse_knockout/weights"  # the paper's "randomly removing weight connections"
HEADLINE_P = 0.7
TOP_LOSS = 0.30  # paper: "less than a 30% decrease" in the top layers
NEAR_CHANCE = 0.10  # "near chance": under 10% of the clean margin over chance is left


@sweepable
def defaults() -> ml_collections.ConfigDict:
    """The ``train`` task's keys plus a ``weights`` section (every key this task reads)."""
    c = experiment.defaults()
    c.task = "weights"
    c.weights = ml_collections.ConfigDict({
        "trials": 10,  # random perturbations per (layer, kind, p)
        "p": weights_sweep.P_GRID,  # perturbation strengths
        "kinds": KINDS,
        "targets": ("weights", "biases"),  # entrywise kinds act on each separately
        "layers": (),  # empty: every conv and dense layer
        "model": 0,  # which of train.seeds to perturb
        "seed": 0,  # base key of the perturbations
        "chunk": 128,  # evaluation images per step (bounds memory)
    })
    return c


def _unknown(key: str, values, choices: tuple[str, ...]) -> None:
    bad = [v for v in values if v not in choices]
    if bad:
        raise ConfigError(f"weights.{key}: unknown {bad}; choose from {choices}")


def _check(cfg: ml_collections.ConfigDict, seeds: int) -> None:
    """Raise :class:`ConfigError` for a ``weights`` value we cannot run (before training,
    so a typo costs nothing). Layer names are checked once the network is built."""
    _unknown("kinds", cfg.kinds, KINDS)
    _unknown("targets", cfg.targets, tuple(TARGETS))
    if not cfg.kinds or not cfg.p:
        raise ConfigError("weights.kinds and weights.p must not be empty")
    if any(not 0.0 <= float(p) <= 1.0 for p in cfg.p):
        raise ConfigError(f"weights.p must lie in [0, 1], got {tuple(cfg.p)}")
    if cfg.trials < 1 or cfg.chunk < 1:
        raise ConfigError("weights.trials and weights.chunk must be >= 1")
    if not 0 <= cfg.model < seeds:
        raise ConfigError(f"weights.model={cfg.model} but only {seeds} model(s) are trained "
                          f"(train.seeds)")


def p_key(p: float) -> str:
    """JSON key of a strength: ``0.7`` -> ``"0.7"``, ``1`` -> ``"1.0"``."""
    return str(round(float(p), 6))


def summarize(acc: np.ndarray, clean: float, ps: tuple[float, ...]) -> dict[str, dict]:
    """Per-p mean and std over trials of ``acc`` (P, T), absolute and relative to ``clean``."""
    rel = acc / clean if clean > 0 else np.full_like(acc, np.nan)
    return {p_key(p): {"mean": float(acc[i].mean()), "std": float(acc[i].std()),
                       "relative_mean": float(rel[i].mean()), "relative_std": float(rel[i].std()),
                       "trials": acc[i].tolist()}
            for i, p in enumerate(ps)}


def compare_with_paper(accuracy: dict, layers: tuple[str, ...], first_conv: str | None,
                       ps: tuple[float, ...], clean: float, chance: float) -> dict | None:
    """The paper's headline measured here: synapse knockout of the weights at p closest
    to 0.7; the first conv layer vs the others ("top" layers: every later conv or dense)."""
    if HEADLINE not in accuracy:
        return None
    p = min(ps, key=lambda q: abs(q - HEADLINE_P))
    at = {layer: accuracy[HEADLINE][layer][p_key(p)] for layer in layers}
    fragile = min(layers, key=lambda layer: at[layer]["relative_mean"])
    out = {"perturbation": HEADLINE, "p": p, "most_fragile": fragile,
           "loss": {layer: 1 - at[layer]["relative_mean"] for layer in layers}}
    top = [layer for layer in layers if layer != first_conv]
    out["top_layers"] = top
    out["top_over_30pct"] = [layer for layer in top if out["loss"][layer] >= TOP_LOSS]
    if first_conv in layers:
        margin = (at[first_conv]["mean"] - chance) / max(clean - chance, 1e-12)
        out["first_conv"] = first_conv
        out["first_conv_margin_left"] = margin
        out["first_conv_near_chance"] = bool(margin < NEAR_CHANCE)
    return out


def statement(cmp: dict, results: dict) -> str:
    """The comparison with the paper as plain sentences with the numbers."""
    p, pk = cmp["p"], p_key(cmp["p"])
    accuracy, clean, chance = results["accuracy"], results["clean"]["top1"], results["chance"]
    at = {layer: accuracy[HEADLINE][layer][pk] for layer in cmp["loss"]}

    def num(layer: str) -> str:
        a = at[layer]
        return (f"{a['mean']:.3f} ± {a['std']:.3f}, {100 * a['relative_mean']:.0f}% of clean "
                f"({100 * cmp['loss'][layer]:.0f}% loss)")

    lines = [
        "## Comparison with the paper\n",
        ("**Paper (AlexNet on ImageNet):** randomly removing over 70% of the weights of a top "
         "conv or dense layer costs less than 30% of performance, while the same in the first "
         "conv layer leaves performance almost at chance.\n"),
        (f"**Here ({results['model']} on {results['data']}, synapse knockout of {100 * p:.0f}% "
         f"of one layer's weights, {results['trials']} trials, top-1 mean ± std; clean "
         f"{clean:.3f}, chance {chance:.3f}):**\n"),
    ]
    lines += [f"- `{layer}`: {num(layer)}" for layer in cmp["loss"]]
    fragile = cmp["most_fragile"]
    lines += ["", f"- **Most fragile layer: `{fragile}`**, {num(fragile)}."]
    others = [layer for layer in at if layer != fragile]
    if others:
        # Is the ranking more than trial noise? Standard error of a difference of two means
        # over T trials each: sqrt((s1^2 + s2^2) / T).
        second = min(others, key=lambda layer: at[layer]["relative_mean"])
        gap = at[second]["mean"] - at[fragile]["mean"]
        se = float(np.sqrt((at[second]["std"] ** 2 + at[fragile]["std"] ** 2)
                           / results["trials"]))
        lines.append(
            f"- Next is `{second}` ({at[second]['mean']:.3f}); the gap {gap:.3f} is "
            f"{gap / se:.1f} standard errors" if se > 0 else
            f"- Next is `{second}` ({at[second]['mean']:.3f}), a gap of {gap:.3f}")
        if se > 0 and gap < 2 * se:
            lines[-1] += ", within trial noise: more trials (weights.trials) would settle the order."
        else:
            lines[-1] += "."
    if "first_conv" in cmp:
        first, margin = cmp["first_conv"], cmp["first_conv_margin_left"]
        verdict = ("as in the paper, it drops to near chance" if cmp["first_conv_near_chance"]
                   else "unlike the paper, it does not drop to chance")
        lines.append(f"- First conv layer `{first}`: {verdict}: {at[first]['mean']:.3f} vs "
                     f"chance {chance:.3f}, {100 * margin:.0f}% of the clean margin over "
                     f"chance is left ('near chance' here means under {100 * NEAR_CHANCE:.0f}%).")
    top, over = cmp["top_layers"], cmp["top_over_30pct"]
    under = [layer for layer in top if layer not in over]
    if top:
        parts = []
        if under:
            verb = "loses" if len(under) == 1 else "lose"
            parts.append(f"{', '.join(f'`{x}`' for x in under)} {verb} less than 30%, as in "
                         f"the paper")
        if over:
            verb = "loses" if len(over) == 1 else "lose"
            parts.append(f"{', '.join(f'`{x}`' for x in over)} {verb} 30% or more, unlike "
                         f"the paper")
        which = "Higher layers" if "first_conv" in cmp else "Layers"
        lines.append(f"- {which}: {'; '.join(parts)}.")
    sizes = results["layer_sizes"]
    if "first_conv" in cmp:
        lines.append(
            f"- Scale: the paper's first conv layer has 34,848 weights (96 filters of 11x11x3); "
            f"here `{cmp['first_conv']}` has {sizes[cmp['first_conv']]['kernel']:,} and the "
            f"layers range from {min(s['kernel'] for s in sizes.values()):,} to "
            f"{max(s['kernel'] for s in sizes.values()):,} weights, so the same fraction "
            f"means very different numbers of removed connections.")
    noisiest = max(at, key=lambda layer: at[layer]["std"])
    lines.append(f"- Spread over trials is largest for `{noisiest}` (std "
                 f"{at[noisiest]['std']:.3f}): which weights are removed matters most there.")
    bias = [name for name in accuracy if name.endswith("/biases")]
    if bias:
        worst = max(abs(v["relative_mean"] - 1) for name in bias
                    for by_p in accuracy[name].values() for v in by_p.values())
        lines.append(f"- Biases alone: no bias perturbation moves mean top-1 by more than "
                     f"{100 * worst:.1f}% of clean at any p (bias RMS vs weight RMS per layer in "
                     f"results.json `layer_rms`).")
    return "\n".join(lines) + "\n"


def plot(ps: tuple[float, ...], series: dict[str, dict], clean: float, chance: float,
         title: str):
    """Accuracy vs p, one line per layer, error bars = std over trials."""
    import matplotlib.pyplot as plt  # Agg backend already selected by nets.report

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for layer, by_p in series.items():
        m = [by_p[p_key(p)]["mean"] for p in ps]
        s = [by_p[p_key(p)]["std"] for p in ps]
        ax.errorbar(ps, m, yerr=s, marker="o", ms=3, capsize=2, label=layer)
    ax.axhline(clean, color="k", lw=0.8, ls="--", label="clean")
    ax.axhline(chance, color="gray", lw=0.8, ls=":", label="chance")
    ax.set_xlabel("p (fraction / noise scale)")
    ax.set_ylabel("top-1 accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return fig


def run(config: ml_collections.ConfigDict, run_dir: RunDir, progress: bool = True) -> dict:
    """Train or restore the model, run the sweep, write results.json, report.md, figures."""
    cfg = config.weights
    _check(cfg, len(config.train.seeds))
    t0 = time.perf_counter()
    net, states, _history, (_train, test) = experiment.train_models(config, run_dir, progress)
    t_train = time.perf_counter() - t0
    all_layers = weights_sweep.layer_targets(net)
    _unknown("layers", cfg.layers, all_layers)
    layers = tuple(cfg.layers) or all_layers
    ps = tuple(float(p) for p in cfg.p)
    params = select(states, cfg.model)["params"]
    k = min(5, test.num_classes)
    clean1, clean5 = weights_sweep.clean_accuracy(net, params, test.images, test.labels,
                                                  chunk=cfg.chunk, k=k)
    chance = 1.0 / test.num_classes

    settings = weights_sweep.plan(cfg.kinds, cfg.targets, layers)
    bar = tqdm(total=len(settings), desc="weights", unit="setting", disable=not progress)

    def done(name: str, layer: str) -> None:
        bar.set_postfix_str(f"{name} {layer}")
        bar.update(1)

    t1 = time.perf_counter()
    raw = weights_sweep.sweep(
        net, params, test.images, test.labels, jax.random.PRNGKey(cfg.seed), ps=ps,
        trials=cfg.trials, kinds=cfg.kinds, targets=cfg.targets, layers=layers,
        chunk=cfg.chunk, k=k, on_setting=done)
    bar.close()
    t_sweep = time.perf_counter() - t1

    accuracy = {name: {layer: summarize(r["top1"], clean1, ps) for layer, r in by_layer.items()}
                for name, by_layer in raw.items()}
    for name, by_layer in accuracy.items():
        for layer, by_p in by_layer.items():
            run_dir.log({"perturbation": name, "layer": layer,
                         "top1_mean": [by_p[p_key(p)]["mean"] for p in ps]})
    results = {
        "model": config.model.name, "data": config.data.name,
        "seed": int(config.train.seeds[cfg.model]), "num_classes": test.num_classes,
        "test_images": int(test.images.shape[0]), "trials": cfg.trials, "p": list(ps),
        "layers": list(layers),
        "layer_sizes": {layer: {leaf: int(np.size(v)) for leaf, v in params[layer].items()}
                        for layer in layers},
        "layer_rms": {layer: {leaf: float(np.sqrt(np.mean(np.square(v))))
                              for leaf, v in params[layer].items()} for layer in layers},
        "clean": {"top1": clean1, f"top{k}": clean5}, "chance": chance,
        "accuracy": accuracy,
    }
    if test.num_classes > 5:
        results["top5"] = {name: {layer: summarize(r["topk"], clean5, ps)
                                  for layer, r in by_layer.items()}
                           for name, by_layer in raw.items()}
    # Fragility per perturbation: mean relative top-1 over the p grid (area under the curve).
    results["mean_relative_over_p"] = {
        name: {layer: float(np.mean([v["relative_mean"] for v in by_p.values()]))
               for layer, by_p in by_layer.items()}
        for name, by_layer in accuracy.items()}
    first_conv = next(iter(net.names_of("conv")), None)
    cmp = compare_with_paper(accuracy, layers, first_conv, ps, clean1, chance)
    results["paper_comparison"] = cmp
    results["seconds"] = {"train": t_train, "sweep": t_sweep}
    run_dir.write_json("results.json", results)

    intro = (f"Clean top-1 {clean1:.4f} (top-{k} {clean5:.4f}) on {results['test_images']} "
             f"test images; chance {chance:.3f}. {cfg.trials} trials per (perturbation, layer, "
             f"p); mean ± std over trials. Protocol: Cheney, Schrimpf & Kreiman, arXiv "
             f"1703.08245.\n")
    text = [f"# Internal weight perturbations: {config.model.name} on {config.data.name}\n",
            intro]
    if cmp is not None:
        text.append(statement(cmp, results))
    ph = min(ps, key=lambda q: abs(q - HEADLINE_P))
    names = list(accuracy)
    rows = []
    for layer in layers:
        sizes = results["layer_sizes"][layer]
        row = [f"`{layer}`", "/".join(str(sizes[x]) for x in ("kernel", "bias") if x in sizes)]
        for name in names:
            v = accuracy[name][layer][p_key(ph)]
            row.append(f"{v['relative_mean']:.2f} ± {v['relative_std']:.2f}")
        rows.append(row)
    text.append(f"\n## Relative top-1 accuracy at p = {ph:g}\n\n"
                + report_lib.table(["layer", "weights/biases"] + names, rows))
    rows = [[f"`{layer}`"] + [f"{results['mean_relative_over_p'][n][layer]:.2f}" for n in names]
            for layer in layers]
    text.append("\n## Mean relative top-1 over the p grid (lower = more fragile)\n\n"
                + report_lib.table(["layer"] + names, rows))
    text.append("\n## Accuracy vs p\n")
    for name in names:
        fig = plot(ps, accuracy[name], clean1, chance, f"{name} ({config.model.name})")
        fname = run_dir.figure(f"weights_{name.replace('/', '_')}.png", fig)
        text.append(f"\n![{name}]({fname})\n")
    text.append(f"\nTraining (or restoring) took {t_train:.1f} s, the sweep {t_sweep:.1f} s.\n")
    run_dir.write_report("\n".join(text))
    return results
