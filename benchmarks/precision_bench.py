"""What bfloat16 compute costs in accuracy: LeNet-5 on ``digits`` in float32 vs bfloat16.

    python benchmarks/precision_bench.py [--epochs 8] [--seeds 0,1,2] [--eps 0.05] [--steps 20]

Both precisions train the same seeds (same initial float32 parameters, same batch order)
with ``nets.train.fit``: the compute dtype is a field of the net
(``models.get_model("lenet5", dtype="bfloat16")``), so the training step, the evaluation
and the attack's logits function all compute in it, with float32 master weights and
float32 logits (see nets/models.py). Printed:

* clean test accuracy of every seed in each precision, and the paired 95% interval of
  the difference bfloat16 - float32 over seeds and the 450 test images
  (``experiments.intervals.over_seeds_and_images`` on per-image correctness: same
  seeds, same images);
* Linf PGD robust accuracy at a small eps (random start, ``--steps`` steps of
  2.5 eps / steps) in each precision, the attack computing in the net's own precision,
  with the same paired interval; and a check on the bfloat16 nets attacked with float32
  gradients (``net.clone(dtype="float32")``; the prediction still in bfloat16), since
  coarser gradients could make the bfloat16 attack weaker and its robust accuracy look
  better than it is;
* wall time per training epoch of each precision, measured side by side in one process
  (one untimed warm-up epoch each, then epochs alternating between the two, median).
  On CPU, XLA emulates bfloat16 arithmetic (converts around float32 work), so bfloat16
  is slower here; the figure that matters is on a GPU or TPU, where bfloat16 matmuls and
  convolutions run on the tensor units (and float32 ones may run as TF32 unless
  ``JAX_DEFAULT_MATMUL_PRECISION=highest``; the header prints the setting).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `nets` when run as a script

import jax
import jax.numpy as jnp

import attacks
from benchmarks.machine import cpu_model
from experiments.intervals import over_seeds, over_seeds_and_images
from nets import data as data_lib
from nets import evaluate, models, train

DTYPES = models.COMPUTE_DTYPES  # ("float32", "bfloat16")


def correct(net: models.Net, params, x: jax.Array, y: np.ndarray) -> np.ndarray:
    """Per-image correctness (N,) of one model."""
    return np.asarray(evaluate.logits(net, params, x).argmax(-1)) == y


def robust(net: models.Net, params, x: jax.Array, y: np.ndarray, eps: float, steps: int,
           seed: int, attack_dtype: str | None = None) -> np.ndarray:
    """Per-image robust correctness (N,) under Linf PGD; the attack's gradients in
    ``attack_dtype`` (default: the net's own), the prediction by ``net``."""
    attacker = net if attack_dtype is None else net.clone(dtype=attack_dtype)
    fn = attacks.model_logits_fn(attacker, params)
    keys = attacks.example_keys(jax.random.PRNGKey(1000 + seed), x.shape[0])
    x_adv = attacks.pgd(fn, x, jnp.asarray(y), eps=eps, steps=steps, key=keys)
    return correct(net, params, x_adv, y)


def epoch_times(nets: dict[str, models.Net], tr: data_lib.Dataset, spec: train.TrainSpec,
                seeds: tuple[int, ...], rounds: int) -> dict[str, tuple[float, list[float]]]:
    """(warm-up seconds, timed epoch seconds) per precision, epochs alternating."""
    opt = train.make_optimizer(spec)
    images, labels = jnp.asarray(tr.images), jnp.asarray(tr.labels)
    fns, states, out = {}, {}, {}
    for name, net in nets.items():
        fns[name] = train.make_epoch_fn(net, opt, spec.batch_size, loop=spec.loop)
        states[name] = train.init_states(net, opt, seeds, tr.images.shape[1:])
        t = time.perf_counter()
        states[name], m = fns[name](states[name], images, labels, 0)
        jax.block_until_ready((states[name], m))
        out[name] = (time.perf_counter() - t, [])
    for r in range(rounds):
        for name in (list(nets) if r % 2 == 0 else list(nets)[::-1]):
            t = time.perf_counter()
            states[name], m = fns[name](states[name], images, labels, r + 1)
            jax.block_until_ready((states[name], m))
            out[name][1].append(time.perf_counter() - t)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--eps", type=float, default=0.05)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--timing-rounds", type=int, default=6)
    args = parser.parse_args()
    seeds = tuple(int(s) for s in args.seeds.split(","))

    tr, te = data_lib.load("digits", "train"), data_lib.load("digits", "test")
    x, y = jnp.asarray(te.images), np.asarray(te.labels)
    spec = train.TrainSpec(epochs=args.epochs, eval_every=args.epochs)
    nets = {d: models.get_model("lenet5", tr.num_classes, dtype=d) for d in DTYPES}
    print(f"# LeNet-5 on digits ({tr.images.shape[0]} train, {te.images.shape[0]} test), "
          f"{args.epochs} epoch(s) of Adam lr {spec.learning_rate}, batch {spec.batch_size}, "
          f"seeds {seeds}")
    print(f"# backend {jax.default_backend()}, {jax.devices()[0].device_kind}, "
          f"{cpu_model()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f} at start, float32 matmul precision "
          f"{jax.config.jax_default_matmul_precision or 'default'}")

    clean, rob = {}, {}
    for d, net in nets.items():
        states, _ = train.fit(net, tr, te, spec, seeds)
        params = [train.select(states, i)["params"] for i in range(len(seeds))]
        assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(params))
        clean[d] = np.stack([correct(net, p, x, y) for p in params])
        rob[d] = np.stack([robust(net, p, x, y, args.eps, args.steps, s)
                           for p, s in zip(params, seeds, strict=True)])
        if d == "bfloat16":
            rob["bfloat16, float32 attack"] = np.stack(
                [robust(net, p, x, y, args.eps, args.steps, s, attack_dtype="float32")
                 for p, s in zip(params, seeds, strict=True)])

    def row(label: str, c: np.ndarray) -> str:
        per_seed = " ".join(f"{v:.3f}" for v in c.mean(1))
        return f"{label:<40} {over_seeds(c.mean(1)).fmt(3):<26} per seed {per_seed}"

    print(f"\n{'clean test accuracy':<40} {'mean [95% over seeds]':<26}")
    for d in DTYPES:
        print(row(d, clean[d]))
    diff = over_seeds_and_images(clean["bfloat16"].astype(float) - clean["float32"])
    print(f"{'bfloat16 - float32 (paired)':<40} {diff.fmt(4)}  ({diff.method})")

    print(f"\n{f'PGD-{args.steps} Linf eps {args.eps} robust accuracy':<40} "
          f"{'mean [95% over seeds]':<26}")
    for d, r in rob.items():
        print(row(d, r))
    diff = over_seeds_and_images(rob["bfloat16"].astype(float) - rob["float32"])
    print(f"{'bfloat16 - float32 (paired)':<40} {diff.fmt(4)}  ({diff.method})")
    gap = over_seeds_and_images(rob["bfloat16"].astype(float) - rob["bfloat16, float32 attack"])
    print(f"{'bf16 attack - float32 attack (bf16 nets)':<40} {gap.fmt(4)}  ({gap.method})")

    times = epoch_times(nets, tr, spec, seeds, args.timing_rounds)
    steps = tr.images.shape[0] // spec.batch_size
    print(f"\nwall time per epoch ({len(seeds)} models x {steps} steps, loop "
          f"{train.resolve_loop(spec.loop)}; median of {args.timing_rounds} alternating "
          f"epochs, load average {os.getloadavg()[0]:.1f} at end)")
    for d in DTYPES:
        warm, ts = times[d]
        print(f"{d:<10} {statistics.median(ts) * 1e3:8.1f} ms  (first epoch, with compile: "
              f"{warm:.1f} s)")
    ratio = statistics.median(times["bfloat16"][1]) / statistics.median(times["float32"][1])
    if jax.default_backend() == "cpu":
        note = ("On CPU bfloat16 is emulated (XLA converts around float32 dots and "
                "convolutions) and slow; the figure that matters is on a GPU or TPU.")
    else:
        note = f"On {jax.devices()[0].device_kind}."
    print(f"bfloat16 / float32: {ratio:.2f}x. {note}")


if __name__ == "__main__":
    main()
