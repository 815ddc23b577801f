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
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtr

from analytic.bvn import bvn_cdf

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


def _cross_general(mi, mj, si, sj, hi, hj, rho):
    """Rosenbaum's formula; rho must satisfy |rho| < 1 (the caller masks)."""
    a, b = -hi, -hj
    r2 = (1 - rho) * (1 + rho)
    r = jnp.sqrt(r2)
    ell = bvn_cdf(hi, hj, rho)
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


def relu_cross_moment(mi: Array, mj: Array, si: Array, sj: Array, rho: Array, *,
                      perfect: bool = False) -> Array:
    """E[relu(z_i) relu(z_j)] exactly, for z_i ~ N(mi, si^2), z_j ~ N(mj, sj^2) of
    correlation rho (module docstring). Broadcasts; safe at s -> 0 and |rho| -> 1.

    ``perfect=True`` promises |rho| = 1 (e.g. rank-one noise): only the one-dimensional
    formula is built, with sign(rho); no bivariate cdf (much cheaper to compile and run).
    """
    mi, mj, si, sj, rho = _float(mi, mj, si, sj, rho)
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
    out = jnp.where(
        oki & okj, both,
        jnp.where(oki, jax.nn.relu(mj) * relu_mean(mi, si),
                  jnp.where(okj, jax.nn.relu(mi) * relu_mean(mj, sj),
                            jax.nn.relu(mi) * jax.nn.relu(mj))))
    return out


def relu_covariance(mi: Array, mj: Array, si: Array, sj: Array, rho: Array, *,
                    perfect: bool = False) -> Array:
    """Cov[relu(z_i), relu(z_j)] exactly, in the cancellation-free form of the module
    docstring. Equals relu_cross_moment - relu_mean * relu_mean in exact arithmetic.
    ``perfect``: as in :func:`relu_cross_moment` (|rho| = 1 promised)."""
    mi, mj, si, sj, rho = _float(mi, mj, si, sj, rho)
    rho = jnp.clip(rho, -1.0, 1.0)
    if perfect:
        rho = jnp.where(rho >= 0, 1.0, -1.0)
    fi, fj = mi > 0, mj > 0
    ei, ej = jnp.where(fi, -1.0, 1.0), jnp.where(fj, -1.0, 1.0)
    ai, aj = -jnp.abs(mi), -jnp.abs(mj)
    _, _, hi = _standardize(ai, si)
    _, _, hj = _standardize(aj, sj)
    cww = (relu_cross_moment(ai, aj, si, sj, ei * ej * rho, perfect=perfect)
           - relu_mean(ai, si) * relu_mean(aj, sj))
    lin = (fi & fj) + jnp.where(fi, ej * ndtr(hj), 0.0) + jnp.where(fj, ei * ndtr(hi), 0.0)
    return rho * si * sj * lin + cww
