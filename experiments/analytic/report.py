"""The ``analytic`` lens's report: tightness vs Monte Carlo with seed intervals, the uses
of the closed form, the Gaussian attacks and the timings (figures and text only)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import ml_collections
import numpy as np

from experiments import render
from experiments.analytic.claims import TRACKS_THRESHOLD
from experiments.lens import SaveFigure
from experiments.rundir import float_key

MEASURES = {"mean_error": "output mean", "var_error": "output variances"}  # figure panels


def _per_seed(results: dict, method: str, measure: str) -> np.ndarray:
    """(seeds, levels): the mean over images of ``measure`` for ``method``."""
    t = results["tightness"][method]
    return np.array([np.mean(t[float_key(v)][measure], axis=-1)
                     for v in results["noise_levels"]]).T


def _tightness_figure(results: dict, save: SaveFigure) -> str:
    levels = results["noise_levels"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    series = ({"every method (the same closed form)": _per_seed(results, "exact", "mean_error")},
              {m: _per_seed(results, m, "var_error") for m in results["methods"]})
    for ax, what, lines in zip(axes, MEASURES.values(), series):
        render.curves(levels, lines, "input noise standard deviation sigma",
                      "symmetric relative error vs Monte Carlo",
                      f"Analytic vs Monte Carlo: {what}", ax=ax)
        ax.set_xscale("log")
        ax.set_yscale("log")
    axes[1].axhline(TRACKS_THRESHOLD, color="k", ls="--", lw=0.8,
                    label=f"claim threshold {TRACKS_THRESHOLD:g}")
    axes[1].legend(fontsize=7, loc="best", framealpha=0.8)
    fig.tight_layout()
    return save("tightness.png", fig)


def _exact_vs_zero_mean_figure(results: dict, save: SaveFigure) -> str:
    diff = _per_seed(results, "zero_mean", "var_error") - _per_seed(results, "exact", "var_error")
    fig = render.curves(results["noise_levels"], {"zero-mean error minus exact error": diff},
                        "input noise standard deviation sigma",
                        "difference of variance errors",
                        "Exact general-mean vs the paper's zero-mean form")
    ax = fig.axes[0]
    ax.set_xscale("log")
    ax.axhline(0.0, color="k", lw=0.8, label="equal tightness (claim threshold)")
    ax.legend(fontsize=7, loc="best", framealpha=0.8)
    return save("exact_vs_zero_mean.png", fig)


def _class_means_figure(results: dict, save: SaveFigure) -> str:
    c = results["class_means"]
    cl = np.asarray(c["noise_levels"])
    means = np.asarray(c["image_mean"])[0]  # the first seed: (L, k)
    stds = np.asarray(c["image_std"])[0]
    mc = np.asarray(c["image_mc_mean"])[0]  # (noise grid, k)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    colors = plt.cm.tab10(np.arange(means.shape[-1]) % 10)
    for k in range(means.shape[-1]):
        ax.plot(cl, means[:, k], color=colors[k], lw=2.5 if k == c["label"] else 1.0,
                label=f"class {k}")
        ax.fill_between(cl, means[:, k] - stds[:, k], means[:, k] + stds[:, k],
                        color=colors[k], alpha=0.1, lw=0)
        ax.scatter(results["noise_levels"], mc[:, k], color=colors[k], marker="x", s=18)
    ax.set_xlabel("input noise standard deviation sigma")
    ax.set_ylabel("expected logit")
    ax.set_title(f"Test image {c['image']} (label {c['label']}, thick), seed "
                 f"{results['seeds'][0]}: closed form (lines),\nMonte Carlo (x); band: ±1 sd "
                 f"of the logit under the noise (closed form)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(ncol=2, fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    render.curves(cl, {"true class": c["true_logit_mean"],
                       "best other class": c["max_other_logit_mean"]},
                  "input noise standard deviation sigma", "expected logit (mean over images)",
                  f"Expected logits over {results['num_images']} test images", ax=ax2)
    return save("class_means.png", fig)


def _confusion_figure(results: dict, save: SaveFigure) -> str:
    conf = np.asarray(results["confusion"]["matrix"]).mean(0)
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    im = ax.imshow(conf, cmap="viridis")
    ax.set_xlabel("other class j")
    ax.set_ylabel("true class c")
    ax.set_title(f"Interclass confusion P(logit j > logit c), sigma="
                 f"{results['confusion']['noise']:g}\nmean of {len(results['seeds'])} seeds",
                 fontsize=9)
    ax.set_xticks(range(conf.shape[0]))
    ax.set_yticks(range(conf.shape[0]))
    fig.colorbar(im, ax=ax, fraction=0.046, label="probability (closed form)")
    return save("confusion.png", fig)


def _sensitivity_figure(results: dict, save: SaveFigure) -> str:
    s = results["sensitivity"]
    panels = ((np.asarray(s["pixels"]), "test image", "gray", "pixel value"),
              (np.asarray(s["std"]).mean(0), "sd of the true-class logit", "magma",
               "standard deviation"),
              (np.asarray(s["mean_shift"]).mean(0), "shift of the expected logit",
               "coolwarm", "shift"))
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.6), layout="constrained")
    for ax, (img, title, cmap, label) in zip(axes, panels):
        lim = float(np.abs(img).max()) or 1.0
        h = ax.imshow(img, cmap=cmap, **({"vmin": -lim, "vmax": lim} if cmap == "coolwarm"
                                        else {}))
        ax.set_title(title, fontsize=9)
        ax.axis("off")
        fig.colorbar(h, ax=ax, fraction=0.046, label=label)
    fig.suptitle(f"Noise of sd {s['noise']:g} on one pixel at a time, test image {s['image']} "
                 f"(label {s['label']}); maps: mean of {len(results['seeds'])} seeds",
                 fontsize=10)
    return save("sensitivity.png", fig)


def _ties_line(r: dict) -> str:
    """Kinks at the expansion points and the linearization rule used there."""
    if "ties" not in r:
        return ""
    counts = ", ".join(f"{k} {np.mean(v):.1f}" for k, v in sorted(r["ties"].items()))
    return (f"Kinks at the clean images (mean per image: tied positive max-pool maxima, "
            f"ReLU inputs at 0; `analytic.count_ties`): {counts or 'none'}. Where there are "
            f"kinks the net is not differentiable and no linearization is exact; rule used: "
            f"`at_ties={r.get('at_ties', 'ignore')}` (`analytic/linearize.py`).\n\n")


def _tightness_table(results: dict) -> str:
    rows = []
    for v in results["noise_levels"]:
        for m in results["methods"]:
            t = results["tightness"][m][float_key(v)]
            rows.append([f"{v:g}", m] + [render.fmt_mean_std(np.mean(t[k], -1))
                                         for k in ("mean_error", "var_error", "var_ratio")]
                        + [render.fmt_mean_std(np.mean(
                            results["mc_var_relative_error"][float_key(v)], -1))])
    return render.table(["sigma", "method", "mean error", "variance error",
                         "variance ratio MC/analytic", "MC relative error of the variances"],
                        rows)


def _attack_table(att: dict, modes) -> str:
    def cells(r: dict) -> list[str]:
        return [render.fmt_mean_std(np.mean(r["success_rate"], -1), 3),
                render.fmt_mean_std(r["images_fooled"], 3)]

    rows = [["isotropic noise (no attack)", "0", *cells(att["baseline_isotropic_noise"]
                                                        ["untargeted"]),
             *cells(att["baseline_isotropic_noise"]["targeted"])]]
    for mode in modes:
        u, t = att[mode]["untargeted"], att[mode]["targeted"]
        rows.append([mode, f"{max(max(u['max_shift']), max(t['max_shift'])):.3f}",
                     *cells(u), *cells(t)])
    return render.table(["attack mode", "largest mean shift", "untargeted: sample success",
                         "untargeted: images fooled", "targeted: sample success",
                         "targeted: images fooled"], rows)


def _timing_table(results: dict) -> str:
    tm, methods = results["timings"], results["methods"]
    rows = [[f"{v:g}", f"{tm['mc_seconds'][float_key(v)]:.2f}"]
            + [f"{tm['moments_seconds'][m][float_key(v)]:.4f}" for m in methods]
            + [f"{tm['speedup_exact_incl_linearization'][float_key(v)]:.0f}x",
               f"{tm['speedup_exact_moments_only'][float_key(v)]:.0f}x"]
            for v in results["noise_levels"]]
    return render.table(["sigma", "Monte Carlo s", *(f"{m} s" for m in methods),
                         "MC / (linearize + exact)", "MC / exact"], rows)


def write(config: ml_collections.ConfigDict, results: dict, save: SaveFigure) -> str:
    r, seeds = results, len(results["seeds"])
    fig_tight = _tightness_figure(r, save)
    fig_diff = (_exact_vs_zero_mean_figure(r, save) if "zero_mean" in r["methods"] else "")
    fig_class, fig_conf, fig_sens = (_class_means_figure(r, save), _confusion_figure(r, save),
                                     _sensitivity_figure(r, save))
    att, tm, c = r["attacks"], r["timings"], r["class_means"]
    text = (
        "## Analytic Gaussian moments vs Monte Carlo\n\n"
        f"{seeds} seeds (test accuracy {render.fmt_mean_std(r['test_accuracy_per_seed'])}). "
        f"Two-stage linearization at `{r['layer']}`; {r['num_images']} test images, "
        f"x ~ N(image, sigma^2 I); Monte Carlo with {r['mc_samples']:,} samples through the "
        f"real network of each seed. Errors are the symmetric relative error "
        f"2|a-b|/(|a|+|b|) (Euclidean norm over the {r['num_classes']} logits) of the "
        f"analytic vs the Monte Carlo output mean and output variances "
        f"(`analytic/tightness.py`); the table gives the mean over images, then mean ± sd "
        f"over seeds. The mean is the same for every method (they differ in the covariance "
        f"only). The last column is Monte Carlo's own relative standard error of the "
        f"variances (batch means): errors near it are sampling noise.\n\n"
        + _ties_line(r) + _tightness_table(r) + f"\n![tightness]({fig_tight})\n\n"
        + (f"![exact vs zero-mean]({fig_diff})\n\n" if fig_diff else "")
        + "## Gaussian attacks\n\n"
        f"{att['num_images']} test images classified correctly by every seed, "
        f"eps={att['eps']:g} (L-inf mean shift), per-pixel sd <= {att['sigma']:g}, "
        f"{att['steps']} Adam steps on the closed-form {att['objective']} objective "
        f"(`analytic/gaussian_attack.py`, linearized at the "
        f"{'current mean' if att['relinearize'] else 'clean image'}); success verified with "
        f"{att['samples']:,} samples through the real network per image (targeted: class "
        f"y+1). 'Sample success' is the mean fraction of fooling samples, 'images fooled' "
        f"the fraction of images fooled by more than half of them; mean ± sd over "
        f"seeds.\n\n"
        + (_attack_table(att, config.analytic.attack.modes) if att["num_images"] else
           "No test image in the pool is classified correctly by every seed.\n")
        + f"\n## Timings (seconds for {tm['seeds']} seeds x {tm['images']} images, compiled)"
        f"\n\nLinearization {tm['linearize_seconds']:.2f} s (once per image and seed, "
        f"shared by all noise levels and methods).\n\n" + _timing_table(r)
        + f"\nOver the whole noise grid: MC / (linearize + exact) = "
        f"{tm['speedup_exact_whole_grid']:.0f}x.\n\n"
        "## Uses of the closed form\n\n"
        "Expected-logit accuracy (the argmax of the exact E[g] is the label), mean ± sd "
        "over seeds: "
        + ", ".join(f"sigma={v:g}: {render.fmt_mean_std(acc, 3)}" for v, acc in zip(
            c["noise_levels"], np.asarray(c["expected_logit_accuracy"]).T))
        + f".\n\n![class means]({fig_class})\n\n![confusion]({fig_conf})\n\n"
        f"![sensitivity]({fig_sens})\n"
    )
    return text
