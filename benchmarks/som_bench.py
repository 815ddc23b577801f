"""SOM training: ours (online scan, batch map) vs MiniSom, and the time to reach MiniSom's
quantization error.

    python benchmarks/som_bench.py [--repeats 3] [--cases small,large] [--minisom-batch]

Cases (synthetic data, seeded):

* ``small``: 5,000 x 84 "fc2-like" codes (ReLU of a 10-cluster Gaussian mixture in 84-D,
  like LeNet-5's post-ReLU fc2 layer), MiniSom budget 20,000 online updates.
* ``large``: 60,000 x 512 clustered data (20 clusters), budget 60,000 updates (one pass).

Same map and schedule for every run: 10x10 rectangular, Gaussian neighborhood, sigma 3,
learning rate 0.5, MiniSom's asymptotic decay v0 / (1 + 2t/T) for both, and the same
initial codebook (random data rows, copied into MiniSom). Data and weights are float32
for both libraries. MiniSom runs ``train_random`` (one update per sample, random order).

Rows:

* ``minisom online``: the reference time and quantization error (QE).
* ``ours online``: the same algorithm and budget, a per-sample ``lax.scan``.
* ``ours online, to QE``: the smallest budget (fractions of MiniSom's) whose QE is <=
  MiniSom's, and its time.
* ``ours batch, same visits``: Kohonen's batch map (matmul BMUs over all data per pass;
  sigma 3 -> 0.5 exponential) with as many sample visits as MiniSom's budget.
* ``ours batch, to QE``: the smallest number of batch passes whose QE is <= MiniSom's.
* ``minisom batch (offline)`` (with ``--minisom-batch``): MiniSom's ``train_batch_offline``
  for that many passes (a Python loop over samples; it also blends with the learning
  rate, so its QE differs). For reference only, no ratio.

Our times are the median of ``--repeats`` runs after a warm-up (compilation reported
separately); MiniSom's the median of ``--repeats`` runs. "x faster" = MiniSom time / ours.
The machine is shared: timings are noisy; rerun to see the spread.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import jax.numpy as jnp

from som import quality
from som.grid import Grid
from som.init import random_init
from som.train import SOMSpec, train

GRID = Grid(10, 10)
SIGMA, LR = 3.0, 0.5
CASES = {"small": (5000, 84, 10, 20_000), "large": (60_000, 512, 20, 60_000)}
ONLINE_FRACTIONS = (0.125, 0.25, 0.5, 1.0, 2.0)
BATCH_PASSES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)


def clustered(n: int, d: int, k: int, seed: int = 0) -> np.ndarray:
    """ReLU of a k-cluster Gaussian mixture: nonnegative, sparse-ish, like layer codes."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)) * 1.5
    x = centers[rng.integers(0, k, n)] + rng.normal(size=(n, d))
    return np.maximum(x, 0.0).astype(np.float32)


def timed(fn, repeats: int, warmup: bool = True) -> tuple[float, float, object]:
    """(median seconds, first-call seconds, output)."""
    t0 = time.perf_counter()
    out = fn()
    first = time.perf_counter() - t0
    times = [] if warmup else [first]
    for _ in range(repeats - (0 if warmup else 1)):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), first, out


def run_case(name: str, repeats: int, minisom_batch: bool) -> list[tuple]:
    from minisom import MiniSom

    n, d, k, budget = CASES[name]
    x_np = clustered(n, d, k)
    x = jnp.asarray(x_np)
    key = jax.random.PRNGKey(0)
    w0 = random_init(key, x, GRID)
    w0_np = np.asarray(w0)
    rows = []

    def qe_te(w):
        w = jnp.asarray(w, jnp.float32).reshape(GRID.size, d)
        return float(quality.quantization_error(w, x)), float(
            quality.topographic_error(w, x, GRID))

    def minisom_online():
        som = MiniSom(GRID.rows, GRID.cols, d, sigma=SIGMA, learning_rate=LR,
                      neighborhood_function="gaussian", random_seed=0)
        som._weights = w0_np.reshape(GRID.rows, GRID.cols, d).copy()
        som.train_random(x_np, budget)
        return som.get_weights()

    t_ms, _, w_ms = timed(minisom_online, repeats, warmup=False)
    qe_ms, te_ms = qe_te(w_ms)
    rows.append((name, "minisom online", f"{budget} updates", t_ms, None, qe_ms, te_ms))

    def ours(spec):
        fn = jax.jit(lambda w, data: train(spec, w, data, key))  # data as an argument
        return timed(lambda: jax.block_until_ready(fn(w0, x)), repeats)

    online = SOMSpec(GRID, "online", budget, sigma=SIGMA, learning_rate=LR, decay="asymptotic",
                     init="random")
    t, first, w = ours(online)
    rows.append((name, "ours online", f"{budget} updates", t, first, *qe_te(w)))

    for frac in ONLINE_FRACTIONS:
        steps = int(budget * frac)
        spec = SOMSpec(GRID, "online", steps, sigma=SIGMA, learning_rate=LR,
                       decay="asymptotic", init="random")
        t, first, w = ours(spec)
        qe, te = qe_te(w)
        if qe <= qe_ms:
            rows.append((name, "ours online, to QE", f"{steps} updates", t, first, qe, te))
            break
    else:
        rows.append((name, "ours online, to QE", "not reached", float("nan"), None, qe, te))

    same = max(1, round(budget / n))  # passes that visit as many samples as the budget
    t, first, w = ours(SOMSpec(GRID, "batch", same, sigma=SIGMA, sigma_end=0.5, init="random"))
    label = f"{same} pass{'es' if same > 1 else ''}"
    rows.append((name, "ours batch, same visits", label, t, first, *qe_te(w)))

    for passes in BATCH_PASSES:
        spec = SOMSpec(GRID, "batch", passes, sigma=SIGMA, sigma_end=0.5, init="random")
        t, first, w = ours(spec)
        qe, te = qe_te(w)
        if qe <= qe_ms:
            rows.append((name, "ours batch, to QE", f"{passes} passes", t, first, qe, te))
            break
    else:
        rows.append((name, "ours batch, to QE", "not reached", float("nan"), None, qe, te))

    if minisom_batch:
        def ms_batch():
            som = MiniSom(GRID.rows, GRID.cols, d, sigma=SIGMA, learning_rate=LR,
                          neighborhood_function="gaussian", random_seed=0)
            som._weights = w0_np.reshape(GRID.rows, GRID.cols, d).copy()
            som.train_batch_offline(x_np, passes)
            return som.get_weights()

        t, _, w = timed(ms_batch, 1, warmup=False)
        rows.append((name, "minisom batch (offline)", f"{passes} passes", t, None, *qe_te(w)))
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cases", default="small,large")
    ap.add_argument("--minisom-batch", action="store_true",
                    help="also time MiniSom's train_batch_offline (slow, pure Python loop)")
    args = ap.parse_args(argv)
    rows = []
    for name in args.cases.split(","):
        rows += run_case(name, args.repeats, args.minisom_batch)

    print(f"\n10x10 rectangular SOM, Gaussian, sigma {SIGMA}, lr {LR}; {os.cpu_count()} CPU "
          f"cores, jax {jax.__version__} on {jax.devices()[0].platform}; median of "
          f"{args.repeats}; shared machine, timings are noisy")
    print(f"{'case':6s} {'run':24s} {'budget':>15s} {'seconds':>8s} {'1st call':>8s} "
          f"{'QE':>8s} {'TE':>6s} {'x faster':>8s}")
    ref = {}
    for case, run, budget, t, first, qe, te in rows:
        if run == "minisom online":
            ref[case] = t
        ratio = ref[case] / t if np.isfinite(t) and run.startswith("ours") else float("nan")
        first_s = f"{first:8.3f}" if first is not None else f"{'-':>8s}"
        ratio_s = f"{ratio:8.2f}" if np.isfinite(ratio) else f"{'-':>8s}"
        print(f"{case:6s} {run:24s} {budget:>15s} {t:8.3f} {first_s} {qe:8.4f} {te:6.3f} "
              f"{ratio_s}")


if __name__ == "__main__":
    main()
