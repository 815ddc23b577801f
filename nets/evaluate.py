"""Batched inference: logits and accuracy of one model or of S stacked models.

Inputs are processed in fixed-size chunks with ``lax.map`` so that memory stays bounded
for any dataset size and the compiled function depends only on the chunk shape.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from nets.batching import chunked
from nets.data import Dataset
from nets.distributed import fetch
from nets.models import Net

Array = jax.Array


@functools.partial(jax.jit, static_argnames=("net", "chunk"))
def logits(net: Net, params, images: Array, chunk: int = 512) -> Array:
    """Logits of one model for ``images`` (N, H, W, C), computed ``chunk`` at a time."""
    return chunked(lambda x: net.apply({"params": params}, x), images, min(chunk, images.shape[0]))


@functools.partial(jax.jit, static_argnames=("net", "chunk"))
def _stacked_accuracy(net: Net, params, images: Array, labels: Array, chunk: int) -> Array:
    def one(p):
        return (logits(net, p, images, chunk).argmax(-1) == labels).mean()

    return jax.vmap(one)(params)


def accuracy(net: Net, stacked_params, data: Dataset, chunk: int = 512) -> np.ndarray:
    """Top-1 test accuracy of each of S stacked models: shape (S,)."""
    return fetch(_stacked_accuracy(net, stacked_params, jnp.asarray(data.images),
                                   jnp.asarray(data.labels), chunk))
