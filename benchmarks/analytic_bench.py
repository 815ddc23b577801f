"""Closed-form Gaussian output moments vs Monte Carlo through the real network.

    python benchmarks/analytic_bench.py [--model lenet5] [--images 100] [--samples 10000]
        [--sigma 0.1] [--ref-images 10] [--ref-samples 100000] [--workdir DIR] [--json FILE]
    python benchmarks/analytic_bench.py --model mlp --hidden 1024 --epochs 2   # 784-1024-10

Trains the model with the ``train`` task's defaults on digits (or restores it from
``--workdir``'s checkpoints), then, for the same ``--images`` test images under
x ~ N(image, sigma^2 I), times (compiled ahead of time, median of repeats):

* the two-stage linearization (one Jacobian per image; shared by every noise level, so
  the last ratio column amortizes it over a ``--grid``-level noise sweep); a
  one-hidden-layer ``mlp`` needs none: it is its own Affine-ReLU-Affine form, whose
  weights every image shares (``analytic.linearize.affine_relu_affine``,
  ``batched_moments(shared_lin=True)``),
* the closed-form moments of each method (``analytic.moments.METHODS``: exact (tiled:
  ``analytic.moments.exact_output_cov``), zero_mean, diagonal, batch_moments (the
  authors' released form: exact variances, zero-mean off-diagonals) and series (the
  authors' 2020 truncated series, ``--terms`` terms)), ``--moment-chunk`` images vmapped
  at a time, and the exact method's earlier forms, the same values: the full pairwise C
  grouped by class (``tiled=False``, issue 16's first step) and elementwise
  (``grouped=False``, before it) (``--no-dense`` skips these two, the slowest),
* Monte Carlo with ``--samples`` samples through the real network, timed before and
  after the closed forms (the table's ratios use their mean), and ``--pair-rounds``
  rounds of Monte Carlo then the exact form back to back (a ratio per round, under one
  load: on the shared 2-core machine the load moved Monte Carlo's time 2x in one run),
* the authors' PyTorch code on the same weights, when importable: ``network_moments.torch``
  (branch master: ``batch_moments``, the zero-mean ``special_covariance``, the diagonal)
  and ``gaussian_relu_moments`` (branch no-assumptions, a flat module on ``sys.path``:
  ``forward_gaussian(model, cov, mean, terms)``, the series); the line says plainly when
  they are not importable (neither is on PyPI: check out github.com/xmodar/network_moments,
  both branches, and put ``network_moments/..`` (needs torchvision) and the
  no-assumptions folder on ``PYTHONPATH``),

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
import traceback
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
from benchmarks.machine import cpu_model
from benchmarks.trained import trained_model


def timed(fn, *args, repeats: int = 1) -> tuple[object, float]:
    """(output, median wall seconds over up to ``repeats`` calls) of a compiled function.
    A first call under 2 s is a warm-up, not counted (the first run of a program pays
    for its buffers); slower calls are counted, and stop the repeats (the slow forms once)."""
    times, out = [], None
    for _ in range(repeats + 1):
        t = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
        if times[-1] > 2.0:
            break
    if len(times) > 1 and times[0] <= 2.0:
        times = times[1:]
    return out, statistics.median(times)


def torch_forms(lins, x: np.ndarray, var: float, terms: int) -> tuple[dict, str]:
    """The authors' PyTorch code on the same A, c1, B, c2 (one image at a time, as their
    functions take one network): {label: (seconds, mean (N, k), variances (N, k))} and a
    line saying what was importable."""
    notes, forms = [], {}
    try:
        import torch
    except ImportError as err:
        return {}, f"torch not importable ({err}): the authors' PyTorch code was not run"
    A, c1, B, c2 = (np.asarray(v, np.float64) for v in lins)
    mus = np.asarray(x, np.float64).reshape(x.shape[0], -1)
    t64 = functools.partial(torch.as_tensor, dtype=torch.float64)

    def run(label, one):
        t = time.perf_counter()
        outs = [one(i) for i in range(mus.shape[0])]
        secs = time.perf_counter() - t
        forms[label] = (secs, np.stack([o[0] for o in outs]), np.stack([o[1] for o in outs]))

    try:
        import network_moments.torch as nm  # branch master
        relu_nm = nm.gaussian.relu

        def master(i, form):
            a, b = t64(A[i]), t64(B[i])
            S = var * a @ a.T
            m = a @ t64(mus[i]) + t64(c1[i])
            mean_h, C = relu_nm.batch_moments(m[None], S[None], diagonal=form == "diagonal")
            if form == "diagonal":
                C = torch.diag_embed(C)
            if form == "zero_mean":
                C = relu_nm.zero_mean_covariance(S[None])
            out_cov = b @ C[0] @ b.T
            return (b @ mean_h[0] + t64(c2[i])).numpy(), torch.diagonal(out_cov).numpy()

        for form in ("batch_moments", "zero_mean", "diagonal"):
            run(f"network_moments.torch {form} (PyTorch, float64)",
                functools.partial(master, form=form))
        notes.append("network_moments.torch (branch master) run")
    except ImportError as err:
        notes.append(f"network_moments.torch not importable ({err}): its batch_moments, "
                     "zero-mean and diagonal forms were not run")
    except Exception:  # noqa: BLE001 -- a peer's failure is reported, not fatal
        notes.append("network_moments.torch failed: " + traceback.format_exc(limit=1))
    try:
        import gaussian_relu_moments as grm  # branch no-assumptions (flat modules)

        def series_one(i):
            a, b = t64(A[i]), t64(B[i])
            lin1 = torch.nn.Linear(a.shape[1], a.shape[0]).double()
            lin2 = torch.nn.Linear(b.shape[1], b.shape[0]).double()
            with torch.no_grad():
                lin1.weight.copy_(a), lin1.bias.copy_(t64(c1[i]))
                lin2.weight.copy_(b), lin2.bias.copy_(t64(c2[i]))
                model = torch.nn.Sequential(lin1, torch.nn.ReLU(), lin2)
                v, m = grm.forward_gaussian(model, var * torch.eye(a.shape[1], dtype=torch.float64),
                                            t64(mus[i]), terms=terms)
            return m.numpy(), v.numpy()

        run(f"gaussian_relu_moments series, {terms} terms (PyTorch, float64)", series_one)
        notes.append("gaussian_relu_moments (branch no-assumptions) run")
    except ImportError as err:
        notes.append(f"gaussian_relu_moments not importable ({err}): the authors' series "
                     "code was not run")
    except Exception:  # noqa: BLE001
        notes.append("gaussian_relu_moments failed: " + traceback.format_exc(limit=1))
    return forms, "; ".join(notes)


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
    parser.add_argument("--terms", type=int, default=5,
                        help="series terms (the authors' default: 5)")
    parser.add_argument("--pair-rounds", type=int, default=3,
                        help="rounds of MC then exact back to back (paired speed ratios)")
    parser.add_argument("--no-dense", action="store_true",
                        help="skip the exact method's full pairwise forms (the slowest)")
    parser.add_argument("--moment-chunk", type=int, default=10,
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

    name, net, params, test = trained_model(
        args.model, args.workdir, (args.hidden,) if args.hidden else (), args.epochs)
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
    lins_all, t_lin = timed(lin_c, params, x, repeats=max(1, args.repeats // 2))
    # A one-hidden-layer net is its own Affine-ReLU-Affine form (its weights, the same at
    # every image: analytic.linearize.affine_relu_affine), so the batch shares it
    # (batched_moments(shared_lin=True): the exact method computes S = A Sigma A^T once)
    # and there is no linearization to time
    try:
        lins, t_lin, shared = lin_lib.affine_relu_affine(net, params), 0.0, True
    except ValueError:  # not Affine-ReLU-Affine: the per-image linearizations
        lins, shared = lins_all, False
    rows, out = [], {"model": name, "layer": layer, "images": n, "sigma": args.sigma,
                     "shared_linearization": shared,
                     "samples": args.samples, "linearize_seconds": t_lin, "methods": {}}
    ref = None
    if args.ref_samples and args.ref_images:
        m = min(args.ref_images, n)
        ref_c = jax.jit(functools.partial(mc_all, samples=args.ref_samples)).lower(
            params, x[:m], var, key).compile()
        ref, t_ref = timed(ref_c, params, x[:m], var, jax.random.fold_in(key, 1))
        out["reference"] = {"images": m, "samples": args.ref_samples, "seconds": t_ref}

    mc_c = jax.jit(functools.partial(mc_all, samples=args.samples)).lower(
        params, x, var, key).compile()
    mc, t_mc_before = timed(mc_c, params, x, var, key)
    mc_mean, mc_var = np.asarray(mc.mean), np.asarray(jnp.diagonal(mc.cov, axis1=1, axis2=2))
    mchunk = min(args.moment_chunk, n)
    runs = [("exact (tiled)", "exact", {}), ("exact, full pairwise C grouped (issue 16 step 1)",
                                            "exact", {"tiled": False}),
            ("exact, full pairwise C elementwise (before)", "exact",
             {"tiled": False, "grouped": False})]
    runs = runs[:1] if args.no_dense else runs
    runs += [(f"series, {args.terms} terms (authors' 2020 form)", "series", {"terms": args.terms})]
    runs += [(m, m, {}) for m in METHODS if m not in ("exact", "series")]
    results = {}
    for label, method, kw in runs:
        fn = jax.jit(lambda ls, xs, v, method=method, kw=kw: batched_moments(
            ls, xs, v, method, shared_lin=shared, shared_cov=True, batch_size=mchunk,
            check=False, **kw))
        c = fn.lower(lins, x, var).compile()
        res, t = timed(c, lins, x, var, repeats=args.repeats)
        results[label] = (t, np.asarray(res.mean),
                          np.asarray(jnp.diagonal(res.cov, axis1=1, axis2=2)))
    _, t_mc_after = timed(mc_c, params, x, var, key)
    t_mc = (t_mc_before + t_mc_after) / 2
    out["mc_seconds"] = {"before": t_mc_before, "after": t_mc_after, "mean": t_mc}
    # Paired rounds: Monte Carlo then the exact form, back to back, --pair-rounds times;
    # the ratio of each round is under one load (the machine's load moves MC's time 2x).
    exact_c = jax.jit(lambda ls, xs, v: batched_moments(
        ls, xs, v, "exact", shared_lin=shared, shared_cov=True, batch_size=mchunk,
        check=False)).lower(
        lins, x, var).compile()
    paired = []
    for _ in range(args.pair_rounds):
        t_a = timed(mc_c, params, x, var, key)[1]
        t_b = timed(exact_c, lins, x, var, repeats=3)[1]
        paired.append(t_a / t_b)
    out["paired_mc_over_exact"] = paired
    torch_results, torch_note = torch_forms(lins_all, np.asarray(x), args.sigma ** 2, args.terms)
    out["pytorch"] = torch_note
    results.update(torch_results)

    mc_err = errors(mc_mean, mc_var, ref) if ref is not None else (None, None)
    rows.append([f"Monte Carlo, {args.samples} samples", f"{t_mc:.3f}", "1x", "-", "-",
                 _fmt(mc_err[0]), _fmt(mc_err[1]), "-", "-"])
    for label, (t, mean, v) in results.items():
        err = errors(mean, v, ref) if ref is not None else (None, None)
        vs_mc = (float(sym_rel_error(mean, mc_mean).mean()), float(sym_rel_error(v, mc_var).mean()))
        out["methods"][label] = {
            "seconds": t, "speedup_moments_only": t_mc / t,
            "speedup_incl_linearization": t_mc / (t_lin + t),
            "speedup_grid_incl_linearization": args.grid * t_mc / (t_lin + args.grid * t),
            "mean_error_vs_reference": err[0], "var_error_vs_reference": err[1],
            "mean_error_vs_mc": vs_mc[0], "var_error_vs_mc": vs_mc[1]}
        rows.append([label, f"{t:.4f}", f"{t_mc / t:.1f}x", f"{t_mc / (t_lin + t):.1f}x",
                     f"{args.grid * t_mc / (t_lin + args.grid * t):.1f}x", _fmt(err[0]),
                     _fmt(err[1]), f"{vs_mc[0]:.4f}", f"{vs_mc[1]:.4f}"])

    header = ["estimator", "seconds", "MC / this", "MC / (linearize + this)",
              f"same, {args.grid}-level grid",
              "mean error vs ref", "var error vs ref", "mean error vs MC", "var error vs MC"]
    print(f"{name} (linearized at {layer}), {n} digits test images, sigma={args.sigma}, "
          f"{jnp.asarray(x).dtype}, CPU: {cpu_model()}, {jax.device_count()} "
          f"{jax.devices()[0].platform} device(s); linearization {t_lin:.3f} s "
          + ("(none: the net is Affine-ReLU-Affine, its weights shared by the batch); " if shared
             else "for all images; ")
          + 
          "reference: "
          + (f"MC with {args.ref_samples} samples on {out['reference']['images']} images"
             if ref is not None else "none"))
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(map(str, r)) + " |")
    exact_t = results["exact (tiled)"][0]
    print(f"Monte Carlo {t_mc_before:.3f} s before the closed forms, {t_mc_after:.3f} s after "
          f"(the ratios use the mean, {t_mc:.3f} s); exact (tiled): {exact_t:.4f} s, "
          f"MC / exact = {t_mc / exact_t:.1f}x (moments only)")
    if paired:
        print(f"paired rounds (MC, then exact, back to back): MC / exact = "
              f"{', '.join(f'{r:.1f}x' for r in paired)}; median {statistics.median(paired):.1f}x")
    for label in [r[0] for r in runs[1:3]] if not args.no_dense else []:
        print(f"  {label}: {results[label][0]:.4f} s, {results[label][0] / exact_t:.1f}x the "
              "tiled exact form's time")
    print("authors' PyTorch code: " + torch_note)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return out


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


if __name__ == "__main__":
    main()
