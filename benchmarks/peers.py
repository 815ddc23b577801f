"""The peer libraries' side of the benchmarks: LeNet-5 in PyTorch with our weights."""

from __future__ import annotations

import numpy as np


def torch_lenet5(params=None, num_classes: int = 10):
    """LeNet-5 as in ``nets.models.lenet5`` (NCHW). With flax ``params`` it computes the
    same function: conv kernels HWIO -> OIHW, dense (in, out) -> (out, in), and fc1's
    input rows reordered from NHWC flattening (h, w, c) to NCHW flattening (c, h, w)."""
    import torch

    nn = torch.nn
    model = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, num_classes),
    )
    if params is None:
        return model
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
    return model.eval()
