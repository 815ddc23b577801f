"""The internal-code analysis of a network (Lee & Vijayan, arXiv 2205.10952): one map per
layer, all layers in one vmapped call, for clean and perturbed versions of the same inputs.

For one network, :func:`analyze` (the network's part :func:`network_codes`, then the
maps' part :func:`map_codes`, which takes arrays only and vmaps over stacked seeds):

1. computes the codes (:mod:`som.codes`) of every chosen layer for the training images
   and for each evaluated set (``inputs["clean"]`` and perturbed versions of it);
2. scales each layer's codes by statistics of its training codes
   (:func:`som.codes.scale_codes`) and zero-pads them to one dimension (distances, hence
   BMUs, are unchanged by the padding);
3. trains one map per layer on the training codes (:func:`som.train.fit_many`);
4. finds the BMUs of every set and returns, per layer, the clean-input measures of
   :mod:`som.measures`, the map's quality (:mod:`som.quality`) and, for every perturbed
   set, which inputs' BMUs moved and how far on the grid.

A BMU move under an attack means little alone: a map that tiles a layer's code space
finely moves for any perturbation. :func:`sign_noise` gives the baseline: the same
linf size as the attack, in a random direction.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from nets import evaluate, xla
from nets.models import Net
from som import measures, quality
from som.bmu import bmus
from som.codes import layer_codes, pad_stack, scale_codes
from som.grid import Grid
from som.train import SOMSpec, fit_many

Array = jax.Array
CLEAN = "clean"


@jax.jit
def sign_noise(key: Array, x: Array, eps: float) -> Array:
    """clip(x + eps * s, 0, 1) with s_i = +-1 at random: a perturbation of linf size eps
    in a random direction, the non-adversarial baseline for BMU moves (inputs in [0, 1])."""
    return jnp.clip(x + eps * jax.random.rademacher(key, x.shape, x.dtype), 0.0, 1.0)


@functools.partial(jax.jit, static_argnames=("grid", "num_classes", "chunk"))
def layer_measures(weights: Array, xs_train: Array, y_train: Array, units_train: Array,
                   units: dict[str, Array], labels: Array, shuffled: Array,
                   predictions: dict[str, Array], *, grid: Grid, num_classes: int,
                   chunk: int = 4096) -> dict:
    """Every per-layer number, vmapped over L maps (leading axis L on array arguments).

    ``weights`` (L, M, D) maps; ``xs_train`` (L, N_train, D) their training codes with BMUs
    ``units_train`` (L, N_train) and labels ``y_train``; ``units[name]`` (L, N) BMUs of
    each evaluated set (``"clean"`` and perturbed versions of the same N inputs, labels
    ``labels``); ``shuffled`` (P, N) permuted labels (:func:`som.measures.shuffle_labels`);
    ``predictions[name]`` (N,) the network's classes for each set.

    Returns ``codes`` (clean measures + quantization/topographic error + ``som_agrees_with
    _net``: the BMU's majority training class equals the network's prediction), ``moves``
    per perturbed set (per input: ``moved`` (L, N) and grid ``distance`` (L, N); per layer:
    their means, ``distance_over_spread`` and ``som_agrees_with_net``), ``hits`` per set
    (L, M, classes) and ``u_matrix`` (L, rows, cols).
    """
    m, coords = grid.size, jnp.asarray(grid.coords)

    def one(w, xtr, utr, u):
        unit_class = quality.majority_class(quality.class_hits(utr, y_train, m, num_classes))
        codes = measures.code_measures(u[CLEAN], labels, shuffled, coords, m, num_classes)
        codes["quantization_error"] = quality.quantization_error(w, xtr, chunk)
        codes["topographic_error"] = quality.topographic_error(w, xtr, grid, chunk)
        codes["som_agrees_with_net"] = measures.agreement(u[CLEAN], unit_class,
                                                          predictions[CLEAN])
        moves = {}
        for name, v in u.items():
            if name == CLEAN:
                continue
            mv = measures.bmu_moves(u[CLEAN], v, coords)
            mv["moved"] = u[CLEAN] != v
            mv["distance"] = jnp.linalg.norm(coords[u[CLEAN]] - coords[v], axis=-1)
            mv["distance_over_spread"] = mv["mean_distance"] / jnp.maximum(codes["spread"],
                                                                           1e-12)
            mv["som_agrees_with_net"] = measures.agreement(v, unit_class, predictions[name])
            moves[name] = mv
        hits = {name: quality.class_hits(v, labels, m, num_classes) for name, v in u.items()}
        return {"codes": codes, "moves": moves, "hits": hits,
                "u_matrix": quality.u_matrix(w, grid)}

    return jax.vmap(one)(weights, xs_train, units_train, units)


@functools.partial(xla.jit, static_argnames=("net", "layers", "scale", "chunk"))
def network_codes(net: Net, params, x_train: Array, inputs: dict[str, Array], *,
                  layers: tuple[str, ...], scale: str = "rms",
                  chunk: int = 1024) -> tuple[Array, dict[str, Array], dict[str, Array]]:
    """The network's part of the analysis: every layer's codes, scaled by the training
    codes and zero-padded, and the network's predictions.

    Returns (training codes (L, N_train, D), ``{name: (L, N, D)}`` codes of each set in
    ``inputs``, ``{name: (N,)}`` predicted classes).
    """
    names = list(inputs)
    n_train = x_train.shape[0]
    stacked = jnp.concatenate([x_train, *(inputs[k] for k in names)])
    codes = layer_codes(net, params, stacked, layers, min(chunk, stacked.shape[0]))
    train_codes = {k: v[:n_train] for k, v in codes.items()}
    xs = pad_stack(scale_codes(codes, train_codes, scale))  # (L, N_train + sum N, D)
    out, start = {}, n_train
    for name in names:
        size = inputs[name].shape[0]
        out[name] = xs[:, start:start + size]
        start += size
    predictions = {k: evaluate.logits(net, params, v, min(chunk, v.shape[0])).argmax(-1)
                   for k, v in inputs.items()}
    return xs[:, :n_train], out, predictions


@functools.partial(jax.jit, static_argnames=("spec", "num_classes", "permutations", "chunk"))
def map_codes(spec: SOMSpec, key: Array, train_codes: Array, y_train: Array,
              codes: dict[str, Array], labels: Array, predictions: dict[str, Array], *,
              num_classes: int, permutations: int = 20, chunk: int = 1024) -> dict:
    """The maps' part of the analysis: one map per layer on ``train_codes`` (L, N_train, D)
    (:func:`som.train.fit_many`), the BMUs of every set in ``codes`` (``"clean"`` and
    perturbed versions, (L, N, D) each) and :func:`layer_measures`. Arrays only, so it
    vmaps over stacked seeds. ``key`` draws the maps' initialization / sample order and the
    label shuffles of the MI bias floor. Returns :func:`layer_measures`' dict plus the maps'
    ``weights`` (L, M, D).
    """
    if CLEAN not in codes:
        raise ValueError(f"codes needs a {CLEAN!r} entry, got {sorted(codes)}")
    k_som, k_mi = jax.random.split(key)
    weights = fit_many(spec, jax.random.split(k_som, train_codes.shape[0]), train_codes)

    def layer_bmus(x):
        return jax.vmap(lambda w, xl: bmus(w, xl, chunk))(weights, x)

    out = layer_measures(weights, train_codes, y_train, layer_bmus(train_codes),
                         {k: layer_bmus(v) for k, v in codes.items()}, labels,
                         measures.shuffle_labels(k_mi, labels, permutations), predictions,
                         grid=spec.grid, num_classes=num_classes, chunk=chunk)
    return {**out, "weights": weights}


def analyze(net: Net, params, key: Array, x_train: Array, y_train: Array,
            inputs: dict[str, Array], labels: Array, *, spec: SOMSpec,
            layers: tuple[str, ...], num_classes: int, scale: str = "rms",
            permutations: int = 20, chunk: int = 1024) -> dict:
    """One map per layer of ``net`` (``params``) on its training codes, and what the maps
    say about ``inputs`` (see module doc): :func:`network_codes` then :func:`map_codes`.

    ``inputs`` must hold ``"clean"`` (N, H, W, C) images with ``labels``; every other
    entry is a perturbed version of the same images (an attack, :func:`sign_noise`).
    Returns :func:`map_codes`' dict (leading axis L = ``layers``, in that order) plus the
    network's ``predictions`` per set (N,).
    """
    train_codes, codes, predictions = network_codes(net, params, x_train, inputs,
                                                    layers=layers, scale=scale, chunk=chunk)
    out = map_codes(spec, key, train_codes, y_train, codes, labels, predictions,
                    num_classes=num_classes, permutations=permutations, chunk=chunk)
    return {**out, "predictions": predictions}
