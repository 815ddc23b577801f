"""Whole-network moment propagation vs the two-stage linearization, against Monte Carlo.

    python benchmarks/propagate_bench.py [--models lenet5,mlp] [--mlp-hidden 256,128]
        [--sigmas 0.01,0.05,0.1,0.2,0.5] [--images 4] [--ref-samples 100000]
        [--samples 10000] [--x64] [--workdir DIR] [--json FILE]

Trains each model with the ``train`` task's defaults on digits (or restores it from
``--workdir``'s checkpoints; the default workdir is the one of analytic_bench.py, so
its LeNet-5 is reused), then for the first ``--images`` test images under
x ~ N(image, sigma^2 I), for every sigma of ``--sigmas``, computes the output mean and
covariance by

* ``linearize + exact``: the two-stage linearization at the last hidden ReLU
  (:func:`analytic.linearize.linearize`) and its exact closed form
  (:func:`analytic.moments.moments`, ``method="exact"``),
* ``propagate full`` / ``propagate diagonal``: :func:`analytic.propagate.propagate`,
* ``MC <samples>``: a cheaper Monte Carlo (what the closed forms replace),

and prints, per sigma and method, the symmetric relative error 2|a-b|/(|a|+|b|) of the
mean and of the variances (Euclidean norm over the logits; mean over images) against a
reference Monte Carlo with ``--ref-samples`` samples through the real network, and the
time per image (compiled ahead of time; one call over all images, divided by their
number). The reference's own error is of the order of the ``MC`` row's times
sqrt(samples / ref-samples).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import jax
import jax.numpy as jnp

from benchmarks.trained import trained_model


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(t) for t in text.split(",") if t)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(t) for t in text.split(",") if t)


def timed(fn, *args) -> tuple[object, float]:
    """(output, wall seconds) of one call of a compiled function."""
    t = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - t


def bench_model(name: str, net, params, images, args) -> list[dict]:
    """Rows (one per sigma and method) for one model."""
    from analytic import linearize as lin_lib
    from analytic import montecarlo
    from analytic.moments import moments
    from analytic.propagate import propagate_batch
    from analytic.tightness import sym_rel_error

    dtype = jnp.float64 if args.x64 else jnp.float32
    params = jax.tree.map(lambda a: jnp.asarray(a, dtype), params)
    x = jnp.asarray(images[: args.images], dtype)
    n = x.shape[0]
    layer = lin_lib.last_hidden_relu(net)
    key = jax.random.PRNGKey(0)

    def mc(p, xs, v, k, samples):
        return montecarlo.mc_moments_batch(montecarlo.net_fn(net, p), xs, v, k, samples=samples,
                                           chunk=min(args.chunk, samples // 2), batch_size=1,
                                           check=False)

    def lin_exact(p, xs, v):
        def one(xi):
            lin = lin_lib.linearize(net, p, xi, layer)
            return moments(lin, xi, v, "exact", check=False)
        return jax.lax.map(one, xs)

    methods = {
        "linearize + exact": lin_exact,
        "propagate full": lambda p, xs, v: propagate_batch(net, p, xs, v, mode="full",
                                                           batch_size=1, check=False),
        "propagate diagonal": lambda p, xs, v: propagate_batch(net, p, xs, v, mode="diagonal",
                                                               batch_size=1, check=False),
        f"MC {args.samples}": lambda p, xs, v: mc(p, xs, v, jax.random.fold_in(key, 2),
                                                  args.samples),
    }
    var0 = jnp.asarray(args.sigmas[0] ** 2, dtype)
    compiled, compile_s = {}, {}
    for label, fn in methods.items():
        t = time.perf_counter()
        compiled[label] = jax.jit(fn).lower(params, x, var0).compile()
        compile_s[label] = time.perf_counter() - t
    ref_fn = jax.jit(lambda p, xs, v: mc(p, xs, v, jax.random.fold_in(key, 1),
                                         args.ref_samples)).lower(params, x, var0).compile()
    rows = []
    for sigma in args.sigmas:
        var = jnp.asarray(sigma**2, dtype)
        ref, t_ref = timed(ref_fn, params, x, var)
        ref_var = jnp.diagonal(ref.cov, axis1=-2, axis2=-1)
        for label, fn in compiled.items():
            out, t = timed(fn, params, x, var)
            v = jnp.diagonal(out.cov, axis1=-2, axis2=-1)
            rows.append({
                "model": name, "sigma": sigma, "method": label,
                "mean_error": float(sym_rel_error(out.mean, ref.mean).mean()),
                "var_error": float(sym_rel_error(v, ref_var).mean()),
                "seconds_per_image": t / n, "compile_seconds": compile_s[label],
                "reference_seconds_per_image": t_ref / n,
                "finite": bool(jnp.isfinite(out.mean).all() and jnp.isfinite(out.cov).all()),
            })
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="lenet5,mlp", help="comma-separated model names")
    parser.add_argument("--mlp-hidden", default="256,128", help="hidden widths of the mlp")
    parser.add_argument("--sigmas", default="0.01,0.05,0.1,0.2,0.5")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--ref-samples", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=10_000,
                        help="the cheaper Monte Carlo row")
    parser.add_argument("--chunk", type=int, default=5_000)
    parser.add_argument("--x64", action="store_true", help="everything in float64")
    parser.add_argument("--workdir", default="/tmp/bench_analytic")
    parser.add_argument("--json", default="", help="also write the rows to this file")
    args = parser.parse_args(argv)
    args.sigmas = _floats(args.sigmas)
    if args.x64:
        jax.config.update("jax_enable_x64", True)

    rows: list[dict] = []
    for model in args.models.split(","):
        hidden = _ints(args.mlp_hidden) if model == "mlp" else ()
        name, net, params, test = trained_model(model, args.workdir, hidden)
        rows += bench_model(name, net, params, test.images, args)

    dtype = "float64" if args.x64 else "float32"
    print(f"{args.images} digits test images per model, {dtype}; reference: Monte Carlo with "
          f"{args.ref_samples} samples per image; errors: symmetric relative error over the "
          f"logits, mean over images")
    header = ["model", "sigma", "method", "mean error", "variance error", "s / image",
              "compile s"]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for r in rows:
        flag = "" if r["finite"] else " (non-finite!)"
        print(f"| {r['model']} | {r['sigma']} | {r['method']}{flag} | {r['mean_error']:.4f} | "
              f"{r['var_error']:.4f} | {r['seconds_per_image']:.4f} | "
              f"{r['compile_seconds']:.1f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
