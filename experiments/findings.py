"""Each paper's claim, what a run measured, and whether they agree.

One function per lens reads that lens's ``results.json`` dict and returns rows
``{"lens", "claim", "measured", "agrees", "figure"}``. ``agrees`` is "yes", "no" or
"partly"; "measured" quotes numbers that are in the lens's results.json, so the findings
table can be checked against it.
"""

from __future__ import annotations

from collections.abc import Callable


def _row(lens: str, claim: str, measured: str, agrees: str, figure: str = "") -> dict:
    return {"lens": lens, "claim": claim, "measured": measured, "agrees": agrees,
            "figure": figure}


def train(r: dict) -> list[dict]:
    return [_row("nets", "LeNet-5 learns digits (>= 97% test accuracy)",
                 f"test accuracy {r['test_accuracy']:.3f} ({r['parameters']:,} parameters)",
                 "yes" if r["test_accuracy"] >= 0.97 else "no", "train/test_accuracy.png")]


def attacks(r: dict) -> list[dict]:
    ra = r["robust_accuracy"]
    rows = []
    if "fgsm" in ra and "pgd" in ra:
        common = [e for e in ra["pgd"] if e in ra["fgsm"] and float(e) > 0]
        worse = all(ra["pgd"][e] <= ra["fgsm"][e] for e in common)
        e = "0.1" if "0.1" in common else common[len(common) // 2]
        rows.append(_row(
            "attacks", "Iterative PGD is at least as strong as one-step FGSM (Madry et al.)",
            f"linf eps {e}: robust accuracy PGD {ra['pgd'][e]:.3f} vs FGSM {ra['fgsm'][e]:.3f}; "
            f"PGD <= FGSM at {'every' if worse else 'not every'} eps > 0",
            "yes" if worse else "no", "attacks/robust_accuracy.png"))
    return rows


def weights(r: dict) -> list[dict]:
    c = r["paper_comparison"]
    top_ok = not c["top_over_30pct"]
    loss = ", ".join(f"{k} {v:.0%}" for k, v in c["loss"].items())
    agrees = "yes" if top_ok and c["first_conv_near_chance"] else (
        "partly" if top_ok or c["first_conv_near_chance"] else "no")
    return [_row(
        "weights (Cheney et al.)",
        "Removing 70% of a top layer's weights costs < 30%; in the first conv layer it "
        "drops to chance",
        f"accuracy lost at p={c['p']}: {loss}; most fragile: {c['most_fragile']}; "
        f"{c['first_conv']} keeps {c['first_conv_margin_left']:.0%} of its margin over chance",
        agrees, "weights/weights_synapse_knockout_weights.png")]


def som(r: dict) -> list[dict]:
    v = r["verdict"]
    homog = _row(
        "som (Lee & Vijayan)", "Shallow layers map inputs onto homogeneous codes, deep layers "
        "onto diverse ones",
        f"label information in the BMU (corrected NMI): shallow {v['nmi_corrected_shallow']:.2f}"
        f" vs deep {v['nmi_corrected_deep']:.2f}; class-dispersion ratio "
        f"{v['dispersion_ratio_shallow']:.2f} vs {v['dispersion_ratio_deep']:.2f}",
        "yes" if v["shallow_more_homogeneous"] else "no", "som/som_hit_maps.png")
    p = v["pgd"]
    shallow, deep = p["moved_over_noise_shallow"], p["moved_over_noise_deep"]
    adv = _row(
        "som (Lee & Vijayan)", "Homogeneous (shallow) codes underlie adversarial vulnerability",
        f"PGD moves BMUs beyond random noise by {shallow:+.2f} (shallow) vs {deep:+.2f} (deep)",
        "yes" if shallow > deep else "no", "som/som_measures_vs_depth.png")
    return [homog, adv]


def minmax(r: dict) -> list[dict]:
    a, b = r["verdict"]["a"], r["verdict"]["b"]
    layers = "; ".join(f"{k} {v['init']:.3f} -> {v['end']:.3f}" for k, v in a["layers"].items())
    lam = max(b["per_lambda"], key=float)
    pb = b["per_lambda"][lam]
    return [
        _row("minmax (Shen et al.)", "Conv weights move to the ends of their intervals: "
             "fuzziness falls during ordinary training",
             f"fuzziness at lambda=0, init -> end: {layers}", a["answer"],
             "minmax/fuzziness_curves.png"),
        _row("minmax (Shen et al.)", "Models with the Min-Max property are more robust",
             f"lambda={lam} vs 0: clean {pb['clean_change']:+.3f}, mean robust accuracy "
             f"FGSM {pb['fgsm']['change']:+.3f}, PGD {pb['pgd']['change']:+.3f}",
             b["answer"], "minmax/robust_accuracy.png"),
    ]


def analytic(r: dict) -> list[dict]:
    levels = [f"{s:g}" for s in r["noise_levels"]]
    ex = r["tightness"]["exact"]
    lo, hi = levels[0], levels[-1]
    tight = _row(
        "analytic (Bibi et al.)", "Closed-form moments of the linearized net track Monte Carlo "
        "through the real network",
        f"symmetric relative error of the output variance, exact method: "
        f"{ex[lo]['var_error']:.3f} (sigma {lo}) to {ex[hi]['var_error']:.3f} (sigma {hi}); "
        f"of the mean: {ex[lo]['mean_error']:.3f} to {ex[hi]['mean_error']:.3f}",
        "yes" if ex[lo]["var_error"] < 0.25 else "partly", "analytic/tightness.png")
    ratios = [r["exact_vs_zero_mean"][s]["zero_mean_over_exact"] for s in levels]
    exact = _row(
        "analytic (this project)", "The exact general-mean moments are at least as tight as "
        "the paper's zero-mean form",
        f"zero-mean variance error / exact: {min(ratios):.1f}x to {max(ratios):.1f}x",
        "yes" if r["exact_at_least_as_tight"] else "no", "analytic/tightness.png")
    return [tight, exact]


FINDINGS: dict[str, Callable[[dict], list[dict]]] = {
    "train": train, "attacks": attacks, "weights": weights, "som": som, "minmax": minmax,
    "analytic": analytic,
}
