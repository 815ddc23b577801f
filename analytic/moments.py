"""Output mean and covariance of g(x) = B relu(A x + c1) + c2 for x ~ N(mu, Sigma).

z = A x + c1 ~ N(m, S) with m = A mu + c1, S = A Sigma A^T (DESIGN.md, analytic/):

    E[g]   = B E[relu(z)] + c2                      (exact, every method)
    Cov[g] = B C B^T,  C = Cov[relu(z)]

with C from ``method`` (Bibi, Alfadly, Ghanem, CVPR 2018, and this project's extension):

* ``exact``: C_ij from the general-mean cross moment (Rosenbaum 1961 through the
  bivariate normal cdf; :func:`analytic.relu.relu_covariance`), evaluated in the tiled
  form below (:func:`exact_output_cov`);
* ``series``: the authors' 2020 code (xmodar/network_moments, branch ``no-assumptions``):
  the same formula with the bivariate cdf by a truncated series of ``terms`` terms
  (:mod:`analytic.series`; exact variances on the diagonal);
* ``zero_mean``: the paper's second-moment result, the cross moment of zero-mean pre-activations
  (exact when c1 = -A mu), used as an approximation:
  C_ij = s_i s_j (rho arccos(-rho) + sqrt(1 - rho^2) - 1) / (2 pi);
* ``diagonal``: independent hidden units, C = diag(Var[relu(z_i)]) (exact variances);
* ``batch_moments``: the authors' released form (``batch_moments`` of
  xmodar/network_moments): exact variances on the diagonal, the zero-mean form above off
  it. The strongest cheap alternative to ``exact``, but not always positive semidefinite
  (the two parts come from different distributions).

The exact output covariance without the n x n matrices (issue 16). Split as in
:func:`analytic.relu.relu_covariance`, C = S o L + W, with f = [m > 0], q = Phi(-|h|),
g = (1 - 2 f) q, L = f f^T + f g^T + g f^T, and W_ij = Cov(relu(w_i), relu(w_j)) for the
units w = e z of non-positive mean -|m| (W_ii = Var relu(w_i)). The first part needs no
S: with S = A Sigma A^T and P = B diag(f) A, R = B diag(g) A (k x d),

    B (S o L) B^T = P Sigma P^T + P Sigma R^T + R Sigma P^T.

The second is negligible off the units near their kink: by Price's theorem
(dE[relu(w_i) relu(w_j)]/dS_ij = P(w_i > 0, w_j > 0)) and W_ij = 0 at S_ij = 0,
|W_ij| <= |S_ij| min(q_i, q_j). Units with q_i <= ``tol`` (default the dtype's eps, the
relative rounding of S_ij itself: |h| > 5.2 in float32, > 8.1 in float64) are dropped
from W; the others are sorted to the front and W is evaluated only on the tiles of
``EXACT_TILE`` x ``EXACT_TILE`` units among them (``SMALL_TILE`` in layers of at most
``SMALL_LAYER`` units), each tile's B_I W_IJ B_J^T summed. Each tile takes one formula:

* Mehler's expansion (:mod:`analytic.mehler`) when its largest |rho| is at most
  ``MEHLER_RHO``, with as many terms as the Cauchy-Schwarz truncation bound needs
  (products only; 13 terms at |rho| <= 0.3 in float32);
* else the bivariate cdf rule its largest |rho| needs (Genz's 6, 12 or 20 nodes), or
  with a |rho| >= 0.925 pair the elementwise form.

S on a tile is A_I Sigma A_J^T, or a slice of S when it is known: a batch that shares
A and Sigma (a one-hidden-layer net, :func:`batched_moments` with ``shared_lin`` and
``shared_cov``) computes S once. On
784 -> 1024 -> 10 at sigma 0.1 about 300 of the 1024 units take part (the others have
|h| > 5.2), and every tile's |rho| is below 0.3. Timings: benchmarks/analytic_bench.py
and README (issue 16). Same values to rounding (tests/analytic/
test_affine_relu_affine.py, tests/analytic/test_mehler.py); derivatives from the dense
form.

Sigma is a scalar (isotropic variance), a vector or an array of ``mu``'s shape (per-input
variances: a diagonal covariance) or a full (d, d) matrix on the flattened input.
Everything is jittable and differentiable; batch with ``jax.vmap`` or
:func:`batched_moments`.

The public functions check their inputs first (:mod:`analytic.checks`: one ValueError
for a negative or NaN variance, a non-symmetric or non-PSD covariance, shapes that do
not fit the linearization, an unknown method); values are checked only outside jit,
and ``check=False`` skips the checks in a hot loop.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_batching import custom_vmap
from jax.scipy.special import ndtr
from jax.sharding import PartitionSpec as P

from analytic import checks, mehler, relu, series
from analytic.linearize import HIGHEST, Linearization, mm
from nets.batching import pad_rows
from nets.sharding import local_data_mesh, replicate, row_multiple, split_rows

Array = jax.Array
METHODS = ("exact", "zero_mean", "diagonal", "batch_moments", "series")
EXACT_TILE = 64  # units per tile of the W part of the exact covariance
MEHLER_RHO = 0.6  # tiles whose largest |rho| is at most this take Mehler's expansion
MEHLER_LENGTHS = (8, 16, 24, 32, 48, 70)  # its static lengths (capped at MEHLER_RHO's)
SHARED_S_BYTES = 256 * 2**20
# layers of at most SMALL_LAYER units: tiles of SMALL_TILE units (on LeNet-5's 84, with
# 4-25 units near their kink, W took 17 ms per 100 images in tiles of 16, S by tile,
# against 79 ms in tiles of 64 and 49 ms with the whole S per input; shared 2-core CPU,
# loaded)
SMALL_LAYER = 2 * EXACT_TILE
SMALL_TILE = 16  # the largest A Sigma A^T a batch sharing A and Sigma keeps


class Moments(NamedTuple):
    """Output mean (k,) and covariance (k, k)."""

    mean: Array
    cov: Array


def _check_method(method: str) -> None:
    """``method`` must be one of :data:`METHODS`."""
    checks.check_choice(method, METHODS)


def _input_cov(cov: Array, mu: Array, d: int, dtype) -> Array:
    """Sigma as () (isotropic), (d,) (diagonal) or (d, d) (full)."""
    cov = jnp.asarray(cov, dtype)
    kind = checks.cov_form(cov.shape, jnp.shape(mu), d)
    return cov.reshape(-1) if kind == "diag" else cov


def _sandwich(X: Array, Y: Array, cov: Array) -> Array:
    """X Sigma Y^T for Sigma of :func:`_input_cov`'s forms."""
    if cov.ndim == 0:
        return cov * mm(X, Y.T)
    if cov.ndim == 1:
        return mm(X * cov, Y.T)
    return mm(mm(X, cov), Y.T)


def _row_var(A: Array, cov: Array) -> Array:
    """diag(A Sigma A^T)."""
    if cov.ndim == 0:
        return cov * jnp.sum(A * A, axis=1)
    if cov.ndim == 1:
        return mm(A * A, cov)
    return jnp.einsum("nd,de,ne->n", A, cov, A, precision=HIGHEST)


def preactivation(lin: Linearization, mu: Array, cov: Array, full: bool = True
                  ) -> tuple[Array, Array]:
    """(m, S): m = A mu + c1 and S = A Sigma A^T (``full``) or only its diagonal."""
    A = lin.A
    mu = jnp.asarray(mu)
    cov = _input_cov(cov, mu, A.shape[1], A.dtype)
    m = mm(A, mu.reshape(-1)) + lin.c1
    return m, (_sandwich(A, A, cov) if full else _row_var(A, cov))


def _sqrt(v: Array) -> Array:
    """sqrt with a zero (not infinite) gradient at 0."""
    ok = v > 0
    return jnp.where(ok, jnp.sqrt(jnp.where(ok, v, 1.0)), 0.0)


def hidden_moments(m: Array, S: Array, method: str = "exact", *, rank_one: bool = False,
                   grouped: bool = True, terms: int = series.TERMS) -> tuple[Array, Array]:
    """(E[relu(z)], Cov[relu(z)]) for z ~ N(m, S); S is (n, n), or (n,) for ``diagonal``.

    ``rank_one=True`` promises S = v v^T (every correlation is +-1, e.g. noise on one
    input pixel): the exact method then skips the bivariate cdf. ``grouped``: each pair
    runs only the formula its correlation needs (:func:`analytic.relu.relu_cross_moment`;
    ``False``: the elementwise form, every branch for every pair). ``terms``: the series
    length of ``method="series"`` (:mod:`analytic.series`; 5 in the reference).
    """
    _check_method(method)
    var = S if S.ndim == 1 else jnp.diagonal(S)
    s = _sqrt(var)
    mean = relu.relu_mean(m, s)
    if method == "diagonal":
        return mean, jnp.diag(relu.relu_variance(m, s))
    n = m.shape[0]
    iu, ju = jnp.triu_indices(n, k=1)
    si, sj = s[iu], s[ju]
    den = si * sj
    ok = den > 0
    rho = jnp.where(ok, S[iu, ju] / jnp.where(ok, den, 1.0), 0.0)
    if method == "exact":
        off = relu.relu_covariance(m[iu], m[ju], si, sj, rho, perfect=rank_one, grouped=grouped)
        diag = relu.relu_variance(m, s)
    elif method == "series":
        off = series.relu_covariance_series(m[iu], m[ju], si, sj, rho, terms)
        diag = relu.relu_variance(m, s)
    else:
        off = relu.relu_covariance_zero_mean(si, sj, rho)
        diag = (relu.relu_variance(m, s) if method == "batch_moments"
                else relu.relu_covariance_zero_mean(s, s, jnp.ones_like(s)))
    C = jnp.zeros((n, n), off.dtype).at[iu, ju].set(off)
    return mean, C + C.T + jnp.diag(diag)


def output_moments(m: Array, S: Array, B: Array, c2: Array, method: str = "exact", *,
                   rank_one: bool = False, grouped: bool = True,
                   terms: int = series.TERMS) -> Moments:
    """E[g] = B E[relu(z)] + c2 and Cov[g] = B C B^T, given z ~ N(m, S)
    (``rank_one``, ``grouped``, ``terms``: see :func:`hidden_moments`)."""
    mean_h, C = hidden_moments(m, S, method, rank_one=rank_one, grouped=grouped, terms=terms)
    cov = mm(mm(B, C), B.T)
    return Moments(mm(B, mean_h) + c2, (cov + cov.T) / 2)


# --- the exact output covariance, tiled (module docstring) --------------------------------

def _unit_terms(m: Array, var: Array, tol: float | None) -> tuple[Array, ...]:
    """Per unit: s, f = [m > 0], g = (1 - 2 f) q, q = Phi(-|h|), and which units take part
    in W (a usable s and q > tol)."""
    s = _sqrt(var)
    ok, _, h = relu._standardize(m, s)
    q = ndtr(-jnp.abs(h))
    f = m > 0
    tol = float(jnp.finfo(m.dtype).eps) if tol is None else tol
    return s, f.astype(m.dtype), jnp.where(f, -q, q), ok & (q > tol)


def _tile_pairs(nb: int) -> tuple[np.ndarray, np.ndarray]:
    """Tile pairs (bi <= bj) ordered by bj then bi: the first nb'(nb'+1)/2 of them are the
    pairs among the first nb' tiles."""
    pairs = [(i, j) for j in range(nb) for i in range(j + 1)]
    return (np.array([p[0] for p in pairs], np.int32), np.array([p[1] for p in pairs], np.int32))


def _w_item(A: Array, cov: Array, m: Array, s: Array, active: Array, B: Array, S: Array,
            v: Array, tile: int) -> Array:
    """B W B^T for one input: W on the tiles of the active units (sorted to the front);
    a loop over as many tile pairs as the active units fill. ``S``: A Sigma A^T when a
    batch shares it (computed once, :func:`_shared_s`; tiles are read from it), or a 0-d
    placeholder (each tile's A_I Sigma A_J^T is computed); ``v``: the units' Mehler
    coefficients (:func:`_mehler_coefficients`)."""
    n = A.shape[0]
    tile = max(1, min(tile, n))
    nb = -(-n // tile)
    pad = nb * tile - n
    order = jnp.argsort(jnp.where(active, 0, 1), stable=True).astype(jnp.int32)
    order = jnp.concatenate([order, jnp.arange(n, n + pad, dtype=jnp.int32)])
    A = jnp.pad(A, ((0, pad), (0, 0)))
    B = jnp.pad(B, ((0, 0), (0, pad)))
    m = jnp.pad(m, (0, pad))
    a = -jnp.abs(m)  # w = e z, e = -sign(m): mean -|m|, Cov(w_i, w_j) = e_i e_j S_ij
    e = jnp.where(m > 0, -1.0, 1.0).astype(m.dtype)
    s = jnp.pad(s, (0, pad))  # padding: constant units, W = 0
    mean_w = relu.relu_mean(a, s)
    n_act = jnp.sum(active.astype(jnp.int32))
    nt = (n_act + tile - 1) // tile
    ti, tj = (jnp.asarray(t) for t in _tile_pairs(nb))

    var_w = relu.relu_variance(a, s)  # W_ii
    eye = jnp.eye(tile, dtype=bool)
    # one formula per tile: Mehler's expansion with as many terms as its largest |rho|
    # needs (analytic.mehler; up to |rho| = MEHLER_RHO), else the bivariate cdf rule its
    # largest |rho| needs (6, 12 or 20 Gauss-Legendre nodes, any of which serves the
    # smaller |rho| too), or, with a |rho| >= 0.925 pair, the elementwise form
    # (relu._cross_in_class); each gives Cov(relu w_i, relu w_j)
    eps = float(jnp.finfo(A.dtype).eps)
    limit = v.shape[1]
    v_sorted = jnp.pad(v, ((0, pad), (0, 0)))[order]

    def quadrature(c):
        def rule(x):
            ai, aj, si, sj, rho, _, ii, jj, _ = x
            w = relu._cross_in_class(c, ai, aj, si, sj, rho)
            return w - mean_w[ii][:, None] * mean_w[jj][None, :]
        return rule

    def series(terms):
        def rule(x):
            *_, rho, _, _, _, (vi, vj) = x
            return mehler.covariance(vi, vj, rho, terms)
        return rule

    # the expansion in a few static lengths (each one fused pass): the shortest that
    # reaches the tile's bound
    lengths = sorted({min(b, limit) for b in MEHLER_LENGTHS})
    rules = [quadrature(c) for c in (0, 1, 2, 5)] + [series(k) for k in lengths]

    have_s = S.ndim == 2
    if have_s:  # one gather of rows; each tile gathers its columns
        S_rows = jnp.pad(S, ((0, pad), (0, pad)))[order]
    else:
        A_sorted = A[order]  # one gather; the tiles are slices of it

    def body(t, acc):
        ii = jax.lax.dynamic_slice(order, (ti[t] * tile,), (tile,))
        jj = jax.lax.dynamic_slice(order, (tj[t] * tile,), (tile,))
        if have_s:
            S_ij = jax.lax.dynamic_slice_in_dim(S_rows, ti[t] * tile, tile)[:, jj]
        else:
            Ai = jax.lax.dynamic_slice_in_dim(A_sorted, ti[t] * tile, tile)
            Aj = jax.lax.dynamic_slice_in_dim(A_sorted, tj[t] * tile, tile)
            S_ij = _sandwich(Ai, Aj, cov)
        si, sj = s[ii][:, None], s[jj][None, :]
        den = si * sj
        ok = den > 0
        rho = jnp.clip(jnp.where(ok, S_ij / jnp.where(ok, den, 1.0), 0.0), -1.0, 1.0)
        same = eye & (ti[t] == tj[t])  # a unit with itself: W_ii, below
        rho = jnp.where(same, 0.0, e[ii][:, None] * rho * e[jj][None, :])
        ai, aj = a[ii][:, None], a[jj][None, :]
        cls = jnp.where(ok, relu.pair_class(ai, aj, si, sj, rho), 0)  # s = 0: W = 0, any rule
        terms = mehler.terms_for(jnp.max(jnp.abs(rho)), eps, limit)
        vi = jax.lax.dynamic_slice_in_dim(v_sorted, ti[t] * tile, tile)
        vj = jax.lax.dynamic_slice_in_dim(v_sorted, tj[t] * tile, tile)
        # per-unit arguments stay (tile, 1) and (1, tile): their per-unit terms (h, phi(h),
        # Phi(h)) are computed once per unit, not once per pair
        length = jnp.searchsorted(jnp.asarray(lengths), terms)  # len(lengths): too many
        rule = jnp.where(terms <= limit, 4 + length, jnp.minimum(cls.max(), 3))
        w = jax.lax.switch(rule, rules, (ai, aj, si, sj, rho, terms, ii, jj, (vi, vj)))
        w = jnp.where(same, var_w[ii][:, None], w)
        c = mm(mm(B[:, ii], w), B[:, jj].T)
        return acc + c + jnp.where(ti[t] != tj[t], c.T, 0.0)

    k = B.shape[0]
    return jax.lax.fori_loop(0, nt * (nt + 1) // 2, body, jnp.zeros((k, k), A.dtype))


@functools.cache
def _w_part(tile: int):
    """B W B^T of :func:`_w_item` with ``tile`` fixed; one function per tile size (cached)."""
    @custom_vmap
    def w_part(A, cov, m, s, active, B, S, v):
        return _w_item(A, cov, m, s, active, B, S, v, tile)

    @w_part.def_vmap
    def _rule(axis_size, in_batched, *args):
        # one input at a time (lax.map over the batched arguments): each runs only its own
        # active tiles (under plain vmap the loop would run the largest count for all)
        def one(xs):
            it = iter(xs)
            return w_part(*(next(it) if b else a for a, b in zip(args, in_batched, strict=True)))

        return jax.lax.map(one, tuple(a for a, b in zip(args, in_batched, strict=True) if b)), True

    return w_part


def _exact_cov_dense(A: Array, cov: Array, m: Array, B: Array) -> Array:
    """B C B^T from the full C (every pair, elementwise form): the derivative path."""
    _, C = hidden_moments(m, _sandwich(A, A, cov), "exact", grouped=False)
    return mm(mm(B, C), B.T)


@functools.partial(jax.custom_jvp, nondiff_argnums=(5, 6))
def _exact_cov(A: Array, cov: Array, m: Array, B: Array, S: Array, tol: float | None, tile: int
               ) -> Array:
    var = jnp.diagonal(S) if S.ndim == 2 else _row_var(A, cov)  # S known: no pass over A
    s, f, g, active = _unit_terms(m, var, tol)
    k = B.shape[0]
    PR = mm(jnp.concatenate([B * f, B * g]), A)  # one pass over A
    P, R = PR[:k], PR[k:]
    PR = _sandwich(P, R, cov)
    v = _mehler_coefficients(m, s, active)  # outside the per-input loop: vmapped
    return _sandwich(P, P, cov) + PR + PR.T + _w_part(tile)(A, cov, m, s, active, B, S, v)


def _mehler_coefficients(m: Array, s: Array, active: Array) -> Array:
    """Each W unit's Mehler coefficients v_1..v_K (zero off W), K the most terms a tile
    may take (|rho| <= MEHLER_RHO at the dtype's eps): 31 in float32, 70 in float64."""
    eps = float(jnp.finfo(m.dtype).eps)
    limit = max(1, math.ceil(math.log(eps) / math.log(MEHLER_RHO)) - 1)
    c = jnp.minimum(jnp.abs(relu._standardize(m, s)[2]), 12.0)  # v = 0 past c = 12 anyway
    return jnp.where(active[:, None], mehler.coefficients(c, s, limit), 0.0)


@_exact_cov.defjvp
def _exact_cov_jvp(tol, tile, primals, tangents):
    return jax.jvp(_exact_cov_dense, primals[:4], tangents[:4])


def exact_output_cov(A: Array, cov: Array, m: Array, B: Array, *, tol: float | None = None,
                     tile: int | None = None, S: Array | None = None) -> Array:
    """Cov[B relu(z)] for z = A x + c1 ~ N(m, A Sigma A^T), exactly (to rounding), without
    forming S or C (module docstring). ``cov``: Sigma as a scalar, a (d,) vector or a
    (d, d) matrix; ``tol``: the q = Phi(-|h|) below which a unit leaves W (None: the
    dtype's eps; 0 keeps every unit with s > 0); ``tile``: units per tile (None:
    ``SMALL_TILE`` for at most ``SMALL_LAYER`` units, else ``EXACT_TILE``); ``S``: A Sigma A^T when it is already known (a batch that shares A
    and Sigma computes it once, :func:`batched_moments`), else each tile computes its
    block."""
    S = jnp.zeros((), A.dtype) if S is None else S
    if tile is None:  # a small layer's few active units fill 16-unit tiles with less waste
        tile = SMALL_TILE if A.shape[0] <= SMALL_LAYER else EXACT_TILE
    out = _exact_cov(A, cov, m, B, S, tol, tile)
    return (out + out.T) / 2


def moments(lin: Linearization, mu: Array, cov: Array, method: str = "exact", *,
            check: bool = True, grouped: bool = True, tiled: bool = True,
            terms: int = series.TERMS) -> Moments:
    """Mean and covariance of g(x) = B relu(A x + c1) + c2 for x ~ N(mu, cov), one input.

    Compiled once per method and shapes (traced op by op the exact method took 27 s on
    LeNet-5's 84 hidden units, compiled 9 s then milliseconds; issue 15).

    ``check`` (default True): one ValueError, before any computation, for variances that
    are negative or NaN/inf, a full ``cov`` that is not symmetric or not PSD (within
    :func:`analytic.checks.tolerance`), ``mu`` or ``cov`` shapes that do not fit ``lin``
    and an unknown ``method``; values are not checked when traced (inside jit / vmap).
    ``check=False`` skips all of it (e.g. in a hot loop of checked inputs).
    ``tiled`` (exact only, default True): :func:`exact_output_cov`; False: the full
    pairwise C (``grouped``: see :func:`hidden_moments`), to compare speeds.
    ``terms``: the series length of ``method="series"``."""
    _check_method(method)
    if check:
        checks.check_gaussian(lin, mu, cov)
        checks.check_int(terms, "terms")
    return _moments(lin, mu, cov, method, grouped, tiled, terms)


@functools.partial(jax.jit, static_argnames=("method", "grouped", "tiled", "terms"))
def _moments(lin: Linearization, mu: Array, cov: Array, method: str,
             grouped: bool = True, tiled: bool = True, terms: int = series.TERMS,
             S: Array | None = None) -> Moments:
    if method == "exact" and tiled:
        A = lin.A
        cov = _input_cov(cov, mu, A.shape[1], A.dtype)
        m = mm(A, jnp.asarray(mu).reshape(-1)) + lin.c1
        s = _sqrt(_row_var(A, cov) if S is None else jnp.diagonal(S))
        return Moments(mm(lin.B, relu.relu_mean(m, s)) + lin.c2,
                       exact_output_cov(A, cov, m, lin.B, S=S))
    m, S = preactivation(lin, mu, cov, full=method != "diagonal")
    return output_moments(m, S, lin.B, lin.c2, method, grouped=grouped, terms=terms)


def output_mean(lin: Linearization, mu: Array, cov: Array, *, check: bool = True) -> Array:
    """E[g] alone (the same for every method): needs only the diagonal of S.

    ``check``: the input checks of :func:`moments` (``check=False`` skips them)."""
    if check:
        checks.check_gaussian(lin, mu, cov)
    m, var = preactivation(lin, mu, cov, full=False)
    return mm(lin.B, relu.relu_mean(m, _sqrt(var))) + lin.c2


def batched_moments(lin: Linearization, mu: Array, cov: Array, method: str = "exact", *,
                    shared_lin: bool = False, shared_cov: bool = False,
                    batch_size: int | None = None, check: bool = True,
                    grouped: bool = True, tiled: bool = True,
                    terms: int = series.TERMS) -> Moments:
    """:func:`moments` over a leading batch axis of ``mu`` (and of ``lin`` unless
    ``shared_lin``, of ``cov`` unless ``shared_cov``). ``batch_size`` bounds memory:
    ``lax.map`` over groups of that many vmapped inputs (None: one vmap).

    ``check``: the input checks of :func:`moments` for every input, plus one batch size
    along the batched arguments (``check=False`` skips them). ``grouped``, ``tiled``,
    ``terms``: see :func:`moments` (with ``tiled=False``, the pairs of all inputs of a
    vmapped group are grouped together, so a larger ``batch_size`` lets small layers reach
    the grouped evaluation). With several devices (this process's) the inputs are split
    over them, each device computing its own (``batch_size`` per device); inside a
    caller's ``jit`` / ``vmap`` it runs where its inputs are
    (tests/analytic/test_moment_sharding.py)."""
    _check_method(method)
    if check:
        checks.check_gaussian(lin, mu, cov, lin_batched=not shared_lin, mu_batched=True,
                              cov_batched=not shared_cov)
        checks.check_int(terms, "terms")
        if batch_size is not None:
            checks.check_int(batch_size, "batch_size")

    S = None
    if shared_lin and shared_cov and method == "exact" and tiled:
        S = _shared_s(lin, mu, cov)

    xs = (None if shared_lin else lin, mu, None if shared_cov else cov)
    shared = (lin if shared_lin else None, cov if shared_cov else None, S)
    static = {"method": method, "grouped": grouped, "tiled": tiled, "terms": terms,
              "batch_size": batch_size, "shared_lin": shared_lin, "shared_cov": shared_cov}
    mesh = local_data_mesh()
    if row_multiple(mesh) == 1 or any(isinstance(a, jax.core.Tracer)
                                      for a in jax.tree.leaves((xs, shared))):
        return _rows(xs, shared, **static)
    # several devices: each computes the moments of its own rows (padded to a multiple of
    # their count by repeating the first row), the shared arguments replicated (issue 18;
    # inputs are independent, so the values are those of one device)
    n = jnp.shape(mu)[0]
    xs, _ = pad_rows(xs, row_multiple(mesh), mode="edge")
    out = _split_batched(split_rows(xs, mesh), replicate(shared, mesh), mesh=mesh, **static)
    return jax.tree.map(lambda a: a[:n], out)


def _rows(xs: tuple, shared: tuple, *, method: str, grouped: bool, tiled: bool, terms: int,
          batch_size: int | None, shared_lin: bool, shared_cov: bool) -> Moments:
    """The moments of the rows ``xs`` = (lin or None, mu, cov or None) with ``shared`` =
    (lin or None, cov or None, S or None): a vmap, or a lax.map of ``batch_size`` groups."""
    lin_s, cov_s, S = shared

    def one(args: tuple) -> Moments:
        lin_i, mu_i, cov_i = args
        return _moments(lin_s if shared_lin else lin_i, mu_i, cov_s if shared_cov else cov_i,
                        method, grouped, tiled, terms, S)

    if batch_size is None:
        return jax.vmap(one)(xs)
    return jax.lax.map(one, xs, batch_size=batch_size)


@functools.partial(jax.jit, static_argnames=("mesh", "method", "grouped", "tiled", "terms",
                                             "batch_size", "shared_lin", "shared_cov"))
def _split_batched(xs: tuple, shared: tuple, *, mesh, **static) -> Moments:
    """:func:`_rows` with the rows of ``xs`` split over ``mesh``'s ``data`` axis."""
    return jax.shard_map(functools.partial(_rows, **static), mesh=mesh,
                         in_specs=(P("data"), P()), out_specs=P("data"),
                         check_vma=False)(xs, shared)


def _shared_s(lin: Linearization, mu: Array, cov: Array) -> Array | None:
    """S = A Sigma A^T once for a whole batch that shares A and Sigma, when it fits in
    :data:`SHARED_S_BYTES` (None otherwise: each input's tiles compute their blocks).
    On 784 -> 1024 -> 10 this is one 1024 x 784 x 1024 product per batch where each input
    took ~21 tile products of 64 x 784 x 64 (issue 16)."""
    A = lin.A
    n = A.shape[0]
    if n * n * A.dtype.itemsize > SHARED_S_BYTES:
        return None
    return _sandwich(A, A, _input_cov(cov, jnp.asarray(mu)[0], A.shape[1], A.dtype))
