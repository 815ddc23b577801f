"""Two-stage linearization of a ``nets`` model at one ReLU layer.

A network N = post o relu o pre, split at the ReLU layer ``layer``, is replaced by the
Affine-ReLU-Affine net g(x) = B relu(A x + c1) + c2 with (Bibi, Alfadly, Ghanem, CVPR
2018, whose experiments linearize LeNet and AlexNet this way; DESIGN.md):

    A  = d pre / dx at the clean input x0,        c1 = pre(x0) - A x0,
    B  = d post / du at u0 = relu(pre(x0)),       c2 = post(u0) - B u0.

Inputs and pre-activations are flattened (A is (n, d), B is (k, n)). Max-pooling and the
earlier ReLUs are piecewise linear, so ``pre`` is affine in a neighbourhood of x0 and the
linearization is exact there; for a net that is itself Affine-ReLU-Affine (``mlp`` with
one hidden layer) it returns the net's own weights.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from nets.models import Net

Array = jax.Array


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


def _jacobian(f, x: Array) -> Array:
    """Jacobian of f: R^d -> R^n, reverse mode when n <= d, else forward mode."""
    n = jax.eval_shape(f, x).shape[0]
    return (jax.jacrev if n <= x.shape[0] else jax.jacfwd)(f)(x)


@functools.partial(jax.jit, static_argnames=("net", "layer"))
def linearize(net: Net, params, x: Array, layer: str | None = None) -> Linearization:
    """A, c1, B, c2 of ``net`` at one input ``x`` (no batch axis, e.g. (28, 28, 1)),
    split at ReLU ``layer`` (default: the last hidden ReLU). ``vmap`` it over a batch.

    Jitted (one compile per net, layer and input shape): traced op by op, the two
    Jacobians of LeNet-5 took 39 s against 3 s compiled (issue 15)."""
    layer, after = split(net, layer)
    shape = x.shape
    variables = {"params": params}

    def pre(xf: Array) -> Array:
        return net.apply(variables, xf.reshape(1, *shape), stop=layer).reshape(-1)

    z_shape = jax.eval_shape(lambda v: net.apply(variables, v[None], stop=layer), x).shape[1:]

    def post(uf: Array) -> Array:
        return net.apply(variables, uf.reshape(1, *z_shape), start=after).reshape(-1)

    x0 = x.reshape(-1)
    z0 = pre(x0)
    A = _jacobian(pre, x0)
    u0 = jax.nn.relu(z0)
    B = _jacobian(post, u0)
    return Linearization(A, z0 - A @ x0, B, post(u0) - B @ u0)


def linearize_batch(net: Net, params, xs: Array, layer: str | None = None,
                    batch_size: int | None = None) -> Linearization:
    """:func:`linearize` at every input of the batch ``xs`` (N, *shape): fields with a
    leading axis N. ``batch_size`` bounds memory (``lax.map`` over vmapped groups)."""
    return jax.lax.map(lambda x: linearize(net, params, x, layer), xs, batch_size=batch_size)


def apply(lin: Linearization, x: Array) -> Array:
    """g(x) = B relu(A x + c1) + c2 for one input of any shape (flattened)."""
    return lin.B @ jax.nn.relu(lin.A @ x.reshape(-1) + lin.c1) + lin.c2


def affine_relu_affine(net: Net, params) -> Linearization:
    """The weights of a one-hidden-layer ``mlp`` (flatten, fc1, relu1, fc2) as a
    Linearization, read directly from ``params`` (no differentiation)."""
    kinds = [layer.kind for layer in net.layers]
    if kinds != ["flatten", "dense", "relu", "dense"]:
        raise ValueError(f"not an Affine-ReLU-Affine net: layers are {kinds}")
    fc1, fc2 = net.layers[1].name, net.layers[3].name
    return Linearization(jnp.asarray(params[fc1]["kernel"]).T, jnp.asarray(params[fc1]["bias"]),
                         jnp.asarray(params[fc2]["kernel"]).T, jnp.asarray(params[fc2]["bias"]))
