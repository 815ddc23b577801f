"""AutoAttack: ours vs torchattacks' AutoAttack on the same LeNet-5, in one run.

    python benchmarks/autoattack_bench.py [--images 1000] [--eps 0.3] [--adversarial]
    python benchmarks/autoattack_bench.py --members fab-t,fab --skip-ensemble --images 200
    python benchmarks/autoattack_bench.py --torch-device cpu   # PyTorch on the CPU

Work: the standard AutoAttack (APGD-CE, APGD-T with 9 targets, FAB-T with 9 targets,
Square with 5,000 queries; ``--steps`` iterations each, 100 as the reference), Linf, on ``--images`` test images of
``--data`` (default mnist5k: 1,000 real MNIST test digits) with a LeNet-5 trained here
(``--adversarial``: PGD-AT at the same eps, 7 steps, eps ramped over 2 epochs, so that
the later members have robust images to work on; a standard model is broken almost
entirely by APGD-CE).
torchattacks attacks a PyTorch LeNet-5 with the same weights (logits checked equal),
with the same members and budgets (``torchattacks.AutoAttack`` itself would run 10
iterations per member, its members' default). PyTorch runs on ``--torch-device`` (default:
cuda when it sees a GPU, else cpu), the model and images moved there once; its clocks are
read after ``torch.cuda.synchronize``.

Printed: wall time of ours (first call, with compilation, and second call), of
torchattacks (one call), the speed ratio, the robust accuracy of both with our running
robust accuracy per member, and their agreement: the paired difference of the robust
masks with a 95% interval (normal approximation of the McNemar difference,
(b - c)/n +- 1.96 sqrt(b + c - (b - c)^2/n)/n, b and c the images robust under one only).
PyTorch uses every core; ``TORCH_THREADS=1`` keeps it to one (on a machine busy with
other work, several threads per core slow it many times over).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import jax.numpy as jnp

from attacks import autoattack, model_logits_fn
from benchmarks.peers import (
    add_torch_device_arg,
    check_same_logits,
    describe_torch_device,
    torch_device,
    torch_lenet5,
    torch_sync,
)
from nets import data, models, train


def paired_difference(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float, int, int]:
    """Mean of a - b for paired 0/1 masks with its 95% interval; b_only, c_only counts."""
    n = a.size
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    d = (only_a - only_b) / n
    half = 1.96 * np.sqrt(max(only_a + only_b - (only_a - only_b) ** 2 / n, 0.0)) / n
    return d, d - half, d + half, only_a, only_b


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--eps", type=float, default=0.3)
    ap.add_argument("--data", default="mnist5k")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--adversarial", action="store_true", help="PGD-AT training at --eps")
    ap.add_argument("--steps", type=int, default=100,
                    help="APGD / APGD-T / FAB-T iterations on both sides (the reference's "
                         "100; torchattacks.AutoAttack itself runs its members' default 10)")
    ap.add_argument("--chunk", type=int, default=None,
                    help="our examples per jitted call (default: attacks.autoattack's)")
    ap.add_argument("--no-torch", action="store_true", help="time ours only")
    ap.add_argument("--members", nargs="?", const="APGD-CE,APGD-T,FAB-T,Square", default="",
                    help="also run these members alone (comma-separated, any case, from "
                         "APGD-CE, APGD-T, FAB-T, FAB, Square; the four standard ones if no "
                         "value), ours vs torchattacks' on all images")
    ap.add_argument("--skip-ensemble", action="store_true",
                    help="with --members: only the members alone (e.g. --members fab-t "
                         "--images 200: torchattacks' FAB is slow)")
    add_torch_device_arg(ap)
    args = ap.parse_args(argv)
    device = "cpu" if args.no_torch else torch_device(args.torch_device)
    if not args.no_torch:
        print(f"torch device: {describe_torch_device(device)}; "
              f"jax on {jax.devices()[0].platform}", flush=True)

    tr, te = data.load(args.data, "train"), data.load(args.data, "test")
    net = models.lenet5(num_classes=tr.num_classes)
    spec = train.TrainSpec(epochs=args.epochs)
    if args.adversarial:
        spec = train.TrainSpec(epochs=args.epochs, adversarial="pgd", adv_eps=args.eps,
                               adv_steps=7, adv_warmup=2)
    t0 = time.perf_counter()
    states, _ = train.fit(net, tr, te, spec)
    train_s = time.perf_counter() - t0
    params = train.select(states, 0)["params"]
    x_np, y_np = te.images[: args.images], te.labels[: args.images]
    x, y = jnp.asarray(x_np), jnp.asarray(y_np)
    fn = model_logits_fn(net, params)
    key = jax.random.PRNGKey(0)

    kind = "PGD-AT" if args.adversarial else "standard"
    print(f"\nLinf eps={args.eps}, {args.images} {args.data} test images, LeNet-5 ({kind}, "
          f"{args.epochs} epochs, trained in {train_s:.0f} s), {os.cpu_count()} CPU cores, "
          f"jax {jax.__version__} on {jax.devices()[0].platform}; load "
          f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    if args.skip_ensemble:
        if not args.members:
            raise SystemExit("--skip-ensemble needs --members")
        model, xt, yt = _torch_model(params, tr.num_classes, x_np, y_np, fn, x, device)
        compare_members(fn, model, x, y, xt, yt, args.eps, args.steps, tr.num_classes,
                        args.members.split(","))
        return
    steps = {"apgd-ce": {"steps": args.steps}, "apgd-t": {"steps": args.steps},
             "fab-t": {"steps": args.steps}}
    t0 = time.perf_counter()
    ours = autoattack(fn, x, y, eps=args.eps, key=key, settings=steps, chunk=args.chunk)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = autoattack(fn, x, y, eps=args.eps, key=jax.random.PRNGKey(1), settings=steps,
                      chunk=args.chunk)
    second = time.perf_counter() - t0
    print(f"AutoAttack standard ({args.steps} iterations, 9 targets, 5,000 queries); load "
          f"after it {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(f"clean accuracy {ours.clean_correct.mean():.3f}")
    print(f"ours: first call {first:.1f} s (with compilation), second call {second:.1f} s; "
          f"robust accuracy {ours.robust_accuracy:.3f}; after each member: "
          + ", ".join(f"{k} {v:.3f} ({ours.seconds[k]:.1f} s)"
                      for k, v in ours.robust_after.items()))
    assert ours.distance.max() <= args.eps + 1e-5, "left the eps-ball"
    if args.no_torch:
        return
    try:
        import torch
        import torchattacks  # noqa: F401  (checked here, used in torch_autoattack)
    except ImportError:
        print("torch/torchattacks not installed: skipped (see benchmarks/README.md)")
        return
    model, xt, yt = _torch_model(params, tr.num_classes, x_np, y_np, fn, x, device)
    atk = torch_autoattack(model, args.eps, args.steps, tr.num_classes)
    torch_sync(device)
    t0 = time.perf_counter()
    adv = atk(xt, yt)
    torch_sync(device)
    theirs_s = time.perf_counter() - t0
    with torch.no_grad():
        theirs = (model(adv).argmax(1) == yt).cpu().numpy()
    linf = float((adv - xt).abs().max())
    d, lo, hi, b, c = paired_difference(ours.robust, theirs)
    print(f"torchattacks ({device}): {theirs_s:.1f} s; robust accuracy {theirs.mean():.3f} "
          f"(max linf {linf:.4f})")
    print(f"ours is {theirs_s / second:.2f}x faster (second call; {theirs_s / first:.2f}x "
          f"counting our compilation)")
    print(f"agreement: robust accuracy ours - torchattacks = {d:+.4f} [{lo:+.4f}, {hi:+.4f}] "
          f"(95%, paired; {b} images robust only under ours' attack, {c} only under theirs)")
    if args.members:
        compare_members(fn, model, x, y, xt, yt, args.eps, args.steps, tr.num_classes,
                        args.members.split(","))


def _torch_model(params, num_classes: int, x_np: np.ndarray, y_np: np.ndarray, fn, x,
                 device: str = "cpu"):
    """The PyTorch LeNet-5 with ``params`` and the images as NCHW tensors, all on
    ``device`` (its logits checked equal to ours)."""
    import torch

    torch.set_num_threads(int(os.environ.get("TORCH_THREADS", os.cpu_count())))
    model = torch_lenet5(params, num_classes=num_classes, device=device)
    xt = torch.from_numpy(np.ascontiguousarray(x_np)).permute(0, 3, 1, 2).contiguous()
    xt, yt = xt.to(device), torch.from_numpy(y_np).long().to(device)
    check_same_logits(model, xt, np.asarray(fn(x)), device, jax.devices()[0].platform)
    return model, xt, yt


def torch_autoattack(model, eps: float, steps: int, num_classes: int):
    """torchattacks' standard AutoAttack with ``steps`` iterations per member: the members
    and order of ``torchattacks.AutoAttack(version="standard")``, whose own members run
    their default 10 iterations (the reference runs 100)."""
    import torchattacks

    return torchattacks.MultiAttack([
        torchattacks.APGD(model, eps=eps, loss="ce", steps=steps, n_restarts=1, seed=0),
        torchattacks.APGDT(model, eps=eps, steps=steps, n_classes=num_classes, n_restarts=1,
                           seed=0),
        torchattacks.FAB(model, eps=eps, steps=steps, multi_targeted=True,
                         n_classes=num_classes, n_restarts=1, seed=0),
        torchattacks.Square(model, eps=eps, n_queries=5000, n_restarts=1, seed=0),
    ])


def compare_members(fn, model, x, y, xt, yt, eps: float, steps: int, num_classes: int,
                    names: list[str]) -> None:
    """Each named member alone on all images, ours vs torchattacks', same weights (our
    seconds include compilation when the ensemble did not compile that shape before).
    FAB-T is ours as AutoAttack runs it (``robust_only``: each target only on the examples
    no earlier target broke, as torchattacks' and the reference's); FAB is untargeted."""
    import torch
    import torchattacks

    from attacks import apgd, apgd_t, fab, outcome, square

    ours = {
        "APGD-CE": lambda: apgd(fn, x, y, eps=eps, loss="ce", steps=steps,
                                key=jax.random.PRNGKey(2)),
        "APGD-T": lambda: apgd_t(fn, x, y, eps=eps, steps=steps, key=jax.random.PRNGKey(2)),
        "FAB-T": lambda: fab(fn, x, y, eps=eps, steps=steps, targeted=True,
                             robust_only=True, key=jax.random.PRNGKey(2)),
        "FAB": lambda: fab(fn, x, y, eps=eps, steps=steps, key=jax.random.PRNGKey(2)),
        "Square": lambda: square(fn, x, y, eps=eps, key=jax.random.PRNGKey(2)),
    }
    theirs = {
        "APGD-CE": torchattacks.APGD(model, eps=eps, loss="ce", steps=steps, n_restarts=1,
                                     seed=0),
        "APGD-T": torchattacks.APGDT(model, eps=eps, steps=steps, n_classes=num_classes,
                                     n_restarts=1, seed=0),
        "FAB-T": torchattacks.FAB(model, eps=eps, steps=steps, multi_targeted=True,
                                  n_classes=num_classes, n_restarts=1, seed=0),
        "FAB": torchattacks.FAB(model, eps=eps, steps=steps, n_classes=num_classes,
                                n_restarts=1, seed=0),
        "Square": torchattacks.Square(model, eps=eps, n_queries=5000, n_restarts=1, seed=0),
    }
    print(f"\n{'member':8s} {'ours s':>7s} {'theirs s':>8s} {'ours acc':>8s} {'theirs acc':>10s}"
          f"  ours - theirs [95%]")
    canonical = {k.lower(): k for k in ours}
    unknown = [n for n in names if n.lower() not in canonical]
    if unknown:
        raise SystemExit(f"--members: unknown {sorted(unknown)}; choose from {list(ours)}")
    for name in (canonical[n.lower()] for n in names):
        run = ours[name]
        t0 = time.perf_counter()
        xa = jax.block_until_ready(run())
        ours_s = time.perf_counter() - t0
        mine = outcome(fn, x, y, xa, norm="linf").robust
        torch_sync(xt.device)
        t0 = time.perf_counter()
        adv = theirs[name](xt, yt)
        torch_sync(xt.device)
        theirs_s = time.perf_counter() - t0
        with torch.no_grad():
            other = (model(adv).argmax(1) == yt).cpu().numpy()
        d, lo, hi, _, _ = paired_difference(mine, other)
        print(f"{name:8s} {ours_s:7.1f} {theirs_s:8.1f} {mine.mean():8.3f} {other.mean():10.3f}"
              f"  {d:+.4f} [{lo:+.4f}, {hi:+.4f}]  (load "
              f"{', '.join(f'{v:.1f}' for v in os.getloadavg())})", flush=True)


if __name__ == "__main__":
    main()
