"""The layer x perturbation x p x trials sweep of Cheney et al., in vmapped, jitted batches.

For one layer, :func:`layer_counts` builds every perturbed copy of that layer at once,
``K x P x T`` of them (K perturbation settings (kind, target), ``vmap`` over ``p`` and
over trial keys), and evaluates all of them in one jitted call. Three things keep it
fast and bounded in memory:

* **Shared prefix.** The layers below the perturbed one are unchanged, so their output
  is computed once per data chunk (``net.apply(..., stop=layer)``) and only the rest of
  the network (``start=layer``) runs ``P x T`` times per setting.
* **One program per layer.** Every setting perturbs the same layer into arrays of the
  same shapes, so the K settings are stacked and the rest of the network is traced once
  (a ``lax.map`` over settings): a sweep compiles once per layer, not once per
  (layer, kind, target).
* **Chunked data.** The evaluation set goes through a ``lax.scan`` over fixed chunks of
  ``chunk`` images (``nets.batching.pad_rows``), accumulating correct counts, so peak
  memory is about ``P * T * chunk * (largest activation above the layer)`` whatever the
  data size, and the compiled function depends only on shapes.

Accuracy is top-1 and top-k (k = 5 by default) with ties broken towards the lower class
index, as ``argmax`` does; so a network whose logits are all equal (e.g. its last layer
fully knocked out) scores the frequency of class 0, not 100% top-5.

**Stacked models.** With ``stacked=True`` the params carry a leading axis of S models
(seeds trained side by side, ``nets.train.fit``), each with its own trial keys, and the
results gain a leading model axis. The models go through one compiled call as a
``lax.map`` (one after the other inside the program), not a ``vmap``: vmapping over the
models batches the kernels of every layer, which XLA:CPU lowers to grouped convolutions
that are several times slower per model than the unbatched ones (LeNet-5, conv1
settings, 3 seeds: ~7x the time of one seed with ``vmap``, ~3x with ``lax.map``).

**Several devices.** The counts are sums over images, so the evaluation set is split
over the devices of ``mesh`` (default :func:`nets.sharding.data_mesh` over every device
of this process): its rows are padded to a multiple of the D devices and cut into D
contiguous blocks, device ``i`` scans block ``i`` in chunks of at most ``chunk`` images
(padded rows are masked out) and XLA all-reduces the (K, 2, P, T) integer counts once at
the end. Every device builds the same perturbed layers (the parameters are replicated),
so the counts equal those of one device exactly (tests/attacks/test_weights_sharding.py).

The Python loop over layers in :func:`sweep` stays a loop because the shapes differ;
there is no Python loop over models, settings, trials or p.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from attacks.weights import KINDS, TARGETS, check_strength, perturb
from nets import evaluate
from nets.models import Net
from nets.sharding import device_blocks, local_data_mesh

Array = jax.Array
Params = dict
Setting = tuple[str, str]  # (kind, target)

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


def _counts_one(
    net: Net,
    params: Params,
    batches: tuple[Array, Array, Array],
    ps: Array,
    keys: Array,
    *,
    layer: str,
    settings: tuple[Setting, ...],
    k: int,
) -> Array:
    """Correct top-1 / top-``k`` counts (K, 2, P, T) of one model over the device blocks
    ``batches`` (images, labels, valid), each of shape (devices, chunks, chunk, ...);
    ``keys`` is (K, T, ...)."""
    def perturbed(kind: str, target: str, trial_keys: Array) -> Params:
        def one(p, key):
            return perturb(params, p, key, layer=layer, kind=kind, target=target,
                           check=False)[layer]

        return jax.vmap(jax.vmap(one, in_axes=(None, 0)), in_axes=(0, None))(ps, trial_keys)

    # Only the perturbed layer is batched: leaves of shape (K, P, T, ...).
    layers = [perturbed(kind, target, keys[i]) for i, (kind, target) in enumerate(settings)]
    layers = jax.tree.map(lambda *a: jnp.stack(a), *layers)

    def body(counts, batch):
        x, y, ok = batch
        h = net.apply({"params": params}, x, stop=layer)  # unperturbed prefix, once

        def logits_of(layer_params):
            return net.apply({"params": {**params, layer: layer_params}}, h, start=layer)

        z = jax.lax.map(jax.vmap(jax.vmap(logits_of)), layers)  # (K, P, T, chunk, classes)
        rank = label_rank(z, jnp.broadcast_to(y, z.shape[:-1]))
        hits = jnp.stack([((rank < 1) & ok).sum(-1), ((rank < k) & ok).sum(-1)], axis=1)
        return counts + hits, None

    def block(b):  # one device's images: a scan over its chunks
        counts0 = jnp.zeros((len(settings), 2, ps.shape[0], keys.shape[1]), jnp.int32)
        return jax.lax.scan(body, counts0, b)[0]

    if batches[0].shape[0] == 1:  # one device: the plain scan
        return block(jax.tree.map(lambda a: a[0], batches))
    return jax.vmap(block)(batches).sum(0)  # each device's counts, then an all-reduce


@functools.partial(jax.jit, static_argnames=("net", "layer", "settings", "chunk", "k", "stacked",
                                             "mesh"))
def layer_counts(
    net: Net,
    params: Params,
    images: Array,
    labels: Array,
    ps: Array,
    keys: Array,
    *,
    layer: str,
    settings: tuple[Setting, ...],
    chunk: int = 128,
    k: int = 5,
    stacked: bool = False,
    mesh: Mesh | None = None,
) -> Array:
    """Correct top-1 and top-``k`` counts with ``layer`` perturbed: int32 (K, 2, P, T).

    Entry ``[j, :, i, t]`` counts the images of (``images``, ``labels``) classified
    correctly by ``perturb(params, ps[i], keys[j, t], layer=layer, kind=kind,
    target=target)`` with ``(kind, target) = settings[j]``. With ``stacked=True``,
    ``params`` leaves have a leading axis of S models and ``keys`` has shape (S, K, T, ...)
    (model ``s`` uses ``keys[s]``): the result is (S, K, 2, P, T).

    The images are split over the devices of ``mesh`` (default: every device of this
    process; a one-device mesh, ``data_mesh(devices=jax.local_devices()[:1])``, keeps the
    sweep on one), with the same counts (module doc).
    """
    batches, valid = device_blocks((images, labels), chunk, local_data_mesh(mesh))
    batches = (*batches, valid)  # D device blocks of chunks, valid marks the real rows
    count = functools.partial(_counts_one, net, batches=batches, ps=ps, layer=layer,
                              settings=settings, k=k)
    if stacked:  # lax.map, not vmap: see the module docstring
        return jax.lax.map(lambda a: count(a[0], keys=a[1]), (params, keys))
    return count(params, keys=keys)


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
    stacked: bool = False,
    mesh: Mesh | None = None,
) -> Array:
    """:func:`layer_counts` for one (kind, target): int32 (2, P, T), keys (T, ...)
    ((S, 2, P, T) and keys (S, T, ...) when ``stacked``); images split over ``mesh``."""
    counts = layer_counts(net, params, images, labels, ps, jnp.expand_dims(keys, int(stacked)),
                          layer=layer, settings=((kind, target),), chunk=chunk, k=k,
                          stacked=stacked, mesh=mesh)
    return counts[:, 0] if stacked else counts[0]


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
    stacked: bool = False,
    mesh: Mesh | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-1 and top-``k`` accuracy, float64 arrays of shape (P, T) ((S, P, T) when
    ``stacked``), from :func:`sweep_counts` (one jitted call; exact counts / n)."""
    check_strength(ps, kind)
    counts = sweep_counts(net, params, jnp.asarray(images), jnp.asarray(labels),
                          jnp.asarray(ps, jnp.float32), keys, layer=layer, kind=kind,
                          target=target, chunk=chunk, k=k, stacked=stacked, mesh=mesh)
    counts = np.asarray(counts, np.float64) / images.shape[0]
    return counts[..., 0, :, :], counts[..., 1, :, :]


@functools.partial(jax.jit, static_argnames=("net", "chunk", "stacked"))
def _clean_ranks(net: Net, params: Params, images: Array, labels: Array, chunk: int,
                 stacked: bool) -> Array:
    def ranks(prm):
        return label_rank(evaluate.logits(net, prm, images, chunk=chunk), labels)

    return jax.lax.map(ranks, params) if stacked else ranks(params)


def clean_accuracy(net: Net, params: Params, images: Array, labels: Array,
                   chunk: int = 128, k: int = 5, stacked: bool = False
                   ) -> tuple[float, float] | tuple[np.ndarray, np.ndarray]:
    """Top-1 and top-``k`` accuracy of the unperturbed network (same tie rule): two
    floats, or two arrays of shape (S,) for ``stacked`` params."""
    rank = np.asarray(_clean_ranks(net, params, jnp.asarray(images), jnp.asarray(labels),
                                   min(chunk, images.shape[0]), stacked))
    top1, topk = (rank < 1).mean(-1), (rank < k).mean(-1)
    return (top1, topk) if stacked else (float(top1), float(topk))


def trial_keys(key: Array, kind: str, target: str, layer: str, trials: int) -> Array:
    """``trials`` keys for one (kind, target, layer), independent of which other settings
    are swept: the base key is folded with a CRC32 of the setting's name."""
    tag = zlib.crc32(f"{kind}/{target}/{layer}".encode()) & 0x7FFFFFFF
    return jax.random.split(jax.random.fold_in(key, tag), trials)


def setting_keys(key: Array, settings: Sequence[Setting], layer: str, trials: int) -> Array:
    """The :func:`trial_keys` of each (kind, target) in ``settings``: shape (K, T, ...)."""
    return jnp.stack([trial_keys(key, kind, target, layer, trials) for kind, target in settings])


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
    stacked: bool = False,
    mesh: Mesh | None = None,
) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """Every layer x perturbation x p x trial: ``out[label][layer] = {"top1", "topk"}``,
    arrays of shape (P, T); one jitted call per layer. ``on_setting(label, layer)`` is
    called after each setting (for progress bars).

    With ``stacked=True``, ``params`` holds S models along a leading axis and ``key`` is
    a batch of S keys, one per model (e.g. the base key folded with each training seed,
    so a model's perturbations do not depend on which other models are swept); the
    arrays are (S, P, T). The images are split over the devices of ``mesh`` (default:
    every device of this process; see :func:`layer_counts`).
    """
    layers = layer_targets(net) if layers is None else tuple(layers)
    for kind in kinds:
        check_strength(ps, kind)
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"trials must be an integer >= 1, got {trials!r}")
    ps_arr = jnp.asarray(ps, jnp.float32)
    images, labels = jnp.asarray(images), jnp.asarray(labels)
    settings = plan(kinds, targets, layers)
    out: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for layer in layers:
        names = [name for name, _, _, at in settings if at == layer]
        mine = tuple((kind, target) for _, kind, target, at in settings if at == layer)
        keys_of = functools.partial(setting_keys, settings=mine, layer=layer, trials=trials)
        keys = jax.vmap(keys_of)(key) if stacked else keys_of(key)
        counts = layer_counts(net, params, images, labels, ps_arr, keys, layer=layer,
                              settings=mine, chunk=chunk, k=k, stacked=stacked, mesh=mesh)
        acc = np.asarray(counts, np.float64) / images.shape[0]  # ([S,] K, 2, P, T)
        for j, name in enumerate(names):
            out.setdefault(name, {})[layer] = {"top1": acc[..., j, 0, :, :],
                                               "topk": acc[..., j, 1, :, :]}
            if on_setting is not None:
                on_setting(name, layer)
    return out
