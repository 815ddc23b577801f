"""Internal weight perturbations of one layer (Cheney, Schrimpf & Kreiman, arXiv 1703.08245).

Pure functions on arrays and on a Flax params pytree. Every perturbation touches one
layer, and within it one *target*: the ``weights`` (``params[layer]["kernel"]``) or the
``biases`` (``params[layer]["bias"]``), which the paper treats separately. Node knockout
is the exception by definition: it removes whole output units (a dense column or a conv
filter) together with their bias.

Kinds (``p`` in [0, 1] is the perturbation strength; ``n`` the number of entries):

* ``synapse_knockout``: zero exactly ``round(p * n)`` entries, chosen by a random
  permutation (the paper's "synapse knockout").
* ``node_knockout``: zero exactly ``round(p * units)`` output units and their biases.
* ``mutation``: ``w + N(0, (p * std(w))^2)`` entrywise, with ``std(w)`` the population
  standard deviation of the whole tensor (the paper's "weight perturbation").
* ``resample``: exactly ``round(p * n)`` entries (chosen as for synapse knockout) are
  replaced by values drawn uniformly, with replacement, from the tensor's own ``n``
  original values: the marginal distribution of the weights is kept and only their
  arrangement is destroyed (this project's addition, a control for "is it the values or
  where they sit?").

Every function takes a ``jax.random`` key, is jittable with ``p`` traced and vmappable
over keys and ``p``. For a fixed key the chosen entries are nested in ``p`` (the entries
knocked out at ``p=0.3`` are among those knocked out at ``p=0.5``) and the mutation noise
is the same draw scaled by ``p``, so a sweep over ``p`` with one key per trial uses common
random numbers and gives smooth curves. ``p = 0`` is the identity for every kind.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
Params = dict

KINDS = ("synapse_knockout", "node_knockout", "mutation", "resample")
TARGETS = {"weights": "kernel", "biases": "bias"}  # config name -> Flax leaf name


def count(p: Array | float, n: int) -> Array:
    """How many of ``n`` entries a strength ``p`` selects: ``round(p * n)`` (half to even,
    like Python's ``round``), clipped to ``[0, n]``. Works for a traced ``p``."""
    k = jnp.round(jnp.asarray(p, jnp.float32) * n)
    return jnp.clip(k, 0, n).astype(jnp.int32)


def random_mask(key: Array, shape: tuple[int, ...], p: Array | float) -> Array:
    """Boolean mask of ``shape`` with exactly ``round(p * n)`` True entries.

    The entries are the first ``round(p * n)`` of a random permutation of all ``n``
    positions, so for one key the masks are nested in ``p``.
    """
    n = 1
    for d in shape:
        n *= d
    perm = jax.random.permutation(key, n)
    chosen = jnp.arange(n) < count(p, n)  # position perm[i] is chosen iff i < k
    return jnp.zeros(n, bool).at[perm].set(chosen).reshape(shape)


def synapse_knockout(w: Array, p: Array | float, key: Array) -> Array:
    """Zero exactly ``round(p * w.size)`` randomly chosen entries of ``w``."""
    return jnp.where(random_mask(key, w.shape, p), jnp.zeros((), w.dtype), w)


def node_knockout(
    kernel: Array, bias: Array | None, p: Array | float, key: Array
) -> tuple[Array, Array | None]:
    """Zero exactly ``round(p * units)`` output units: ``kernel[..., j]`` and ``bias[j]``.

    The output axis is the last one for both Flax ``Dense`` (in, out) and ``Conv``
    (H, W, in, out) kernels, so ``j`` indexes a neuron or a whole filter.
    """
    dead = random_mask(key, (kernel.shape[-1],), p)
    kernel = jnp.where(dead, jnp.zeros((), kernel.dtype), kernel)
    if bias is not None:
        bias = jnp.where(dead, jnp.zeros((), bias.dtype), bias)
    return kernel, bias


def mutation(w: Array, p: Array | float, key: Array) -> Array:
    """Gaussian mutation ``w + p * std(w) * N(0, 1)`` (Cheney et al.'s weight perturbation).

    The noise scale is relative to the spread of the tensor itself, so ``p`` means the
    same for layers of very different magnitudes.
    """
    scale = jnp.asarray(p, w.dtype) * jnp.std(w)
    return w + scale * jax.random.normal(key, w.shape, w.dtype)


def resample(w: Array, p: Array | float, key: Array) -> Array:
    """Replace exactly ``round(p * w.size)`` random entries by draws (uniform, with
    replacement) from the tensor's own original values."""
    mask_key, draw_key = jax.random.split(key)
    flat = w.reshape(-1)
    draws = flat[jax.random.randint(draw_key, w.shape, 0, flat.shape[0])]
    return jnp.where(random_mask(mask_key, w.shape, p), draws, w)


ENTRYWISE: dict[str, Callable[[Array, Array | float, Array], Array]] = {
    "synapse_knockout": synapse_knockout,
    "mutation": mutation,
    "resample": resample,
}


def check_strength(p: Array | float, kind: str) -> None:
    """One clear ``ValueError`` for a strength ``kind`` cannot use: NaN or inf, negative,
    or above 1 for the kinds that select a fraction of entries (``mutation`` scales the
    noise by ``p`` and takes any ``p >= 0``). Skipped when ``p`` is traced (a caller's
    jit or vmap: the caller that made the grid checks it)."""
    if kind not in KINDS:
        raise ValueError(f"unknown perturbation kind {kind!r}; choose one of {KINDS}")
    try:
        values = np.asarray(p, np.float64)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return
    top = np.inf if kind == "mutation" else 1.0
    bad = ~np.isfinite(values) | (values < 0) | (values > top)
    if bad.any():
        allowed = "p >= 0 (a multiple of std(w))" if kind == "mutation" else "0 <= p <= 1 (a fraction)"
        raise ValueError(f"{kind} strength p={values[bad].ravel()[0]:g} is out of range; "
                         f"use {allowed}")


def perturb_layer(
    layer_params: Params, p: Array | float, key: Array, *, kind: str, target: str = "weights",
    check: bool = True,
) -> Params:
    """One layer's ``{"kernel", "bias"}`` dict with ``kind`` applied to ``target``.

    ``target`` is ``weights`` or ``biases`` for the entrywise kinds and is ignored by
    ``node_knockout`` (which removes a unit's weights and bias together). A concrete
    ``p`` is checked (:func:`check_strength`) unless ``check=False``.
    """
    if check:
        check_strength(p, kind)
    out = dict(layer_params)
    if kind == "node_knockout":
        out["kernel"], bias = node_knockout(out["kernel"], out.get("bias"), p, key)
        if bias is not None:
            out["bias"] = bias
        return out
    if kind not in ENTRYWISE:
        raise ValueError(f"unknown perturbation kind {kind!r}; choose one of {KINDS}")
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose one of {tuple(TARGETS)}")
    leaf = TARGETS[target]
    if leaf not in out:
        raise ValueError(f"this layer has no {leaf!r} to perturb (it has {sorted(out)})")
    out[leaf] = ENTRYWISE[kind](out[leaf], p, key)
    return out


def perturb(
    params: Params,
    p: Array | float,
    key: Array,
    *,
    layer: str,
    kind: str,
    target: str = "weights",
    check: bool = True,
) -> Params:
    """``params`` with only ``params[layer][target]`` perturbed (see :func:`perturb_layer`).

    ``layer``, ``kind`` and ``target`` are static (they decide shapes); ``p`` and ``key``
    may be traced, so ``jax.vmap(functools.partial(perturb, layer=..., kind=...),
    in_axes=(None, 0, 0))`` gives one perturbed network per (p, key) pair.
    """
    if layer not in params:
        raise ValueError(f"unknown layer {layer!r}; the parameters have {sorted(params)}")
    return {**params, layer: perturb_layer(params[layer], p, key, kind=kind, target=target,
                                           check=check)}
