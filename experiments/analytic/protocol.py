"""The ``analytic`` task: closed-form Gaussian moments of a trained net vs Monte Carlo.

Protocol (DESIGN.md, analytic/; Bibi, Alfadly, Ghanem, CVPR 2018, experiments): train (or
restore) the model of ``config.model``; for the first ``analytic.num_images`` test images
and each noise level sigma of ``analytic.noise_levels`` (x ~ N(image, sigma^2 I)):

* linearize the net at the image (two stages at ``analytic.layer``, default the last
  hidden ReLU) and compute the output mean and covariance with every method;
* estimate them by Monte Carlo through the *real* network (``analytic.mc_samples``);
* per image, the symmetric relative error 2|a - b| / (|a| + |b|) of the output mean and
  of the output variances (|.| the Euclidean norm over the classes), and the variance
  ratio MC/analytic (mean over classes); mean and std over images.

Then the uses: expected logits per class vs noise, the interclass confusion matrix, a
pixel sensitivity map and the Gaussian attacks (verified by sampling the real network).
Writes results.json, report.md and the figures. Timings exclude compilation (each
program is compiled ahead of time with ``jit(...).lower(...).compile()``).
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from analytic import linearize as lin_lib
from analytic import montecarlo, uses
from analytic.gaussian_attack import MODES, OBJECTIVES, gaussian_attack
from analytic.moments import METHODS, batched_moments
from experiments import rundir as report
from experiments.config import ConfigError, sweepable
from experiments.rundir import RunDir
from experiments.train import protocol as experiment
from nets.train import select


@sweepable
def defaults() -> ml_collections.ConfigDict:
    """The ``train`` task's keys plus the ``analytic`` section."""
    c = experiment.defaults()
    c.task = "analytic"
    c.analytic = ml_collections.ConfigDict({
        "num_images": 100,
        "layer": "",  # "" = the last hidden ReLU
        "noise_levels": (0.01, 0.03, 0.1, 0.3),
        "methods": METHODS,
        "mc_samples": 10_000,
        "mc_chunk": 1_000,
        "image_chunk": 10,  # images per vmapped group (memory)
        "seed": 0,
        "class_image": 0,
        "class_noise_levels": (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0),
        "confusion_noise": 0.3,
        "sensitivity_image": 0,
        "sensitivity_noise": 0.5,
    })
    c.analytic.attack = ml_collections.ConfigDict({
        "num_images": 20,
        "eps": 0.2,
        "sigma": 0.3,
        "steps": 100,
        "lr": 0.05,
        "samples": 1000,
        "modes": MODES,
        "objective": "margin",
        "relinearize": False,
        "method": "exact",
    })
    return c


def _check(a: ml_collections.ConfigDict) -> None:
    bad = [m for m in a.methods if m not in METHODS]
    if bad:
        raise ConfigError(f"unknown analytic.methods {bad}; choose from {METHODS}")
    bad = [m for m in a.attack.modes if m not in MODES]
    if bad:
        raise ConfigError(f"unknown analytic.attack.modes {bad}; choose from {MODES}")
    if a.attack.objective not in OBJECTIVES:
        raise ConfigError(f"unknown analytic.attack.objective {a.attack.objective!r}; "
                          f"choose one of {OBJECTIVES}")
    if a.attack.method not in METHODS:
        raise ConfigError(f"unknown analytic.attack.method {a.attack.method!r}; choose one of {METHODS}")
    if a.mc_samples % a.mc_chunk or a.mc_samples < 2 * a.mc_chunk:
        raise ConfigError(f"analytic.mc_samples={a.mc_samples} must be a multiple of "
                          f"analytic.mc_chunk={a.mc_chunk}, with at least two chunks")


def sym_rel_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """2 |a - b| / (|a| + |b|) over the last axis (Euclidean norms); 0 where both are 0."""
    num = 2 * np.linalg.norm(a - b, axis=-1)
    den = np.linalg.norm(a, axis=-1) + np.linalg.norm(b, axis=-1)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def _timed(compiled, *args):
    t = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    return out, time.perf_counter() - t


def _compile(fn, *args):
    t = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - t


def run(config: ml_collections.ConfigDict, run_dir: RunDir, progress: bool = True) -> dict:
    """Run the study and write results.json, report.md and the figures."""
    a = config.analytic
    _check(a)
    t_start = time.perf_counter()
    net, states, history, (_train, test) = experiment.train_models(config, run_dir, progress)
    train_seconds = time.perf_counter() - t_start
    params = select(states, 0)["params"]
    n = min(a.num_images, test.images.shape[0])
    x = jnp.asarray(test.images[:n])
    y = jnp.asarray(test.labels[:n])
    layer = a.layer or lin_lib.last_hidden_relu(net)
    try:
        lin_lib.split(net, layer)
    except ValueError as e:
        raise ConfigError(f"analytic.layer: {e}") from None
    chunk = max(1, min(a.image_chunk, n))
    key = jax.random.PRNGKey(a.seed)

    # --- linearization -----------------------------------------------------------------
    def lin_all(p, xs):
        return jax.lax.map(lambda xi: lin_lib.linearize(net, p, xi, layer), xs, batch_size=chunk)

    lin_c, lin_compile = _compile(lin_all, params, x)
    lins, lin_seconds = _timed(lin_c, params, x)

    # --- analytic vs Monte Carlo over the noise grid -------------------------------------
    def analytic_fn(method):
        def fn(lins, xs, var):
            return batched_moments(lins, xs, var, method, shared_cov=True, batch_size=chunk)
        return fn

    def mc_all(p, xs, var, k):
        keys = jax.random.split(k, xs.shape[0])
        f = montecarlo.net_fn(net, p)
        return jax.lax.map(
            lambda args: montecarlo.mc_moments(f, args[0], var, args[1], samples=a.mc_samples,
                                               chunk=a.mc_chunk),
            (xs, keys), batch_size=chunk)

    var0 = jnp.asarray(a.noise_levels[0] ** 2, x.dtype)
    compiled = {m: _compile(analytic_fn(m), lins, x, var0) for m in a.methods}
    mc_c, mc_compile = _compile(mc_all, params, x, var0, key)

    levels = [float(s) for s in a.noise_levels]
    tight = {m: {} for m in a.methods}
    times = {m: {} for m in a.methods}
    mc_times, mc_se, mc_means = {}, {}, []
    bar = tqdm(levels, desc="noise levels", disable=not progress)
    for li, sigma in enumerate(bar):
        var = jnp.asarray(sigma * sigma, x.dtype)
        mc, mc_times[sigma] = _timed(mc_c, params, x, var, jax.random.fold_in(key, li))
        mc_mean, mc_var = np.asarray(mc.mean), np.asarray(jnp.diagonal(mc.cov, axis1=1, axis2=2))
        var_se = np.asarray(jnp.diagonal(mc.cov_se, axis1=1, axis2=2))
        mc_se[sigma] = float(np.mean(np.linalg.norm(var_se, axis=-1)
                                     / np.linalg.norm(mc_var, axis=-1)))
        mc_means.append(mc_mean)
        for m in a.methods:
            out, times[m][sigma] = _timed(compiled[m][0], lins, x, var)
            mean, v = np.asarray(out.mean), np.asarray(jnp.diagonal(out.cov, axis1=1, axis2=2))
            em, ev = sym_rel_error(mean, mc_mean), sym_rel_error(v, mc_var)
            ratio = np.mean(mc_var / np.maximum(v, np.finfo(v.dtype).tiny), axis=-1)
            tight[m][sigma] = {
                "mean_error": float(em.mean()), "mean_error_std": float(em.std()),
                "var_error": float(ev.mean()), "var_error_std": float(ev.std()),
                "var_ratio_mc_over_analytic": float(np.mean(ratio)),
                "var_ratio_std": float(np.std(ratio)),
            }
    bar.close()

    # --- uses --------------------------------------------------------------------------
    # Expected logits vs noise for every image (the compiled batched exact moments).
    ci = min(a.class_image, n - 1)
    exact_c = (compiled["exact"][0] if "exact" in compiled
               else _compile(analytic_fn("exact"), lins, x, var0)[0])
    class_out = [exact_c(lins, x, jnp.asarray(s * s, x.dtype)) for s in a.class_noise_levels]
    curve_mean = np.stack([np.asarray(o.mean) for o in class_out])  # (L, N, k)
    curve_var = np.stack([np.asarray(jnp.diagonal(o.cov, axis1=1, axis2=2)) for o in class_out])
    yn = np.asarray(y)
    true_logit = np.take_along_axis(curve_mean, yn[None, :, None], axis=2)[..., 0]  # (L, N)
    others = curve_mean.copy()
    np.put_along_axis(others, yn[None, :, None], -np.inf, axis=2)
    max_other = others.max(-1)
    conf_out = exact_c(lins, x, jnp.asarray(a.confusion_noise ** 2, x.dtype))
    confusion = np.asarray(jax.jit(uses.confusion_matrix, static_argnums=3)(
        conf_out.mean, conf_out.cov, y, test.num_classes))
    si = min(a.sensitivity_image, n - 1)
    t = time.perf_counter()
    smap = jax.block_until_ready(jax.jit(functools.partial(
        uses.sensitivity_map, sigma=a.sensitivity_noise, method="exact"))(
            jax.tree.map(lambda t_: t_[si], lins), x[si], y[si]))
    sens_seconds = time.perf_counter() - t

    # --- Gaussian attacks ----------------------------------------------------------------
    attacks = _run_attacks(net, params, test, a.attack, jax.random.fold_in(key, 10_000))

    # --- results -----------------------------------------------------------------------
    acc = float(np.mean(history[-1]["test_accuracy"]))
    ex_vs_zm = {}
    if "exact" in a.methods and "zero_mean" in a.methods:
        for s in levels:
            e, z = tight["exact"][s]["var_error"], tight["zero_mean"][s]["var_error"]
            ex_vs_zm[s] = {"exact": e, "zero_mean": z, "zero_mean_over_exact": z / e if e else None}
    results = {
        "model": config.model.name, "data": config.data.name, "layer": layer,
        "test_accuracy": acc, "num_images": n, "mc_samples": a.mc_samples,
        "noise_levels": levels, "methods": list(a.methods),
        "tightness": {m: {str(s): v for s, v in d.items()} for m, d in tight.items()},
        "mc_var_relative_se": {str(s): v for s, v in mc_se.items()},
        "exact_vs_zero_mean": {str(s): v for s, v in ex_vs_zm.items()},
        "exact_at_least_as_tight": (all(v["exact"] <= v["zero_mean"] for v in ex_vs_zm.values())
                                    if ex_vs_zm else None),
        "attacks": attacks,
        "class_means": {
            "noise_levels": list(a.class_noise_levels), "image": ci, "label": int(y[ci]),
            "image_mean": curve_mean[:, ci].tolist(),
            "true_logit_mean": true_logit.mean(1).tolist(),
            "max_other_logit_mean": max_other.mean(1).tolist(),
            "expected_logit_accuracy": (true_logit > max_other).mean(1).tolist()},
        "confusion": {"noise": a.confusion_noise, "matrix": confusion.tolist()},
        "sensitivity": {"image": si, "noise": a.sensitivity_noise,
                        "std_max": float(jnp.max(smap.std)),
                        "mean_shift_max_abs": float(jnp.max(jnp.abs(smap.mean_shift))),
                        "flip_prob_max": float(jnp.max(smap.flip_prob)),
                        "seconds": sens_seconds},
        "timings": _timings(train_seconds, lin_seconds, lin_compile, times, compiled, mc_times,
                            mc_compile, n, a.mc_samples),
    }
    run_dir.write_json("results.json", results)
    curve = (curve_mean[:, ci], np.sqrt(np.maximum(curve_var[:, ci], 0)), true_logit, max_other)
    _report(run_dir, config, results, tight, levels, curve, mc_means, ci, x, y, confusion, smap, si)
    return results


def _timings(train_s, lin_s, lin_compile, times, compiled, mc_times, mc_compile, n, samples):
    out = {
        "train_or_restore_seconds": train_s,
        "linearize_seconds": lin_s, "linearize_compile_seconds": lin_compile,
        "moments_seconds": {m: {str(s): v for s, v in d.items()} for m, d in times.items()},
        "moments_compile_seconds": {m: c[1] for m, c in compiled.items()},
        "mc_seconds": {str(s): v for s, v in mc_times.items()},
        "mc_compile_seconds": mc_compile,
        "images": n, "mc_samples": samples,
    }
    if "exact" in times:
        out["speedup_exact_incl_linearization"] = {
            str(s): mc_times[s] / (lin_s + times["exact"][s]) for s in mc_times}
        out["speedup_exact_moments_only"] = {
            str(s): mc_times[s] / times["exact"][s] for s in mc_times}
        # The linearization is shared by every noise level of the grid.
        out["speedup_exact_whole_grid"] = (sum(mc_times.values())
                                           / (lin_s + sum(times["exact"].values())))
    return out


def _run_attacks(net, params, test, cfg: ml_collections.ConfigDict, key) -> dict:
    """Every mode, untargeted and targeted (target = (y + 1) mod C), plus the baseline of
    isotropic noise N(x, sigma^2 I) with no attack; success verified by sampling. On the
    first ``cfg.num_images`` correctly classified test images."""
    pool = min(test.images.shape[0], 4 * cfg.num_images)
    pred = jax.jit(lambda p, v: net.apply({"params": p}, v).argmax(-1))(
        params, jnp.asarray(test.images[:pool]))
    correct = np.flatnonzero(np.asarray(pred) == test.labels[:pool])[:cfg.num_images]
    m = len(correct)
    x, y = jnp.asarray(test.images[correct]), jnp.asarray(test.labels[correct])
    target = (y + 1) % test.num_classes
    out: dict = {"num_images": m, "eps": cfg.eps, "sigma": cfg.sigma, "steps": cfg.steps,
                 "samples": cfg.samples, "objective": cfg.objective,
                 "relinearize": cfg.relinearize}
    common = {"sigma": cfg.sigma, "key": key, "lr": cfg.lr, "samples": cfg.samples,
              "objective": cfg.objective, "relinearize": cfg.relinearize, "method": cfg.method}
    # Baseline: the same program with no mean shift and no steps, i.e. N(x, sigma^2 I).
    base_u = np.asarray(gaussian_attack(net, params, x, y, eps=0.0, steps=0, mode="mean",
                                        **common).success_rate)
    base_t = np.asarray(gaussian_attack(net, params, x, y, eps=0.0, steps=0, mode="mean",
                                        target=target, **common).success_rate)
    out["baseline_isotropic_noise"] = {
        "untargeted": {"success_rate": float(base_u.mean()), "images_fooled": float((base_u > 0.5).mean())},
        "targeted": {"success_rate": float(base_t.mean()), "images_fooled": float((base_t > 0.5).mean())},
    }
    for mi, mode in enumerate(cfg.modes):
        out[mode] = {}
        for ti, (name, tgt) in enumerate((("untargeted", None), ("targeted", target))):
            t = time.perf_counter()
            kw = {**common, "key": jax.random.fold_in(key, 2 * mi + ti + 1)}
            res = gaussian_attack(net, params, x, y, eps=cfg.eps, steps=cfg.steps, target=tgt,
                                  mode=mode, **kw)
            res = jax.block_until_ready(res)
            rate = np.asarray(res.success_rate)
            out[mode][name] = {
                "success_rate": float(rate.mean()),
                "images_fooled": float((rate > 0.5).mean()),
                "closed_form_fooled": float((np.asarray(res.objective) > 0).mean())
                if cfg.objective == "margin" else None,
                "max_shift": float(jnp.max(jnp.abs(res.mean - x))),
                "in_bounds": bool((res.mean >= 0).all() and (res.mean <= 1).all()),
                "max_std": float(jnp.max(res.std)),
                "seconds": time.perf_counter() - t,
            }
    return out


def _report(run_dir, config, r, tight, levels, curve, mc_means, ci, x, y, confusion, smap,
            si) -> None:
    import matplotlib.pyplot as plt

    a = config.analytic
    methods = list(a.methods)
    # Figures.
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for m in methods:
        for ax, key in zip(axes, ("mean_error", "var_error")):
            mu = np.array([tight[m][s][key] for s in levels])
            sd = np.array([tight[m][s][key + "_std"] for s in levels])
            ax.plot(levels, mu, marker="o", label=m)
            ax.fill_between(levels, np.maximum(mu - sd, 1e-6), mu + sd, alpha=0.2)
    for ax, title in zip(axes, ("output mean", "output variance")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("noise sigma")
        ax.set_ylabel("symmetric relative error vs MC")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig_tight = run_dir.figure("tightness.png", fig)

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    cl = np.asarray(a.class_noise_levels)
    means, stds, true_logit, max_other = curve
    colors = plt.cm.tab10(np.arange(means.shape[1]) % 10)
    for c in range(means.shape[1]):
        lw = 2.5 if c == int(y[ci]) else 1.0
        ax.plot(cl, means[:, c], color=colors[c], lw=lw, label=str(c))
        ax.fill_between(cl, means[:, c] - stds[:, c], means[:, c] + stds[:, c], color=colors[c],
                        alpha=0.08)
        ax.scatter(levels, [mm[ci, c] for mm in mc_means], color=colors[c], marker="x", s=18)
    ax.set_xlabel("noise sigma")
    ax.set_ylabel("expected logit")
    ax.set_title(f"image {ci} (label {int(y[ci])}): exact (lines, ±1 sd), MC (x)", fontsize=9)
    ax.legend(ncol=2, fontsize=7)
    ax.grid(alpha=0.3)
    for vals, name in ((true_logit, "E[g_y], true class"), (max_other, "max other E[g_j]")):
        m, sd = vals.mean(1), vals.std(1)
        ax2.plot(cl, m, label=name)
        ax2.fill_between(cl, m - sd, m + sd, alpha=0.2)
    ax2.set_xlabel("noise sigma")
    ax2.set_title(f"mean ± std over {true_logit.shape[1]} images", fontsize=9)
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    fig_class = run_dir.figure("class_means.png", fig)

    fig, ax = plt.subplots(figsize=(4.6, 4))
    im = ax.imshow(confusion, cmap="viridis")
    ax.set_xlabel("class j")
    ax.set_ylabel("true class c")
    ax.set_title(f"P(g_j > g_c), sigma={a.confusion_noise}")
    ax.set_xticks(range(confusion.shape[0]))
    ax.set_yticks(range(confusion.shape[0]))
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig_conf = run_dir.figure("confusion.png", fig)

    fig, axes = plt.subplots(1, 3, figsize=(10, 3.2))
    panels = ((x[si][..., 0], "image", "gray"),
              (np.asarray(smap.std)[..., 0], "sd of true logit", "magma"),
              (np.asarray(smap.mean_shift)[..., 0], "shift of E[true logit]", "coolwarm"))
    for ax, (img, title, cmap) in zip(axes, panels):
        if cmap == "coolwarm":
            lim = float(np.abs(img).max()) or 1.0
            h = ax.imshow(img, cmap=cmap, vmin=-lim, vmax=lim)
        else:
            h = ax.imshow(img, cmap=cmap)
        ax.set_title(title)
        ax.axis("off")
        fig.colorbar(h, ax=ax, fraction=0.046)
    fig.suptitle(f"one-pixel noise sigma={a.sensitivity_noise}, image {si} (label {int(y[si])})")
    fig_sens = run_dir.figure("sensitivity.png", fig)

    # Tables.
    rows = []
    for s in levels:
        for m in methods:
            t = tight[m][s]
            rows.append([s, m, f"{t['mean_error']:.4f} ± {t['mean_error_std']:.4f}",
                         f"{t['var_error']:.4f} ± {t['var_error_std']:.4f}",
                         f"{t['var_ratio_mc_over_analytic']:.3f}",
                         f"{r['mc_var_relative_se'][str(s)]:.4f}"])
    table = report.table(["sigma", "method", "mean error", "variance error",
                          "var ratio MC/analytic", "MC rel. s.e. of var"], rows)
    sentence = ""
    if r["exact_vs_zero_mean"]:
        parts = [f"sigma={s}: {v['exact']:.3f} vs {v['zero_mean']:.3f} "
                 f"({v['zero_mean_over_exact']:.1f}x)" for s, v in
                 ((float(k), v) for k, v in r["exact_vs_zero_mean"].items())]
        verdict = ("at least as tight as" if r["exact_at_least_as_tight"]
                   else "NOT uniformly at least as tight as")
        sentence = (f"The exact general-mean covariance is {verdict} the paper's zero-mean "
                    f"form at every noise level; symmetric relative error of the output "
                    f"variance, exact vs zero_mean: " + "; ".join(parts) + ".\n")
    att = r["attacks"]
    arows = [["isotropic noise (no attack)", "-",
              f"{att['baseline_isotropic_noise']['untargeted']['success_rate']:.3f}",
              f"{att['baseline_isotropic_noise']['untargeted']['images_fooled']:.3f}",
              f"{att['baseline_isotropic_noise']['targeted']['success_rate']:.3f}",
              f"{att['baseline_isotropic_noise']['targeted']['images_fooled']:.3f}"]]
    for mode in a.attack.modes:
        u, tg = att[mode]["untargeted"], att[mode]["targeted"]
        arows.append([mode, f"{max(u['max_shift'], tg['max_shift']):.3f}",
                      f"{u['success_rate']:.3f}", f"{u['images_fooled']:.3f}",
                      f"{tg['success_rate']:.3f}", f"{tg['images_fooled']:.3f}"])
    atable = report.table(["attack mode", "max abs shift", "untargeted: sample success",
                           "untargeted: images fooled", "targeted: sample success",
                           "targeted: images fooled"], arows)
    tm = r["timings"]
    trows = [[s, f"{tm['mc_seconds'][str(s)]:.2f}"]
             + [f"{tm['moments_seconds'][m][str(s)]:.4f}" for m in methods]
             + ([f"{tm['speedup_exact_incl_linearization'][str(s)]:.0f}x",
                 f"{tm['speedup_exact_moments_only'][str(s)]:.0f}x"] if "exact" in methods else [])
             for s in levels]
    theader = (["sigma", "MC s"] + [f"{m} s" for m in methods]
               + (["MC / (linearize + exact)", "MC / exact"] if "exact" in methods else []))
    text = (
        f"# Analytic Gaussian moments: {config.model.name} on {config.data.name}\n\n"
        f"Test accuracy {r['test_accuracy']:.4f}. Two-stage linearization at `{r['layer']}`; "
        f"{r['num_images']} test images, x ~ N(image, sigma^2 I); Monte Carlo with "
        f"{r['mc_samples']} samples through the real network. Errors are the symmetric "
        f"relative error 2|a-b|/(|a|+|b|) (Euclidean norm over the {confusion.shape[0]} "
        f"logits) of the analytic vs the MC output mean and output variances, mean ± std "
        f"over images. The mean is exact for every method (the methods differ in the "
        f"covariance only).\n\n" + table + "\n" + sentence + "\n"
        f"![tightness]({fig_tight})\n\n"
        f"## Gaussian attacks\n\n{att['num_images']} correctly classified test images, eps={att['eps']} (L-inf mean "
        f"shift), per-pixel sd <= {att['sigma']}, {att['steps']} Adam steps on the "
        f"closed-form {att['objective']} objective (linearized at the "
        f"{'current mean' if att['relinearize'] else 'clean image'}), success verified "
        f"with {att['samples']} samples through the real network per image (targeted: "
        f"class y+1). 'sample success' is the mean fraction of fooling samples, 'images "
        f"fooled' the fraction of images fooled by more than half of them.\n\n" + atable + "\n"
        f"## Timings (seconds for all {r['num_images']} images, compiled)\n\n"
        f"Linearization {tm['linearize_seconds']:.2f} s (once per image, shared by all "
        f"noise levels and methods).\n\n" + report.table(theader, trows) + "\n"
        f"Over the whole noise grid (one linearization per image): MC / (linearize + exact) "
        f"= {tm.get('speedup_exact_whole_grid', float('nan')):.0f}x.\n\n"
        f"## Uses\n\nExpected-logit accuracy (argmax of the exact E[g] equals the label) "
        f"over the {r['num_images']} images, by noise level: "
        + ", ".join(f"sigma={s}: {v:.2f}" for s, v in zip(
            r["class_means"]["noise_levels"], r["class_means"]["expected_logit_accuracy"]))
        + f".\n\n![class means]({fig_class})\n\n![confusion]({fig_conf})\n\n"
        f"![sensitivity]({fig_sens})\n"
    )
    run_dir.write_report(text)
