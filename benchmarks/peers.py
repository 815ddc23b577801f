"""The peer libraries' side of the benchmarks: LeNet-5 in PyTorch with our weights, and
the device PyTorch runs on (``--torch-device``)."""

from __future__ import annotations

import argparse

import numpy as np

# Largest |torch logits - ours| accepted as "the same function". On the CPU both sides
# compute in float32: 1e-4 (absolute). On a GPU both use TensorFloat-32 by default (JAX for
# float32 matmuls and convolutions, PyTorch for convolutions; unit roundoff 2^-11 ~ 4.9e-4),
# so the check is relative there: 2e-2 of the largest logit.
CPU_TOL, TF32_REL_TOL = 1e-4, 2e-2


def torch_device(requested: str | None = None) -> str:
    """The device the PyTorch peers run on: ``requested`` if given, else ``"cuda"`` when
    PyTorch sees a GPU, else ``"cpu"`` (also when torch is not installed)."""
    if requested:
        return requested
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def add_torch_device_arg(ap: argparse.ArgumentParser) -> None:
    """``--torch-device`` (resolve the parsed value with ``torch_device``)."""
    ap.add_argument("--torch-device", default=None, metavar="DEVICE",
                    help="where the PyTorch peer runs (cpu, cuda, cuda:1, ...; default: "
                         "cuda when torch.cuda.is_available(), else cpu)")


def describe_torch_device(device: str) -> str:
    """``device`` for a benchmark's header, with the GPU's name when it is one."""
    if not device.startswith("cuda"):
        return device
    import torch

    return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"


def torch_sync(device) -> None:
    """Wait until ``device`` has run every queued kernel: CUDA launches asynchronously, so
    a clock read without this would time the launches, not the work."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def check_same_logits(model, xt, ours: np.ndarray, device: str, jax_platform: str) -> float:
    """Assert that the PyTorch ``model`` on NCHW ``xt`` gives our logits ``ours`` (within
    ``CPU_TOL`` when both run on the CPU, else ``TF32_REL_TOL`` relative); the max diff."""
    import torch

    with torch.no_grad():
        diff = float(np.abs(model(xt).cpu().numpy() - ours).max())
    exact = torch.device(device).type == "cpu" and jax_platform == "cpu"
    tol = CPU_TOL if exact else TF32_REL_TOL * max(1.0, float(np.abs(ours).max()))
    assert diff < tol, f"torch copy of the model differs: {diff} (tolerance {tol:.2g})"
    return diff


def torch_lenet5(params=None, num_classes: int = 10, device: str = "cpu"):
    """LeNet-5 as in ``nets.models.lenet5`` (NCHW), on ``device``. With flax ``params`` it
    computes the same function: conv kernels HWIO -> OIHW, dense (in, out) -> (out, in),
    and fc1's input rows reordered from NHWC flattening (h, w, c) to NCHW flattening
    (c, h, w). It is built on the CPU and then moved, so a seeded init is the same on
    every device."""
    import torch

    nn = torch.nn
    model = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, num_classes),
    )
    if params is None:
        return model.to(device)
    p = {k: {n: np.array(v) for n, v in layer.items()} for k, layer in params.items()}
    fc1 = p["fc1"]["kernel"].reshape(5, 5, 16, -1).transpose(2, 0, 1, 3).reshape(400, -1)
    weights = [
        (0, p["conv1"]["kernel"].transpose(3, 2, 0, 1), p["conv1"]["bias"]),
        (3, p["conv2"]["kernel"].transpose(3, 2, 0, 1), p["conv2"]["bias"]),
        (7, fc1.T, p["fc1"]["bias"]),
        (9, p["fc2"]["kernel"].T, p["fc2"]["bias"]),
        (11, p["fc3"]["kernel"].T, p["fc3"]["bias"]),
    ]
    with torch.no_grad():
        for i, w, b in weights:
            model[i].weight.copy_(torch.from_numpy(np.ascontiguousarray(w)))
            model[i].bias.copy_(torch.from_numpy(np.ascontiguousarray(b)))
    return model.to(device).eval()
