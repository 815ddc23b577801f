"""The ``minmax`` lens's report: fuzziness and Min-Max index curves per conv layer,
accuracy and robust accuracy per lambda, and tables of the changes with their intervals
(the intervals come from :mod:`experiments.minmax.claims`, the one place they are made)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import ml_collections
import numpy as np

from experiments import render
from experiments.lens import SaveFigure
from experiments.minmax import claims
from experiments.rundir import float_key

GRANULARITY_TEXT = {
    "kernel": "one kh x kw slice of a conv kernel per (in, out) channel pair",
    "filter": "all weights of one output channel (kh x kw x in)",
    "layer": "the whole kernel of a conv layer",
}
STAT_WORDS = {
    "fuzziness": ("Fuzziness of the conv weights", "fuzziness F (0: all weights at the ends)"),
    "minmax_index": ("Min-Max index of the conv weights",
                     "Min-Max index (1: all weights at the ends)"),
}
ATTACK_WORDS = {"fgsm": "FGSM (one step)", "pgd": "PGD (iterative, random start)"}


def _lam(lam: float) -> str:
    return f"lambda = {lam:g}"


def _stat_figure(results: dict, stat: str):
    """One panel per conv layer: ``stat`` over epochs (0 = init), one line per lambda."""
    convs, lambdas = results["conv_layers"], results["lambdas"]
    title, ylabel = STAT_WORDS[stat]
    fig, axes = plt.subplots(1, len(convs), figsize=(5.2 * len(convs), 3.8), squeeze=False)
    for ax, layer in zip(axes[0], convs):
        per = results["stats"][stat][layer]
        epochs = np.arange(np.asarray(per[float_key(0.0)]).shape[1])
        render.curves(epochs, {_lam(lam): per[float_key(lam)] for lam in lambdas},
                      "epoch (0 = initialization)", ylabel, f"{title}, layer {layer}", ax=ax)
    fig.tight_layout()
    return fig


def _robust_figure(results: dict):
    """One panel per attack: robust accuracy against the linf budget, one line per lambda."""
    attacks = list(results["robust_accuracy"])
    fig, axes = plt.subplots(1, len(attacks), figsize=(5.2 * len(attacks), 3.8), squeeze=False)
    for ax, name in zip(axes[0], attacks):
        per = results["robust_accuracy"][name]
        render.curves(results["eps"], {_lam(lam): per[float_key(lam)]
                                       for lam in results["lambdas"]},
                      "attack budget eps (linf, inputs in [0, 1])", "robust accuracy",
                      f"{ATTACK_WORDS.get(name, name)} on {results['images']} test images", ax=ax)
    fig.tight_layout()
    return fig


def _setup(config: ml_collections.ConfigDict, results: dict) -> str:
    k, lambdas = len(results["seeds"]), results["lambdas"]
    secs = results["seconds"]
    return (
        "Seed 000: Shen, Chen & Wang, *A Study on the Uncertainty of Convolutional Layers "
        "in DNNs* (arXiv 2011.13719). **Only the paper's abstract is available**; the "
        "statistics and the Min-Max loss below are this project's own formulation of it "
        "(`minmax/stats.py`, `minmax/regularizer.py`), not the paper's equations.\n\n"
        f"Interval = {GRANULARITY_TEXT[results['granularity']]}; center distance "
        "d = |w - c| / r, Min-Max index = mean d (1: all weights at the ends); fuzziness "
        "F = mean H(mu)/ln 2 with membership mu = (w - lo)/(hi - lo) (0: all at the ends, "
        "1: all at the center). Loss = CE + lambda * mean F over the conv layers "
        f"{', '.join(results['regularized_layers'])} (interval ends held fixed in the "
        f"gradient: {results['stop_gradient']}).\n\n"
        f"Setup: {len(lambdas)} lambdas x {k} seeds = {len(lambdas) * k} models trained side "
        f"by side in one vmapped run ({results['epochs']} epochs, {config.train.optimizer} "
        f"lr {config.train.learning_rate:g}, batch {config.train.batch_size}); statistics "
        "taken once per epoch (epoch 0 = initialization). Robust accuracy on "
        f"{results['images']} test images, FGSM and PGD ({results['pgd_steps']} steps, "
        "random start), linf; the same attack key for every model, so the models are "
        "compared image by image. Intervals are 95%: over seeds (Student t) for the weight "
        "statistics, over seeds and a bootstrap over images for accuracy differences; "
        "± is the sd over seeds. Wall-clock time (noisy on a shared machine): "
        f"{secs['train']:.0f} s training, {secs['attacks']:.0f} s attacks.\n\n")


def _fuzziness_tables(results: dict) -> str:
    convs, lambdas = results["conv_layers"], results["lambdas"]
    changes = {lam: claims.fuzziness_changes(results, lam) for lam in lambdas}
    rows = [[f"{lam:g}"] + [changes[lam][layer].fmt() for layer in convs]
            + [changes[lam]["mean"].fmt()] for lam in lambdas]
    text = ("Change of fuzziness, end of training minus initialization (negative: the "
            "weights moved towards the ends of their intervals); 95% interval over seeds:\n\n"
            + render.table(["lambda", *convs, "mean over conv layers"], rows))

    def ms(values) -> str:
        return render.fmt_mean_std(values, 3)

    rows = []
    for lam in lambdas:
        row = [f"{lam:g}", ms(results["test_accuracy"][float_key(lam)])]
        for layer in convs:
            for stat in ("fuzziness", "minmax_index"):
                c = np.asarray(results["stats"][stat][layer][float_key(lam)])
                row.append(f"{ms(c[:, 0])} → {ms(c[:, -1])}")
        rows.append(row)
    head = ["lambda", "test accuracy"] + [f"{word} {layer} (init → end)" for layer in convs
                                          for word in ("F", "index")]
    return text + "\nInitialization → end of training (mean ± sd over seeds):\n\n" + render.table(
        head, rows)


def _robust_tables(results: dict) -> str:
    lambdas, eps = results["lambdas"], results["eps"]
    rows = []
    for lam in lambdas:
        if lam == 0:
            continue
        ch = claims.robustness_changes(results, lam)
        rows.append([f"{lam:g} vs 0", ch["clean"].fmt()]
                    + [ch[name].fmt() for name in results["robust_per_image"]])
    text = ("Change against lambda = 0, paired by seed and image (robust accuracy: mean over "
            "eps > 0); 95% interval over seeds and images:\n\n"
            + render.table(["lambda", "clean accuracy",
                            *(f"{name.upper()} robust accuracy"
                              for name in results["robust_per_image"])], rows))
    for name, per in results["robust_accuracy"].items():
        rows = [[f"{lam:g}"] + [render.fmt_mean_std(np.asarray(per[float_key(lam)])[:, j], 3)
                                for j in range(len(eps))] for lam in lambdas]
        text += (f"\n{ATTACK_WORDS.get(name, name)}: robust accuracy (mean ± sd over seeds)\n\n"
                 + render.table(["lambda", *(f"eps = {e:g}" for e in eps)], rows))
    return text


def _sparsity_table(results: dict) -> str:
    rows = []
    for lam in results["lambdas"]:
        for layer in results["conv_layers"]:
            row = [f"{lam:g}", layer]
            for stat in ("near_ends", "small_fraction", "kurtosis"):
                c = np.asarray(results["stats"][stat][layer][float_key(lam)])
                row.append(f"{render.fmt_mean_std(c[:, 0], 3)} → "
                           f"{render.fmt_mean_std(c[:, -1], 3)}")
            rows.append(row)
    return render.table(["lambda", "layer", "near the ends", "small fraction",
                         "excess kurtosis"], rows)


def write(config: ml_collections.ConfigDict, results: dict, save: SaveFigure) -> str:
    fuzz = save("fuzziness_curves.png", _stat_figure(results, "fuzziness"))
    index = save("minmax_index_curves.png", _stat_figure(results, "minmax_index"))
    acc = save("test_accuracy.png", render.curves(
        results["test_accuracy_epochs"],
        {_lam(lam): results["test_accuracy_curve"][float_key(lam)] for lam in results["lambdas"]},
        "epoch", "test accuracy", "Test accuracy of the Min-Max models"))
    robust = save("robust_accuracy.png", _robust_figure(results))
    return (
        "## Min-Max property and fuzziness of conv weights\n\n" + _setup(config, results)
        + "### Fuzziness and Min-Max index during training\n\n" + _fuzziness_tables(results)
        + f"\n![fuzziness curves]({fuzz})\n\n![Min-Max index curves]({index})\n\n"
        "### Accuracy and robustness\n\n" + _robust_tables(results)
        + f"\n![test accuracy]({acc})\n\n![robust accuracy]({robust})\n\n"
        f"### Near the ends (d >= {results['near']:g}) and the sparsity view "
        f"(|w| <= {results['small']:g} max|w|), initialization → end (mean ± sd over seeds)\n\n"
        + _sparsity_table(results)
        + "\nThese are findings for this model, data set, optimizer and budget only.\n"
    )
