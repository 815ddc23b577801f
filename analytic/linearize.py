"""Two-stage linearization of a ``nets`` model at one ReLU layer.

A network N = post o relu o pre, split at the ReLU layer ``layer``, is replaced by the
Affine-ReLU-Affine net g(x) = B relu(A x + c1) + c2 with (Bibi, Alfadly, Ghanem, CVPR
2018, whose experiments linearize LeNet and AlexNet this way; DESIGN.md):

    A  = d pre / dx at the clean input x0,        c1 = pre(x0) - A x0,
    B  = d post / du at u0 = relu(pre(x0)),       c2 = post(u0) - B u0.

Inputs and pre-activations are flattened (A is (n, d), B is (k, n)). For a net that is
itself Affine-ReLU-Affine (``mlp`` with one hidden layer) it returns the net's own weights.

**Ties.** Max-pooling and the other ReLUs are piecewise linear, so ``pre`` and ``post``
are affine in a neighbourhood of x0 -- and the linearization exact there -- only when x0
is not on a kink: no max-pool window whose positive maximum is attained twice, no ReLU
input exactly 0 (the split ReLU excepted: the closed form keeps it). Real images do sit on
kinks (constant patches give equal conv outputs: on ``digits`` about one first-layer pool
window in nine is tied). There the net is not differentiable; the one-sided derivatives
along a direction v differ from A v, and the Gaussian output is not that of any single
Affine-ReLU-Affine net, whatever A. :func:`count_ties` reports the kinks per layer;
``linearize(..., at_ties=...)`` chooses what A and B are there:

* ``"ignore"`` (default): JAX's derivative rules -- a tied maximum passes the *mean* of
  the tied entries' derivatives (the reduce-max JVP), a ReLU at exactly 0 has slope 0;
* ``"symmetric"``: the average of the two one-sided Jacobians along a fixed direction u,
  (J(x0 + delta u) + J(x0 - delta u)) / 2 (likewise for B at the images of x0 +- delta u),
  with c1, c2 taken at x0 (g(x0) = N(x0)); A u is then the central derivative of ``pre``
  along u, for pairs of ties the mean of the two branches, a ReLU at 0 gets slope 1/2;
* ``"nudge"``: expansion at the tie-free point x0 + delta u (one side of each kink).

u is :func:`tie_direction` (fixed, deterministic); away from kinks (no kink within
delta |u| of x0) all three give the same A and B.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from nets.models import Net

Array = jax.Array
TIE_RULES = ("ignore", "symmetric", "nudge")


class Linearization(NamedTuple):
    """g(x) = B relu(A x + c1) + c2 on flattened inputs: A (n, d), c1 (n,), B (k, n), c2 (k,)."""

    A: Array
    c1: Array
    B: Array
    c2: Array


def last_hidden_relu(net: Net) -> str:
    """Name of the last ReLU layer of ``net`` (the default split point)."""
    relus = net.names_of("relu")
    if not relus:
        raise ValueError(f"network has no ReLU layer; layers: {net.layer_names}")
    return relus[-1]


def split(net: Net, layer: str | None) -> tuple[str, str]:
    """(the ReLU layer, the layer after it), checked; ``None`` means the last hidden ReLU."""
    layer = layer or last_hidden_relu(net)
    names = net.layer_names
    if layer not in names:
        raise ValueError(f"unknown layer {layer!r}; this network has {names}")
    i = names.index(layer)
    if net.layers[i].kind != "relu":
        raise ValueError(f"layer {layer!r} is a {net.layers[i].kind}, not a relu; "
                         f"choose one of {net.names_of('relu')}")
    if i + 1 == len(names):
        raise ValueError(f"layer {layer!r} is the last layer; nothing follows it to linearize")
    return layer, names[i + 1]


# Products at full float32 precision on every backend (issue 18): by default a TPU
# multiplies float32 matrices in one bfloat16 pass and an Ampere-or-later GPU in TF32
# (10-bit mantissa), ~3 significant digits, which S = A Sigma A^T (and rho = S_ij /
# (s_i s_j) near +-1), the offsets c1 = z0 - A x0 and Cov = B C B^T cannot spare.
# On CPU float32 products are exact either way.
HIGHEST = jax.lax.Precision.HIGHEST


def mm(x: Array, y: Array) -> Array:
    """``x @ y`` at ``HIGHEST`` precision."""
    return jnp.matmul(x, y, precision=HIGHEST)


def _jacobian(f, x: Array) -> Array:
    """Jacobian of f: R^d -> R^n, reverse mode when n <= d, else forward mode."""
    n = jax.eval_shape(f, x).shape[0]
    return (jax.jacrev if n <= x.shape[0] else jax.jacfwd)(f)(x)


def tie_direction(shape: tuple[int, ...], dtype=jnp.float32) -> Array:
    """The fixed direction u of the ``symmetric`` and ``nudge`` tie rules: standard
    normal entries from ``PRNGKey(0)`` (deterministic; a generic direction, so it
    separates any two tied branches with probability one)."""
    return jax.random.normal(jax.random.PRNGKey(0), shape, dtype)


def _pieces(net: Net, params, shape: tuple[int, ...], dtype, layer: str, after: str):
    """(pre, post) of ``net`` split at ``layer`` on flattened arguments."""
    variables = {"params": params}

    def pre(xf: Array) -> Array:
        return net.apply(variables, xf.reshape(1, *shape), stop=layer).reshape(-1)

    z_shape = jax.eval_shape(lambda v: net.apply(variables, v.reshape(1, *shape), stop=layer),
                             jax.ShapeDtypeStruct(shape, dtype)).shape[1:]

    def post(uf: Array) -> Array:
        return net.apply(variables, uf.reshape(1, *z_shape), start=after).reshape(-1)

    return pre, post


@functools.partial(jax.jit, static_argnames=("net", "layer", "at_ties"))
def linearize(net: Net, params, x: Array, layer: str | None = None, at_ties: str = "ignore",
              delta: float = 1e-5) -> Linearization:
    """A, c1, B, c2 of ``net`` at one input ``x`` (no batch axis, e.g. (28, 28, 1)),
    split at ReLU ``layer`` (default: the last hidden ReLU). ``vmap`` it over a batch.

    ``at_ties`` (module docstring): ``"ignore"`` (JAX's derivatives at x0), ``"symmetric"``
    (mean of the Jacobians at x0 +- delta u, offsets at x0) or ``"nudge"`` (everything at
    x0 + delta u); u = :func:`tie_direction`. ``delta`` is in input units: small against
    the distance to the nearest kink not at x0 (on a constant image ~5e-5 along u), large
    against rounding (a tie broken by delta u differs by ~delta; float32 resolves ~1e-7
    of a unit value).

    Jitted (one compile per net, layer and input shape): traced op by op, the two
    Jacobians of LeNet-5 took 39 s against 3 s compiled (issue 15)."""
    if at_ties not in TIE_RULES:
        raise ValueError(f"unknown at_ties {at_ties!r}; choose one of {TIE_RULES}")
    with jax.default_matmul_precision("highest"):  # the net's own dots and convolutions
        return _linearize(net, params, x, layer, at_ties, delta)


def _linearize(net: Net, params, x: Array, layer: str | None, at_ties: str,
               delta: float) -> Linearization:
    layer, after = split(net, layer)
    pre, post = _pieces(net, params, x.shape, x.dtype, layer, after)
    x0 = x.reshape(-1)
    u = tie_direction(x0.shape, x0.dtype)
    if at_ties == "nudge":
        x0 = x0 + delta * u
    z0 = pre(x0)
    u0 = jax.nn.relu(z0)
    if at_ties == "symmetric":
        xs = jnp.stack([x0 + delta * u, x0 - delta * u])
        A = jax.vmap(lambda xi: _jacobian(pre, xi))(xs).mean(0)
        B = jax.vmap(lambda xi: _jacobian(post, jax.nn.relu(pre(xi))))(xs).mean(0)
    else:
        A = _jacobian(pre, x0)
        B = _jacobian(post, u0)
    return Linearization(A, z0 - mm(A, x0), B, post(u0) - mm(B, u0))


@functools.partial(jax.jit, static_argnames=("net", "layer"))
def count_ties(net: Net, params, x: Array, layer: str | None = None,
               tol: float = 0.0) -> dict[str, Array]:
    """Kinks of ``net`` at one input ``x`` (no batch axis), per layer: for each max-pool
    layer the number of windows whose maximum M > 0 is attained (within ``tol``) by two
    or more entries; for each ReLU layer other than the split ``layer`` (default: the last
    hidden ReLU) the number of inputs exactly 0 (within ``tol``). Where every count is 0
    the network is affine near ``x`` and :func:`linearize` exact there (module docstring).

    Tied maxima at M <= 0 are not counted: in ReLU-then-pool nets they are zeros of the
    ReLU (counted there), in pool-then-ReLU nets the next ReLU flattens them."""
    layer, _ = split(net, layer)
    _, acts = net.apply({"params": params}, x[None], capture=True)
    counts: dict[str, Array] = {}
    prev = x[None]
    for spec in net.layers:
        out = acts[spec.name]
        if spec.kind == "maxpool":
            n, h, w, c = prev.shape
            k = spec.window
            hh, ww = h // k, w // k
            win = prev[:, : hh * k, : ww * k, :].reshape(n, hh, k, ww, k, c)
            top = out[:, :, None, :, None, :]
            hits = jnp.sum(win >= top - tol, axis=(2, 4))
            counts[spec.name] = jnp.sum((out > 0) & (hits >= 2))
        elif spec.kind == "relu" and spec.name != layer:
            counts[spec.name] = jnp.sum(jnp.abs(prev) <= tol)
        prev = out
    return counts


def linearize_batch(net: Net, params, xs: Array, layer: str | None = None,
                    batch_size: int | None = None, at_ties: str = "ignore",
                    delta: float = 1e-5) -> Linearization:
    """:func:`linearize` at every input of the batch ``xs`` (N, *shape): fields with a
    leading axis N. ``batch_size`` bounds memory (``lax.map`` over vmapped groups);
    ``at_ties``, ``delta``: as in :func:`linearize`."""
    return jax.lax.map(lambda x: linearize(net, params, x, layer, at_ties, delta), xs,
                       batch_size=batch_size)


def apply(lin: Linearization, x: Array) -> Array:
    """g(x) = B relu(A x + c1) + c2 for one input of any shape (flattened)."""
    return mm(lin.B, jax.nn.relu(mm(lin.A, x.reshape(-1)) + lin.c1)) + lin.c2


def affine_relu_affine(net: Net, params) -> Linearization:
    """The weights of a one-hidden-layer ``mlp`` (flatten, fc1, relu1, fc2) as a
    Linearization, read directly from ``params`` (no differentiation)."""
    kinds = [layer.kind for layer in net.layers]
    if kinds != ["flatten", "dense", "relu", "dense"]:
        raise ValueError(f"not an Affine-ReLU-Affine net: layers are {kinds}")
    fc1, fc2 = net.layers[1].name, net.layers[3].name
    return Linearization(jnp.asarray(params[fc1]["kernel"]).T, jnp.asarray(params[fc1]["bias"]),
                         jnp.asarray(params[fc2]["kernel"]).T, jnp.asarray(params[fc2]["bias"]))
