"""The ``weights`` lens's report: the headline per layer, tables of the relative accuracy
loss per layer and perturbation with their seed intervals (made by
:func:`experiments.weights.claims.interval`, the one place intervals are formed), and one
accuracy-vs-p figure per perturbation."""

from __future__ import annotations

import matplotlib.pyplot as plt
import ml_collections
import numpy as np

from experiments import render
from experiments.lens import SaveFigure
from experiments.rundir import float_key
from experiments.weights import claims

XLABEL = {
    "synapse_knockout": "fraction p of the layer's entries set to zero",
    "node_knockout": "fraction p of the layer's units removed",
    "mutation": "noise scale p (noise sd / sd of the layer's entries)",
    "resample": "fraction p of the layer's entries redrawn",
}
WORDS = {
    "synapse_knockout/weights": "synapse knockout of the weights (zero a fraction p)",
    "synapse_knockout/biases": "synapse knockout of the biases (zero a fraction p)",
    "node_knockout": "node knockout (zero a fraction p of units with their bias)",
    "mutation/weights": "Gaussian mutation of the weights (noise sd = p x sd of the layer)",
    "mutation/biases": "Gaussian mutation of the biases (noise sd = p x sd of the layer)",
    "resample/weights": "resampling of the weights (a fraction p redrawn from the layer's own)",
    "resample/biases": "resampling of the biases (a fraction p redrawn from the layer's own)",
}


def _p_index(results: dict, p: float) -> int | None:
    keys = [float_key(q) for q in results["p"]]
    return keys.index(float_key(p)) if float_key(p) in keys else None


def _column(results: dict, name: str, layer: str, field: str, i: int) -> np.ndarray:
    """One value per seed: ``per_seed[name][layer][field]`` at the p of index ``i``."""
    return np.asarray(results["per_seed"][name][layer][field], np.float64)[:, i]


def _fmt(values: np.ndarray, percent: bool = True) -> str:
    return claims.interval(values).fmt(3, percent=percent)


def _headline_figure(results: dict, i: int):
    """Two panels over the layers at p = 0.7: accuracy loss, and the margin over chance
    left, each with its 95% interval across seeds and the claim's threshold."""
    name, layers = claims.PERTURBATION, results["layers"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    panels = [
        ("relative", lambda r: 1.0 - r, claims.TOP_LAYER.rule.threshold,
         "relative accuracy loss\n1 - accuracy / clean accuracy", "Accuracy lost",
         "paper: the top layer loses < 30%", results["top_layer"]),
        ("margin_left", lambda m: m, claims.FIRST_CONV.rule.threshold,
         "margin over chance left\n(accuracy - chance) / (clean - chance)",
         "Margin over chance left", "near chance: < 10% left", results["first_conv"]),
    ]
    x = np.arange(len(layers))
    seeds = len(results["seeds"])
    band = ", 95% interval across seeds" if seeds > 1 else ""
    for ax, (field, transform, threshold, ylabel, title, rule, subject) in zip(axes, panels):
        ys = np.stack([transform(_column(results, name, layer, field, i)) for layer in layers],
                      axis=1)  # (seeds, layers)
        m, lo, hi = render.seed_band(ys)
        err = np.stack([m - lo, hi - m])
        mine = np.array([layer == subject for layer in layers])
        ax.errorbar(x[~mine], m[~mine], yerr=err[:, ~mine], fmt="o", capsize=4,
                    color="tab:blue", label="mean over seeds" + band)
        if mine.any():
            ax.errorbar(x[mine], m[mine], yerr=err[:, mine], fmt="s", capsize=4,
                        color="tab:orange", label=f"the claim's layer ({subject})")
        ax.axhline(threshold, color="tab:red", ls="--", lw=1, label=rule)
        ax.set_xticks(x, layers)
        ax.set_xlabel("perturbed layer (input side to output side)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title}: {100 * claims.P:.0f}% of one layer's weights removed\n"
                     f"(synapse knockout, {results['trials']} trials per seed, {seeds} seeds)",
                     fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=1)
    fig.tight_layout()
    return fig


def _curves_figure(results: dict, name: str):
    """Top-1 accuracy vs p, one line per layer with its seed band; clean and chance."""
    fig, ax = plt.subplots(figsize=(6.2, 3.8))
    clean = float(np.mean(results["clean"]["top1"]))
    ax.axhline(clean, color="k", lw=0.8, ls="--", label="clean (mean of seeds)")
    ax.axhline(results["chance"], color="gray", lw=0.8, ls=":", label="chance")
    series = {layer: results["per_seed"][name][layer]["top1"]
              for layer in results["per_seed"][name]}
    render.curves(results["p"], {f"layer {k}": v for k, v in series.items()},
                  XLABEL.get(name.split("/")[0], "perturbation strength p"),
                  "top-1 test accuracy (mean over trials)",
                  f"{WORDS.get(name, name)}, {results['model']}", ax=ax)
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def _setup(results: dict) -> str:
    seeds, clean = results["seeds"], results["clean"]
    return (
        "Seed 002: Cheney, Schrimpf & Kreiman, *On the Robustness of Convolutional Neural "
        "Networks to Internal Architecture and Weight Perturbations* (arXiv 1703.08245). "
        "One layer at a time, weights and biases separately, p from 0 to 1, "
        f"{results['trials']} random trials per (seed, perturbation, layer, p) on each of "
        f"{len(seeds)} seeds ({', '.join(map(str, seeds))}), {results['test_images']} test "
        f"images. Clean top-1 {render.fmt_mean_std(clean['top1'], 4)} (top-{results['k']} "
        f"{render.fmt_mean_std(clean['topk'], 4)}; mean ± sd over seeds), chance "
        f"{results['chance']:.3f}.\n\n"
        f"Layers the claims are about: top layer `{results['top_layer']}` (the last weighted "
        f"layer below the output layer `{results['output_layer']}`), first conv layer "
        + (f"`{results['first_conv']}`" if results["first_conv"] else "none (no conv layer)")
        + ". Intervals: 95% Student t across seeds of the per-seed mean over trials.\n")


def _headline_table(results: dict, i: int) -> str:
    name = claims.PERTURBATION
    rows = []
    for layer in results["layers"]:
        sizes = results["layer_sizes"][layer]
        rms = results["layer_rms"][layer]
        loss = 1.0 - _column(results, name, layer, "relative", i)
        left = _column(results, name, layer, "margin_left", i)
        rows.append([f"`{layer}`", "/".join(str(sizes[x]) for x in ("kernel", "bias") if x in sizes),
                     "/".join(f"{np.mean(rms[x]):.3f}" for x in ("kernel", "bias") if x in rms),
                     _fmt(loss), _fmt(left)])
    header = ["layer", "weights/biases", "RMS weights/biases (mean of seeds)",
              "accuracy loss [95% interval]", "margin over chance left [95% interval]"]
    return (f"### Removing {100 * claims.P:.0f}% of one layer's weights (synapse knockout)\n\n"
            + render.table(header, rows))


def _loss_table(results: dict, i: int) -> str:
    names = list(results["per_seed"])
    rows = [[f"`{layer}`"] + [_fmt(1.0 - _column(results, n, layer, "relative", i))
                              for n in names] for layer in results["layers"]]
    p = results["p"][i]
    return (f"### Relative accuracy loss at p = {p:g}, every perturbation\n\n"
            "1 - accuracy / clean accuracy, mean over seeds [95% interval across seeds]; "
            "node knockout has no weights/biases split.\n\n"
            + render.table(["layer", *names], rows))


def write(config: ml_collections.ConfigDict, results: dict, save: SaveFigure) -> str:
    text = ["## Internal weight perturbations\n", _setup(results)]
    i = _p_index(results, claims.P)
    if i is not None and claims.PERTURBATION in results["per_seed"]:
        fig = save("weights_headline.png", _headline_figure(results, i))
        text += [_headline_table(results, i), f"\n![headline]({fig})\n"]
    else:
        text.append(f"The headline ({claims.PERTURBATION} at p = {claims.P:g}) was not in "
                    "this sweep (weights.kinds, weights.targets, weights.p).\n")
    if i is None:  # the loss table at the largest p <= 0.7 instead
        below = [j for j, q in enumerate(results["p"]) if q <= claims.P]
        i = below[-1] if below else 0
    text.append(_loss_table(results, i))
    text.append("\n### Accuracy vs perturbation strength\n")
    for name in results["per_seed"]:
        fig = save(f"weights_{name.replace('/', '_')}.png", _curves_figure(results, name))
        text.append(f"\n![{name}]({fig})\n")
    text.append(f"\nRestoring (or training) the seeds took {results['train_seconds']:.1f} s, "
                f"the sweep {results['sweep_seconds']:.1f} s.\n")
    return "\n".join(text)
