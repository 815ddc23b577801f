"""PGD throughput: ours vs foolbox (same JAX model) vs torchattacks (same net in PyTorch).

    python benchmarks/attacks_bench.py [--images 1000] [--steps 40] [--repeats 3]
                                       [--torch-device cuda]

Work: PGD-40 Linf, eps 0.3, step 0.01, random start, untargeted, on ``--images`` digits
images (train and test pooled) with a LeNet-5 trained for 5 epochs. The three run the same
network: foolbox wraps our jitted JAX model; torchattacks attacks a PyTorch LeNet-5 with the
same weights (checked: same logits). Each is run once untimed (compilation / warm-up), then
``--repeats`` times; the median wall time is reported, with images/s, robust accuracy
(a sanity check that all three do the same attack) and the speedup of ours over each peer.
PyTorch runs on ``--torch-device`` (default: cuda when it sees a GPU, else cpu), the model
and images moved there once; its timed call ends with ``torch.cuda.synchronize`` and the
copy back to the host, as ours ends with ``block_until_ready`` and ``np.asarray``.
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

from attacks.common import model_logits_fn
from attacks.gradient import pgd
from benchmarks.peers import (
    add_torch_device_arg,
    check_same_logits,
    describe_torch_device,
    torch_device,
    torch_lenet5,
    torch_sync,
)
from nets import data, models, train

EPS, ALPHA = 0.3, 0.01


def timed(fn, repeats: int) -> tuple[float, np.ndarray]:
    out = fn()  # warm-up: compile / allocate
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    add_torch_device_arg(ap)
    args = ap.parse_args(argv)
    device = torch_device(args.torch_device)
    print(f"torch device: {describe_torch_device(device)}; "
          f"jax on {jax.devices()[0].platform}", flush=True)

    tr, te = data.load("digits", "train"), data.load("digits", "test")
    net = models.lenet5()
    states, _ = train.fit(net, tr, te, train.TrainSpec(epochs=5))
    params = train.select(states, 0)["params"]
    x_np = np.concatenate([te.images, tr.images])[: args.images]
    y_np = np.concatenate([te.labels, tr.labels])[: args.images]
    x, y = jnp.asarray(x_np), jnp.asarray(y_np)
    fn = model_logits_fn(net, params)
    rows = {}

    def ours():
        xa = pgd(fn, x, y, eps=EPS, alpha=ALPHA, steps=args.steps, key=jax.random.PRNGKey(0))
        return np.asarray(jax.block_until_ready(xa))

    rows["ours (jax)"] = timed(ours, args.repeats)

    try:
        import foolbox as fb

        fmodel = fb.JAXModel(jax.jit(lambda v: net.apply({"params": params}, v)), bounds=(0, 1))
        attack = fb.attacks.LinfPGD(abs_stepsize=ALPHA, steps=args.steps, random_start=True)

        def foolbox_run():
            _, clipped, _ = attack(fmodel, x, y, epsilons=EPS)
            return np.asarray(jax.block_until_ready(clipped))

        rows["foolbox (jax)"] = timed(foolbox_run, args.repeats)
    except ImportError:
        print("foolbox not installed: skipped")

    try:
        import torch
        import torchattacks

        torch.set_num_threads(os.cpu_count())
        model = torch_lenet5(params, device=device)
        xt = torch.from_numpy(x_np).permute(0, 3, 1, 2).contiguous().to(device)
        yt = torch.from_numpy(y_np).long().to(device)
        check_same_logits(model, xt, np.asarray(fn(x)), device, jax.devices()[0].platform)
        atk = torchattacks.PGD(model, eps=EPS, alpha=ALPHA, steps=args.steps, random_start=True)

        def torch_run():
            xa = atk(xt, yt)
            torch_sync(device)
            return xa.permute(0, 2, 3, 1).cpu().numpy()

        rows["torchattacks (torch)"] = timed(torch_run, args.repeats)
    except ImportError:
        print("torch/torchattacks not installed: skipped")

    print(f"\nPGD-{args.steps} Linf eps={EPS} step={ALPHA}, {args.images} images, LeNet-5, "
          f"{os.cpu_count()} CPU cores, jax {jax.__version__} on {jax.devices()[0].platform}, "
          f"torch on {device}; median of {args.repeats} after a warm-up")
    ours_t = rows["ours (jax)"][0]
    print(f"{'implementation':24s} {'seconds':>8s} {'images/s':>9s} {'robust acc':>10s} "
          f"{'ours is x faster':>16s}")
    for name, (t, xa) in rows.items():
        robust = float((np.asarray(fn(jnp.asarray(xa))).argmax(-1) == y_np).mean())
        linf = float(np.abs(xa - x_np).max())
        assert linf <= EPS + 1e-5, f"{name} left the eps-ball: {linf}"
        print(f"{name:24s} {t:8.3f} {args.images / t:9.0f} {robust:10.3f} {t / ours_t:16.2f}")


if __name__ == "__main__":
    main()
