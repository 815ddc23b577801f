"""The ``analytic`` lens's protocol: closed-form Gaussian moments of every trained seed
vs Monte Carlo through the real network, and the uses of the closed form.

Protocol (DESIGN.md, analytic/; Bibi, Alfadly, Ghanem, CVPR 2018, experiments): restore
the S trained seeds (:func:`experiments.train.protocol.train_models`); for the first
``analytic.num_images`` test images and each noise level sigma of
``analytic.noise_levels`` (x ~ N(image, sigma^2 I)), for every seed:

* linearize the net at the image (two stages at ``analytic.layer``, default the last
  hidden ReLU) and compute the output mean and covariance with each of
  ``analytic.methods`` (default: every method but the slow "series" baseline);
* estimate them by Monte Carlo through the *real* network (``analytic.mc_samples``);
* per image, :func:`analytic.tightness.tightness`: the symmetric relative error
  2|a - b| / (|a| + |b|) of the output mean and of the output variances, and the
  variance ratio MC / analytic; and Monte Carlo's own relative error of the variances.

Then the uses, per seed: expected logits per class vs noise, the interclass confusion
matrix, a pixel sensitivity map, and the Gaussian attacks
(:mod:`analytic.gaussian_attack`, verified by sampling the real network) on test images
every seed classifies correctly. The stacked parameters of the seeds are an argument
everywhere, so one compiled program serves all seeds: linearization and moments vmap over
them; Monte Carlo and the attacks, which run the real network on many samples, map over
them one seed after another (faster on the CPU; see ``mc_all``). Timings exclude
compilation (``jit(...).lower(...).compile()``) and cover all seeds.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from analytic import linearize as lin_lib
from analytic import montecarlo, tightness, uses
from analytic.gaussian_attack import MODES, OBJECTIVES, gaussian_attack_models
from analytic.moments import METHODS, batched_moments
from experiments.config import ConfigError, sweepable
from experiments.lens import Context
from experiments.progress import iterate
from experiments.rundir import float_key
from experiments.train import protocol as train_protocol


@sweepable
def defaults() -> ml_collections.ConfigDict:
    """The ``train`` task's keys plus the ``analytic`` section."""
    c = train_protocol.defaults()
    c.task = "analytic"
    c.analytic = ml_collections.ConfigDict({
        "num_images": 100,
        "layer": "",  # "" = the last hidden ReLU
        "at_ties": "ignore",  # linearization at kinks: ignore | symmetric | nudge
        "noise_levels": (0.01, 0.03, 0.1, 0.3),
        # every method but "series" (the authors' 2020 truncated series reaches the exact
        # answer on these nets at several times its cost: benchmarks/analytic_bench.py)
        "methods": ("exact", "zero_mean", "diagonal", "batch_moments"),
        "mc_samples": 10_000,
        "mc_chunk": 1_000,
        "image_chunk": 10,  # images x seeds vmapped at a time (memory)
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
    """One ConfigError per mistake in the ``analytic`` section, before any training."""
    bad = [m for m in a.methods if m not in METHODS]
    if bad:
        raise ConfigError(f"unknown analytic.methods {bad}; choose from {METHODS}")
    if "exact" not in a.methods:
        raise ConfigError("analytic.methods must include 'exact' (the claims and the uses "
                          f"need it); got {tuple(a.methods)}")
    bad = [m for m in a.attack.modes if m not in MODES]
    if bad:
        raise ConfigError(f"unknown analytic.attack.modes {bad}; choose from {MODES}")
    if a.attack.objective not in OBJECTIVES:
        raise ConfigError(f"unknown analytic.attack.objective {a.attack.objective!r}; "
                          f"choose one of {OBJECTIVES}")
    if a.attack.method not in METHODS:
        raise ConfigError(f"unknown analytic.attack.method {a.attack.method!r}; "
                          f"choose one of {METHODS}")
    if a.at_ties not in lin_lib.TIE_RULES:
        raise ConfigError(f"unknown analytic.at_ties {a.at_ties!r}; choose one of "
                          f"{lin_lib.TIE_RULES}")
    if a.mc_samples % a.mc_chunk or a.mc_samples < 2 * a.mc_chunk:
        raise ConfigError(f"analytic.mc_samples={a.mc_samples} must be a multiple of "
                          f"analytic.mc_chunk={a.mc_chunk}, with at least two chunks")
    if a.num_images < 2 or not a.noise_levels or min(a.noise_levels) <= 0:
        raise ConfigError("analytic.num_images must be >= 2 and analytic.noise_levels "
                          f"positive; got {a.num_images} and {tuple(a.noise_levels)}")


def compact(a, digits: int = 5) -> list:
    """``a`` as nested lists of floats rounded to ``digits`` significant digits (keeps
    results.json small; far below the sampling error of anything reported)."""
    arr = np.asarray(a, np.float64)
    return np.vectorize(lambda v: float(f"{v:.{digits}g}"), otypes=[float])(arr).tolist()


def _compile(fn, *args):
    t = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - t


def _timed(compiled, *args):
    t = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    return out, time.perf_counter() - t


def run(config: ml_collections.ConfigDict, ctx: Context) -> dict:
    """Tightness of every method against Monte Carlo on every seed, and the uses."""
    a = config.analytic
    _check(a)
    train_data, _ = train_protocol.load_data(config.data)
    try:
        layer, _ = lin_lib.split(train_protocol.build_model(config.model, train_data.num_classes),
                                 a.layer or None)
    except ValueError as e:
        raise ConfigError(f"analytic.layer: {e}") from None

    t0 = time.perf_counter()
    net, states, history, (_train, test) = train_protocol.train_models(config, ctx)
    train_seconds = time.perf_counter() - t0
    params = states["params"]  # stacked: leading axis = seeds
    seeds = list(config.train.seeds)
    s = len(seeds)
    n = min(a.num_images, test.images.shape[0])
    x, y = jnp.asarray(test.images[:n]), jnp.asarray(test.labels[:n])
    chunk = max(1, min(a.image_chunk, n))
    per_seed_chunk = max(1, chunk // s)  # images per vmapped group inside the seed vmap
    key = jax.random.PRNGKey(a.seed)

    # --- linearization: (S, N) Linearizations -------------------------------------------
    def lin_all(ps, xs):
        return jax.vmap(lambda p: lin_lib.linearize_batch(
            net, p, xs, layer, per_seed_chunk, at_ties=a.at_ties))(ps)

    lin_c, lin_compile = _compile(lin_all, params, x)
    lins, lin_seconds = _timed(lin_c, params, x)
    # kinks at the expansion points (analytic.linearize.count_ties): (seeds, images) per layer
    ties = jax.jit(jax.vmap(jax.vmap(lambda p, xi: lin_lib.count_ties(net, p, xi, layer),
                                     in_axes=(None, 0)), in_axes=(0, None)))(params, x)

    # --- analytic vs Monte Carlo over the noise grid -------------------------------------
    def moments_fn(method: str):
        def fn(ls, xs, var):
            return jax.vmap(lambda li: batched_moments(li, xs, var, method, shared_cov=True,
                                                       batch_size=per_seed_chunk))(ls)
        return fn

    def mc_all(ps, xs, var, k):
        # The seeds run one after another (lax.map, one compiled program), not vmapped: on
        # the CPU a LeNet forward pass vmapped over 3 models' kernels took 2.4x as long as
        # three passes (grouped convolutions); the samples are the batch here.
        return jax.lax.map(lambda pk: montecarlo.mc_moments_batch(
            montecarlo.net_fn(net, pk[0]), xs, var, pk[1], samples=a.mc_samples,
            chunk=a.mc_chunk, batch_size=chunk), (ps, jax.random.split(k, s)))

    compare = jax.jit(jax.vmap(jax.vmap(tightness.tightness)))
    mc_error = jax.jit(jax.vmap(jax.vmap(tightness.mc_relative_error)))
    var0 = jnp.asarray(a.noise_levels[0] ** 2, x.dtype)
    compiled = {m: _compile(moments_fn(m), lins, x, var0) for m in a.methods}
    mc_c, mc_compile = _compile(mc_all, params, x, var0, key)

    levels = [float(v) for v in a.noise_levels]
    tight = {m: {} for m in a.methods}
    times = {m: {} for m in a.methods}
    mc_times, mc_rel, mc_class_mean = {}, {}, []
    ci = min(a.class_image, n - 1)
    for li, sigma in enumerate(iterate(levels, "noise levels", ctx.progress)):
        var = jnp.asarray(sigma * sigma, x.dtype)
        mc, mc_times[sigma] = _timed(mc_c, params, x, var, jax.random.fold_in(key, li))
        mc_rel[sigma] = mc_error(mc)
        mc_class_mean.append(mc.mean[:, ci])
        for m in a.methods:
            out, times[m][sigma] = _timed(compiled[m][0], lins, x, var)
            tight[m][sigma] = compare(out, mc)

    # --- uses ------------------------------------------------------------------------------
    exact_c = compiled["exact"][0]
    best = jax.jit(jax.vmap(jax.vmap(uses.true_vs_best_other), in_axes=(0, None)))
    class_out = [exact_c(lins, x, jnp.asarray(v * v, x.dtype)) for v in a.class_noise_levels]
    true_best = [best(o.mean, y) for o in class_out]
    true_logit = np.stack([np.asarray(t) for t, _ in true_best], 1)  # (S, L, N)
    max_other = np.stack([np.asarray(b) for _, b in true_best], 1)
    image_mean = np.stack([np.asarray(o.mean[:, ci]) for o in class_out], 1)  # (S, L, k)
    image_std = np.stack([np.sqrt(np.maximum(np.asarray(
        tightness.variances(o.cov[:, ci])), 0)) for o in class_out], 1)

    conf_out = exact_c(lins, x, jnp.asarray(a.confusion_noise ** 2, x.dtype))
    confusion = jax.jit(jax.vmap(uses.confusion_matrix, in_axes=(0, 0, None, None)),
                        static_argnums=3)(conf_out.mean, conf_out.cov, y, test.num_classes)

    si = min(a.sensitivity_image, n - 1)
    sens_fn = jax.jit(jax.vmap(lambda li: uses.sensitivity_map(
        li, x[si], y[si], a.sensitivity_noise, method="exact")))
    lin_si = jax.tree.map(lambda t: t[:, si], lins)
    smap, sens_seconds = _timed(sens_fn, lin_si)  # includes compilation (one call)

    attacks = _run_attacks(net, params, test, a.attack, jax.random.fold_in(key, 10_000))

    # --- results -------------------------------------------------------------------------
    results = {
        "model": config.model.name, "data": config.data.name, "layer": layer, "seeds": seeds,
        "test_accuracy_per_seed": [float(v) for v in next(
            r["test_accuracy"] for r in reversed(history) if "test_accuracy" in r)],
        "num_images": n, "mc_samples": a.mc_samples, "mc_chunk": a.mc_chunk,
        "noise_levels": levels, "methods": list(a.methods), "num_classes": test.num_classes,
        "at_ties": a.at_ties,
        # mean over images of the tied max-pool windows / ReLU inputs at 0, per seed
        "ties": {k: compact(np.asarray(v).mean(-1)) for k, v in ties.items()},
        # [method][sigma][measure]: (seeds, images)
        "tightness": {m: {float_key(v): {k: compact(getattr(t, k)) for k in t._fields}
                          for v, t in d.items()} for m, d in tight.items()},
        "mc_var_relative_error": {float_key(v): compact(e) for v, e in mc_rel.items()},
        "class_means": {
            "noise_levels": list(a.class_noise_levels), "image": ci, "label": int(y[ci]),
            "image_mean": compact(image_mean), "image_std": compact(image_std),
            "image_mc_mean": compact(np.stack(mc_class_mean, 1)),  # (S, noise_levels, k)
            "true_logit_mean": compact(true_logit.mean(-1)),
            "max_other_logit_mean": compact(max_other.mean(-1)),
            "expected_logit_accuracy": compact((true_logit > max_other).mean(-1))},
        "confusion": {"noise": a.confusion_noise, "matrix": compact(confusion)},
        "sensitivity": {
            "image": si, "label": int(y[si]), "noise": a.sensitivity_noise,
            # images (H, W), maps (S, H, W): means over the colour channels
            "pixels": compact(x[si].mean(-1), 3), "std": compact(smap.std.mean(-1), 3),
            "mean_shift": compact(smap.mean_shift.mean(-1), 3),
            "flip_prob_max": compact(jnp.max(smap.flip_prob, axis=(1, 2, 3))),
            "seconds": sens_seconds},
        "attacks": attacks,
        "timings": _timings(train_seconds, lin_seconds, lin_compile, times, compiled, mc_times,
                            mc_compile, n, s),
    }
    return results


def _timings(train_s, lin_s, lin_compile, times, compiled, mc_times, mc_compile, n, s):
    """Seconds (compiled programs, all seeds and images) and the speedups over MC."""
    return {
        "train_or_restore_seconds": train_s, "images": n, "seeds": s,
        "linearize_seconds": lin_s, "linearize_compile_seconds": lin_compile,
        "moments_seconds": {m: {float_key(v): t for v, t in d.items()} for m, d in times.items()},
        "moments_compile_seconds": {m: c[1] for m, c in compiled.items()},
        "mc_seconds": {float_key(v): t for v, t in mc_times.items()},
        "mc_compile_seconds": mc_compile,
        "speedup_exact_incl_linearization": {
            float_key(v): t / (lin_s + times["exact"][v]) for v, t in mc_times.items()},
        "speedup_exact_moments_only": {
            float_key(v): t / times["exact"][v] for v, t in mc_times.items()},
        # The linearization is shared by every noise level of the grid.
        "speedup_exact_whole_grid": sum(mc_times.values()) / (lin_s + sum(times["exact"].values())),
    }


def _run_attacks(net, params, test, cfg: ml_collections.ConfigDict, key) -> dict:
    """Every mode, untargeted and targeted (target = (y + 1) mod C), plus the baseline of
    isotropic noise N(x, sigma^2 I) with no attack, on every seed; success
    verified by sampling. On the first ``cfg.num_images`` test images that every seed
    classifies correctly, so all seeds attack the same images."""
    pool = min(test.images.shape[0], 4 * cfg.num_images)
    xp = jnp.asarray(test.images[:pool])
    pred = jax.jit(jax.vmap(lambda p: net.apply({"params": p}, xp).argmax(-1)))(params)
    correct = np.flatnonzero(np.all(np.asarray(pred) == test.labels[:pool], axis=0))
    chosen = correct[:cfg.num_images]
    x, y = jnp.asarray(test.images[chosen]), jnp.asarray(test.labels[chosen])
    target = (y + 1) % test.num_classes
    out: dict = {"num_images": len(chosen), "images": chosen.tolist(), "eps": cfg.eps,
                 "sigma": cfg.sigma, "steps": cfg.steps, "samples": cfg.samples,
                 "objective": cfg.objective, "relinearize": cfg.relinearize,
                 "method": cfg.method}
    if len(chosen) == 0:
        return out

    def attack(k, eps, steps, mode, tgt) -> dict:
        # eps, steps, mode and targeted are traced inside gaussian_attack_models (seeds one
        # after another, as for Monte Carlo): every call after the first reuses its program.
        t = time.perf_counter()
        res = jax.block_until_ready(gaussian_attack_models(
            net, params, x, y, eps=eps, sigma=cfg.sigma, steps=steps, target=tgt, key=k,
            mode=mode, lr=cfg.lr, samples=cfg.samples, objective=cfg.objective,
            relinearize=cfg.relinearize, method=cfg.method))
        return {
            "success_rate": compact(res.success_rate),  # (seeds, images)
            "images_fooled": compact((res.success_rate > 0.5).mean(-1)),  # (seeds,)
            "closed_form_fooled": compact((res.objective > 0).mean(-1))
            if cfg.objective == "margin" else None,  # (seeds,)
            "max_shift": compact(jnp.max(jnp.abs(res.mean - x), axis=(1, 2, 3, 4))),
            "in_bounds": bool((res.mean >= 0).all() and (res.mean <= 1).all()),
            "max_std": compact(jnp.max(res.std, axis=(1, 2, 3, 4))),
            "seconds": time.perf_counter() - t,
        }

    kinds = (("untargeted", None), ("targeted", target))
    # Baseline: the same program with no mean shift and no steps, i.e. N(x, sigma^2 I).
    out["baseline_isotropic_noise"] = {
        name: attack(key, 0.0, 0, "mean", tgt) for name, tgt in kinds}
    for mi, mode in enumerate(cfg.modes):
        out[mode] = {name: attack(jax.random.fold_in(key, 2 * mi + ti + 1), cfg.eps, cfg.steps,
                                  mode, tgt) for ti, (name, tgt) in enumerate(kinds)}
    return out
