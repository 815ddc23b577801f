"""Layer codes: one vector per input and per weight layer of any ``nets`` model.

For each conv or dense layer ("weight layer") the code is read from its *activation*:
the output of the first ReLU after it (before the next weight layer), or the layer's own
output when no ReLU follows (the logits layer). Then

* conv layer -> per-channel spatial mean of that post-ReLU map, a C-vector
  (the code of Lee & Vijayan's "internal codes"; the mean of the rectified map is the
  channel's average firing and is invariant to where in the image a feature occurs);
* dense layer -> the post-ReLU activations themselves (the logits for the last layer).

For ``lenet5``: conv1 -> mean of relu1 (6), conv2 -> mean of relu2 (16), fc1 -> relu3
(120), fc2 -> relu4 (84), fc3 -> logits (10). In nets where pooling sits between a conv
and its ReLU (``lenet_bibi``), the code is the mean of the pooled-then-rectified map.

Layers differ in code size and scale, so before one map per layer is trained in a single
vmapped call, :func:`scale_codes` puts each layer's codes on a common scale fitted on a
reference set (the training codes) and :func:`pad_stack` pads them to a common dimension.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from nets.batching import chunked
from nets.models import Net

Array = jax.Array
WEIGHT_KINDS = ("conv", "dense")
SCALES = ("rms", "zscore", "none")


def code_sources(net: Net) -> dict[str, tuple[str, str]]:
    """``{weight layer: (layer whose output is read, kind)}`` in network order."""
    out: dict[str, tuple[str, str]] = {}
    layers = net.layers
    for i, layer in enumerate(layers):
        if layer.kind not in WEIGHT_KINDS:
            continue
        source = layer.name
        for nxt in layers[i + 1:]:
            if nxt.kind in WEIGHT_KINDS:
                break
            if nxt.kind == "relu":
                source = nxt.name
                break
        out[layer.name] = (source, layer.kind)
    return out


def check_layers(net: Net, layers: tuple[str, ...] | None) -> tuple[str, ...]:
    """``layers`` (all weight layers when empty/None), validated against ``net``."""
    sources = code_sources(net)
    if not layers:
        return tuple(sources)
    bad = [name for name in layers if name not in sources]
    if bad:
        raise ValueError(f"layers {bad} are not conv/dense layers of this net; "
                         f"choose from {list(sources)}")
    return tuple(layers)


def codes_from_acts(net: Net, acts: dict[str, Array], layers: tuple[str, ...]) -> dict[str, Array]:
    """Codes from a ``capture=True`` activation dict (see module doc)."""
    sources = code_sources(net)
    out = {}
    for name in layers:
        source, kind = sources[name]
        a = acts[source]
        out[name] = a.mean(axis=(1, 2)) if kind == "conv" and a.ndim == 4 else a.reshape(
            a.shape[0], -1)
    return out


@functools.partial(jax.jit, static_argnames=("net", "layers", "chunk"))
def layer_codes(net: Net, params, x: Array, layers: tuple[str, ...] | None = None,
                chunk: int = 512) -> dict[str, Array]:
    """``{layer: (N, d_layer) codes}`` of inputs ``x`` (N, H, W, C), ``chunk`` at a time."""
    layers = check_layers(net, layers)

    def fn(xc):
        _, acts = net.apply({"params": params}, xc, capture=True)
        return codes_from_acts(net, acts, layers)

    return chunked(fn, x, min(chunk, x.shape[0]))


def pad_stack(codes: dict[str, Array], dim: int | None = None) -> Array:
    """(L, N, D) stack of the layers' codes zero-padded to a common D (default: the max).

    Zero padding leaves every Euclidean distance, hence every BMU, unchanged; it lets one
    vmapped call train a map per layer.
    """
    dim = dim or max(c.shape[-1] for c in codes.values())
    return jnp.stack([jnp.pad(c, ((0, 0), (0, dim - c.shape[-1]))) for c in codes.values()])


def _scaler(reference: Array, how: str) -> tuple[Array, Array]:
    r = jnp.asarray(reference, jnp.float32)
    if how == "rms":
        return jnp.zeros(()), jnp.maximum(jnp.sqrt(jnp.mean(r * r)), 1e-12)
    if how == "zscore":
        sd = r.std(0)
        return r.mean(0), jnp.where(sd > 1e-12, sd, 1.0)
    if how == "none":
        return jnp.zeros(()), jnp.ones(())
    raise ValueError(f"unknown scale {how!r}; use one of {SCALES}")


@functools.partial(jax.jit, static_argnames=("how",))
def scale_codes(codes: dict[str, Array], reference: dict[str, Array],
                how: str = "rms") -> dict[str, Array]:
    """Each layer's ``codes`` (N, d) as (c - shift) / scale, fitted on ``reference`` (M, d):

    * ``rms``: shift 0, scale sqrt(mean c_ij^2) over the reference (one number per layer:
      BMUs do not change under a common scale, and quantization errors become comparable
      across layers);
    * ``zscore``: per feature, shift = mean, scale = sd (1 where the sd is 0);
    * ``none``: the codes unchanged.
    """
    out = {}
    for name, c in codes.items():
        shift, scale = _scaler(reference[name], how)
        out[name] = (jnp.asarray(c, jnp.float32) - shift) / scale
    return out
