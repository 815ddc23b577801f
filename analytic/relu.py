"""Moments of ReLUs of Gaussians: z ~ N(m, s^2), (z_i, z_j) jointly Gaussian.

Notation (DESIGN.md, analytic/): h = m/s, phi/Phi the standard normal pdf/cdf,
Q = 1 - Phi, rho the correlation of z_i and z_j, r = sqrt(1 - rho^2).

* E[relu(z)] = m Phi(h) + s phi(h);  E[relu(z)^2] = (m^2 + s^2) Phi(h) + m s phi(h)
  (Bibi, Alfadly, Ghanem, CVPR 2018, their output mean; the textbook truncated normal).
* Zero-mean case (m_i = m_j = 0; Bibi et al. 2018, their second moment; the arc-cosine kernel of
  Cho & Saul 2009): E[relu(z_i) relu(z_j)] = s_i s_j (rho arccos(-rho) + r) / (2 pi).
* General means (exact; Rosenbaum 1961, "Moments of a truncated bivariate normal
  distribution", JRSS B 23:405-408), with U standard bivariate normal, a = -h_i,
  b = -h_j and L = Phi2(h_i, h_j; rho) = P(U_1 > a, U_2 > b)::

      E[U_1; U_1>a, U_2>b] = phi(a) Q((b - rho a)/r) + rho phi(b) Q((a - rho b)/r)
      E[U_1 U_2; ...]      = rho L + rho a phi(a) Q((b - rho a)/r) + rho b phi(b) Q((a - rho b)/r)
                             + r/(2 pi) exp(-(a^2 - 2 rho a b + b^2)/(2 r^2))
      E[relu(z_i) relu(z_j)] = m_i m_j L + m_i s_j E[U_2;.] + m_j s_i E[U_1;.] + s_i s_j E[U_1 U_2;.]

Edges, without NaN in values or gradients (``jnp.where`` on both the value and the
argument, the "double where"): s -> 0 (z is the constant m); |rho| -> 1 (z_j is an affine
function of z_i: a one-dimensional truncated-normal integral, below).

Covariances are computed without the cancellation of ``E[relu relu] - E[relu] E[relu]``
when |m| >> s (which loses every digit of float32 for the small noise levels of the
experiments): with relu(z) = z + relu(-z) for units of positive mean, and Stein's lemma
Cov(z_i, relu(e z_j)) = e S_ij P(e z_j > 0),

    Cov(relu z_i, relu z_j) = S_ij (f_i f_j + f_i e_j Phi(-|h_j|) + f_j e_i Phi(-|h_i|))
                              + Cov(relu(e_i z_i), relu(e_j z_j)),

where f = [m > 0], e = 1 - 2 f; the last term involves only ReLUs of non-positive mean.

Cost (issue 16): written as one expression, every pair would evaluate both branches of
Genz's bivariate cdf (2 x 20 nodes) and both the general and the |rho| = 1 form. The
default ``grouped`` evaluation sorts the pairs by class (:func:`pair_class`: the cdf rule
their |rho| needs, 6/12/20 nodes or the |rho| -> 1 expansion, or no cdf at all) with a
counting sort, and runs tiles of ``PAIR_TILE`` pairs, each with its class's formula only
(``lax.switch``; the few tiles at class boundaries run the one expression). Same values
to rounding; derivatives come from the one expression (``custom_jvp``); under ``vmap``
a ``custom_vmap`` rule keeps the grouping (``vmap`` would turn the switch into a select
of every branch). Below ``MIN_GROUPED`` pairs the one expression is used (the grouping
compiles six variants of the formula). On 784 -> 1024 -> 10 (523,776 pairs per input)
the exact covariance took half the time (benchmarks/analytic_bench.py).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.custom_batching import custom_vmap
from jax.scipy.special import ndtr

from analytic.bvn import BVN_CLASSES, bvn_cdf, bvn_cdf_in_class, bvn_class

Array = jax.Array
_SQRT2PI = math.sqrt(2 * math.pi)


def _float(*xs) -> list[Array]:
    dtype = jnp.result_type(float, *xs)
    return [jnp.asarray(x, dtype) for x in xs]


def _pdf(x: Array) -> Array:
    return jnp.exp(-x * x / 2) / _SQRT2PI


def _s_min(dtype) -> float:
    """Below this standard deviation z is treated as the constant m (its 1/s^2 gradient
    terms would overflow); finfo.tiny^(1/4) is ~1e-10 in float32, ~1e-77 in float64."""
    return float(jnp.finfo(dtype).tiny) ** 0.25


def _rho_edge(dtype) -> float:
    """|rho| >= 1 - this uses the |rho| = 1 formula. E[relu relu] is s_i s_j-Lipschitz in
    rho (Price's theorem: d/drho = s_i s_j P(z_i > 0, z_j > 0)), so the switch costs at
    most this times s_i s_j: 64 eps (1.4e-14 in float64, 7.6e-6 in float32)."""
    return 64 * float(jnp.finfo(dtype).eps)


def _standardize(m: Array, s: Array) -> tuple[Array, Array, Array]:
    """(ok, s_safe, h): ok where s is usable; s_safe = s there and 1 elsewhere; h = m/s_safe."""
    ok = s > _s_min(s.dtype)
    s_safe = jnp.where(ok, s, 1.0)
    return ok, s_safe, m / s_safe


def relu_mean(m: Array, s: Array) -> Array:
    """E[relu(z)], z ~ N(m, s^2): m Phi(m/s) + s phi(m/s); relu(m) at s = 0."""
    m, s = _float(m, s)
    ok, ss, h = _standardize(m, s)
    return jnp.where(ok, m * ndtr(h) + ss * _pdf(h), jax.nn.relu(m))


def relu_second_moment(m: Array, s: Array) -> Array:
    """E[relu(z)^2] = (m^2 + s^2) Phi(m/s) + m s phi(m/s); relu(m)^2 at s = 0."""
    m, s = _float(m, s)
    ok, ss, h = _standardize(m, s)
    return jnp.where(ok, (m * m + ss * ss) * ndtr(h) + m * ss * _pdf(h), jax.nn.relu(m) ** 2)


def relu_variance(m: Array, s: Array) -> Array:
    """Var[relu(z)] without cancellation for |m| >> s: with e = -1 if m > 0 else 1,
    w = relu(e z), whose mean -|m| is non-positive,
    Var = [m > 0] s^2 (1 - 2 Phi(-|h|)) + Var[w] (module docstring, i = j)."""
    m, s = _float(m, s)
    ok, ss, h = _standardize(m, s)
    a = -jnp.abs(m)
    ha = -jnp.abs(h)
    mean_w = a * ndtr(ha) + ss * _pdf(ha)
    second_w = (a * a + ss * ss) * ndtr(ha) + a * ss * _pdf(ha)
    var_w = jnp.maximum(second_w - mean_w * mean_w, 0.0)
    lin = jnp.where(m > 0, ss * ss * (1 - 2 * ndtr(ha)), 0.0)
    return jnp.where(ok, lin + var_w, 0.0)


@jax.custom_jvp
def _arccos_kernel(rho: Array) -> Array:
    """kappa(rho) = rho arccos(-rho) + sqrt(1 - rho^2), with d kappa/d rho = arccos(-rho)
    (finite at |rho| = 1, where autodiff of the two terms would give inf - inf)."""
    return rho * jnp.arccos(-rho) + jnp.sqrt(jnp.maximum((1 - rho) * (1 + rho), 0.0))


@_arccos_kernel.defjvp
def _arccos_kernel_jvp(primals, tangents):
    (rho,), (t,) = primals, tangents
    return _arccos_kernel(rho), jnp.arccos(-rho) * t


def relu_cross_moment_zero_mean(si: Array, sj: Array, rho: Array) -> Array:
    """E[relu(z_i) relu(z_j)] for zero means: s_i s_j (rho arccos(-rho) + r) / (2 pi)
    (Bibi et al. 2018, the zero-mean second moment)."""
    si, sj, rho = _float(si, sj, rho)
    return si * sj * _arccos_kernel(jnp.clip(rho, -1.0, 1.0)) / (2 * math.pi)


def relu_covariance_zero_mean(si: Array, sj: Array, rho: Array) -> Array:
    """Cov[relu(z_i), relu(z_j)] for zero means: s_i s_j (kappa(rho) - 1) / (2 pi),
    since E[relu(z)] = s / sqrt(2 pi); s^2 (pi - 1) / (2 pi) on the diagonal."""
    si, sj, rho = _float(si, sj, rho)
    return si * sj * (_arccos_kernel(jnp.clip(rho, -1.0, 1.0)) - 1) / (2 * math.pi)


def _cross_general(mi, mj, si, sj, hi, hj, rho, ell=None):
    """Rosenbaum's formula; rho must satisfy |rho| < 1 (the caller masks). ``ell``:
    Phi2(hi, hj; rho) if already computed."""
    a, b = -hi, -hj
    r2 = (1 - rho) * (1 + rho)
    r = jnp.sqrt(r2)
    ell = bvn_cdf(hi, hj, rho) if ell is None else ell
    pa, pb = _pdf(a), _pdf(b)
    qa = ndtr(-(b - rho * a) / r)
    qb = ndtr(-(a - rho * b) / r)
    e1 = pa * qa + rho * pb * qb
    e2 = pb * qb + rho * pa * qa
    quad = (a - rho * b) ** 2 / r2 + b * b  # (a^2 - 2 rho a b + b^2) / (1 - rho^2)
    e12 = rho * ell + rho * a * pa * qa + rho * b * pb * qb + r * jnp.exp(-quad / 2) / (2 * math.pi)
    return mi * mj * ell + mi * sj * e2 + mj * si * e1 + si * sj * e12


def _cross_degenerate(si, sj, hi, hj, rho):
    """|rho| = 1: z_i = s_i (U - a), z_j = s_j (+-U - b), one standard normal U.

    rho = +1: s_i s_j E[(U-a)(U-b); U > c], c = max(a, b),
              E[U^2; U>c] = c phi(c) + Q(c), E[U; U>c] = phi(c).
    rho = -1: -s_i s_j E[(U-a)(U+b); a < U < e], e = -b (zero when a >= e),
              E[U^2; a<U<e] = a phi(a) - e phi(e) + P, E[U; a<U<e] = phi(a) - phi(e).
    """
    a, b = -hi, -hj
    c = jnp.maximum(a, b)
    qc = ndtr(-c)
    pc = _pdf(c)
    plus = (c * pc + qc) - (a + b) * pc + a * b * qc
    e = -b
    prob = jnp.where(a > 0, ndtr(-a) - ndtr(-e), ndtr(e) - ndtr(a))
    pa, pe = _pdf(a), _pdf(e)
    minus = -((a * pa - e * pe + prob) + (b - a) * (pa - pe) - a * b * prob)
    minus = jnp.where(a < e, minus, 0.0)
    return si * sj * jnp.where(rho > 0, plus, minus)


def _cross_elementwise(mi: Array, mj: Array, si: Array, sj: Array, rho: Array,
                       perfect: bool) -> Array:
    """:func:`relu_cross_moment` by one expression for every element (both bivariate cdf
    branches, the general and the |rho| = 1 form, all selected by ``jnp.where``)."""
    oki, ssi, hi = _standardize(mi, si)
    okj, ssj, hj = _standardize(mj, sj)
    rho = jnp.clip(rho, -1.0, 1.0)
    if perfect:
        both = _cross_degenerate(ssi, ssj, hi, hj, jnp.where(rho >= 0, 1.0, -1.0))
    else:
        edge = jnp.abs(rho) >= 1 - _rho_edge(rho.dtype)
        general = oki & okj & ~edge
        rho_g = jnp.where(general, rho, 0.0)
        gen = _cross_general(mi, mj, ssi, ssj, hi, hj, rho_g)
        deg = _cross_degenerate(ssi, ssj, hi, hj, rho)
        both = jnp.where(edge, deg, gen)
    return _constant_cases(oki, okj, both, mi, mj, si, sj)


def _constant_cases(oki, okj, both, mi, mj, si, sj) -> Array:
    """``both`` where both s are usable; the products with a constant z elsewhere."""
    return jnp.where(
        oki & okj, both,
        jnp.where(oki, jax.nn.relu(mj) * relu_mean(mi, si),
                  jnp.where(okj, jax.nn.relu(mi) * relu_mean(mj, sj),
                            jax.nn.relu(mi) * jax.nn.relu(mj))))


# --- grouped evaluation: each pair runs only the formula its class needs ------------------
# Classes: 0-3 the general formula with Genz's rule 0-3 (analytic.bvn.bvn_class); 4 the
# pairs that need no bivariate cdf (|rho| at the edge, or a constant z); 5 (a tile only)
# mixed classes, evaluated elementwise.
_EDGE_CLASS = BVN_CLASSES
PAIR_TILE = 8192  # pairs per tile: bounds the (tile, nodes) temporaries of wide layers
# Fewer pairs than this (after vmap has joined its batch) take the elementwise form: the
# grouping compiles six variants of the formula (seconds), worth it only for wide layers
# (725 units: 2^18 pairs) or many inputs (LeNet-5's 84 units over 76 images).
MIN_GROUPED = 2**18


def pair_class(mi: Array, mj: Array, si: Array, sj: Array, rho: Array) -> Array:
    """The class of each pair (0-3: the bivariate cdf rule, :func:`analytic.bvn.bvn_class`;
    4: no bivariate cdf needed)."""
    oki = si > _s_min(si.dtype)
    okj = sj > _s_min(sj.dtype)
    rho = jnp.clip(rho, -1.0, 1.0)
    edge = jnp.abs(rho) >= 1 - _rho_edge(rho.dtype)
    return jnp.where(oki & okj & ~edge, bvn_class(rho), _EDGE_CLASS)


def _cross_in_class(cls: int, mi, mj, si, sj, rho) -> Array:
    """E[relu relu] for pairs all of class ``cls`` (4: the |rho| = 1 form)."""
    if cls == 5:
        return _cross_elementwise(mi, mj, si, sj, rho, False)
    oki, ssi, hi = _standardize(mi, si)
    okj, ssj, hj = _standardize(mj, sj)
    rho = jnp.clip(rho, -1.0, 1.0)
    if cls == _EDGE_CLASS:
        both = _cross_degenerate(ssi, ssj, hi, hj, rho)
    else:
        ell = bvn_cdf_in_class(hi, hj, rho, cls)
        both = _cross_general(mi, mj, ssi, ssj, hi, hj, rho, ell)
    return _constant_cases(oki, okj, both, mi, mj, si, sj)


def _counting_sort_positions(cls: Array, num: int) -> Array:
    """Position of each element in the stable sort of ``cls`` (ints in [0, num)): a
    counting sort by cumulative sums, O(n) (an argsort of 5e5 pairs took 5x as long as
    the six-node quadrature itself on the CPU); the last class's ranks by subtraction."""
    index = jnp.arange(cls.shape[0], dtype=jnp.int32)
    pos = jnp.zeros_like(index)
    offset = jnp.zeros((), jnp.int32)
    before = jnp.zeros_like(index)  # elements of earlier classes up to and including i
    for k in range(num - 1):
        hit = (cls == k).astype(jnp.int32)
        rank = jnp.cumsum(hit)
        pos = jnp.where(hit > 0, offset + rank - 1, pos)
        offset = offset + rank[-1]
        before = before + rank
    return jnp.where(cls == num - 1, offset + index - before, pos)


def _cross_grouped_flat(mi, mj, si, sj, rho, tile: int = PAIR_TILE) -> Array:
    """Grouped E[relu relu] on 1-D arrays: pairs sorted by class, cut into tiles of
    ``tile``; a tile of one class runs that class's formula only (``lax.switch``), a tile
    at a class boundary (at most four) runs the elementwise form. Below ``MIN_GROUPED``
    pairs, the elementwise form."""
    n = mi.shape[0]
    if n < MIN_GROUPED:
        return _cross_elementwise(mi, mj, si, sj, rho, False)
    tile = min(tile, n)
    nt = -(-n // tile)
    cls = pair_class(mi, mj, si, sj, rho)
    pos = _counting_sort_positions(cls, _EDGE_CLASS + 1)

    def sort(a, fill):
        out = jnp.full((nt * tile,), fill, a.dtype).at[pos].set(a, unique_indices=True)
        return out.reshape(nt, tile)

    # padding: s = 0 (a constant z: class 4, the cheapest), last after the sort
    args = tuple(sort(a, 0) for a in (mi, mj, si, sj, rho))
    tcls = sort(cls, _EDGE_CLASS)
    branches = [lambda a, c=c: _cross_in_class(c, *a) for c in range(_EDGE_CLASS + 2)]

    def one(t):
        a, c = t
        lo, hi = c.min(), c.max()
        return jax.lax.switch(jnp.where(lo == hi, lo, _EDGE_CLASS + 1), branches, a)

    out = jax.lax.map(one, (args, tcls)).reshape(-1)
    return out[pos]


@custom_vmap
def _cross_grouped(mi, mj, si, sj, rho):
    return _cross_grouped_flat(mi, mj, si, sj, rho)


@_cross_grouped.def_vmap
def _cross_grouped_vmap(axis_size, in_batched, *args):
    """Under ``vmap`` (where ``lax.switch`` would become a select of every branch): the
    batch joins the pairs while they are few (below ``MIN_GROUPED`` per item); items that
    are large enough on their own run one after another (``lax.map``: memory bounded,
    and faster on the CPU than one sort over millions of pairs)."""
    args = [a if b else jnp.broadcast_to(a, (axis_size, *a.shape))
            for a, b in zip(args, in_batched, strict=True)]
    shape = args[0].shape
    if math.prod(shape[1:]) >= MIN_GROUPED:
        return jax.lax.map(lambda a: _cross_grouped(*a), tuple(args)), True
    return _cross_grouped(*(a.reshape(-1) for a in args)).reshape(shape), True


@jax.custom_jvp
def _cross_fast(mi, mj, si, sj, rho):
    return _cross_grouped(mi, mj, si, sj, rho)


@_cross_fast.defjvp
def _cross_fast_jvp(primals, tangents):
    # derivatives (and the primal, when differentiating) from the elementwise form
    return jax.jvp(lambda *a: _cross_elementwise(*a, False), primals, tangents)


def relu_cross_moment(mi: Array, mj: Array, si: Array, sj: Array, rho: Array, *,
                      perfect: bool = False, grouped: bool = True) -> Array:
    """E[relu(z_i) relu(z_j)] exactly, for z_i ~ N(mi, si^2), z_j ~ N(mj, sj^2) of
    correlation rho (module docstring). Broadcasts; safe at s -> 0 and |rho| -> 1.

    ``perfect=True`` promises |rho| = 1 (e.g. rank-one noise): only the one-dimensional
    formula is built, with sign(rho); no bivariate cdf (much cheaper to compile and run).

    ``grouped`` (default): each pair evaluates only the formula its class needs -- one of
    Genz's four bivariate cdf rules with the general form, or the |rho| = 1 form without
    a cdf -- by sorting the pairs by class and running tiles of ``PAIR_TILE`` pairs of one
    class each (``lax.switch``; under ``vmap`` the batch joins the pairs). Same values as
    ``grouped=False`` (one expression, every branch selected by ``jnp.where``) to rounding;
    derivatives come from the elementwise form.
    """
    mi, mj, si, sj, rho = _float(mi, mj, si, sj, rho)
    shape = jnp.broadcast_shapes(mi.shape, mj.shape, si.shape, sj.shape, rho.shape)
    traced = any(isinstance(a, jax.core.Tracer) for a in (mi, mj, si, sj, rho))
    if perfect or not grouped or (not traced and math.prod(shape) < MIN_GROUPED):
        # (small eager calls: no wrapper to trace; under vmap a small item may still
        # join a large batch, so traced calls keep the grouped wrapper)
        return _cross_elementwise(mi, mj, si, sj, rho, perfect)
    flat = [jnp.broadcast_to(a, shape).reshape(-1) for a in (mi, mj, si, sj, rho)]
    return _cross_fast(*flat).reshape(shape)


def relu_covariance(mi: Array, mj: Array, si: Array, sj: Array, rho: Array, *,
                    perfect: bool = False, grouped: bool = True) -> Array:
    """Cov[relu(z_i), relu(z_j)] exactly, in the cancellation-free form of the module
    docstring. Equals relu_cross_moment - relu_mean * relu_mean in exact arithmetic.
    ``perfect``, ``grouped``: as in :func:`relu_cross_moment`."""
    mi, mj, si, sj, rho = _float(mi, mj, si, sj, rho)
    rho = jnp.clip(rho, -1.0, 1.0)
    if perfect:
        rho = jnp.where(rho >= 0, 1.0, -1.0)
    fi, fj = mi > 0, mj > 0
    ei, ej = jnp.where(fi, -1.0, 1.0), jnp.where(fj, -1.0, 1.0)
    ai, aj = -jnp.abs(mi), -jnp.abs(mj)
    _, _, hi = _standardize(ai, si)
    _, _, hj = _standardize(aj, sj)
    cww = (relu_cross_moment(ai, aj, si, sj, ei * ej * rho, perfect=perfect, grouped=grouped)
           - relu_mean(ai, si) * relu_mean(aj, sj))
    lin = (fi & fj) + jnp.where(fi, ej * ndtr(hj), 0.0) + jnp.where(fj, ei * ndtr(hi), 0.0)
    return rho * si * sj * lin + cww
