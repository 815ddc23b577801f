"""The ``som`` task: internal codes of every layer through self-organizing maps
(Lee & Vijayan, arXiv 2205.10952).

Protocol, per trained seed:

1. codes (``som.codes``) of every conv/dense layer for the training images, the
   evaluated test images, their PGD / FGSM adversarial versions (linf, ``som.eps``)
   and, as a non-adversarial baseline, the same images with random +-eps signs;
2. each layer's codes are divided by the RMS of its training codes (``som.scale``;
   BMUs do not change under a common scale, quantization errors become comparable
   across layers) and zero-padded to a common dimension;
3. one map per layer, trained on the training codes, all layers in one vmapped call;
4. test BMUs (clean and adversarial) -> the measures of ``som.measures`` per layer.

results.json holds the measures per layer (mean over seeds; per seed under
``per_seed``), report.md the tables, the hit maps, the measures against depth and a
verdict computed from the numbers: do shallow layers give more homogeneous codes
(lower label information, classes more mixed on the map) than deep ones, and where do
adversarial inputs move the codes.
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from attacks.common import model_logits_fn
from attacks.gradient import fgsm, pgd
from experiments import rundir as report
from experiments.config import ConfigError, sweepable
from experiments.rundir import RunDir
from experiments.som import figures as plots
from experiments.train import protocol as experiment
from nets import evaluate
from nets.train import select
from som import codes as codes_lib
from som import measures, quality
from som.bmu import bmus
from som.grid import Grid
from som.train import SOMSpec, fit_many

ATTACKS = ("pgd", "fgsm", "noise")
SCALES = ("rms", "zscore", "none")


@sweepable
def defaults() -> ml_collections.ConfigDict:
    """The ``train`` task's keys plus a ``som`` section."""
    c = experiment.defaults()
    c.task = "som"
    c.som = ml_collections.ConfigDict({
        "rows": 10,
        "cols": 10,
        "topology": "hexagonal",  # or rectangular
        "neighborhood": "gaussian",  # or bubble
        "algorithm": "batch",  # or online
        "steps": 40,  # batch: passes over the data; online: single-sample updates
        "sigma": 0.0,  # start radius; 0 = max(rows, cols) / 2
        "sigma_end": 1.0,
        "learning_rate": 0.5,  # online only
        "learning_rate_end": 0.01,
        "decay": "exponential",  # or linear, asymptotic (MiniSom's)
        "init": "pca",  # or random
        "layers": (),  # conv/dense layers to map; () = all
        "scale": "rms",  # rms | zscore (per feature) | none
        "attacks": ATTACKS,  # noise: random +-eps signs, the non-adversarial baseline
        "eps": 0.1,  # linf budget of the perturbations (inputs in [0, 1])
        "pgd_steps": 20,
        "images": 0,  # test images evaluated (clean and attacked); 0 = all
        "permutations": 20,  # label shuffles for the MI bias floor
        "chunk": 1024,  # rows per BMU / attack chunk
        "seed": 0,
    })
    return c


def som_spec(cfg: ml_collections.ConfigDict) -> SOMSpec:
    """The map spec from the config's ``som`` section (bad values are a ConfigError)."""
    try:
        grid = Grid(cfg.rows, cfg.cols, cfg.topology)
        return SOMSpec(grid, algorithm=cfg.algorithm, steps=cfg.steps,
                       neighborhood=cfg.neighborhood, sigma=cfg.sigma, sigma_end=cfg.sigma_end,
                       learning_rate=cfg.learning_rate,
                       learning_rate_end=cfg.learning_rate_end, decay=cfg.decay,
                       init=cfg.init, chunk=cfg.chunk)
    except ValueError as e:
        raise ConfigError(f"som: {e}") from None


def _check(cfg: ml_collections.ConfigDict) -> None:
    bad = [a for a in cfg.attacks if a not in ATTACKS]
    if bad:
        raise ConfigError(f"som.attacks: unknown {bad}; choose from {list(ATTACKS)}")
    if cfg.scale not in SCALES:
        raise ConfigError(f"som.scale: unknown {cfg.scale!r}; choose from {list(SCALES)}")
    if not 0.0 <= cfg.eps <= 1.0:
        raise ConfigError(f"som.eps must be in [0, 1], got {cfg.eps}")


def _scaler(train_codes: dict, how: str) -> dict:
    """Per-layer (shift, scale) fitted on the training codes."""
    out = {}
    for name, c in train_codes.items():
        c = np.asarray(c, np.float64)
        if how == "rms":
            out[name] = (0.0, max(float(np.sqrt((c**2).mean())), 1e-12))
        elif how == "zscore":
            sd = c.std(0)
            out[name] = (c.mean(0), np.where(sd > 1e-12, sd, 1.0))
        else:
            out[name] = (0.0, 1.0)
    return out


def _prepare(codes: dict, scaler: dict, dim: int) -> np.ndarray:
    """(L, N, dim) float32: scaled codes, zero-padded (in NumPy: no per-shape compiles)."""
    out = [np.pad((np.asarray(v, np.float64) - scaler[k][0]) / scaler[k][1],
                  ((0, 0), (0, dim - v.shape[-1]))) for k, v in codes.items()]
    return np.stack(out).astype(np.float32)


@jax.jit
def _noise(key: jax.Array, x: jax.Array, eps: float) -> jax.Array:
    """x + eps * random signs, clipped to [0, 1]: the non-adversarial baseline."""
    return jnp.clip(x + eps * jax.random.rademacher(key, x.shape, x.dtype), 0.0, 1.0)


def _attack(name: str, fn, x: np.ndarray, y: np.ndarray, cfg, key) -> np.ndarray:
    """Adversarial (or, for ``noise``, randomly perturbed) versions of ``x``, in chunks of
    equal size (the last one padded) so that each attack compiles once."""
    n = x.shape[0]
    size = min(cfg.chunk, n)
    pad = (-n) % size
    xp = np.concatenate([x, x[:pad]]) if pad else x
    yp = np.concatenate([y, y[:pad]]) if pad else y
    out = []
    for i in range(0, n + pad, size):
        xc, yc = jnp.asarray(xp[i:i + size]), jnp.asarray(yp[i:i + size])
        k = jax.random.fold_in(key, i)
        if name == "pgd":
            out.append(pgd(fn, xc, yc, eps=cfg.eps, steps=cfg.pgd_steps, key=k))
        elif name == "fgsm":
            out.append(fgsm(fn, xc, yc, eps=cfg.eps, key=k))
        else:
            out.append(_noise(k, xc, cfg.eps))
    return np.concatenate([np.asarray(o) for o in out])[:n]


@functools.partial(jax.jit, static_argnames=("chunk",))
def _layer_bmus(weights: jax.Array, xs: jax.Array, chunk: int) -> jax.Array:
    """(L, N) BMUs of each layer's inputs on that layer's map."""
    return jax.vmap(lambda w, x: bmus(w, x, chunk))(weights, xs)


@functools.partial(jax.jit, static_argnames=("grid", "num_classes", "chunk"))
def _layer_measures(weights, xs_train, y_train, units_train, units, y, shuffled, preds, *,
                    grid: Grid, num_classes: int, chunk: int) -> dict:
    """Every per-layer number, vmapped over the L maps (arrays with a leading L axis).

    ``units`` / ``preds``: {"clean": ..., attack: ...} BMUs (L, N) and predictions (N,).
    Padded code dimensions are zero in data and weights, so distances are unchanged.
    """
    m, coords = grid.size, jnp.asarray(grid.coords)

    def one(w, xtr, utr, u):
        unit_class = quality.majority_class(quality.class_hits(utr, y_train, m, num_classes))
        res = measures.code_measures(u["clean"], y, shuffled, coords, m, num_classes)
        res["quantization_error"] = quality.quantization_error(w, xtr, chunk)
        res["topographic_error"] = quality.topographic_error(w, xtr, grid, chunk)
        res["som_agrees_with_net"] = measures.agreement(u["clean"], unit_class, preds["clean"])
        res["u_matrix"] = quality.u_matrix(w, grid)
        res["hits"] = {name: quality.class_hits(v, y, m, num_classes) for name, v in u.items()}
        for name, v in u.items():
            if name == "clean":
                continue
            mv = measures.bmu_moves(u["clean"], v, coords)
            mv["distance_over_spread"] = mv["mean_distance"] / jnp.maximum(res["spread"], 1e-12)
            mv["som_agrees_with_net"] = measures.agreement(v, unit_class, preds[name])
            res[name] = mv
        return res

    return jax.vmap(one)(weights, xs_train, units_train, units)


def analyze_model(net, params, train, x_eval, y_eval, spec: SOMSpec, cfg, layers, key):
    """Everything for one trained model: (per-layer measures, accuracies, figure data)."""
    fn = model_logits_fn(net, params)
    k_attack, k_som, k_mi = jax.random.split(key, 3)

    inputs = {"clean": x_eval}
    for name in cfg.attacks:
        inputs[name] = _attack(name, fn, x_eval, y_eval, cfg,
                               jax.random.fold_in(k_attack, ATTACKS.index(name)))
    preds = {k: np.asarray(evaluate.logits(net, params, jnp.asarray(v), cfg.chunk).argmax(-1))
             for k, v in inputs.items()}

    # Codes of the training images and of every evaluated set in one call (one compile).
    n_train, n_eval = train.images.shape[0], x_eval.shape[0]
    stacked = np.concatenate([train.images, *inputs.values()])
    all_codes = {k: np.asarray(v) for k, v in codes_lib.layer_codes(
        net, params, jnp.asarray(stacked), layers, cfg.chunk).items()}
    train_codes = {k: v[:n_train] for k, v in all_codes.items()}
    dims = {k: int(v.shape[-1]) for k, v in train_codes.items()}
    dim = max(dims.values())
    scaler = _scaler(train_codes, cfg.scale)
    xs_all = jnp.asarray(_prepare(all_codes, scaler, dim))  # (L, N_train + S * N_eval, D)
    xs_train = xs_all[:, :n_train]
    weights = fit_many(spec, jax.random.split(k_som, len(layers)), xs_train)
    units_all = _layer_bmus(weights, xs_all, cfg.chunk)
    units = {k: units_all[:, n_train + i * n_eval: n_train + (i + 1) * n_eval]
             for i, k in enumerate(inputs)}

    y = jnp.asarray(y_eval)
    out = _layer_measures(
        weights, xs_train, jnp.asarray(train.labels), units_all[:, :n_train],
        units, y, measures.shuffle_labels(k_mi, y, cfg.permutations),
        {k: jnp.asarray(v) for k, v in preds.items()}, grid=spec.grid,
        num_classes=int(train.num_classes), chunk=cfg.chunk)
    out = jax.tree.map(np.asarray, out)
    fig_data = {"hits": {k: list(v) for k, v in out.pop("hits").items()},
                "u": list(out.pop("u_matrix"))}
    per_layer = {}
    for li, name in enumerate(layers):
        res = {k: float(v[li]) for k, v in out.items() if k not in cfg.attacks}
        res["code_dim"] = dims[name]
        for a in cfg.attacks:
            res[a] = {k: float(v[li]) for k, v in out[a].items()}
            res[a]["accuracy"] = float((preds[a] == y_eval).mean())
        per_layer[name] = res
    accuracy = {k: float((p == y_eval).mean()) for k, p in preds.items()}
    return per_layer, accuracy, fig_data


def spearman(a, b) -> float:
    """Spearman rank correlation (no tie correction; nan when a series is constant)."""
    ra = np.argsort(np.argsort(np.asarray(a, float))).astype(float)
    rb = np.argsort(np.argsort(np.asarray(b, float))).astype(float)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def verdict(layers: list[str], kinds: list[str], per_layer: dict, attacks) -> dict:
    """Shallow vs deep homogeneity and where attacks move codes, from the numbers.

    Shallow = the conv layers, deep = the dense layers (first / second half of the layers
    if the net has no conv layer). Homogeneous = little label information in the BMU
    (corrected NMI) and classes spread over the map like all inputs (dispersion ratio).
    """
    shallow = [n for n, k in zip(layers, kinds) if k == "conv"]
    deep = [n for n, k in zip(layers, kinds) if k != "conv"]
    if not shallow or not deep:
        half = max(1, len(layers) // 2)
        shallow, deep = layers[:half], layers[half:]
    nmi = [per_layer[n]["nmi_corrected"] for n in layers]
    ratio = [per_layer[n]["class_dispersion_ratio"] for n in layers]
    depth = list(range(len(layers)))

    def mean(names, key, sub=None):
        return float(np.mean([per_layer[n][sub][key] if sub else per_layer[n][key]
                              for n in names]))

    out = {
        "shallow_layers": shallow,
        "deep_layers": deep,
        "nmi_corrected_shallow": mean(shallow, "nmi_corrected"),
        "nmi_corrected_deep": mean(deep, "nmi_corrected"),
        "dispersion_ratio_shallow": mean(shallow, "class_dispersion_ratio"),
        "dispersion_ratio_deep": mean(deep, "class_dispersion_ratio"),
        "distinct_bmus_shallow": mean(shallow, "distinct_bmus"),
        "distinct_bmus_deep": mean(deep, "distinct_bmus"),
        "spearman_depth_nmi": spearman(depth, nmi),
        "spearman_depth_dispersion_ratio": spearman(depth, ratio),
    }
    out["shallow_more_homogeneous"] = bool(
        out["nmi_corrected_shallow"] < out["nmi_corrected_deep"]
        and out["dispersion_ratio_shallow"] > out["dispersion_ratio_deep"])
    homogeneity = [1.0 - v for v in nmi]
    for a in attacks:
        moved = [per_layer[n][a]["moved_fraction"] for n in layers]
        agree = [per_layer[n][a]["som_agrees_with_net"] for n in layers]
        av = {
            "moved_shallow": mean(shallow, "moved_fraction", a),
            "moved_deep": mean(deep, "moved_fraction", a),
            "most_moved_layer": layers[int(np.argmax(moved))],
            "least_moved_layer": layers[int(np.argmin(moved))],
            "spearman_homogeneity_moved": spearman(homogeneity, moved),
            "first_layer_agreeing_with_prediction": next(
                (n for n, g in zip(layers, agree) if g >= 0.5), None),
        }
        if a != "noise" and "noise" in attacks:
            excess = {n: m - per_layer[n]["noise"]["moved_fraction"]
                      for m, n in zip(moved, layers)}
            av["moved_over_noise"] = excess
            av["moved_over_noise_shallow"] = float(np.mean([excess[n] for n in shallow]))
            av["moved_over_noise_deep"] = float(np.mean([excess[n] for n in deep]))
            av["spearman_homogeneity_moved_over_noise"] = spearman(homogeneity,
                                                                   list(excess.values()))
        if a != "noise":
            av["sides_with_prediction_shallow"] = mean(shallow, "som_agrees_with_net", a)
            av["sides_with_prediction_deep"] = mean(deep, "som_agrees_with_net", a)
        out[a] = av
    return out


def run(config: ml_collections.ConfigDict, run_dir: RunDir, progress: bool = True) -> dict:
    cfg = config.som
    _check(cfg)
    spec = som_spec(cfg)
    try:  # layer names do not depend on the data: check them before training
        layers = codes_lib.check_layers(experiment.build_model(config.model, 10),
                                        tuple(cfg.layers))
    except ValueError as e:
        raise ConfigError(f"som.layers: {e}") from None
    t0 = time.perf_counter()
    net, states, _, (train, test) = experiment.train_models(config, run_dir, progress)
    t_train = time.perf_counter() - t0
    kinds = [codes_lib.code_sources(net)[n][1] for n in layers]
    n = cfg.images or test.images.shape[0]
    x_eval, y_eval = test.images[:n], test.labels[:n]
    seeds = list(config.train.seeds)

    runs = []
    for i in tqdm(range(len(seeds)), desc="som", unit="model", disable=not progress):
        key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), i)
        runs.append(analyze_model(net, select(states, i)["params"], train, x_eval, y_eval,
                                  spec, cfg, layers, key))
    t_som = time.perf_counter() - t0 - t_train

    per_layer = _mean_over_seeds([r[0] for r in runs], cfg.attacks)
    accuracy = {k: float(np.mean([r[1][k] for r in runs])) for k in runs[0][1]}
    results = {
        "model": config.model.name, "data": config.data.name, "seeds": seeds,
        "images": int(n), "train_images": int(train.images.shape[0]),
        "grid": {"rows": cfg.rows, "cols": cfg.cols, "topology": cfg.topology},
        "units": spec.grid.size,
        "algorithm": cfg.algorithm, "steps": cfg.steps, "eps": cfg.eps,
        "attacks": list(cfg.attacks), "layers": list(layers), "layer_kinds": kinds,
        "accuracy": accuracy,
        "per_layer": per_layer,
        "verdict": verdict(list(layers), kinds, per_layer, cfg.attacks),
        "seconds": {"train_or_restore": t_train, "som_analysis": t_som,
                    "total": time.perf_counter() - t0},
    }
    if len(seeds) > 1:
        results["per_seed"] = [r[0] for r in runs]
    run_dir.write_json("results.json", results)
    run_dir.write_report(_report(config, results, spec, runs[0][2], run_dir))
    return results


def _mean_over_seeds(per_seed: list[dict], attacks) -> dict:
    out = {}
    for name in per_seed[0]:
        rows = [p[name] for p in per_seed]
        res = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k not in attacks}
        res["code_dim"] = int(rows[0]["code_dim"])
        for a in attacks:
            res[a] = {k: float(np.mean([r[a][k] for r in rows])) for k in rows[0][a]}
        out[name] = res
    return out


def _relation(rho: float) -> str:
    if rho > 0.3:
        return "moves are larger where codes are more homogeneous"
    if rho < -0.3:
        return "moves are larger where codes are more diverse"
    return "no clear rank relation"


def _verdict_text(results: dict) -> str:
    v, pl, layers = results["verdict"], results["per_layer"], results["layers"]
    sh, dp = ", ".join(v["shallow_layers"]), ", ".join(v["deep_layers"])
    holds = v["shallow_more_homogeneous"]
    lines = [
        f"**Homogeneity.** Label information in the BMU (MI minus its shuffled-label "
        f"floor, as a fraction of H(label)) is {v['nmi_corrected_shallow']:.3f} on average "
        f"in the shallow layers ({sh}) and {v['nmi_corrected_deep']:.3f} in the deep ones "
        f"({dp}); the class-dispersion ratio (1 = each class spread like all inputs, 0 = "
        f"each class on its own spot) is {v['dispersion_ratio_shallow']:.3f} vs "
        f"{v['dispersion_ratio_deep']:.3f}. Rank correlation with depth over {len(layers)} "
        f"layers: {v['spearman_depth_nmi']:+.2f} (label information), "
        f"{v['spearman_depth_dispersion_ratio']:+.2f} (dispersion ratio). "
        + ("So shallow layers **do** map inputs onto more homogeneous (class-mixed) codes "
           "than deep layers, as the paper reports." if holds else
           "So the claim that shallow layers give more homogeneous codes **does not hold** "
           "here on both measures.")
        + f" By the count of distinct BMUs, shallow layers use {v['distinct_bmus_shallow']:.1f}"
        f" units and deep ones {v['distinct_bmus_deep']:.1f} (of {results['units']})"
        + ("; by that count shallow codes are *not* less diverse: a map fitted to each "
           "layer's own codes spreads over whatever cloud they form, and deep codes form "
           "class clusters with unused units between them (blank cells in the hit maps), "
           "so the count reflects clustering, not class homogeneity."
           if v["distinct_bmus_shallow"] >= v["distinct_bmus_deep"] else
           ", so shallow codes are also less diverse by that count."),
    ]
    for a in results["attacks"]:
        av = v[a]
        moved = ", ".join(f"{n} {pl[n][a]['moved_fraction']:.2f}" for n in layers)
        agree = ", ".join(f"{n} {pl[n][a]['som_agrees_with_net']:.2f}" for n in layers)
        first = av["first_layer_agreeing_with_prediction"]
        text = (f"**{a.upper()}** (linf {results['eps']:g}; accuracy "
                f"{results['accuracy'][a]:.3f}, clean {results['accuracy']['clean']:.3f}). "
                f"BMU moved for: {moved} (shallow mean {av['moved_shallow']:.2f}, deep mean "
                f"{av['moved_deep']:.2f}). Rank correlation of homogeneity (1 - corrected "
                f"NMI) with the moved fraction: {av['spearman_homogeneity_moved']:+.2f} "
                f"({_relation(av['spearman_homogeneity_moved'])}).")
        if "moved_over_noise" in av:
            over = ", ".join(f"{n} {x:+.2f}" for n, x in av["moved_over_noise"].items())
            rho = av["spearman_homogeneity_moved_over_noise"]
            text += (f" Moved fraction minus that of random +-eps noise: {over}; its rank "
                     f"correlation with homogeneity: {rho:+.2f} ({_relation(rho)}).")
        if a != "noise":
            text += (f" The BMU's majority training class equals the network's (mostly "
                     f"wrong) prediction on the perturbed input for: {agree}; "
                     + (f"the code first sides with the adversarial decision at {first}."
                        if first else "no layer's code sides with the adversarial decision "
                        "for most inputs."))
        lines.append(text)
    for a in results["attacks"]:
        av = v[a]
        if "moved_over_noise" not in av:
            continue
        sh_x, dp_x = av["moved_over_noise_shallow"], av["moved_over_noise_deep"]
        nv = v["noise"]
        if dp_x > sh_x + 0.1:
            where = ("the moves *specific to the attack* are in the deep, diverse layers; the "
                     "shallow, homogeneous codes move about as much under random noise of "
                     "the same size, i.e. they are perturbation-sensitive but not "
                     "attack-specific")
        elif sh_x > dp_x + 0.1:
            where = ("the attack moves shallow, homogeneous codes beyond what noise does, "
                     "more than deep ones - in line with the paper's link between "
                     "homogeneous codes and adversarial vulnerability")
        else:
            where = "the attack-specific moves are similar in shallow and deep layers"
        lines.append(
            f"**Where {a.upper()} moves codes.** Random noise moves the BMU of "
            f"{nv['moved_shallow']:.2f} of inputs in shallow layers and "
            f"{nv['moved_deep']:.2f} in deep ones; {a.upper()} {av['moved_shallow']:.2f} and "
            f"{av['moved_deep']:.2f}, an excess over noise of {sh_x:+.2f} (shallow) vs "
            f"{dp_x:+.2f} (deep). So {where}. The code lands in the adversarial class's "
            f"region for {av['sides_with_prediction_shallow']:.2f} of inputs in shallow "
            f"layers vs {av['sides_with_prediction_deep']:.2f} in deep ones"
            + (": in the homogeneous layers a moved code stays among mixed classes, and the "
               "switch to the wrong class happens where codes become diverse."
               if av["sides_with_prediction_shallow"] < 0.5 <= av["sides_with_prediction_deep"]
               else "."))
    lines.append(
        "Caveats: one small network, one map size, a few hundred test digits; the "
        "measures are plug-in estimates (the shuffled-label MI shows their bias); a BMU "
        "'move' depends on how finely the map tiles each layer's code space; the "
        "rank correlations are over only a handful of layers. Random +-eps noise is "
        "clipped to [0, 1], so it lifts the zero background by about eps/2: a systematic "
        "shift that per-channel spatial means (the conv codes) pick up. This is "
        "correlational, not a causal test of the paper's hypothesis.")
    return "\n\n".join(lines) + "\n"


def _report(config, results: dict, spec: SOMSpec, fig_data: dict, run_dir: RunDir) -> str:
    layers, pl = results["layers"], results["per_layer"]
    grid = spec.grid
    rows = [("clean, by label", fig_data["hits"]["clean"])]
    rows += [(f"{a.upper()}, by label", fig_data["hits"][a]) for a in results["attacks"]
             if a != "noise"]
    fig_maps = run_dir.figure("som_hit_maps.png", plots.hit_maps(
        grid, layers, rows, fig_data["u"]))
    panels = [("code measure", {
        "label information (corrected NMI)": [pl[n]["nmi_corrected"] for n in layers],
        "class dispersion ratio": [pl[n]["class_dispersion_ratio"] for n in layers],
        "distinct BMUs / units": [pl[n]["distinct_bmus_fraction"] for n in layers]})]
    adv = {}
    for a in results["attacks"]:
        adv[f"{a}: BMU moved"] = [pl[n][a]["moved_fraction"] for n in layers]
    for a in results["attacks"]:
        if a != "noise":
            adv[f"{a}: SOM class = net prediction"] = [pl[n][a]["som_agrees_with_net"]
                                                      for n in layers]
    panels.append(("fraction of inputs", adv))
    fig_depth = run_dir.figure("som_measures_vs_depth.png",
                               plots.measures_vs_depth(layers, panels))

    head = ["layer", "code dim", "distinct BMUs", "class dispersion", "dispersion ratio",
            "MI (bits)", "MI shuffled", "NMI", "NMI corrected", "QE", "TE",
            "SOM = net (clean)"]
    table1 = [[n, pl[n]["code_dim"], f"{pl[n]['distinct_bmus']:.1f}",
               f"{pl[n]['class_dispersion']:.2f}", f"{pl[n]['class_dispersion_ratio']:.3f}",
               f"{pl[n]['mi_bits']:.3f}", f"{pl[n]['mi_shuffled_bits']:.3f}",
               f"{pl[n]['nmi']:.3f}", f"{pl[n]['nmi_corrected']:.3f}",
               f"{pl[n]['quantization_error']:.3f}", f"{pl[n]['topographic_error']:.3f}",
               f"{pl[n]['som_agrees_with_net']:.3f}"] for n in layers]
    head2, table2 = ["layer"], [[n] for n in layers]
    for a in results["attacks"]:
        head2 += [f"{a} moved", f"{a} mean dist", f"{a} dist / spread", f"{a} SOM = pred"]
        for row, n in zip(table2, layers):
            m = pl[n][a]
            row += [f"{m['moved_fraction']:.3f}", f"{m['mean_distance']:.2f}",
                    f"{m['distance_over_spread']:.2f}", f"{m['som_agrees_with_net']:.3f}"]
    c = config.som
    acc = ", ".join(f"{k} {v:.3f}" for k, v in results["accuracy"].items())
    return (
        f"# Internal codes through self-organizing maps: {config.model.name} on "
        f"{config.data.name}\n\n"
        f"One {c.rows}x{c.cols} {c.topology} SOM per layer ({c.algorithm}, {c.steps} steps, "
        f"{c.neighborhood} neighborhood, sigma {spec.sigma_start:g} -> {c.sigma_end:g} "
        f"{c.decay}, {c.init} init), trained on the codes of {results['train_images']} "
        f"training images; measures on {results['images']} test images and their "
        f"{'/'.join(a.upper() for a in results['attacks'])} versions (linf eps {c.eps:g}"
        f", PGD {c.pgd_steps} steps). Mean over {len(results['seeds'])} trained seed(s). "
        f"Accuracy: {acc}.\n\n"
        "Codes: conv layer -> per-channel spatial mean of its post-ReLU map; dense layer "
        "-> its post-ReLU activations (fc3: the logits). Each layer's codes are divided by "
        f"their training RMS (scale: {c.scale}). Dispersion is in grid units (neighbor "
        "distance 1); the dispersion ratio divides it by the spread of all BMUs. MI is the "
        "plug-in estimate; 'MI shuffled' is its value with permuted labels (the estimator's "
        "bias), 'NMI corrected' = (MI - MI shuffled) / H(label). QE/TE: quantization and "
        "topographic errors on the training codes. 'SOM = net': fraction of inputs whose "
        "BMU's majority training class equals the network's prediction.\n\n"
        "## Clean codes per layer\n\n" + report.table(head, table1) + "\n"
        "## Adversarial inputs: how BMUs move\n\n" + report.table(head2, table2) + "\n"
        "## Verdict\n\n" + _verdict_text(results) + "\n"
        f"![measures vs depth]({fig_depth})\n\n"
        "Hit maps (first seed): each unit colored by the majority true label of the test "
        "inputs it wins (opacity = purity, blank = no hits); last row: U-matrix (dark = "
        f"far from neighbors).\n\n![hit maps]({fig_maps})\n\n"
        f"Time: {results['seconds']['total']:.1f} s (training or restoring "
        f"{results['seconds']['train_or_restore']:.1f} s, SOM analysis "
        f"{results['seconds']['som_analysis']:.1f} s).\n"
    )
