"""2-D convolution (NHWC input, HWIO kernel, stride 1) with faster CPU paths.

``conv2d(x, kernel, padding)`` computes exactly ``lax.conv_general_dilated``; on the CPU
backend three of its parts take a different route, because XLA:CPU's convolution kernel
is slow when a convolution has few channels on one side (LeNet's ``conv1`` has 1 input
channel, and the input gradient of ``conv2`` produces 6) and when its dimension numbers
are not the standard NHWC/HWIO ones (autodiff's kernel gradient). Per-op times below:
2 cores, batch 128, XLA's vs ours (``python benchmarks/train_bench.py --ablate`` shows the
effect on a whole training step, rows B, M, H, N):

* **forward with 1 input channel** (``conv1``): a sum of ``kh * kw`` shifted, scaled
  copies of the input, ``y = sum_ij x[., h+i, w+j] * k[i, j]``: one fused loop instead of
  XLA's convolution (2.4 ms vs 0.6 ms). It runs inside a 2-iteration ``fori_loop`` over
  halves of the batch, only so that XLA keeps its result in memory: outside a loop, XLA
  fuses this cheap-looking sum into every consumer (the ReLU, the pool and their
  gradients) and recomputes it several times, which made the train step slower.
* **input gradient with at most ``SMALL_CIN`` input channels**: ``col2im``. One matrix
  product ``cols = g @ K^T`` gives, for every output pixel, the ``kh * kw * cin``
  contributions it makes to the input, and a fused sum of ``kh * kw`` shifted (padded)
  slices of ``cols`` adds them up (conv1: 4.1 ms vs 1.2 ms; conv2: 1.8 ms vs 1.1 ms).
* **kernel gradient**: one standard-form convolution with the input channels as the
  batch (conv1: 0.77 ms vs 0.57 ms; inside a ``lax.scan`` training epoch it avoids a path
  several times slower, 49 ms vs 7 ms per step).

The function is a ``jax.custom_jvp``, so forward mode (``jax.jvp``, ``jacfwd``), reverse
mode and higher derivatives all work. Its tangent is ``t = conv(dx, k) + conv(x, dk)``;
each term is written as the linear transpose of the matching gradient above, so reverse
mode (which transposes the tangent) runs ``col2im`` and the standard-form kernel gradient
themselves. Other backends (GPU, TPU) and larger input-channel counts use
``lax.conv_general_dilated`` unchanged. ``CPU_PATHS = False`` turns the CPU paths off
for functions traced afterwards (jit caches what it traced).

Measured per machine (issue 18): the choices above were timed on one CPU, and other CPUs
rank the forms differently. With :mod:`nets.autotune` on, the first trace of a shape
times both forms of each part, ours and XLA's (forward with 1 input channel; input
gradient with up to ``TUNE_CIN`` input channels; kernel gradient), on random arrays of
that shape and dtype, and keeps the faster (the fixed choice unless the other is more
than 10% faster); gradients are timed as reverse mode runs them. Under ``vmap`` (S models
side by side) the unbatched shape is timed. Both forms are exact, so the choice moves
speed and float rounding only. Off (the default while no autotune folder is set, or
``CNN_UNCERTAINTY_AUTOTUNE=0``) the fixed choices above apply exactly.

Known limit: iterate with ``lax.fori_loop`` / ``lax.scan``, not a Python loop unrolled
inside one jit. Unrolled, XLA fuses across iterations and copies every ``col2im`` slice
to its own buffer: PGD-40 on 1,000 LeNet-5 inputs took 26 s unrolled vs 1.2 s rolled
(``attacks.gradient`` uses the rolled loop; XLA's own convolution took ~4 s unrolled).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_derivatives import SymbolicZero

from nets import autotune

Array = jax.Array
Padding = str | Sequence[tuple[int, int]]

DIMENSIONS = ("NHWC", "HWIO", "NHWC")
SMALL_CIN = 8  # col2im input gradient up to this many input channels (see module doc)
TUNE_CIN = 32  # with nets.autotune on: col2im is timed against XLA's up to this many
CPU_PATHS = True  # False: XLA's convolution everywhere, for functions traced afterwards


def reference(x: Array, kernel: Array, padding: Padding) -> Array:
    """XLA's convolution: what :func:`conv2d` computes, and its path off CPU."""
    return lax.conv_general_dilated(x, kernel, (1, 1), padding, dimension_numbers=DIMENSIONS)


def pads(padding: Padding, kernel_hw: tuple[int, int]) -> tuple[tuple[int, int], ...]:
    """The explicit ``((top, bottom), (left, right))`` padding XLA uses for ``padding``."""
    if isinstance(padding, str):
        return tuple(lax.padtype_to_pads((1, 1), kernel_hw, (1, 1), padding))
    return tuple((int(lo), int(hi)) for lo, hi in padding)


def _fast() -> bool:
    """Whether to take the CPU paths; read when a function is traced."""
    return CPU_PATHS and jax.default_backend() == "cpu"


def _choose(part: str, x: Array, kernel: Array, padding: Padding, forms: dict,
            out: jax.ShapeDtypeStruct | None = None, default: str = "ours") -> str:
    """Which form (``"ours"`` or ``"xla"``) computes ``part`` of the convolution of these
    shapes: ``default`` (the fixed choice of the module doc) unless :mod:`nets.autotune`
    is on, which times both forms on random arrays of the traced shapes and dtype. The
    ``forms`` are the functions the part runs in a training step: the forward
    ``(x, kernel, padding)``; the input and kernel gradients ``(g, kernel | x, padding, hw)``
    as reverse mode runs them, on an output cotangent ``g`` of shape ``out``."""
    if not autotune.is_enabled():
        return default
    pad = pads(padding, kernel.shape[:2])
    key = f"nets.conv.{part}|x{tuple(x.shape)}|k{tuple(kernel.shape)}|pad{pad}|{x.dtype}"

    @functools.cache
    def compiled(form):  # built on a candidate's first (untimed) call, not on a cache hit
        rng = np.random.default_rng(0)
        a, b, g = (jax.device_put(rng.standard_normal(v.shape).astype(v.dtype))
                   for v in (x, kernel, x if out is None else out))
        if part == "forward":
            return functools.partial(jax.jit(form, static_argnums=2), a, b, pad)
        if part == "input_gradient":
            args = (g, b, pad, tuple(x.shape[1:3]))
        else:
            args = (a, g, pad, tuple(kernel.shape[:2]))
        return functools.partial(jax.jit(form, static_argnums=(2, 3)), *args)

    candidates = {name: (lambda form=form: compiled(form)()) for name, form in forms.items()}
    return autotune.choose(key, candidates, default)


def _shifted_sum(x: Array, kernel: Array, padding: Padding) -> Array:
    """``sum_ij xp[:, i:i+H, j:j+W, :] * k[i, j, 0]`` for a 1-channel ``x``: the direct
    convolution written as one fused loop of multiply-adds."""
    kh, kw = kernel.shape[:2]
    (pt, pb), (pl, pr) = pads(padding, (kh, kw))
    xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    h, w = xp.shape[1] - kh + 1, xp.shape[2] - kw + 1
    taps = [xp[:, i : i + h, j : j + w, :] * kernel[i, j, 0] for i in range(kh) for j in range(kw)]
    return functools.reduce(jnp.add, taps)


def _halves(x: Array, kernel: Array, padding: Padding) -> Array:
    """The 1-input-channel forward: :func:`_shifted_sum` over two halves of the batch in a
    ``fori_loop`` (the loop boundary makes XLA store the result; module doc)."""
    n = x.shape[0]
    half = -(-n // 2)
    xs = jnp.pad(x, ((0, 2 * half - n),) + ((0, 0),) * 3)
    out = jax.eval_shape(functools.partial(_shifted_sum, padding=padding), xs, kernel)
    out = jnp.zeros(out.shape, out.dtype)

    def body(i, out):
        part = _shifted_sum(lax.dynamic_slice_in_dim(xs, i * half, half), kernel, padding)
        return lax.dynamic_update_slice_in_dim(out, part, i * half, 0)

    return lax.fori_loop(0, 2, body, out)[:n]


def _forward(x: Array, kernel: Array, padding: Padding) -> Array:
    if not (_fast() and kernel.shape[2] == 1 and x.shape[0] >= 2):
        return reference(x, kernel, padding)
    if _choose("forward", x, kernel, padding, {"ours": _halves, "xla": reference}) == "xla":
        return reference(x, kernel, padding)
    return _halves(x, kernel, padding)


def input_gradient(g: Array, kernel: Array, padding: Padding, in_hw: tuple[int, int]) -> Array:
    """``col2im``: the gradient of ``conv(x, kernel)`` with respect to ``x`` for the output
    cotangent ``g``. ``cols[n, h, w, i, j, c] = sum_o g[n, h, w, o] k[i, j, c, o]`` is one
    matrix product; input pixel ``(h + i - top, w + j - left)`` receives ``cols[.., i, j, .]``,
    so the gradient is a sum of ``kh * kw`` padded slices of ``cols``."""
    kh, kw, cin, cout = kernel.shape
    n, ho, wo, _ = g.shape
    (pt, pb), (pl, pr) = pads(padding, (kh, kw))
    hp, wp = in_hw[0] + pt + pb, in_hw[1] + pl + pr
    cols = g.reshape(-1, cout) @ kernel.reshape(-1, cout).T
    cols = cols.reshape(n, ho, wo, kh, kw, cin)
    taps = [
        jnp.pad(cols[:, :, :, i, j, :], ((0, 0), (i, hp - ho - i), (j, wp - wo - j), (0, 0)))
        for i in range(kh)
        for j in range(kw)
    ]
    return functools.reduce(jnp.add, taps)[:, pt : pt + in_hw[0], pl : pl + in_hw[1], :]


def _transposed(gradient, tangent: Array, out: jax.ShapeDtypeStruct) -> Array:
    """The linear map whose transpose is ``gradient`` (output cotangent -> cotangent of
    ``tangent``), applied to ``tangent``. Reverse mode transposes it back, so it runs
    ``gradient`` itself; forward mode runs its transpose, which is also exact."""
    return jax.linear_transpose(gradient, out)(tangent)[0]


def kernel_gradient(x: Array, g: Array, padding: Padding, kernel_hw: tuple[int, int]) -> Array:
    """The gradient of ``conv(x, kernel)`` with respect to ``kernel`` for the output
    cotangent ``g``, ``dk[i, j, c, o] = sum_nhw xp[n, h+i, w+j, c] g[n, h, w, o]``, as one
    convolution in the standard NHWC/HWIO form: the input channels act as the batch and
    the batch as the contracted feature. (Autodiff's transpose of the convolution uses
    other dimension numbers, which XLA:CPU runs slower, most of all inside loops.)"""
    dk = reference(x.transpose(3, 1, 2, 0), g.transpose(1, 2, 0, 3), pads(padding, kernel_hw))
    return dk.transpose(1, 2, 0, 3)


def _xla_input_gradient(g: Array, kernel: Array, padding: Padding, in_hw: tuple[int, int]) -> Array:
    """Autodiff's input gradient of XLA's convolution (what reverse mode runs otherwise)."""
    x = jax.ShapeDtypeStruct((g.shape[0], *in_hw, kernel.shape[2]), g.dtype)
    return jax.linear_transpose(lambda x: reference(x, kernel, padding), x)(g)[0]


def _xla_kernel_gradient(x: Array, g: Array, padding: Padding, kernel_hw: tuple[int, int]) -> Array:
    """Autodiff's kernel gradient of XLA's convolution (what reverse mode runs otherwise)."""
    k = jax.ShapeDtypeStruct((*kernel_hw, x.shape[3], g.shape[3]), g.dtype)
    return jax.linear_transpose(lambda k: reference(x, k, padding), k)(g)[0]


def _input_term(dx: Array, kernel: Array, padding: Padding, out: jax.ShapeDtypeStruct) -> Array:
    """``conv(dx, kernel)``; on CPU with few input channels, via col2im's transpose."""
    if not (_fast() and kernel.shape[2] <= TUNE_CIN):
        return reference(dx, kernel, padding)
    forms = {"ours": input_gradient, "xla": _xla_input_gradient}
    default = "ours" if kernel.shape[2] <= SMALL_CIN else "xla"
    if _choose("input_gradient", dx, kernel, padding, forms, out, default) == "xla":
        return reference(dx, kernel, padding)
    grad = functools.partial(input_gradient, kernel=kernel, padding=padding, in_hw=dx.shape[1:3])
    return _transposed(grad, dx, out)


def _kernel_term(x: Array, dkernel: Array, padding: Padding, out: jax.ShapeDtypeStruct) -> Array:
    """``conv(x, dkernel)``; on CPU via the standard-form kernel gradient's transpose."""
    forms = {"ours": kernel_gradient, "xla": _xla_kernel_gradient}
    if not _fast() or _choose("kernel_gradient", x, dkernel, padding, forms, out) == "xla":
        return reference(x, dkernel, padding)
    grad = functools.partial(kernel_gradient, x, padding=padding, kernel_hw=dkernel.shape[:2])
    return _transposed(grad, dkernel, out)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def conv2d(x: Array, kernel: Array, padding: Padding = "SAME") -> Array:
    """``lax.conv_general_dilated(x, kernel, (1, 1), padding)`` for NHWC ``x`` and HWIO
    ``kernel``, with the CPU paths of the module doc. ``padding``: "SAME", "VALID" or
    ``((top, bottom), (left, right))``."""
    return _forward(x, kernel, padding)


@functools.partial(conv2d.defjvp, symbolic_zeros=True)
def _conv2d_jvp(padding, primals, tangents):
    x, kernel = primals
    dx, dkernel = tangents
    out = _forward(x, kernel, padding)
    shape = jax.ShapeDtypeStruct(out.shape, out.dtype)
    tangent = jnp.zeros_like(out)
    if not isinstance(dx, SymbolicZero):
        tangent = tangent + _input_term(dx, kernel, padding, shape)
    if not isinstance(dkernel, SymbolicZero):
        tangent = tangent + _kernel_term(x, dkernel, padding, shape)
    return out, tangent


class Conv(nn.Module):
    """``nn.Conv`` (stride 1, NHWC) computed by :func:`conv2d`: same parameter names,
    shapes and initializers (``kernel``: LeCun normal, ``bias``: zeros), so the same key
    gives the same parameters as ``nn.Conv(features, (kh, kw), padding=padding)``.

    Parameters are always float32 (the master weights). ``dtype`` is the compute dtype,
    as in ``nn.Conv``: when set, the input, kernel and bias are cast to it before the
    convolution (their gradients come back in float32 through the cast); ``None`` (the
    default) casts nothing, so float32 inputs give exactly the float32 computation."""

    features: int
    kernel_size: tuple[int, int]
    padding: Padding = "SAME"
    dtype: Any = None

    @nn.compact
    def __call__(self, x: Array) -> Array:
        if x.ndim != 4:
            raise ValueError(
                f"layer {self.name} expects a batch of NHWC images (N, H, W, C), got shape "
                f"{tuple(x.shape)}; add a batch axis with x[None], or drop one (linearize "
                f"takes one image without a batch axis)")
        if self.has_variable("params", "kernel"):
            cin = self.get_variable("params", "kernel").shape[2]
            if x.shape[-1] != cin:
                raise ValueError(
                    f"layer {self.name} expects {cin} input channel(s) last (NHWC), got shape "
                    f"{tuple(x.shape)}; NCHW images? use x.transpose(0, 2, 3, 1)")
        shape = (*self.kernel_size, x.shape[-1], self.features)
        kernel = self.param("kernel", nn.initializers.lecun_normal(), shape, jnp.float32)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        if self.dtype is not None:
            x, kernel, bias = (v.astype(self.dtype) for v in (x, kernel, bias))
        return conv2d(x, kernel, self.padding) + bias
