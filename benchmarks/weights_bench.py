"""The vmapped weight-perturbation sweep vs Python loops doing the same work.

    python benchmarks/weights_bench.py [--trials 10] [--epochs 5] [--repeats 3]

Work: synapse knockout of the weights of every layer of a LeNet-5 trained on digits, p in
{0, 0.1, ..., 1}, ``--trials`` random trials, top-1/top-5 on the 450 test images. Three
ways, all with the same keys and checked to give the same accuracies:

* ``vmapped``: :func:`attacks.weights_sweep.sweep`, one jitted call per layer
  (vmap over p and trials);
* ``loop over trials``: a Python loop over trials, each one jitted call vmapped over p
  only (the same compiled code path with T = 1);
* ``loop over trials and p``: the naive loop, one jitted ``perturb`` + full forward pass
  (``nets.evaluate.logits``) per (p, trial).

Compilation is timed separately (first call) and excluded from the run times (best of
``--repeats``).
"""

from __future__ import annotations

import argparse
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from attacks import weights as W
from attacks import weights_sweep as S
from nets import data, evaluate, models, train

KIND, TARGET = "synapse_knockout", "weights"


def vmapped(net, params, x, y, key, ps, trials, layers) -> dict[str, np.ndarray]:
    out = S.sweep(net, params, x, y, key, ps=ps, trials=trials, kinds=(KIND,),
                  targets=(TARGET,), layers=layers)
    return {layer: np.stack([r["top1"], r["topk"]]) for layer, r in out[KIND + "/" + TARGET].items()}


def loop_trials(net, params, x, y, key, ps, trials, layers) -> dict[str, np.ndarray]:
    out = {}
    for layer in layers:
        keys = S.trial_keys(key, KIND, TARGET, layer, trials)
        cols = [S.sweep_accuracy(net, params, x, y, ps, keys[t:t + 1], layer=layer, kind=KIND,
                                 target=TARGET) for t in range(trials)]
        out[layer] = np.stack([np.concatenate([c[0] for c in cols], 1),
                               np.concatenate([c[1] for c in cols], 1)])
    return out


@functools.partial(jax.jit, static_argnames=("net", "layer"))
def _one_model(net, params, x, y, p, key, *, layer):
    z = evaluate.logits(net, W.perturb(params, p, key, layer=layer, kind=KIND, target=TARGET), x,
                        chunk=128)
    rank = S.label_rank(z, y)
    return jnp.stack([(rank < 1).sum(), (rank < 5).sum()])


def loop_trials_and_p(net, params, x, y, key, ps, trials, layers) -> dict[str, np.ndarray]:
    out = {}
    for layer in layers:
        keys = S.trial_keys(key, KIND, TARGET, layer, trials)
        counts = np.zeros((2, len(ps), trials))
        for i, p in enumerate(ps):
            for t in range(trials):
                counts[:, i, t] = np.asarray(_one_model(net, params, x, y, jnp.float32(p),
                                                        keys[t], layer=layer))
        out[layer] = counts / x.shape[0]
    return out


def timed(fn, repeats: int) -> tuple[float, float, dict]:
    """(first call seconds incl. compile, best of ``repeats`` warm calls, result)."""
    t0 = time.perf_counter()
    result = fn()
    first = time.perf_counter() - t0
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return first, best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    tr, te = data.load("digits", "train"), data.load("digits", "test")
    net = models.lenet5()
    states, _ = train.fit(net, tr, te, train.TrainSpec(epochs=args.epochs))
    params = train.select(states, 0)["params"]
    x, y = jnp.asarray(te.images), jnp.asarray(te.labels)
    ps, key, layers = S.P_GRID, jax.random.PRNGKey(0), S.layer_targets(net)
    work = (net, params, x, y, key, ps, args.trials, layers)
    print(f"{jax.devices()[0].platform}: synapse knockout of {layers}, {len(ps)} p x "
          f"{args.trials} trials = {len(layers) * len(ps) * args.trials} perturbed networks "
          f"on {x.shape[0]} images")

    rows = {}
    for name, fn in [("vmapped (p and trials)", vmapped), ("loop over trials", loop_trials),
                     ("loop over trials and p", loop_trials_and_p)]:
        rows[name] = timed(lambda fn=fn: fn(*work), args.repeats)
    ref = rows["vmapped (p and trials)"][2]
    n = x.shape[0]
    for name, (_, _, result) in rows.items():
        diff = max(np.abs(result[layer] - ref[layer]).max() for layer in layers) * n
        # Batched convolutions may sum in another order: allow one image per setting.
        assert diff <= 1, f"{name} differs from the vmapped sweep by {diff:.0f} images"
        print(f"  {name:24s} same accuracies (max difference {diff:.0f} images)")
    base = rows["vmapped (p and trials)"][1]
    print(f"\n  {'method':24s} {'first call (s)':>15s} {'warm (s)':>9s} {'warm / vmapped':>15s}")
    for name, (first, best, _) in rows.items():
        print(f"  {name:24s} {first:15.2f} {best:9.2f} {best / base:15.2f}x")


if __name__ == "__main__":
    main()
