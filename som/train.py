"""Training a SOM: Kohonen's online rule (one ``lax.scan`` over samples) and the batch map.

Online (Kohonen 1982; 2013 eq. 3), one sample x(t) per step::

    c = argmin_j ||x(t) - w_j||
    w_j <- w_j + alpha(t) h(d(j, c); sigma(t)) (x(t) - w_j)

Samples are visited in a random order that uses every sample equally often
(a permutation of ``arange(steps) % N``, as MiniSom's ``train_random``).

Batch (Kohonen's batch map, Kohonen 2013 sec. 3.5; Vesanto et al., SOM Toolbox
``som_batchtrain``), one pass over all N samples per step::

    w_j = sum_i h(d(j, c_i); sigma(t)) x_i / sum_i h(d(j, c_i); sigma(t)),   c_i = BMU of x_i

computed through the Voronoi sums S_k = sum_{c_i = k} x_i and n_k = |{i: c_i = k}|
(SOM Toolbox form): w_j = sum_k h(j, k) S_k / sum_k h(j, k) n_k, i.e. two (M x M) @ (M x d)
products per pass after the BMU search, which is matmul-based and chunked. A unit whose
denominator is 0 (possible with the bubble neighborhood) keeps its weight. There is no
learning rate.

Everything is a pure function of (spec, arrays, key); :func:`fit` is jittable and
``jax.vmap(fit)`` trains many maps at once (one per layer on zero-padded codes, or one
per seed): :func:`fit_many`.

**Several devices** (the batch map only). The Voronoi sums are sums over samples, so
the batch map is data parallel: the N rows are padded to a multiple of the D devices of
``mesh`` (default :func:`nets.sharding.data_mesh` over this process's devices) and split
into D blocks, one per device, each scanned in chunks of at most ``spec.chunk`` rows
(padded rows masked out, so they add nothing). Each device sums its block, XLA
all-reduces the (M, d) and (M,) partial sums once per pass, and every device applies
the same update to its replicated codebook. The numbers are those of one device up to
the order of the float sums (tests/som/test_som_sharding.py). The online rule is
sequential (each update depends on the previous one) and runs on one device.

:func:`fit`, :func:`fit_many` and :func:`train` check their inputs first, outside jit
(:mod:`som.checks`: one ValueError for data that is not 2-D, has no samples or has
NaN/inf rows, a codebook of the wrong size); NaN/inf is checked only for concrete arrays
(not inside a caller's jit / vmap), and ``check=False`` skips the checks in a hot loop.
:class:`SOMSpec` and :class:`~som.grid.Grid` check their fields when built.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from nets.sharding import device_blocks, local_data_mesh
from som import checks, schedule
from som import neighborhood as nb_lib
from som.bmu import scores
from som.grid import Grid
from som.init import INITS, init_weights

Array = jax.Array
ALGORITHMS = ("batch", "online")


@dataclasses.dataclass(frozen=True)
class SOMSpec:
    """Everything that defines how a map is trained (hashable: a static jit argument).

    ``steps`` counts batch passes over the data (``batch``) or single-sample updates
    (``online``). ``sigma = 0`` means max(rows, cols) / 2. The learning rate applies to
    ``online`` only. Built with bad fields it raises one ValueError: an unknown
    algorithm, init, neighborhood or decay; ``steps`` or ``chunk`` not an integer >= 1;
    ``sigma`` < 0 or ``sigma_end`` <= 0 or not finite; for ``online``, learning rates
    < 0 (<= 0 with the exponential decay) or not finite.
    """

    grid: Grid
    algorithm: str = "batch"
    steps: int = 30
    neighborhood: str = "gaussian"
    sigma: float = 0.0
    sigma_end: float = 1.0
    learning_rate: float = 0.5
    learning_rate_end: float = 0.01
    decay: str = "exponential"
    init: str = "pca"
    chunk: int = 4096

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {self.algorithm!r}; use one of {ALGORITHMS}")
        if self.init not in INITS:
            raise ValueError(f"unknown init {self.init!r}; use one of {INITS}")
        nb_lib.get(self.neighborhood)
        schedule.check(self.decay)
        checks.check_int(self.steps, "steps")
        checks.check_int(self.chunk, "chunk")
        checks.check_number(self.sigma, "sigma")  # 0: the default start radius
        checks.check_number(self.sigma_end, "sigma_end", strict=True)
        if self.algorithm == "online":
            strict = self.decay == "exponential"  # v0 (v_end / v0) ** frac needs both > 0
            checks.check_number(self.learning_rate, "learning_rate", strict=strict)
            checks.check_number(self.learning_rate_end, "learning_rate_end", strict=strict)

    @property
    def sigma_start(self) -> float:
        return self.sigma if self.sigma > 0 else max(self.grid.rows, self.grid.cols) / 2.0


def online_step(w: Array, x: Array, grid_dist: Array, sigma: Array, alpha: Array,
                neighborhood: str = "gaussian") -> Array:
    """One online update of the codebook ``w`` (M, d) with one sample ``x`` (d,)."""
    c = jnp.argmin(scores(x[None], w)[0])
    h = nb_lib.get(neighborhood)(grid_dist[c], sigma)
    return w + (alpha * h)[:, None] * (x - w)


@functools.partial(jax.jit, static_argnames=("spec",))
def train_online(spec: SOMSpec, weights: Array, x: Array, key: Array) -> Array:
    """``spec.steps`` online updates starting from ``weights``; samples in random order.

    One device: each update needs the codebook the previous one left, one sample at a
    time, so there is nothing to split over devices (use the batch map for that)."""
    gd = jnp.asarray(spec.grid.distances)
    total = spec.steps
    order = jax.random.permutation(key, jnp.arange(total) % x.shape[0])

    def body(w, inp):
        t, i = inp
        sigma = schedule.decay(spec.decay, spec.sigma_start, spec.sigma_end, t, total)
        alpha = schedule.decay(spec.decay, spec.learning_rate, spec.learning_rate_end, t,
                               total)
        return online_step(w, x[i], gd, sigma, alpha, spec.neighborhood), None

    w, _ = jax.lax.scan(body, weights.astype(jnp.float32), (jnp.arange(total), order),
                        unroll=4)
    return w


def _blocks(x: Array, chunk: int, mesh: Mesh) -> tuple[Array, Array]:
    """``x`` (N, d) as (D, C, c, d) device blocks of chunks and a float (D, C, c) mask of
    the real rows (:func:`nets.sharding.device_blocks`)."""
    x, valid = device_blocks(x, chunk, mesh)
    return x, valid.astype(x.dtype)


def _voronoi_sums_chunked(w: Array, xs: Array, valid: Array) -> tuple[Array, Array]:
    m, d = w.shape

    def body(carry, inp):
        s, cnt = carry
        xc, vc = inp
        c = jnp.where(vc > 0, jnp.argmin(scores(xc, w), axis=-1), m)  # padding -> dropped
        s = s + jax.ops.segment_sum(xc, c, num_segments=m)
        cnt = cnt + jax.ops.segment_sum(vc, c, num_segments=m)
        return (s, cnt), None

    init = (jnp.zeros((m, d), xs.dtype), jnp.zeros((m,), xs.dtype))
    (s, cnt), _ = jax.lax.scan(body, init, (xs, valid))
    return s, cnt


def _voronoi_sums_blocks(w: Array, xs: Array, valid: Array) -> tuple[Array, Array]:
    """The sums over (D, C, c, d) device blocks: each device's own sums, then their total
    (an all-reduce when the blocks are split over devices)."""
    if xs.shape[0] == 1:  # one device: the plain scan
        return _voronoi_sums_chunked(w, xs[0], valid[0])
    s, cnt = jax.vmap(_voronoi_sums_chunked, in_axes=(None, 0, 0))(w, xs, valid)
    return s.sum(0), cnt.sum(0)


def voronoi_sums(w: Array, x: Array, chunk: int = 4096,
                 mesh: Mesh | None = None) -> tuple[Array, Array]:
    """(S, n): per-unit sums S_k (M, d) and counts n_k (M,) of the samples whose BMU is k,
    the rows split over the devices of ``mesh`` (default: every device of this process)."""
    return _voronoi_sums_blocks(w, *_blocks(x, chunk, local_data_mesh(mesh)))


def _batch_update(w: Array, s: Array, cnt: Array, grid_dist: Array, sigma: Array,
                  neighborhood: str) -> Array:
    h = nb_lib.get(neighborhood)(grid_dist, sigma)  # (M, M), h[j, k] = h(d(j, k))
    num, den = h @ s, h @ cnt
    ok = den > 1e-30
    return jnp.where(ok[:, None], num / jnp.where(ok, den, 1.0)[:, None], w)


def batch_step(w: Array, x: Array, grid_dist: Array, sigma: Array,
               neighborhood: str = "gaussian", chunk: int = 4096,
               mesh: Mesh | None = None) -> Array:
    """One batch-map pass: w_j = sum_i h(j, c_i) x_i / sum_i h(j, c_i) (see module doc)."""
    s, cnt = voronoi_sums(w, x, chunk, mesh)
    return _batch_update(w, s, cnt, grid_dist, sigma, neighborhood)


@functools.partial(jax.jit, static_argnames=("spec", "mesh"))
def train_batch(spec: SOMSpec, weights: Array, x: Array, mesh: Mesh | None = None) -> Array:
    """``spec.steps`` batch-map passes over ``x`` starting from ``weights``, the rows split
    over the devices of ``mesh`` (default: every device of this process; a
    one-device mesh, ``data_mesh(devices=jax.local_devices()[:1])``, turns it off)."""
    gd = jnp.asarray(spec.grid.distances)
    xs, valid = _blocks(x.astype(jnp.float32), spec.chunk, local_data_mesh(mesh))  # once

    def body(w, t):
        sigma = schedule.decay(spec.decay, spec.sigma_start, spec.sigma_end, t, spec.steps)
        s, cnt = _voronoi_sums_blocks(w, xs, valid)
        return _batch_update(w, s, cnt, gd, sigma, spec.neighborhood), None

    w, _ = jax.lax.scan(body, weights.astype(jnp.float32), jnp.arange(spec.steps))
    return w


def train(spec: SOMSpec, weights: Array, x: Array, key: Array, *,
          check: bool = True, mesh: Mesh | None = None) -> Array:
    """Train from ``weights`` with ``spec.algorithm`` (the key orders online samples); the
    batch map splits the rows over ``mesh`` (:func:`train_batch`).

    ``check`` (default True): one ValueError for ``x`` that is not (N, d) with N >= 1 or
    has NaN/inf rows, or ``weights`` that are not (grid units, d) or not finite (values
    only when not traced); ``check=False`` skips it."""
    if check:
        checks.check_data(x)
        checks.check_weights(weights, x, spec.grid.size)
    if spec.algorithm == "online":
        return train_online(spec, weights, x, key)
    return train_batch(spec, weights, x, mesh)


@functools.partial(jax.jit, static_argnames=("spec", "mesh"))
def _fit(spec: SOMSpec, key: Array, x: Array, mesh: Mesh | None = None) -> Array:
    k_init, k_train = jax.random.split(key)
    x = jnp.asarray(x, jnp.float32)
    return train(spec, init_weights(k_init, x, spec.grid, spec.init), x, k_train, check=False,
                 mesh=mesh)


def fit(spec: SOMSpec, key: Array, x: Array, *, check: bool = True,
        mesh: Mesh | None = None) -> Array:
    """Initialize (``spec.init``) and train a map on ``x`` (N, d); returns weights (M, d).

    Jitted (one compile per spec and shapes). ``check`` (default True): first, outside
    jit, one ValueError for ``x`` that is not 2-D, has no samples or features, or has
    NaN/inf rows (the message counts them and names the first; not checked when ``x`` is
    traced, inside a caller's jit / vmap). ``check=False`` skips it in a hot loop.

    The batch map runs on every device of ``mesh`` (default: every device of this process), each
    on its part of the rows (module doc); a one-device mesh keeps it on one."""
    if check:
        checks.check_data(x)
    return _fit(spec, key, x, mesh)


@functools.partial(jax.jit, static_argnames=("spec", "mesh"))
def _fit_many(spec: SOMSpec, keys: Array, xs: Array, mesh: Mesh | None = None) -> Array:
    return jax.vmap(lambda k, x: _fit(spec, k, x, mesh))(keys, xs)


def fit_many(spec: SOMSpec, keys: Array, xs: Array, *, check: bool = True,
             mesh: Mesh | None = None) -> Array:
    """K maps at once: ``keys`` (K, 2), ``xs`` (K, N, d) -> weights (K, M, d) (vmap of fit;
    every map's rows split over ``mesh`` as in :func:`fit`).

    ``check``: the checks of :func:`fit` on each of the K sets (``xs`` must be 3-D), and
    one key per set; ``check=False`` skips them."""
    if check:
        checks.check_data(xs, "xs", batched=True)
        if checks.shape_of(keys)[:1] != checks.shape_of(xs)[:1]:
            raise ValueError(f"keys of shape {checks.shape_of(keys)} must hold one key per set "
                             f"of xs ({checks.shape_of(xs)[0]}); use jax.random.split(key, "
                             f"{checks.shape_of(xs)[0]})")
    return _fit_many(spec, keys, xs, mesh)
