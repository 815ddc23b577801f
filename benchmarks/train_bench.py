"""LeNet-5 training throughput on this machine: our epoch function vs plain Flax/optax vs PyTorch.

    python benchmarks/train_bench.py [--images N] [--batch B] [--epochs E] [--ablate] [--no-torch]
                                     [--torch-device DEVICE]

Three implementations train the same LeNet-5 (conv 6@5x5 SAME, ReLU, 2x2 max pool,
conv 16@5x5 VALID, ReLU, pool, fc 120, 84, 10) with Adam (lr 1e-3) and softmax
cross-entropy on the same synthetic data (seeded numpy, 28x28x1 float32 in [0, 1]):

* ``ours``: ``nets.train.make_epoch_fn`` on ``nets.models.lenet5()`` (S = 1 model), the
  data resident as jnp arrays, the state buffers donated. (When this was written, the
  epoch was one jitted ``lax.scan`` over the shuffled batches; the table says which.)
* ``plain``: the straightforward Flax/optax way: ``nn.Conv``, ``nn.max_pool``
  (``lax.reduce_window``), a ``jax.jit`` train step called from a Python loop that feeds a
  numpy batch every step.
* ``torch``: the same network in PyTorch (NCHW; the data are permuted once, up front),
  the standard ``zero_grad / backward / step`` loop, ``torch.set_num_threads(os.cpu_count())``,
  on ``--torch-device`` (default: cuda when PyTorch sees a GPU, else cpu; the data moved
  there once, each step's batch indices uploaded and gathered there).

Every implementation does the same work per epoch: ``N // B`` steps of ``B`` images (the
last partial batch is dropped), each step gathering its batch from a fresh permutation.
Each implementation first runs one warm-up epoch, which is NOT timed (it includes the
JIT compilation, and oneDNN's primitive creation for torch); its time is printed
separately. The timed epochs are then run round-robin (ours, plain, torch, then the next
epoch with the order rotated) so that a load change on the machine hits all of them
alike, and the median epoch time is reported. The JAX clocks stop only after
``jax.block_until_ready`` on the new parameters, optimizer state and loss; torch's after
``torch.cuda.synchronize`` (on a GPU) and ``loss.item()``. The column
``others`` is the largest share of the CPUs that other processes used during one of the
row's timed epochs (from /proc/stat): on a small machine a busy neighbour inflates every
row, torch's most (its OpenMP threads spin at barriers), so read rows with a high share
with care.

``--ablate`` also measures variants of the training step, each changing one thing, to
show where the JAX time goes on CPU (see ``ABLATIONS`` below). XLA flags are read from the
``XLA_FLAGS`` environment variable; set them there to compare (the header prints them).
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `nets` when run as a script

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax import lax

from benchmarks.machine import cpu_model
from benchmarks.peers import (
    add_torch_device_arg,
    describe_torch_device,
    torch_device,
    torch_lenet5,
    torch_sync,
)
from nets.conv import conv2d
from nets.models import lenet5, max_pool
from nets.train import TrainSpec, init_states, make_epoch_fn, make_optimizer

INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
LR = 1e-3

DESCRIPTION = {
    "ours": "nets.train.make_epoch_fn, S=1",
    "plain": "Flax nn.Conv/nn.max_pool, jit step, numpy feed",
    "torch": "PyTorch eager, zero_grad/backward/step",
}

# An epoch runner: run(epoch_index) trains one epoch, blocks until it is done, returns the
# last loss (a float, for a sanity check that every implementation trains).
Runner = Callable[[int], float]


def synthetic(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.random((n, *INPUT_SHAPE), dtype=np.float32)
    labels = rng.integers(0, NUM_CLASSES, n).astype(np.int32)
    return images, labels


def batch_order(n: int, batch: int, epoch: int) -> np.ndarray:
    """(steps, batch) indices of one epoch; the last partial batch is dropped."""
    steps = n // batch
    perm = np.random.default_rng(1000 + epoch).permutation(n)
    return perm[: steps * batch].reshape(steps, batch)


# --------------------------------------------------------------------------- ours


def make_ours(images: np.ndarray, labels: np.ndarray, batch: int) -> Runner:
    net = lenet5(NUM_CLASSES)
    optimizer = make_optimizer(TrainSpec(optimizer="adam", learning_rate=LR, batch_size=batch))
    epoch_fn = make_epoch_fn(net, optimizer, batch)
    # one jitted lax.scan per epoch, or (no .lower) a Python loop over a jitted step
    DESCRIPTION["ours"] = (f"nets.train.make_epoch_fn, S=1 "
                           f"({'lax.scan epoch' if hasattr(epoch_fn, 'lower') else 'step loop'})")
    holder = {"states": init_states(net, optimizer, [0], INPUT_SHAPE)}
    x, y = jnp.asarray(images), jnp.asarray(labels)

    def run(epoch: int) -> float:
        states, metrics = epoch_fn(holder["states"], x, y, epoch)
        jax.block_until_ready((states, metrics))
        holder["states"] = states
        return float(metrics["loss"][0, -1])

    return run


# -------------------------------------------------------------------------- plain


class PlainLeNet(nn.Module):
    """LeNet-5 written the usual Flax way (``nn.max_pool`` is ``lax.reduce_window``)."""

    @nn.compact
    def __call__(self, x):
        x = nn.max_pool(nn.relu(nn.Conv(6, (5, 5), padding="SAME")(x)), (2, 2), strides=(2, 2))
        x = nn.max_pool(nn.relu(nn.Conv(16, (5, 5), padding="VALID")(x)), (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(120)(x))
        x = nn.relu(nn.Dense(84)(x))
        return nn.Dense(NUM_CLASSES)(x)


def make_plain(images: np.ndarray, labels: np.ndarray, batch: int) -> Runner:
    model = PlainLeNet()
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, *INPUT_SHAPE)))["params"]
    tx = optax.adam(LR)

    @jax.jit
    def train_step(params, opt_state, x, y):
        def loss_fn(p):
            logits = model.apply({"params": p}, x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    holder = {"state": (params, tx.init(params))}

    def run(epoch: int) -> float:
        params, opt_state = holder["state"]
        loss = None
        for idx in batch_order(len(images), batch, epoch):
            params, opt_state, loss = train_step(params, opt_state, images[idx], labels[idx])
        jax.block_until_ready((params, opt_state, loss))
        holder["state"] = (params, opt_state)
        return float(loss)

    return run


# -------------------------------------------------------------------------- torch


def make_torch(images: np.ndarray, labels: np.ndarray, batch: int, device: str = "cpu") -> Runner:
    import torch

    DESCRIPTION["torch"] = f"PyTorch eager on {device}, zero_grad/backward/step"
    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    model = torch_lenet5(num_classes=NUM_CLASSES, device=device)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW, once
    x, y = x.to(device), torch.from_numpy(labels).long().to(device)

    def run(epoch: int) -> float:
        loss = None
        for idx in batch_order(len(images), batch, epoch):
            idx = torch.from_numpy(idx).to(device)
            opt.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
        torch_sync(device)
        return loss.item()

    return run


def torch_version() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return f"torch {torch.__version__} ({torch.get_num_threads()} threads by default)"


# ---------------------------------------------------------------- ablation variants
#
# Functional LeNet-5 variants with the same parameters and optimizer as ``plain``; each
# changes one of: the max-pool (and so its gradient), the convolution, the data layout,
# how batches reach the step (numpy per step / device-resident / one scan per epoch), and
# buffer donation.

DN = ("NHWC", "HWIO", "NHWC")
SAME2, VALID = ((2, 2), (2, 2)), ((0, 0), (0, 0))


def conv_lax(x, w, pad):
    """What ``nn.Conv`` does."""
    return lax.conv_general_dilated(x, w, (1, 1), pad, dimension_numbers=DN)


def conv_im2col(x, w, pad):
    """The convolution as shifted slices (im2col) and one matmul: no convolution op, so
    its gradient is slices, pads and matmuls too."""
    kh, kw, ci, co = w.shape
    x = jnp.pad(x, ((0, 0), pad[0], pad[1], (0, 0)))
    ho, wo = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    cols = jnp.concatenate(
        [x[:, i : i + ho, j : j + wo, :] for i in range(kh) for j in range(kw)], axis=-1
    )
    return cols @ w.reshape(kh * kw * ci, co)


def conv_patches(x, w, pad):
    """im2col through ``lax.conv_general_dilated_patches`` (itself a convolution)."""
    kh, kw, ci, co = w.shape
    cols = lax.conv_general_dilated_patches(x, (kh, kw), (1, 1), pad, dimension_numbers=DN)
    return cols @ w.transpose(2, 0, 1, 3).reshape(ci * kh * kw, co)  # patches are (c, h, w)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_canonical(x, w, pad):
    """``conv_lax`` whose two backward convolutions are written in the NHWC/HWIO form that
    XLA:CPU hands to Eigen/YNNPACK, instead of autodiff's transposed dimension numbers."""
    return conv_lax(x, w, pad)


def _conv_canonical_fwd(x, w, pad):
    return conv_lax(x, w, pad), (x, w)


def _conv_canonical_bwd(pad, res, g):
    x, w = res
    kh, kw = w.shape[:2]
    w_flip = jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2)  # HWIO of the transposed conv
    dpad = ((kh - 1 - pad[0][0], kh - 1 - pad[0][1]), (kw - 1 - pad[1][0], kw - 1 - pad[1][1]))
    dx = conv_lax(g, w_flip, dpad)
    # weight gradient: input channels as the batch, the batch as the contracted feature
    dw = conv_lax(x.transpose(3, 1, 2, 0), g.transpose(1, 2, 0, 3), pad)  # (ci, kh, kw, co)
    return dx, dw.transpose(1, 2, 0, 3)


conv_canonical.defvjp(_conv_canonical_fwd, _conv_canonical_bwd)


def pool_reduce_window(x):
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


CONVS = {"lax": conv_lax, "im2col": conv_im2col, "patches": conv_patches,
         "canonical": conv_canonical, "nets": conv2d}
POOLS = {"reduce_window": pool_reduce_window, "reshape": lambda x: max_pool(x, 2)}


def init_params(key) -> dict:
    """The ``plain`` model's parameters, as a plain dict (same init, same shapes)."""
    p = PlainLeNet().init(key, jnp.zeros((1, *INPUT_SHAPE)))["params"]
    names = ("Conv_0", "Conv_1", "Dense_0", "Dense_1", "Dense_2")
    return {k: {"w": p[k]["kernel"], "b": p[k]["bias"]} for k in names}


def make_apply(conv: str = "lax", pool: str = "reshape", layout: str = "NHWC"):
    cf, pf = CONVS[conv], POOLS[pool]

    def apply(p, x):
        if layout == "NCHW":  # lax conv and reshape pool on NCHW activations
            dn = ("NCHW", "OIHW", "NCHW")
            x = x.transpose(0, 3, 1, 2)
            for name, pad in (("Conv_0", SAME2), ("Conv_1", VALID)):
                w = p[name]["w"].transpose(3, 2, 0, 1)
                x = lax.conv_general_dilated(x, w, (1, 1), pad, dimension_numbers=dn)
                x = jax.nn.relu(x + p[name]["b"][:, None, None])
                n, c, h, w_ = x.shape
                x = x.reshape(n, c, h // 2, 2, w_ // 2, 2).max(axis=(3, 5))
            x = x.transpose(0, 2, 3, 1)
        else:
            x = pf(jax.nn.relu(cf(x, p["Conv_0"]["w"], SAME2) + p["Conv_0"]["b"]))
            x = pf(jax.nn.relu(cf(x, p["Conv_1"]["w"], VALID) + p["Conv_1"]["b"]))
        x = x.reshape(x.shape[0], -1)
        x = jax.nn.relu(x @ p["Dense_0"]["w"] + p["Dense_0"]["b"])
        x = jax.nn.relu(x @ p["Dense_1"]["w"] + p["Dense_1"]["b"])
        return x @ p["Dense_2"]["w"] + p["Dense_2"]["b"]

    return apply


def make_variant(images, labels, batch, *, conv="lax", pool="reshape", layout="NHWC",
                 feed="host", donate=False) -> Runner:
    """feed: host (numpy batch per jitted step) | device (data on device, the step gathers
    its batch from indices) | scan (one jitted lax.scan per epoch, data on device)."""
    apply, tx = make_apply(conv, pool, layout), optax.adam(LR)

    def step(params, opt_state, x, y):
        def loss_fn(p):
            return optax.softmax_cross_entropy_with_integer_labels(apply(p, x), y).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    params = init_params(jax.random.PRNGKey(0))
    holder = {"state": (params, tx.init(params))}
    donate_argnums = (0, 1) if donate else ()
    xd, yd = jnp.asarray(images), jnp.asarray(labels)

    if feed == "host":
        jstep = jax.jit(step, donate_argnums=donate_argnums)

        def epoch(p, o, order):
            loss = None
            for idx in order:
                p, o, loss = jstep(p, o, images[idx], labels[idx])
            return p, o, loss
    elif feed == "device":
        def device_step(p, o, order, i):
            idx = lax.dynamic_index_in_dim(order, i, keepdims=False)
            return step(p, o, xd[idx], yd[idx])

        jstep = jax.jit(device_step, donate_argnums=donate_argnums)

        def epoch(p, o, order):
            loss, order_d = None, jnp.asarray(order)
            for i in range(len(order)):
                p, o, loss = jstep(p, o, order_d, i)
            return p, o, loss
    elif feed == "scan":
        def scan_epoch(p, o, order):
            def body(carry, idx):
                p, o, loss = step(*carry, xd[idx], yd[idx])
                return (p, o), loss

            (p, o), losses = lax.scan(body, (p, o), order)
            return p, o, losses[-1]

        jepoch = jax.jit(scan_epoch, donate_argnums=donate_argnums)

        def epoch(p, o, order):
            return jepoch(p, o, jnp.asarray(order))
    else:
        raise ValueError(f"unknown feed {feed!r}")

    def run(e: int) -> float:
        p, o, loss = epoch(*holder["state"], batch_order(len(images), batch, e))
        jax.block_until_ready((p, o, loss))
        holder["state"] = (p, o)
        return float(loss)

    return run


# Each row changes one thing relative to the row named in its description.
ABLATIONS: list[tuple[str, str, dict]] = [
    ("A plain", "baseline: nn.max_pool (reduce_window), lax conv, numpy batch per jitted step",
     {"pool": "reduce_window"}),
    ("B  pool=reshape", "A with nets.models.max_pool (reshape + max)", {}),
    ("C  feed=device", "B with the data on device, the step gathers its batch", {"feed": "device"}),
    ("D  donate", "C with the params/opt-state buffers donated", {"feed": "device", "donate": True}),
    ("E  layout=NCHW", "B with NCHW activations / OIHW kernels", {"layout": "NCHW"}),
    ("F  conv=im2col", "B with conv as shifted slices + matmul", {"conv": "im2col"}),
    ("G  conv=patches", "B with conv as conv_general_dilated_patches + matmul",
     {"conv": "patches"}),
    ("H  scan", "B as one jitted lax.scan per epoch (a scan epoch, as make_epoch_fn had)", {"feed": "scan"}),
    ("I  scan+reduce_window", "H with nn.max_pool", {"feed": "scan", "pool": "reduce_window"}),
    ("J  scan+canonical", "H with canonical-form backward convs (custom_vjp)",
     {"feed": "scan", "conv": "canonical"}),
    ("K  scan+im2col", "H with conv=im2col", {"feed": "scan", "conv": "im2col"}),
    ("L  canonical", "B with canonical-form backward convs (custom_vjp)", {"conv": "canonical"}),
    ("M  conv=nets.conv", "B with nets.conv.conv2d (shifted-sum conv1, col2im dX)",
     {"conv": "nets"}),
    ("N  scan+nets.conv", "H with nets.conv.conv2d", {"feed": "scan", "conv": "nets"}),
]


# --------------------------------------------------------------------------- timing


def cpu_snapshot() -> tuple[float, float] | None:
    """(CPU seconds all processes have used, CPU seconds this one has), Linux only."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    busy = sum(ticks) - ticks[3] - ticks[4]  # all but idle and iowait
    t = os.times()
    return busy / os.sysconf("SC_CLK_TCK"), t.user + t.system


def others_share(before, after, wall: float) -> float:
    """Share of all CPUs that other processes used between two snapshots."""
    if before is None or after is None or wall <= 0:
        return float("nan")
    others = (after[0] - before[0]) - (after[1] - before[1])
    return max(0.0, others) / (wall * (os.cpu_count() or 1))


def measure(runners: dict[str, Runner], epochs: int, log=print) -> dict[str, dict]:
    """Warm up each runner for one epoch (not timed), then time ``epochs`` epochs of
    each, round-robin with a rotating order. Returns per-name stats in seconds, and the
    share of the CPUs other processes used during each timed epoch."""
    out: dict[str, dict] = {}
    for name, run in runners.items():
        t0 = time.perf_counter()
        run(0)
        out[name] = {"warmup": time.perf_counter() - t0, "times": [], "others": [],
                     "loss": float("nan")}
        log(f"  warm-up {name}: {out[name]['warmup']:.1f} s")
    names = list(runners)
    for e in range(1, epochs + 1):
        k = (e - 1) % len(names)
        for name in names[k:] + names[:k]:
            snap, t0 = cpu_snapshot(), time.perf_counter()
            out[name]["loss"] = runners[name](e)
            wall = time.perf_counter() - t0
            out[name]["times"].append(wall)
            out[name]["others"].append(others_share(snap, cpu_snapshot(), wall))
    for stats in out.values():
        stats["median"] = statistics.median(stats["times"])
        stats["min"] = min(stats["times"])
        stats["busy"] = max(stats["others"])
    return out


def contention_note(res: dict[str, dict]) -> str:
    worst = max(s["busy"] for s in res.values())
    if math.isnan(worst):  # no /proc/stat
        return "(CPU use of other processes not measured on this OS)"
    note = (f"other processes used at most {100 * worst:.0f}% of the CPUs during any timed "
            f"epoch (column 'others')")
    if worst > 0.05:
        note += ("; WARNING: the rows with a high share are inflated, torch's most (its "
                 "OpenMP threads spin at each barrier while a descheduled peer holds it up)")
    return note


def header(args, steps: int, device: str) -> None:
    print("LeNet-5 training throughput, one process, same machine")
    print(f"  {cpu_model()}, os.cpu_count()={os.cpu_count()}, "
          f"load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"  jax {jax.__version__} (backend {jax.default_backend()}), flax {flax.__version__}, "
          f"optax {optax.__version__}, {torch_version() or 'torch not importable'}")
    print(f"  XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    if not args.no_torch:
        print(f"  torch device: {describe_torch_device(device)}")
    print(f"  {args.images} synthetic images, batch {args.batch}: {steps} steps = "
          f"{steps * args.batch} images per epoch; Adam lr {LR}; {args.epochs} timed epochs per "
          f"implementation after 1 untimed warm-up epoch (compile), round-robin")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs per implementation")
    ap.add_argument("--ablate", action="store_true", help="also time the per-cause variants")
    ap.add_argument("--ablate-images", type=int, default=2560,
                    help="images per epoch for the ablation (per-step times do not depend on it)")
    ap.add_argument("--no-torch", action="store_true")
    add_torch_device_arg(ap)
    args = ap.parse_args(argv)
    device = torch_device(args.torch_device)
    if args.images < args.batch:
        ap.error("--images must be at least --batch")
    steps = args.images // args.batch
    per_epoch = steps * args.batch
    images, labels = synthetic(args.images)
    header(args, steps, device)

    runners: dict[str, Runner] = {
        "ours": make_ours(images, labels, args.batch),
        "plain": make_plain(images, labels, args.batch),
    }
    if not args.no_torch and torch_version() is not None:
        runners["torch"] = make_torch(images, labels, args.batch, device)
    res = measure(runners, args.epochs)

    ref = res.get("torch")
    print()
    print(f"{'impl':6s}  {'median epoch':>12s}  {'min':>7s}  {'ms/step':>8s}  {'images/s':>9s}"
          f"  {'vs torch':>8s}  {'warm-up':>7s}  {'others':>6s}  {'last loss':>9s}  what")
    for name, s in res.items():
        vs = f"{ref['median'] / s['median']:7.2f}x" if ref else "      -"
        print(f"{name:6s}  {s['median']:11.3f}s  {s['min']:6.3f}s  {s['median'] / steps * 1e3:8.2f}"
              f"  {per_epoch / s['median']:9.0f}  {vs:>8s}  {s['warmup']:6.1f}s"
              f"  {100 * s['busy']:5.0f}%  {s['loss']:9.4f}  {DESCRIPTION[name]}")
    if ref:
        print("vs torch = torch median epoch time / this one (above 1: faster than torch).")
    print(contention_note(res))

    if args.ablate:
        n_abl = max(args.batch, min(args.ablate_images, args.images))
        steps, per_epoch = n_abl // args.batch, n_abl // args.batch * args.batch
        images, labels = images[:n_abl], labels[:n_abl]
        print(f"\nAblation: {steps} steps of {args.batch} per epoch, 1 untimed warm-up + "
              f"{args.epochs} timed epochs each, round-robin; each row changes one thing:")
        variants = {name: make_variant(images, labels, args.batch, **kw)
                    for name, _, kw in ABLATIONS}
        variants["ours"] = make_ours(images, labels, args.batch)
        if "torch" in runners:
            variants["torch"] = make_torch(images, labels, args.batch, device)
        abl = measure(variants, args.epochs, log=lambda *a: None)
        base = abl["A plain"]["median"]
        notes = {name: note for name, note, _ in ABLATIONS}
        notes["ours"] = DESCRIPTION["ours"] + ", nets.models.lenet5"
        notes["torch"] = f"PyTorch on {device}"
        print(f"{'variant':22s}  {'ms/step':>8s}  {'images/s':>9s}  {'vs A':>6s}  {'warm-up':>7s}"
              f"  {'others':>6s}  what")
        for name, s in abl.items():
            print(f"{name:22s}  {s['median'] / steps * 1e3:8.2f}  {per_epoch / s['median']:9.0f}"
                  f"  {base / s['median']:5.2f}x  {s['warmup']:6.1f}s  {100 * s['busy']:5.0f}%"
                  f"  {notes[name]}")
        print("vs A = A's median epoch time / this one (above 1: faster than plain).")
        print(contention_note(abl))


if __name__ == "__main__":
    main()
