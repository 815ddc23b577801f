"""The ``minmax`` lens's report: per reading of "interval" its formula, the fuzziness
curves per conv layer, the tables of the changes with their intervals, robustness per
condition, the reverse test, and which reading the abstract's words support best (the
intervals come from :mod:`experiments.minmax.claims`, the one place they are made)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import ml_collections
import numpy as np

from experiments import render
from experiments.lens import SaveFigure
from experiments.minmax import claims

ABSTRACT = ("the weights of the convolutional layers will become far away from their centers "
            "of intervals, i.e., decreasing to their minimum or increasing to their maximum")
GRANULARITY_TEXT = {
    "kernel": "one kh x kw slice of a conv kernel per (in, out) channel pair",
    "filter": "all weights of one output channel (kh x kw x in)",
    "layer": "the whole kernel of a conv layer",
}
FORMULAS = {
    "group": ("`minmax/stats.py`: interval [lo, hi] = min and max of a group of weights at "
              "one moment ({granularity}); mu = (w - lo)/(hi - lo), fuzziness F = mean "
              "H(mu)/ln 2, H the binary entropy (0: all weights at the ends, 1: all at the "
              "center). Penalty: F with the ends held fixed in the gradient."),
    "trajectory": ("`minmax/trajectory.py`: per weight, lo_t = min(w_0..w_t), hi_t = "
                   "max(w_0..w_t), tracked in the train step; mu = (w_T - lo_T)/(hi_T - "
                   "lo_T), F as above, near the ends = fraction with mu <= .05 or >= .95 "
                   "(a weight that never moved counts as at an end; the walk has the same "
                   "ones). Baseline: a shadow walk per weight from w_0 with the same step "
                   "sizes and random signs, z += s_t |w_{t+1} - w_t|, with its own running "
                   "range; walk_F is its F. Penalty: F of the current weights against the "
                   "running range, held fixed."),
    "init": ("`minmax/init_support.py`: interval = the LeCun-normal initializer's support "
             "[-b, b], b = 2 sqrt(1/fan_in)/0.8796 (a normal truncated at 2 sd); mu = "
             "(clip(w, -b, b) + b)/(2b), F as above, outside = fraction with |w| > b. "
             "Penalty: F against +-b."),
}


def _label(cond: str) -> str:
    if cond == claims.BASELINE:
        return "lambda = 0 (standard)"
    if cond == claims.ROBUST:
        return "PGD-AT"
    reading, lam = cond.split("/")
    return f"{reading} penalty, lambda = {lam}"


def _stat_figure(results: dict, reading: str):
    """One panel per conv layer: the reading's fuzziness over epochs (0 = init), one line
    per condition (trajectory: the random walk of the baseline and of PGD-AT too)."""
    convs = results["conv_layers"]
    per = results["stats"][reading]
    fig, axes = plt.subplots(1, len(convs), figsize=(5.6 * len(convs), 4.0), squeeze=False)
    for ax, layer in zip(axes[0], convs):
        series = {}
        for cond in results["conditions"]:
            if cond.split("/")[0] in (reading, claims.BASELINE, claims.ROBUST):
                series[_label(cond)] = per["fuzziness"][layer][cond]
        if reading == "trajectory":
            for cond in (claims.BASELINE, claims.ROBUST):
                if cond in results["conditions"]:
                    series[f"random walk, {_label(cond)}"] = per["walk_fuzziness"][layer][cond]
        epochs = np.arange(np.asarray(per["fuzziness"][layer][claims.BASELINE]).shape[1])
        render.curves(epochs, series, "epoch (0 = initialization)", "fuzziness F",
                      f"{reading} reading, layer {layer}", ax=ax)
    fig.tight_layout()
    return fig


def _robust_figure(results: dict):
    """One panel per attack: robust accuracy against the linf budget, one line per condition."""
    attacks = list(results["robust_accuracy"])
    fig, axes = plt.subplots(1, len(attacks), figsize=(5.6 * len(attacks), 4.0), squeeze=False)
    for ax, name in zip(axes[0], attacks):
        per = results["robust_accuracy"][name]
        render.curves(results["eps"], {_label(c): per[c] for c in results["conditions"]},
                      "attack budget eps (linf, inputs in [0, 1])", "robust accuracy",
                      f"{name.upper()} on {results['images']} test images", ax=ax)
    fig.tight_layout()
    return fig


def _interval_figure(rows: dict[str, object], title: str, xlabel: str):
    """Estimates with their 95% intervals, one row each, and the zero line."""
    fig, ax = plt.subplots(figsize=(6.4, 0.6 + 0.5 * len(rows)))
    names = list(rows)
    for i, name in enumerate(names):
        iv = rows[name]
        ax.plot([iv.lo, iv.hi], [i, i], color="C0", lw=2)
        ax.plot([iv.estimate], [i], "o", color="C0")
    ax.axvline(0.0, color="k", lw=0.8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _setup(config: ml_collections.ConfigDict, results: dict) -> str:
    k = len(results["seeds"])
    secs = results["seconds"]
    adv = results.get("adversarial")
    robust = (f" With the reverse test: the same {k} seeds trained with PGD-AT (Linf eps "
              f"{adv['eps']:g}, {adv['steps']} steps, eps ramped over {adv['warmup']} "
              f"epochs) in a second vmapped run." if adv else "")
    return (
        "Seed 000: Shen, Chen & Wang, *A Study on the Uncertainty of Convolutional Layers "
        "in DNNs* (arXiv 2011.13719). **Only the paper's abstract is available**; the "
        "statistics and the Min-Max losses below are this project's own formulation of it "
        "(`minmax/`), not the paper's equations. The abstract says that during training "
        f"\"{ABSTRACT}\", that this \"corresponds to minimizing the fuzziness of the model "
        "parameters\", and that \"the model with the Min-Max property has a stronger "
        "adversarial robustness\". It does not say what the interval is; each reading "
        "below is one answer, tested the same way.\n\n"
        f"Setup: conditions {', '.join(_label(c) for c in results['conditions'])}; "
        f"{k} seeds each, all standard-trained conditions side by side in one vmapped run "
        f"({results['epochs']} epochs, {config.train.optimizer} lr "
        f"{config.train.learning_rate:g}, batch {config.train.batch_size}; penalized layers "
        f"{', '.join(results['regularized_layers'])}).{robust} Statistics once per epoch "
        "(epoch 0 = initialization). Robust accuracy on "
        f"{results['images']} test images, FGSM and PGD ({results['pgd_steps']} steps, "
        "random start), linf; the same attack key for every model, so the models are "
        "compared image by image. Intervals are 95%: over seeds (Student t) for the weight "
        "statistics, over seeds and a bootstrap over images for accuracy differences; "
        "± is the sd over seeds. Wall-clock time (noisy on a shared machine): "
        f"{secs['train']:.0f} s training, {secs['attacks']:.0f} s attacks.\n\n")


def _ms(values) -> str:
    return render.fmt_mean_std(values, 3)


def _reading_section(results: dict, reading: str, save: SaveFigure) -> str:
    convs = results["conv_layers"]
    per = results["stats"][reading]
    conds = [c for c in results["conditions"]
             if c.split("/")[0] in (reading, claims.BASELINE, claims.ROBUST)]
    fmt = FORMULAS[reading].replace("{granularity}", GRANULARITY_TEXT[results["granularity"]])
    text = f"### Reading `{reading}`: {claims.READING_WORDS[reading]}\n\n{fmt}\n\n"
    changes = {c: claims.end_changes(results, reading, c) for c in conds}
    what = ("weights' F minus the random walk's F at the end (negative: nearer the ends "
            "than chance)" if reading == "trajectory" else
            "end of training minus initialization F (negative: the weights moved towards "
            "the ends)")
    text += (f"The statistic of \"move to the ends\": {what}; 95% interval over seeds.\n\n"
             + render.table(["models", *convs, "mean over conv layers"],
                            [[_label(c)] + [changes[c][layer].fmt() for layer in convs]
                             + [changes[c]["mean"].fmt()] for c in conds]))
    stats = (("fuzziness", "walk_fuzziness", "near_ends", "walk_near_ends", "degenerate")
             if reading == "trajectory" else
             ("fuzziness", "near_ends", "outside") if reading == "init" else
             ("fuzziness", "minmax_index", "near_ends", "small_fraction", "kurtosis"))
    rows = []
    for c in conds:
        for layer in convs:
            rows.append([_label(c), layer] + [
                f"{_ms(np.asarray(per[s][layer][c])[:, 0])} → {_ms(np.asarray(per[s][layer][c])[:, -1])}"
                for s in stats])
    text += ("\nInitialization → end of training (mean ± sd over seeds):\n\n"
             + render.table(["models", "layer", *stats], rows))
    fig = save(f"fuzziness_{reading}.png", _stat_figure(results, reading))
    return text + f"\n![fuzziness, {reading} reading]({fig})\n\n"


def _robust_tables(results: dict) -> str:
    eps = results["eps"]
    rows = []
    for cond in results["conditions"]:
        if cond == claims.BASELINE:
            continue
        ch = claims.robustness_changes(results, cond)
        rows.append([f"{_label(cond)} vs lambda = 0", ch["clean"].fmt()]
                    + [ch[name].fmt() for name in results["robust_per_image"]])
    text = ("Change against lambda = 0, paired by seed and image (robust accuracy: mean over "
            "eps > 0); 95% interval over seeds and images:\n\n"
            + render.table(["models", "clean accuracy",
                            *(f"{name.upper()} robust accuracy"
                              for name in results["robust_per_image"])], rows))
    for name, per in results["robust_accuracy"].items():
        rows = [[_label(c), _ms(results["test_accuracy"][c])]
                + [_ms(np.asarray(per[c])[:, j]) for j in range(len(eps))]
                for c in results["conditions"]]
        text += (f"\n{name.upper()}: robust accuracy (mean ± sd over seeds)\n\n"
                 + render.table(["models", "test accuracy", *(f"eps = {e:g}" for e in eps)],
                                rows))
    return text


def _reverse_section(results: dict, save: SaveFigure) -> str:
    if claims.ROBUST not in results["conditions"]:
        return "### The reverse test\n\nNot run (`minmax.reverse = False`).\n\n"
    convs = results["conv_layers"]
    rev = {r: claims.reverse_changes(results, r) for r in results["readings"]}
    text = ("### The reverse test: do robust models show the property more strongly?\n\n"
            "PGD-AT minus standard (lambda = 0) models of the same seeds, of each reading's "
            "end-of-training statistic (group, init: F; trajectory: F minus the random "
            "walk's F); negative: the robust models are nearer the ends. 95% interval over "
            "seeds, paired by seed.\n\n"
            + render.table(["reading", *convs, "mean over conv layers"],
                           [[r] + [rev[r][layer].fmt() for layer in convs]
                            + [rev[r]["mean"].fmt()] for r in rev]))
    fig = save("reverse_test.png", _interval_figure(
        {r: rev[r]["mean"] for r in rev}, "PGD-AT minus standard, end-of-training statistic "
        "(mean over conv layers; 95% interval over seeds)", "difference (negative: robust "
        "models nearer the ends)"))
    return text + f"\n![reverse test]({fig})\n\n"


def _discussion(results: dict) -> str:
    """Which reading the abstract's words fit best, and what this run found under each."""
    found = {f.claim.text: f for f in claims.findings(results)}
    lines = []
    for r in results["readings"]:
        verdicts = [found[c.text].verdict for c in (claims.TO_ENDS[r], claims.MORE_ROBUST[r],
                                                   claims.REVERSE[r])]
        lines.append(f"- `{r}`: moves to the ends: **{verdicts[0]}**; its penalty more "
                     f"robust: **{verdicts[1]}**; PGD-AT models more Min-Max: **{verdicts[2]}**.")
    return (
        "### Which reading do the abstract's words support?\n\n"
        f"The abstract: \"{ABSTRACT}\". Three features of the wording: (1) it is about what "
        "happens *during training* (a change over time, not a property of a trained net); "
        "(2) each weight is said to decrease to *its* minimum or increase to *its* maximum, "
        "i.e. a monotone drift of individual weights in one direction or the other; (3) "
        "\"centers of intervals\" in the plural, an interval per weight or per group. The "
        "`trajectory` reading fits (1) and (2) literally: a weight that drifts "
        "monotonically ends at the minimum or maximum of the range it visited, and its "
        "fuzziness in that range is 0. The `group` reading fits (3) and the usual "
        "interval-valued fuzzy-set setting (a center and radius per group), but in it a "
        "weight does not move to *its own* minimum; the extremes of a group are other "
        "weights. The `init` reading fits \"far away from their centers\" if the interval "
        "is fixed in advance (the center 0 of a symmetric initializer), but then "
        "\"decreasing to their minimum\" means reaching -b, which an unconstrained weight "
        "has no reason to do. On the words alone, `trajectory` is the closest reading, "
        "`group` second; this says nothing of which the paper's equations use, which we "
        "do not know. What this run found under each:\n\n" + "\n".join(lines) + "\n\n")


def write(config: ml_collections.ConfigDict, results: dict, save: SaveFigure) -> str:
    text = ("## Min-Max property and fuzziness of conv weights, under three readings of "
            "\"interval\"\n\n" + _setup(config, results))
    for reading in results["readings"]:
        text += _reading_section(results, reading, save)
    acc = save("test_accuracy.png", render.curves(
        results["test_accuracy_epochs"],
        {_label(c): results["test_accuracy_curve"][c] for c in results["conditions"]},
        "epoch", "test accuracy", "Test accuracy of the Min-Max models"))
    robust = save("robust_accuracy.png", _robust_figure(results))
    text += ("### Accuracy and robustness per condition\n\n" + _robust_tables(results)
             + f"\n![test accuracy]({acc})\n\n![robust accuracy]({robust})\n\n")
    text += _reverse_section(results, save) + _discussion(results)
    return text + "These are findings for this model, data set, optimizer and budget only.\n"
