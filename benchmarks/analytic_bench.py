"""Closed-form Gaussian output moments vs Monte Carlo through the real network.

    python benchmarks/analytic_bench.py [--model lenet5] [--images 100] [--samples 10000]
        [--sigma 0.1] [--ref-images 10] [--ref-samples 100000] [--workdir DIR] [--json FILE]
    python benchmarks/analytic_bench.py --model mlp --hidden 1024 --epochs 2   # 784-1024-10

Trains the model with the ``train`` task's defaults on digits (or restores it from
``--workdir``'s checkpoints), then, for the same ``--images`` test images under
x ~ N(image, sigma^2 I), times (compiled ahead of time, median of repeats):

* the two-stage linearization (one Jacobian per image; shared by every noise level, so
  the last ratio column amortizes it over a ``--grid``-level noise sweep),
* the closed-form moments of each method (``analytic.moments.METHODS``: exact, zero_mean,
  diagonal, and batch_moments, the authors' released form: exact variances, zero-mean
  off-diagonals), ``--moment-chunk`` images vmapped at a time, and the exact method once
  more with ``grouped=False`` (every pair evaluates every branch: the code before the
  grouped evaluation, same values), to print the speedup of the grouping side by side,
* Monte Carlo with ``--samples`` samples through the real network,

and reports the error of each against a reference: Monte Carlo with ``--ref-samples``
samples on the first ``--ref-images`` images (the symmetric relative error
2|a-b|/(|a|+|b|) of the output mean and variances, Euclidean norm over the logits).
The closed form's error is mostly the linearization's; Monte Carlo's is sampling noise.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import jax
import jax.numpy as jnp
import numpy as np

from analytic import linearize as lin_lib
from analytic import montecarlo
from analytic.moments import METHODS, batched_moments
from analytic.tightness import sym_rel_error
from experiments.rundir import RunDir
from experiments.train import protocol as experiment
from nets.train import select


def timed(fn, *args, repeats: int = 1) -> tuple[object, float]:
    """(output, median wall seconds over ``repeats`` calls) of a compiled function."""
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return out, statistics.median(times)


def errors(mean: np.ndarray, var: np.ndarray, ref) -> tuple[float, float]:
    ref_mean = np.asarray(ref.mean)
    ref_var = np.asarray(jnp.diagonal(ref.cov, axis1=1, axis2=2))
    k = ref_mean.shape[0]
    return (float(sym_rel_error(mean[:k], ref_mean).mean()),
            float(sym_rel_error(var[:k], ref_var).mean()))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="lenet5")
    parser.add_argument("--hidden", type=int, default=0, help="mlp: one hidden layer this wide")
    parser.add_argument("--epochs", type=int, default=0, help="training epochs (0: default)")
    parser.add_argument("--moment-chunk", type=int, default=100,
                        help="images vmapped at a time in the closed forms")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--chunk", type=int, default=1_000)
    parser.add_argument("--image-chunk", type=int, default=10)
    parser.add_argument("--sigma", type=float, default=0.1)
    parser.add_argument("--ref-images", type=int, default=10)
    parser.add_argument("--ref-samples", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5, help="timing repeats (analytic)")
    parser.add_argument("--grid", type=int, default=4,
                        help="noise levels sharing one linearization (the study's grid)")
    parser.add_argument("--workdir", default="/tmp/bench_analytic")
    parser.add_argument("--json", default="", help="also write the numbers to this file")
    args = parser.parse_args(argv)

    config = experiment.defaults()
    config.model.name = args.model
    config.train.seeds = (0,)
    if args.hidden:
        config.model.hidden = (args.hidden,)
    if args.epochs:
        config.train.epochs = args.epochs
    name = args.model + (f"{args.hidden}" if args.hidden else "")
    net, states, _history, (_train, test) = experiment.train_models(
        config, RunDir(Path(args.workdir) / name).context(progress=False))
    params = select(states, 0)["params"]
    n = min(args.images, test.images.shape[0])
    x = jnp.asarray(test.images[:n])
    var = jnp.asarray(args.sigma ** 2, x.dtype)
    chunk = min(args.image_chunk, n)
    key = jax.random.PRNGKey(0)
    layer = lin_lib.last_hidden_relu(net)

    def lin_all(p, xs):
        return jax.lax.map(lambda xi: lin_lib.linearize(net, p, xi, layer), xs, batch_size=chunk)

    def mc_all(p, xs, v, k, samples):
        f = montecarlo.net_fn(net, p)
        keys = jax.random.split(k, xs.shape[0])
        return jax.lax.map(lambda a: montecarlo.mc_moments(
            f, a[0], v, a[1], samples=samples, chunk=args.chunk), (xs, keys), batch_size=chunk)

    lin_c = jax.jit(lin_all).lower(params, x).compile()
    lins, t_lin = timed(lin_c, params, x, repeats=max(1, args.repeats // 2))
    rows, out = [], {"model": name, "layer": layer, "images": n, "sigma": args.sigma,
                     "samples": args.samples, "linearize_seconds": t_lin, "methods": {}}
    ref = None
    if args.ref_samples and args.ref_images:
        m = min(args.ref_images, n)
        ref_c = jax.jit(functools.partial(mc_all, samples=args.ref_samples)).lower(
            params, x[:m], var, key).compile()
        ref, t_ref = timed(ref_c, params, x[:m], var, jax.random.fold_in(key, 1))
        out["reference"] = {"images": m, "samples": args.ref_samples, "seconds": t_ref}

    mc_c = jax.jit(functools.partial(mc_all, samples=args.samples)).lower(params, x, var, key).compile()
    mc, t_mc = timed(mc_c, params, x, var, key)
    mc_mean, mc_var = np.asarray(mc.mean), np.asarray(jnp.diagonal(mc.cov, axis1=1, axis2=2))
    out["mc_seconds"] = t_mc
    mc_err = errors(mc_mean, mc_var, ref) if ref is not None else (None, None)
    rows.append([f"Monte Carlo, {args.samples} samples", f"{t_mc:.3f}", "1x", "-", "-",
                 _fmt(mc_err[0]), _fmt(mc_err[1]), "-", "-"])
    mchunk = min(args.moment_chunk, n)
    runs = [(m, m, True) for m in METHODS] + [("exact, elementwise (before)", "exact", False)]
    for label, method, grouped in runs:
        fn = jax.jit(lambda ls, xs, v, method=method, grouped=grouped: batched_moments(
            ls, xs, v, method, shared_cov=True, batch_size=mchunk, grouped=grouped))
        c = fn.lower(lins, x, var).compile()
        res, t = timed(c, lins, x, var, repeats=args.repeats)
        mean, v = np.asarray(res.mean), np.asarray(jnp.diagonal(res.cov, axis1=1, axis2=2))
        err = errors(mean, v, ref) if ref is not None else (None, None)
        vs_mc = (float(sym_rel_error(mean, mc_mean).mean()), float(sym_rel_error(v, mc_var).mean()))
        out["methods"][label] = {
            "seconds": t, "speedup_moments_only": t_mc / t,
            "speedup_incl_linearization": t_mc / (t_lin + t),
            "speedup_grid_incl_linearization": args.grid * t_mc / (t_lin + args.grid * t),
            "mean_error_vs_reference": err[0], "var_error_vs_reference": err[1],
            "mean_error_vs_mc": vs_mc[0], "var_error_vs_mc": vs_mc[1]}
        rows.append([f"{label} (closed form)", f"{t:.4f}", f"{t_mc / t:.1f}x",
                     f"{t_mc / (t_lin + t):.1f}x",
                     f"{args.grid * t_mc / (t_lin + args.grid * t):.1f}x", _fmt(err[0]),
                     _fmt(err[1]), f"{vs_mc[0]:.4f}", f"{vs_mc[1]:.4f}"])
    before = out["methods"]["exact, elementwise (before)"]["seconds"]
    after = out["methods"]["exact"]["seconds"]
    out["grouped_speedup"] = before / after

    header = ["estimator", "seconds", "MC / this", "MC / (linearize + this)",
              f"same, {args.grid}-level grid",
              "mean error vs ref", "var error vs ref", "mean error vs MC", "var error vs MC"]
    print(f"{name} (linearized at {layer}), {n} digits test images, sigma={args.sigma}, "
          f"{jnp.asarray(x).dtype}; "
          f"linearization {t_lin:.3f} s for all images; reference: "
          + (f"MC with {args.ref_samples} samples on {out['reference']['images']} images"
             if ref is not None else "none"))
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(map(str, r)) + " |")
    print(f"exact moments, grouped vs elementwise (before): {before:.4f} s -> {after:.4f} s, "
          f"{before / after:.2f}x; MC / exact: {t_mc / before:.1f}x before, "
          f"{t_mc / after:.1f}x after (moments only)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return out


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


if __name__ == "__main__":
    main()
