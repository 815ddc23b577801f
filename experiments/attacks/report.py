"""The ``attacks`` lens's report: robust accuracy curves (95% seed bands) and tables of
robust accuracy per attack and eps with 95% intervals over seeds and images."""

from __future__ import annotations

import matplotlib.pyplot as plt
import ml_collections
import numpy as np

from experiments import render
from experiments.intervals import Interval
from experiments.lens import SaveFigure
from experiments.rundir import float_key

NORM_WORDS = {"linf": "L-infinity", "l2": "L2"}
LABELS = {"fgsm": "FGSM", "bim": "BIM", "pgd": "PGD", "mifgsm": "MI-FGSM", "pgd_l2": "PGD (L2)",
          "fgm_l2": "FGM (L2)", "deepfool": "DeepFool (L2)", "deepfool_linf": "DeepFool",
          "cw_l2": "Carlini-Wagner (L2)"}


def _figure(results: dict, norms: list[str]):
    fig, axes = plt.subplots(1, len(norms), figsize=(6.2 * len(norms), 3.8), squeeze=False)
    for ax, norm in zip(axes[0], norms):
        series = {LABELS.get(name, name): np.asarray(results["robust_accuracy_per_seed"][name])
                  for name, nm in results["norm"].items() if nm == norm}
        render.curves(results["eps"][norm], series,
                      f"perturbation size eps ({NORM_WORDS[norm]} norm)",
                      "robust accuracy (fraction of test images)",
                      f"Robust accuracy under {NORM_WORDS[norm]} attacks", ax=ax)
        ax.set_ylim(-0.02, 1.02)
        ax.legend(title="attack", fontsize=7, title_fontsize=7, loc="upper left",
                  bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)  # outside: covers no data
    fig.tight_layout()
    return fig


def _table(results: dict, norm: str) -> str:
    names = [name for name, nm in results["norm"].items() if nm == norm]
    eps = results["eps"][norm]
    rows = []
    for name in names:
        cells = [Interval.from_dict(results["robust_accuracy_interval"][name][float_key(e)]).fmt()
                 for e in eps]
        median = results["median_min_eps"][name]
        rows.append([name, *cells, "n/a" if median is None else f"{median:.3g}",
                     f"{results['seconds'][name]:.1f}"])
    header = ["attack", *(f"eps={e:g}" for e in eps), "median minimal eps", "seconds"]
    return render.table(header, rows)


def write(config: ml_collections.ConfigDict, results: dict, save: SaveFigure) -> str:
    norms = [n for n in ("linf", "l2") if n in results["norm"].values()]
    seeds, images = len(results["seeds"]), results["images"]
    cfg = config.attacks
    text = (f"## Input attacks\n\nUntargeted robust accuracy (the fraction of test images "
            f"still classified correctly under the attack) of {config.model.name} on "
            f"{config.data.name}: the first {images} test images, each of {seeds} trained "
            f"seed(s). BIM, PGD, MI-FGSM and PGD-L2 take {cfg.steps} steps (PGD "
            f"{cfg.restarts} random start(s)); DeepFool ({cfg.deepfool_steps} steps) and "
            f"CW-L2 ({cfg.cw_steps} steps x {cfg.cw_search_steps} binary-search rounds) find "
            "minimal perturbations, and an image counts as broken at eps when theirs has norm "
            "at most eps (an image for which they found none counts as robust at every eps, "
            "so with few steps their curves can stay above the iterative attacks').\n\n")
    if not norms:
        return text
    fig = save("robust_accuracy.png", _figure(results, norms))
    text += (f"![robust accuracy per attack and eps]({fig})\n\nThe curves are the mean over "
             f"seeds; the bands are 95% intervals across seeds (Student t over the per-seed "
             f"accuracies). In the tables each cell is the robust accuracy with its 95% "
             f"interval over seeds and images")
    first = next(iter(results["robust_accuracy_interval"].values()))
    method = next(iter(first.values()))["method"]
    text += (f" ({method}). The median minimal eps is the median over images of the "
             "smallest grid eps that broke the image (for DeepFool and CW-L2 the norm they "
             "found), averaged over seeds; seconds are summed over seeds.\n\n")
    for norm in norms:
        text += f"### {NORM_WORDS[norm]} attacks\n\n" + _table(results, norm) + "\n"
    if results.get("autoattack"):
        text += _autoattack(results["autoattack"], save)
    return text


MEMBER_LABELS = {"apgd-ce": "APGD-CE", "apgd-dlr": "APGD-DLR", "apgd-t": "APGD-T",
                 "fab": "FAB", "fab-t": "FAB-T", "square": "Square"}


def _autoattack_figure(aa: dict, names: list[str]):
    """Running robust accuracy (clean, then after each member) per model kind, with seed
    bands."""
    series = {}
    for kind, m in aa["models"].items():
        rows = [[clean, *(seed[n] for n in names)]
                for clean, seed in zip(m["clean_accuracy_per_seed"], m["robust_after_per_seed"])]
        series[kind] = np.asarray(rows)
    fig = render.curves(list(range(len(names) + 1)), series, "AutoAttack member",
                        "accuracy (fraction of test images)",
                        f"AutoAttack, linf eps {aa['eps']:g}: accuracy after each member")
    ax = fig.axes[0]
    ax.set_xticks(range(len(names) + 1), ["clean", *(MEMBER_LABELS.get(n, n) for n in names)])
    ax.set_ylim(-0.02, 1.02)
    fig.tight_layout()
    return fig


def _autoattack(aa: dict, save: SaveFigure) -> str:
    """AutoAttack per model kind: robust accuracy after each member, PGD beside it."""
    budget = "; ".join(f"{MEMBER_LABELS.get(k, k)} " + ", ".join(f"{n}={v}" for n, v in kw.items())
                       for k, kw in aa["settings"].items())
    text = (f"### AutoAttack (linf eps {aa['eps']:g}, {aa['version']} version)\n\n"
            f"Each member runs only on the images every earlier member left robust "
            f"(Croce & Hein 2020). Budgets: {budget} (the reference uses 100 iterations, "
            f"9 target classes and 5,000 queries; smaller budgets can only overstate "
            f"robustness). Robust accuracy with its 95% interval over seeds and images; "
            f"the per-member columns are the running robust accuracy (mean over seeds); "
            f"PGD is the lens's PGD at the same eps.\n\n")
    names = list(next(iter(aa["models"].values()))["robust_after_per_seed"][0])
    fig = save("autoattack.png", _autoattack_figure(aa, names))
    text += f"![accuracy after each AutoAttack member]({fig})\n\n"
    rows = []
    for kind, m in aa["models"].items():
        after = [np.mean([seed[n] for seed in m["robust_after_per_seed"]]) for n in names]
        rows.append([kind if m["training"] == kind else f"{kind} ({m['training']})",
                     f"{np.mean(m['clean_accuracy_per_seed']):.3f}",
                     Interval.from_dict(m["pgd_robust_accuracy_interval"]).fmt(),
                     *(f"{a:.3f}" for a in after),
                     Interval.from_dict(m["robust_accuracy_interval"]).fmt(),
                     f"{m['seconds']:.1f}"])
    header = ["model", "clean", "PGD", *(f"after {MEMBER_LABELS.get(n, n)}" for n in names),
              "AutoAttack", "seconds"]
    return text + render.table(header, rows) + "\n"
