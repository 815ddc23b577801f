"""The ``som`` lens's report: per-layer tables (mean ± sd over seeds), the measures
against depth with their seed bands, and the first seed's hit maps."""

from __future__ import annotations

import ml_collections
import numpy as np

from experiments import render
from experiments.lens import SaveFigure
from experiments.som import figures
from som.grid import Grid

NOISE = "noise"


def _series(results: dict, key: str, attack: str | None = None) -> np.ndarray:
    """(seeds, layers) values of a per-layer measure."""
    pl = results["per_layer"]
    return np.array([pl[n][attack][key] if attack else pl[n][key]
                     for n in results["layers"]], float).T


def _figures(results: dict, save: SaveFigure) -> tuple[str, str, str]:
    layers, shallow = results["layers"], results["shallow_layers"]
    attacks = results["attacks"]
    codes = save("som_codes_vs_depth.png", figures.versus_depth(layers, shallow, [
        ("Label information in each layer's map", "corrected NMI(BMU; label)",
         {"corrected NMI": _series(results, "nmi_corrected")}),
        ("How the map spreads the classes", "fraction",
         {"class dispersion / spread (1 = classes mixed)":
              _series(results, "class_dispersion_ratio"),
          "distinct BMUs / units": _series(results, "distinct_bmus_fraction")}),
    ]))
    moved = {a.upper(): _series(results, "moved_fraction", a) for a in attacks}
    panels = [("How many BMUs each perturbation moves", "fraction of test images", moved)]
    if NOISE in attacks:
        panels.append(("BMU moves beyond random noise of the same size",
                       "moved fraction minus that of noise",
                       {a.upper(): moved[a.upper()] - moved[NOISE.upper()]
                        for a in attacks if a != NOISE}))
    agree = {a.upper(): _series(results, "som_agrees_with_net", a)
             for a in attacks if a != NOISE}
    if agree:
        panels.append(("Does the code side with the network's (wrong) class?",
                       "BMU's training class = prediction", agree))
    moves = save("som_moves_vs_depth.png", figures.versus_depth(layers, shallow, panels))
    g = results["grid"]
    grid = Grid(g["rows"], g["cols"], g["topology"])
    hm = results["hit_maps"]
    rows = [("clean, by label", hm["clean"])]
    rows += [(f"{a.upper()}, by label", hm[a]) for a in results["attacks"] if a in hm]
    maps = save("som_hit_maps.png", figures.hit_maps(
        grid, layers, rows, [np.asarray(u) for u in results["u_matrix"]],
        num_classes=results["num_classes"],
        title=f"Hit maps of seed {results['seeds'][0]}: unit color = majority true label of "
              "the test inputs it wins, opacity = purity, blank = no hits;\nlast row: "
              "U-matrix (dark = far from its neighbors)"))
    return codes, moves, maps


def _tables(results: dict) -> tuple[str, str]:
    pl, layers = results["per_layer"], results["layers"]

    def ms(values, digits=3):
        return render.fmt_mean_std(values, digits)

    head = ["layer", "code dim", "distinct BMUs", "class dispersion", "dispersion ratio",
            "MI (bits)", "MI shuffled", "NMI", "NMI corrected", "QE", "TE",
            "SOM = net (clean)"]
    rows = [[n, pl[n]["code_dim"], ms(pl[n]["distinct_bmus"], 1),
             ms(pl[n]["class_dispersion"], 2)]
            + [ms(pl[n][k]) for k in ("class_dispersion_ratio", "mi_bits", "mi_shuffled_bits",
                                     "nmi", "nmi_corrected", "quantization_error",
                                     "topographic_error", "som_agrees_with_net")]
            for n in layers]
    head2, rows2 = ["layer"], [[n] for n in layers]
    for a in results["attacks"]:
        head2 += [f"{a} moved", f"{a} mean dist", f"{a} dist / spread"]
        head2 += [f"{a} SOM = pred"] if a != NOISE else []
        for row, n in zip(rows2, layers):
            m = pl[n][a]
            row += [ms(m["moved_fraction"]), ms(m["mean_distance"], 2),
                    ms(m["distance_over_spread"], 2)]
            row += [ms(m["som_agrees_with_net"])] if a != NOISE else []
    return render.table(head, rows), render.table(head2, rows2)


def write(config: ml_collections.ConfigDict, results: dict, save: SaveFigure) -> str:
    c = config.som
    codes_fig, moves_fig, maps_fig = _figures(results, save)
    table1, table2 = _tables(results)
    acc = ", ".join(f"{k} {render.fmt_mean_std(v, 3)}" for k, v in results["accuracy"].items())
    sets = "/".join(a.upper() for a in results["attacks"])
    seeds = len(results["seeds"])
    return (
        "## Internal codes through self-organizing maps\n\n"
        f"One {c.rows}x{c.cols} {c.topology} SOM per layer and seed ({c.algorithm}, {c.steps} "
        f"steps, {c.neighborhood} neighborhood, sigma {results['sigma_start']:g} -> "
        f"{c.sigma_end:g} {c.decay}, {c.init} init), trained on the codes of "
        f"{results['train_images']} training images; measures on {results['images']} test "
        f"images and their {sets} versions (linf eps {c.eps:g}, PGD {c.pgd_steps} steps; "
        "NOISE: random +-eps signs, the non-adversarial baseline). "
        f"{seeds} trained seeds; tables give mean ± sd over seeds. "
        f"Accuracy: {acc}.\n\n"
        "Codes: conv layer -> per-channel spatial mean of its post-ReLU map; dense layer "
        "-> its post-ReLU activations (the last layer: the logits). Each layer's codes are "
        f"scaled by their training codes (scale: {c.scale}). Shallow layers: "
        f"{', '.join(results['shallow_layers'])}; deep layers: "
        f"{', '.join(results['deep_layers'])}. Dispersion is in grid units (neighbor "
        "distance 1); the dispersion ratio divides it by the spread of all BMUs. MI is the "
        "plug-in estimate; 'MI shuffled' is its value with permuted labels (the estimator's "
        "bias), 'NMI corrected' = (MI - MI shuffled) / H(label). QE/TE: quantization and "
        "topographic errors on the training codes. 'SOM = net': fraction of inputs whose "
        "BMU's majority training class equals the network's prediction.\n\n"
        "### Clean codes per layer\n\n" + table1 + "\n"
        "### Perturbed inputs: how BMUs move\n\n" + table2 + "\n"
        f"![codes vs depth]({codes_fig})\n\n![moves vs depth]({moves_fig})\n\n"
        "Hit maps (first seed): each unit colored by the majority true label of the test "
        "inputs it wins (opacity = purity, blank = no hits); last row: U-matrix (dark = "
        f"far from neighbors).\n\n![hit maps]({maps_fig})\n\n"
        "Caveats: one small network, one map size, a few hundred test digits; the "
        "measures are plug-in estimates (the shuffled-label MI shows their bias); a BMU "
        "'move' depends on how finely the map tiles each layer's code space, which is why "
        "moves are compared with random noise of the same size. Random +-eps noise is "
        "clipped to [0, 1], so it lifts the zero background by about eps/2: a systematic "
        "shift that per-channel spatial means (the conv codes) pick up. The count of "
        "distinct BMUs reflects how a map fitted to each layer's own codes tiles them "
        "(class clusters leave unused units between them), not class homogeneity. This is "
        "correlational, not a causal test of the paper's hypothesis.\n\n"
        f"Time: {results['seconds']:.1f} s (training or restoring "
        f"{results['seconds_train_or_restore']:.1f} s, SOM analysis "
        f"{results['seconds_som']:.1f} s).\n"
    )
