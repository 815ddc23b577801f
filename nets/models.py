"""The networks under study, as one Flax module over a list of named layers.

Every model is a :class:`Net`: a flat tuple of :class:`Layer` specs (``conv1``, ``relu1``,
``pool1``, ..., ``fc3``) applied in order. Because the structure is data, one definition
serves all lenses:

* ``net.apply(params, x)`` gives the logits;
* ``net.apply(params, x, capture=True)`` also gives every layer's output by name
  (the SOM lens reads layer codes from it);
* ``net.apply(params, h, start="relu3")`` / ``stop="relu3"`` run a slice of the network
  (the linearization lens splits a net at a ReLU this way).

Parameter names are the layer names, so ``params["conv1"]["kernel"]`` is stable across
models and across the lenses that perturb or regularize weights.

Precision is a field of the net, ``Net.dtype`` (``get_model(name, dtype="bfloat16")``,
or ``net.clone(dtype=...)`` for an existing one), so training, evaluation and attacks,
which all call ``net.apply``, compute in it without further arguments. Parameters stay
float32 (master weights, float32 gradients and optimizer state); with ``"bfloat16"`` the
input and every layer's parameters are cast to bfloat16 for the forward pass (mixed
precision, Micikevicius et al. 2018, arXiv 1710.03740, with bfloat16's float32 exponent
range, so no loss scaling), and every array the net returns (output and captured layers)
is cast back to float32, so losses, softmax and input gradients stay float32.
``"float32"`` (the default) inserts no cast at all: bit for bit the float32 network.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from nets.conv import Conv

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Layer:
    """One step of a :class:`Net`: ``kind`` in conv | dense | relu | maxpool | flatten."""

    name: str
    kind: str
    features: int = 0
    kernel: int = 0
    padding: str = "SAME"
    window: int = 2


KINDS = ("conv", "dense", "relu", "maxpool", "flatten")
COMPUTE_DTYPES = ("float32", "bfloat16")  # the values of Net.dtype


def compute_dtype(name: str) -> jnp.dtype:
    """The jnp dtype of a ``Net.dtype`` name; a ``ValueError`` for any other name."""
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"unknown compute dtype {name!r}; choose one of {COMPUTE_DTYPES}")
    return jnp.dtype(name)


def max_pool(x: Array, window: int) -> Array:
    """Non-overlapping max pooling over NHWC (stride = window, VALID).

    Written as reshape + max instead of ``lax.reduce_window``: the values are identical,
    but the gradient of a reduce-max is an elementwise mask, while XLA's CPU backend
    lowers the gradient of ``reduce_window`` to a slow select-and-scatter loop. On the
    LeNet-5 training step this alone is a large share of the step time (see
    benchmarks/train_bench.py).
    """
    n, h, w, c = x.shape
    hh, ww = h // window, w // window
    x = x[:, : hh * window, : ww * window, :]
    return x.reshape(n, hh, window, ww, window, c).max(axis=(2, 4))


class Net(nn.Module):
    """A feed-forward network given as a tuple of named :class:`Layer` specs, computed
    in ``dtype`` (a name in :data:`COMPUTE_DTYPES`; parameters are float32 either way)."""

    layers: tuple[Layer, ...]
    dtype: str = "float32"

    def _index(self, name: str | None, default: int) -> int:
        if name is None:
            return default
        names = [layer.name for layer in self.layers]
        if name not in names:
            raise ValueError(f"unknown layer {name!r}; this network has {names}")
        return names.index(name)

    @nn.compact
    def __call__(
        self,
        x: Array,
        *,
        start: str | None = None,
        stop: str | None = None,
        capture: bool = False,
    ) -> Array | tuple[Array, dict[str, Array]]:
        """Apply layers ``[start, stop)`` (by name; default all) to a batch ``x``.

        With ``capture=True`` returns ``(output, {layer_name: output_of_that_layer})``.
        """
        lo = self._index(start, 0)
        hi = self._index(stop, len(self.layers))
        dtype = compute_dtype(self.dtype)
        cast = None if dtype == jnp.float32 else dtype  # None: no cast anywhere
        if cast is not None:
            x = x.astype(cast)
        acts: dict[str, Array] = {}
        for layer in self.layers[lo:hi]:
            if layer.kind == "conv":
                x = Conv(
                    layer.features,
                    (layer.kernel, layer.kernel),
                    padding=layer.padding,
                    dtype=cast,
                    name=layer.name,
                )(x)
            elif layer.kind == "dense":
                x = nn.Dense(layer.features, dtype=cast, name=layer.name)(x)
            elif layer.kind == "relu":
                x = nn.relu(x)
            elif layer.kind == "maxpool":
                x = max_pool(x, layer.window)
            elif layer.kind == "flatten":
                x = x.reshape(x.shape[0], -1)
            else:
                raise ValueError(f"layer {layer.name!r}: unknown kind {layer.kind!r}; use {KINDS}")
            acts[layer.name] = x
        if cast is not None:  # outputs in float32: losses and softmax stay float32
            x = x.astype(jnp.float32)
            acts = {k: v.astype(jnp.float32) for k, v in acts.items()}
        return (x, acts) if capture else x

    @property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self.layers)

    def names_of(self, kind: str) -> tuple[str, ...]:
        """Names of the layers of one kind, in order (e.g. ``net.names_of("conv")``)."""
        return tuple(layer.name for layer in self.layers if layer.kind == kind)


def _conv_block(i: int, features: int, kernel: int, padding: str, relu_first: bool) -> list[Layer]:
    conv = Layer(f"conv{i}", "conv", features, kernel, padding)
    relu, pool = Layer(f"relu{i}", "relu"), Layer(f"pool{i}", "maxpool", window=2)
    return [conv, relu, pool] if relu_first else [conv, pool, relu]


def _dense_stack(widths: tuple[int, ...], num_classes: int, first_relu: int) -> list[Layer]:
    """fc1, relu, fc2, relu, ..., fc_last (no ReLU after the logits)."""
    out: list[Layer] = []
    for j, width in enumerate(widths, start=1):
        out += [Layer(f"fc{j}", "dense", width), Layer(f"relu{first_relu + j - 1}", "relu")]
    return out + [Layer(f"fc{len(widths) + 1}", "dense", num_classes)]


def lenet5(num_classes: int = 10) -> Net:
    """LeNet-5: conv 6@5x5 SAME, ReLU, pool, conv 16@5x5 VALID, ReLU, pool, fc 120, 84, 10.

    61,706 parameters on 28x28x1 inputs.
    """
    layers = _conv_block(1, 6, 5, "SAME", True) + _conv_block(2, 16, 5, "VALID", True)
    return Net(tuple(layers + [Layer("flatten", "flatten")] + _dense_stack((120, 84), num_classes, 3)))


def lenet_bibi(num_classes: int = 10) -> Net:
    """The LeNet of Bibi et al. (CVPR 2018): conv 32@5x5, pool, ReLU, conv 64@5x5, pool,
    ReLU, fc 1024, ReLU, fc 10."""
    layers = _conv_block(1, 32, 5, "SAME", False) + _conv_block(2, 64, 5, "SAME", False)
    return Net(tuple(layers + [Layer("flatten", "flatten")] + _dense_stack((1024,), num_classes, 3)))


def alexnet(num_classes: int = 10, width: float = 1.0) -> Net:
    """AlexNet-style net for 32x32x3 inputs: 5 conv layers (3x3, pools after 1, 2, 5) and
    3 dense layers; ``width`` scales every channel and unit count."""
    ch = [max(1, round(c * width)) for c in (64, 192, 384, 256, 256)]
    fc = tuple(max(1, round(u * width)) for u in (1024, 512))
    layers = _conv_block(1, ch[0], 3, "SAME", True) + _conv_block(2, ch[1], 3, "SAME", True)
    for i in (3, 4):
        layers += [Layer(f"conv{i}", "conv", ch[i - 1], 3), Layer(f"relu{i}", "relu")]
    layers += _conv_block(5, ch[4], 3, "SAME", True)
    return Net(tuple(layers + [Layer("flatten", "flatten")] + _dense_stack(fc, num_classes, 6)))


def mlp(num_classes: int = 10, hidden: tuple[int, ...] = (256,)) -> Net:
    """Flatten, then dense layers with ReLU between them. ``hidden=(h,)`` is the
    Affine-ReLU-Affine network of Bibi et al."""
    return Net(tuple([Layer("flatten", "flatten")] + _dense_stack(tuple(hidden), num_classes, 1)))


MODELS: dict[str, Callable[..., Net]] = {
    "lenet5": lenet5,
    "lenet_bibi": lenet_bibi,
    "alexnet": alexnet,
    "mlp": mlp,
}


def get_model(name: str, num_classes: int = 10, dtype: str = "float32", **kwargs) -> Net:
    """Build a model by name, computing in ``dtype`` (see :class:`Net`). ``kwargs`` go to
    the builder (``width`` for alexnet, ``hidden`` for mlp); a keyword the builder does
    not take is an error."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    compute_dtype(dtype)
    try:
        net = MODELS[name](num_classes=num_classes, **kwargs)
    except TypeError as e:
        raise ValueError(f"model {name!r}: {e}") from None
    return net if dtype == net.dtype else net.clone(dtype=dtype)


def init_params(net: Net, key: Array, input_shape: tuple[int, ...]) -> dict:
    """Initialize parameters for inputs of shape ``input_shape`` (without batch dim)."""
    return net.init(key, jnp.zeros((1, *input_shape), jnp.float32))["params"]


def count_params(params) -> int:
    return sum(x.size for x in jax.tree.leaves(params))
