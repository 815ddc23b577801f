"""The layer x perturbation x p x trials sweep of Cheney et al., in vmapped, jitted batches.

For one (layer, kind, target), :func:`sweep_counts` builds all ``P x T`` perturbed
copies of that layer at once (``vmap`` over ``p`` and over trial keys) and evaluates all
of them in one jitted call. Two things keep it fast and bounded in memory:

* **Shared prefix.** The layers below the perturbed one are unchanged, so their output
  is computed once per data chunk (``net.apply(..., stop=layer)``) and only the rest of
  the network (``start=layer``) runs ``P x T`` times.
* **Chunked data.** The evaluation set goes through a ``lax.scan`` over fixed chunks of
  ``chunk`` images, accumulating correct counts, so peak memory is about
  ``P * T * chunk * (largest activation above the layer)`` whatever the data size, and
  the compiled function depends only on shapes (no recompiles across calls).

Accuracy is top-1 and top-k (k = 5 by default) with ties broken towards the lower class
index, as ``argmax`` does; so a network whose logits are all equal (e.g. its last layer
fully knocked out) scores the frequency of class 0, not 100% top-5.

The Python loop over layers and kinds in :func:`sweep` stays a loop because the shapes
differ; there is no Python loop over trials or p.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from attacks.weights import KINDS, TARGETS, perturb
from nets import evaluate
from nets.models import Net

Array = jax.Array
Params = dict

P_GRID = tuple(round(0.1 * i, 1) for i in range(11))


def label_rank(logits: Array, labels: Array) -> Array:
    """Rank of the true class among the logits (0 = predicted), ties to the lower index.

    ``rank = #{c: z_c > z_y} + #{c < y: z_c = z_y}``, the position of ``y`` in a stable
    descending sort; ``rank < 1`` is exactly ``argmax(z) == y``.
    """
    z_y = jnp.take_along_axis(logits, labels[..., None], axis=-1)
    classes = jnp.arange(logits.shape[-1])
    ahead = (logits > z_y) | ((logits == z_y) & (classes < labels[..., None]))
    return ahead.sum(-1)


def layer_targets(net: Net) -> tuple[str, ...]:
    """The layers that have weights (conv and dense), in network order."""
    return tuple(layer.name for layer in net.layers if layer.kind in ("conv", "dense"))


@functools.partial(jax.jit, static_argnames=("net", "layer", "kind", "target", "chunk", "k"))
def sweep_counts(
    net: Net,
    params: Params,
    images: Array,
    labels: Array,
    ps: Array,
    keys: Array,
    *,
    layer: str,
    kind: str,
    target: str = "weights",
    chunk: int = 128,
    k: int = 5,
) -> Array:
    """Correct top-1 and top-``k`` counts with ``layer`` perturbed: int32 (2, P, T).

    Entry ``[:, i, t]`` counts the images of (``images``, ``labels``) classified correctly
    by ``perturb(params, ps[i], keys[t], layer=layer, kind=kind, target=target)``.
    """
    def one(p, key):
        return perturb(params, p, key, layer=layer, kind=kind, target=target)[layer]

    # Only the perturbed layer is batched: leaves of shape (P, T, ...).
    layers = jax.vmap(jax.vmap(one, in_axes=(None, 0)), in_axes=(0, None))(ps, keys)
    n = images.shape[0]
    chunk = min(chunk, n)
    pad = (-n) % chunk
    valid = jnp.arange(n + pad) < n
    images = jnp.concatenate([images, jnp.zeros((pad, *images.shape[1:]), images.dtype)])
    labels = jnp.concatenate([labels, jnp.zeros((pad,), labels.dtype)])
    batches = (images.reshape(-1, chunk, *images.shape[1:]), labels.reshape(-1, chunk),
               valid.reshape(-1, chunk))

    def body(counts, batch):
        x, y, ok = batch
        h = net.apply({"params": params}, x, stop=layer)  # unperturbed prefix, once

        def logits_of(layer_params):
            return net.apply({"params": {**params, layer: layer_params}}, h, start=layer)

        z = jax.vmap(jax.vmap(logits_of))(layers)  # (P, T, chunk, classes)
        rank = label_rank(z, jnp.broadcast_to(y, z.shape[:-1]))
        hits = jnp.stack([((rank < 1) & ok).sum(-1), ((rank < k) & ok).sum(-1)])
        return counts + hits, None

    counts0 = jnp.zeros((2, ps.shape[0], keys.shape[0]), jnp.int32)
    counts, _ = jax.lax.scan(body, counts0, batches)
    return counts


def sweep_accuracy(
    net: Net,
    params: Params,
    images: Array,
    labels: Array,
    ps: Array,
    keys: Array,
    *,
    layer: str,
    kind: str,
    target: str = "weights",
    chunk: int = 128,
    k: int = 5,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-1 and top-``k`` accuracy, float64 arrays of shape (P, T), from
    :func:`sweep_counts` (one jitted call; the division is exact counts / n)."""
    counts = sweep_counts(net, params, jnp.asarray(images), jnp.asarray(labels),
                          jnp.asarray(ps, jnp.float32), keys, layer=layer, kind=kind,
                          target=target, chunk=chunk, k=k)
    counts = np.asarray(counts, np.float64) / images.shape[0]
    return counts[0], counts[1]


def clean_accuracy(net: Net, params: Params, images: Array, labels: Array,
                   chunk: int = 128, k: int = 5) -> tuple[float, float]:
    """Top-1 and top-``k`` accuracy of the unperturbed network (same tie rule)."""
    z = evaluate.logits(net, params, jnp.asarray(images), chunk=chunk)
    rank = np.asarray(label_rank(z, jnp.asarray(labels)))
    return float((rank < 1).mean()), float((rank < k).mean())


def trial_keys(key: Array, kind: str, target: str, layer: str, trials: int) -> Array:
    """``trials`` keys for one (kind, target, layer), independent of which other settings
    are swept: the base key is folded with a CRC32 of the setting's name."""
    tag = zlib.crc32(f"{kind}/{target}/{layer}".encode()) & 0x7FFFFFFF
    return jax.random.split(jax.random.fold_in(key, tag), trials)


def label(kind: str, target: str) -> str:
    """Result key of a perturbation: ``kind/target``, or just ``node_knockout``."""
    return kind if kind == "node_knockout" else f"{kind}/{target}"


def plan(kinds: Sequence[str], targets: Sequence[str], layers: Sequence[str]
         ) -> list[tuple[str, str, str, str]]:
    """The (label, kind, target, layer) settings of a sweep, node knockout once per layer."""
    for kind in kinds:
        if kind not in KINDS:
            raise ValueError(f"unknown perturbation kind {kind!r}; choose from {KINDS}")
    for target in targets:
        if target not in TARGETS:
            raise ValueError(f"unknown target {target!r}; choose from {tuple(TARGETS)}")
    out = []
    for kind in kinds:
        for target in (("weights",) if kind == "node_knockout" else targets):
            out += [(label(kind, target), kind, target, layer) for layer in layers]
    return out


def sweep(
    net: Net,
    params: Params,
    images: Array,
    labels: Array,
    key: Array,
    *,
    ps: Sequence[float] = P_GRID,
    trials: int = 10,
    kinds: Sequence[str] = KINDS,
    targets: Sequence[str] = ("weights", "biases"),
    layers: Sequence[str] | None = None,
    chunk: int = 128,
    k: int = 5,
    on_setting: Callable[[str, str], None] | None = None,
) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """Every layer x perturbation x p x trial: ``out[label][layer] = {"top1", "topk"}``,
    arrays of shape (P, T). ``on_setting(label, layer)`` is called after each setting
    (for progress bars)."""
    layers = layer_targets(net) if layers is None else tuple(layers)
    ps_arr = jnp.asarray(ps, jnp.float32)
    images, labels = jnp.asarray(images), jnp.asarray(labels)
    out: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for name, kind, target, layer in plan(kinds, targets, layers):
        top1, topk = sweep_accuracy(
            net, params, images, labels, ps_arr, trial_keys(key, kind, target, layer, trials),
            layer=layer, kind=kind, target=target, chunk=chunk, k=k)
        out.setdefault(name, {})[layer] = {"top1": top1, "topk": topk}
        if on_setting is not None:
            on_setting(name, layer)
    return out
