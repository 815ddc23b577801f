"""Gaussian moments propagated through a whole ``nets`` model, layer by layer.

For x ~ N(mu, Sigma) the mean m and covariance S of each layer's output (flattened,
row-major over (H, W, C)) follow from the previous layer's, without linearizing the net
(issue 16; DESIGN.md, analytic/):

* ``conv`` / ``dense`` (affine, z = J x + b): m' = J m + b and S' = J S J^T, exact. J is
  never formed: the layer with its bias zeroed, applied to the rows of S, gives
  T = S J^T (S is symmetric); applied to the rows of T^T = J S, it gives J S J^T. Two
  batched calls of the layer itself (conv or dense).
* ``relu``: the exact general-mean moments of :mod:`analytic.relu` (Rosenbaum's 1961
  pair formula through the bivariate normal cdf; :func:`analytic.moments.hidden_moments`
  with ``method="exact"``): exact given a Gaussian input.
* ``maxpool``: Clark (1961) for each window (:mod:`analytic.clark`): exact for two
  Gaussian inputs, his pairwise recursion for the k*k entries of a window. The pooled
  unit P_o is carried with its covariance with every other unit, Cov(P_o, X_i) =
  sum_j w_oj Cov(X_idx(o,j), X_i) with Clark's weights w, so two pooled units get
  Cov(P_o, P_q) = w_o^T S w_q (neighbouring windows keep their correlation) and
  Var(P_o) is Clark's variance (>= w_o^T S w_o: the covariance stays PSD).
* ``relu`` directly followed by ``maxpool`` (LeNet-5's order) is propagated as
  ``maxpool`` then ``relu``: the same function (max(relu a, relu b) = relu(max(a, b))),
  but Clark's recursion then sees the Gaussian pre-activations instead of rectified
  units, which are far from Gaussian near their kink (a unit that is almost always 0
  has a standard deviation much larger than its mean: treated as Gaussian, the max of
  four of them came out 40x too large on the tests' 6x6 net at sigma 0.05). It also
  runs the ReLU's pair formula on the pooled units only (4x fewer, 16x fewer pairs).
* ``flatten``: a reshape (the flattened order is already row-major).

What is exact and what is not: the affine and ReLU steps are exact moments of their
input *if that input is Gaussian*; after the first ReLU or max-pool it is not, and each
later nonlinear layer treats its input as Gaussian with the propagated moments
(assumed-density filtering; Gast & Roth, "Lightweight Probabilistic Deep Networks",
CVPR 2018, do this with variances only). So a net with one ReLU and affine layers
around it is exact (it is :func:`analytic.moments.moments`' Affine-ReLU-Affine net);
so, up to exponentially small terms, is a net whose pooling windows all have a clear
winner and whose later ReLU inputs are far from 0 on the scale of their noise, and one
window with a tie of two (Clark's two-input formula; the tests construct one).
Otherwise the result is an approximation whose error grows with the noise
(tests/analytic/test_propagate.py and benchmarks/propagate_bench.py measure it).

Modes: ``full`` carries the full covariance. Up to the first nonlinearity it is kept
as a square root R (r x n, S = R^T R, r = the input size; Sigma = R^T R with R =
diag(sqrt v) or from an eigendecomposition), each affine layer one batched call on the
rows of R, and a max-pool right after them takes its window blocks and Cov(P) =
(R G^T)^T (R G^T) from R: LeNet-5's 4,704 first-layer units never form their 4,704^2
covariance (the whole net: 1.27 s -> 0.45 s per image, measured on 2 shared cores).
After it, S is n x n. ``diagonal`` carries variances only, assuming the units of each
layer independent (affine: var' = (J o J) var, the layer with squared weights; ReLU:
exact variances; max-pool: Clark with zero covariances). In ``diagonal`` mode a full
input covariance is carried exactly (as the root R) through the affine layers before
the first nonlinearity, so the first nonlinearity sees its exact input variances in
both modes. Diagonal mode ignores the strong correlations that convolutions and dense
layers create between units, and its output variances are far off on trained nets
(10x-70x too small on LeNet-5 and a 784-256-128-10 MLP; benchmarks/propagate_bench.py).

Compile time (issue 16): XLA compiles every call site of a formula on its own, and the
exact ReLU pair formula (Genz's bivariate cdf inside Rosenbaum's) costs seconds per copy.
So in full mode a net with two or more ReLU layers runs them as one ``lax.scan`` over
the ReLU layers (:func:`_relu_stages`): each step is the ReLU of
:mod:`analytic.padded_relu` on the state zero-padded to the widest ReLU layer (its
width is data there), then, chosen by ``lax.switch``, the layers up to the next ReLU
on the unpadded part: one copy of the pair formula for all of them. Clark's recursion
is a ``lax.scan`` over the window (:mod:`analytic.clark`). LeNet-5 on 2 loaded cores,
before and after, side by side: full mode 13-16 s -> 6-7 s of compile CPU time (a
784-256-128-10 MLP: 3 s -> 1.5 s), diagonal mode 4 s -> 2 s, run time within 6%; the
values change by rounding only (1e-7 in float32, 1e-16 in float64).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from analytic import checks, clark, padded_relu, relu
from analytic.moments import Moments, hidden_moments
from analytic.montecarlo import noise_sqrt
from nets.models import Layer, Net

Array = jax.Array
MODES = ("full", "diagonal")
SUPPORTED = ("conv", "dense", "relu", "maxpool", "flatten")


def check_net(net: Net) -> None:
    """One ValueError naming the first layer whose kind :func:`propagate` cannot handle."""
    for layer in net.layers:
        if layer.kind not in SUPPORTED:
            raise ValueError(f"layer {layer.name!r} is a {layer.kind!r}; propagate supports "
                             f"{SUPPORTED}")


def _layer_fn(net: Net, i: int):
    """Layer ``i`` of ``net`` alone: ``(params, batch) -> batch``."""
    names = net.layer_names
    start, stop = names[i], (names[i + 1] if i + 1 < len(names) else None)
    return lambda p, x: net.apply({"params": p}, x, start=start, stop=stop)


def _with(params, name: str, kernel: Array) -> dict:
    """``params`` with layer ``name``'s kernel replaced and its bias zeroed."""
    out = dict(params)
    out[name] = {"kernel": kernel, "bias": jnp.zeros_like(params[name]["bias"])}
    return out


def pool_windows(shape: tuple[int, ...], window: int) -> np.ndarray:
    """Flat indices (n_out, window^2) into a row-major (H, W, C) map of each output unit's
    window, outputs row-major over (H // window, W // window, C), entries in raster order
    (as :func:`nets.models.max_pool`: stride = window, the remainder cropped)."""
    h, w, c = shape
    hh, ww = h // window, w // window
    grid = np.arange(h * w * c).reshape(h, w, c)[: hh * window, : ww * window]
    win = grid.reshape(hh, window, ww, window, c).transpose(0, 2, 4, 1, 3)
    return win.reshape(hh * ww * c, window * window)


def _input_state(mu: Array, cov: Array, mode: str):
    """(kind, second moment) of the input: ("root", R) with Sigma = R^T R (R = diag(sqrt
    v) for variances, from an eigendecomposition for a full Sigma), or ("var", v) for
    variances in diagonal mode."""
    d = mu.size
    cov = jnp.asarray(cov, mu.dtype)
    if checks.cov_form(cov.shape, mu.shape, d) == "full":
        _, root = noise_sqrt(cov, mu)  # U sqrt(w): Sigma = root root^T
        return "root", root.T
    v = jnp.broadcast_to(cov.reshape(-1) if cov.ndim else cov, (d,))
    return ("root", jnp.diag(jnp.sqrt(jnp.maximum(v, 0.0)))) if mode == "full" else ("var", v)


def _affine(fn, params, layer: Layer, mean: Array, kind: str, second: Array):
    """m' = J m + b; S' = J S J^T (rows of S through the linear part, twice), R' = R J^T,
    or var' = (J o J) var (the layer with squared weights, no bias)."""
    shape = mean.shape
    lin = _with(params, layer.name, params[layer.name]["kernel"])
    out = fn(params, mean[None])[0]

    def rows(p, a: Array) -> Array:  # each row of a through the layer, flattened
        return fn(p, a.reshape(a.shape[0], *shape)).reshape(a.shape[0], -1)

    if kind == "cov":
        t = rows(lin, second)  # S J^T (S symmetric)
        s = rows(lin, t.T)  # J S J^T
        return out, kind, (s + s.T) / 2
    if kind == "root":
        return out, kind, rows(lin, second)
    sq = _with(params, layer.name, params[layer.name]["kernel"] ** 2)
    return out, kind, fn(sq, second.reshape(1, *shape)).reshape(-1)


def _relu(mean: Array, kind: str, second: Array, mode: str):
    """Exact ReLU moments of a Gaussian (full: every pair; diagonal: variances)."""
    m = mean.reshape(-1)
    if mode == "full":
        S = second if kind == "cov" else second.T @ second
        out, c = hidden_moments(m, S, "exact")
        return out.reshape(mean.shape), "cov", c
    v = second if kind == "var" else jnp.sum(second * second, axis=0)
    s = jnp.sqrt(jnp.maximum(v, 0.0))
    return relu.relu_mean(m, s).reshape(mean.shape), "var", relu.relu_variance(m, s)


def _maxpool(layer: Layer, mean: Array, kind: str, second: Array, mode: str):
    """Clark's recursion per window; full mode carries Cov(P_o, P_q) = w_o^T S w_q, from
    S itself or from its root (S = R^T R: Cov(P) = (R G^T)^T (R G^T), without S)."""
    idx = pool_windows(mean.shape, layer.window)
    hh, ww = mean.shape[0] // layer.window, mean.shape[1] // layer.window
    out_shape = (hh, ww, mean.shape[2])
    m = mean.reshape(-1)[idx]
    k = idx.shape[1]
    if mode == "full":
        if kind == "cov":
            S = second
            res = clark.max_moments(m, S[idx[:, :, None], idx[:, None, :]])
            w = res.weights
            t = sum(w[:, j, None] * S[idx[:, j], :] for j in range(k))  # Cov(P, X)
            c = sum(w[None, :, j] * t[:, idx[:, j]] for j in range(k))  # Cov(P, P)
        else:
            rw = second[:, idx]  # (r, n_out, k)
            res = clark.max_moments(m, jnp.einsum("rok,rol->okl", rw, rw))
            g = jnp.einsum("rok,ok->ro", rw, res.weights)  # R G^T
            c = g.T @ g
        c = (c + c.T) / 2
        n = c.shape[0]
        c = c.at[jnp.arange(n), jnp.arange(n)].set(res.var)
        return res.mean.reshape(out_shape), "cov", c
    v = second if kind == "var" else jnp.sum(second * second, axis=0)
    res = clark.max_moments(m, v[idx])
    return res.mean.reshape(out_shape), "var", res.var


def pool_first(layers: tuple[Layer, ...]) -> tuple[Layer, ...]:
    """``layers`` with every relu that is directly followed by a maxpool swapped with it:
    max(relu(a), relu(b), ...) = relu(max(a, b, ...)) (relu is non-decreasing), so the
    function is the same, and Clark's recursion then takes Gaussian-like inputs instead of
    rectified ones (module docstring). Conv and dense layers keep their positions, so
    :func:`_layer_fn`'s index stays right."""
    out = list(layers)
    for i in range(len(out) - 1):
        if out[i].kind == "relu" and out[i + 1].kind == "maxpool":
            out[i], out[i + 1] = out[i + 1], out[i]
    return tuple(out)


def propagate(net: Net, params, mu: Array, cov: Array, *, mode: str = "full",
              check: bool = True) -> Moments:
    """Mean (k,) and covariance (k, k) of ``net``'s output for x ~ N(mu, cov), one input
    ``mu`` without a batch axis (e.g. (28, 28, 1)), propagated layer by layer (module
    docstring). ``cov``: a scalar (isotropic variance), per-input variances (``mu``'s
    shape or (d,)) or a full (d, d) covariance of the flattened input. ``mode``: ``"full"``
    or ``"diagonal"`` (then the returned covariance is diagonal). Jitted (one compile per
    net, mode and shapes); ``vmap`` it or use :func:`propagate_batch` for many inputs.
    Cost, LeNet-5 on 2 shared CPU cores: full mode ~6-10 s to compile (it was ~25-40 s
    before issue 16's shared ReLU formula), 0.2-0.4 s per image (a 10^4-sample Monte
    Carlo: 0.8-1.5 s); diagonal mode ~2 s, ~1-5 ms.

    ``check`` (default True): one ValueError for an unknown mode, a layer kind other than
    conv, dense, relu, maxpool or flatten, a ``mu`` with NaN/inf and a ``cov`` of the
    wrong shape or with invalid values (values only outside jit; ``check=False`` skips
    the value checks, the mode and layers are always checked)."""
    checks.check_choice(mode, MODES, "mode")
    check_net(net)
    mu = jnp.asarray(mu)
    if check:
        checks.check_finite(mu, "mu")
        checks.check_cov(cov, mu.shape, mu.size)
    return _propagate(net, params, mu, cov, mode)


def _step(net: Net, params, i: int, layer: Layer, state: tuple, mode: str) -> tuple:
    """One layer (``i``: its position in ``net``) on (mean, kind, second)."""
    mean, kind, second = state
    if layer.kind in ("conv", "dense"):
        return _affine(_layer_fn(net, i), params, layer, mean, kind, second)
    if layer.kind == "relu":
        return _relu(mean, kind, second, mode)
    if layer.kind == "maxpool":
        return _maxpool(layer, mean, kind, second, mode)
    return mean.reshape(-1), kind, second  # flatten: the flat order is unchanged


def _run(net: Net, params, layers: tuple[Layer, ...], lo: int, hi: int, state: tuple,
         mode: str) -> tuple:
    """``layers[lo:hi]`` one after another."""
    for i in range(lo, hi):
        state = _step(net, params, i, layers[i], state, mode)
    return state


def _pad(a: Array, size: int) -> Array:
    """``a`` flattened (vector) or square, zero-padded to ``size``."""
    extra = size - a.shape[0]
    return jnp.pad(a, [(0, extra)] * a.ndim)


def _relu_stages(net: Net, params, layers: tuple[Layer, ...], relus: list[int],
                 state: tuple) -> tuple[Array, Array]:
    """Full mode from the first ReLU's input on, with one compiled copy of the exact pair
    formula for all the ReLU layers (:mod:`analytic.padded_relu`): a ``lax.scan`` over the
    ReLU layers whose step is the ReLU on the state padded to the widest layer, then
    (``lax.switch`` on the step) the layers up to the next ReLU or the end, on the
    unpadded part. The same operations as layer by layer, so the same values up to the
    grouping's rounding. Returns the output's flat mean and covariance."""
    mean, kind, second = state
    S = second if kind == "cov" else second.T @ second
    shapes = [mean.shape]  # each ReLU's input shape, then the output's
    dtype = jnp.result_type(mean, S)  # one dtype for the scan's carry
    segments = []
    for t, r in enumerate(relus):
        hi = relus[t + 1] if t + 1 < len(relus) else len(layers)

        def segment(m, S, r=r, hi=hi):
            m, _, S = _run(net, params, layers, r + 1, hi, (m, "cov", S), "full")
            return m, S

        segments.append(segment)
        out = jax.eval_shape(segment, jax.ShapeDtypeStruct(shapes[-1], mean.dtype),
                             jax.ShapeDtypeStruct((int(np.prod(shapes[-1])),) * 2, S.dtype))
        shapes.append(out[0].shape)
        dtype = jnp.result_type(dtype, *(o.dtype for o in out))
    sizes = [int(np.prod(sh)) for sh in shapes]
    size = max(sizes)

    def branch(t: int):
        def run(m, S):
            n = sizes[t]
            m, S = segments[t](m[:n].reshape(shapes[t]), S[:n, :n])
            return _pad(m.reshape(-1), size).astype(dtype), _pad(S, size).astype(dtype)
        return run

    branches = [branch(t) for t in range(len(relus))]
    n_in = jnp.asarray(sizes[:-1], jnp.int32)

    def stage(carry, t):
        m, C = padded_relu.hidden_moments_padded(*carry, n_in[t], tuple(sizes[:-1]))
        return jax.lax.switch(t, branches, m, C), None

    init = (_pad(mean.reshape(-1), size).astype(dtype), _pad(S, size).astype(dtype))
    (m, S), _ = jax.lax.scan(stage, init, jnp.arange(len(relus)))
    return m[: sizes[-1]], S[: sizes[-1], : sizes[-1]]


@functools.partial(jax.jit, static_argnames=("net", "mode"))
def _propagate(net: Net, params, mu: Array, cov: Array, mode: str) -> Moments:
    # J S J^T and the pooled covariances at full float32 precision on every backend
    # (a TPU's default is one bfloat16 pass, an Ampere+ GPU's TF32; issue 18)
    with jax.default_matmul_precision("highest"):
        mean = mu.astype(jnp.result_type(float, mu))
        state = (mean, *_input_state(mean, cov, mode))
        layers = pool_first(net.layers)
        relus = [i for i, layer in enumerate(layers) if layer.kind == "relu"]
        if mode == "full" and len(relus) > 1:
            state = _run(net, params, layers, 0, relus[0], state, mode)
            return Moments(*_relu_stages(net, params, layers, relus, state))
        mean, kind, second = _run(net, params, layers, 0, len(layers), state, mode)
        if kind == "root":
            second = second.T @ second if mode == "full" else jnp.sum(second * second, axis=0)
        cov_out = second if kind == "cov" or mode == "full" else jnp.diag(second)
        return Moments(mean.reshape(-1), cov_out)


def propagate_batch(net: Net, params, mus: Array, cov: Array, *, mode: str = "full",
                    batch_size: int | None = None, check: bool = True) -> Moments:
    """:func:`propagate` for every input of ``mus`` (N, *shape) with the same ``cov``:
    fields with a leading axis N. ``batch_size`` inputs are vmapped at a time
    (``lax.map``; full mode holds batch_size covariances of the widest layer)."""
    checks.check_choice(mode, MODES, "mode")
    check_net(net)
    mus = jnp.asarray(mus)
    if check:
        checks.check_finite(mus, "mus")
        checks.check_cov(cov, mus.shape[1:], int(np.prod(mus.shape[1:])))
        if batch_size is not None:
            checks.check_int(batch_size, "batch_size")
    return jax.lax.map(lambda x: _propagate(net, params, x, cov, mode), mus,
                       batch_size=batch_size)
