"""The bivariate standard normal cdf Phi2(h, k; rho) in JAX.

    Phi2(h, k; rho) = P(U1 < h, U2 < k),  (U1, U2) standard normal with correlation rho.

Algorithm: Drezner & Wesolowsky (1990) as refined by Genz (2004), "Numerical computation
of rectangular bivariate and trivariate normal and t probabilities", Statistics and
Computing 14:251-260 -- the BVND/BVNU routine of Genz's TVPACK (also what SciPy's
``multivariate_normal.cdf`` evaluates in two dimensions). Upper probability
L(h, k; r) = P(U1 > h, U2 > k) = Phi2(-h, -k; r):

* |r| < 0.925: Plackett's identity dL/dr = phi2(h, k; r) integrated over
  r' = sin(theta), theta in [0, asin r], with a 6-, 12- or 20-point Gauss-Legendre
  rule for |r| < 0.3, < 0.75, otherwise:
  L = Phi(-h) Phi(-k) + asin(r)/(4 pi) sum_i w_i exp((sn_i h k - (h^2+k^2)/2)/(1-sn_i^2)).
* |r| >= 0.925: the integral from the singular end r' = sign(r) with Drezner's
  asymptotic expansion subtracted and the 20-point rule for the remainder.

Absolute accuracy is about 1e-15 in float64 (Genz 2004, table 1); in float32 about 1e-7.
Vectorized with ``jnp.where`` instead of branches, finite for every input including
infinite h, k and |rho| = 1. Gradients come from a ``custom_jvp`` with the exact partial
derivatives (not from differentiating the quadrature):

    dPhi2/dh = phi(h) Phi((k - rho h)/r),  dPhi2/dk = phi(k) Phi((h - rho k)/r),
    dPhi2/drho = phi2(h, k; rho) = exp(-(h^2 - 2 rho h k + k^2)/(2 r^2)) / (2 pi r),
    r = sqrt(1 - rho^2), with the |rho| -> 1 limits (step functions, zero density).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtr

Array = jax.Array

# Gauss-Legendre half-rules on (-1, 1) (nodes x_i > 0, weights w_i; the rule uses
# +-x_i), as tabulated in Genz's BVNU.
_GL_X = {
    6: (0.9324695142031522, 0.6612093864662647, 0.2386191860831970),
    12: (0.9815606342467191, 0.9041172563704750, 0.7699026741943050,
         0.5873179542866171, 0.3678314989981802, 0.1252334085114692),
    20: (0.9931285991850949, 0.9639719272779138, 0.9122344282513259,
         0.8391169718222188, 0.7463319064601508, 0.6360536807265150,
         0.5108670019508271, 0.3737060887154196, 0.2277858511416451,
         0.07652652113349733),
}
_GL_W = {
    6: (0.1713244923791705, 0.3607615730481384, 0.4679139345726904),
    12: (0.04717533638651177, 0.1069393259953183, 0.1600783285433464,
         0.2031674267230659, 0.2334925365383547, 0.2491470458134029),
    20: (0.01761400713915212, 0.04060142980038694, 0.06267204833410906,
         0.08327674157670475, 0.1019301198172404, 0.1181945319615184,
         0.1316886384491766, 0.1420961093183821, 0.1491729864726037,
         0.1527533871307259),
}
_TWOPI = 2.0 * math.pi
# |h|, |k| beyond this change Phi2 by less than Phi(-_BIG) ~ 1e-349: clip (keeps inf out).
_BIG = 40.0


def _padded_rules() -> tuple[np.ndarray, np.ndarray]:
    """(3, 20) nodes in (0, 2) and weights of the 6/12/20-point rules on [0, 2] (the nodes
    1 -+ x_i); shorter rules are padded with node 1 and weight 0."""
    nodes, weights = np.ones((3, 20)), np.zeros((3, 20))
    for row, n in enumerate((6, 12, 20)):
        x, w = np.array(_GL_X[n]), np.array(_GL_W[n])
        nodes[row, :n] = np.concatenate([1 - x, 1 + x])
        weights[row, :n] = np.concatenate([w, w])
    return nodes, weights


_NODES, _WEIGHTS = _padded_rules()


def _low(h: Array, k: Array, r: Array, x: Array, w: Array) -> Array:
    """BVNU for |r| < 0.925: Gauss-Legendre over theta in [0, asin r] with nodes ``x`` and
    weights ``w`` on [0, 2] along a trailing axis (per element, or one rule for all)."""
    hk = h * k
    hs = (h * h + k * k) / 2
    asr = jnp.arcsin(r) / 2
    sn = jnp.sin(asr[..., None] * x)
    acc = jnp.sum(w * jnp.exp((sn * hk[..., None] - hs[..., None]) / (1 - sn * sn)), axis=-1)
    return acc * asr / _TWOPI + ndtr(-h) * ndtr(-k)


def _high(h: Array, k: Array, r: Array) -> Array:
    """BVNU for |r| >= 0.925: the expansion about |r| = 1 plus a 20-point rule."""
    dtype = h.dtype
    absr = jnp.abs(r)
    hk = h * k
    nodes = jnp.asarray(_NODES[2], dtype)
    weights = jnp.asarray(_WEIGHTS[2], dtype)
    neg = r < 0
    k2 = jnp.where(neg, -k, k)
    hk2 = jnp.where(neg, -hk, hk)
    inner = absr < 1
    as_ = jnp.where(inner, (1 - absr) * (1 + absr), 1.0)
    a = jnp.sqrt(as_)
    bs = (h - k2) ** 2
    c = (4 - hk2) / 8
    d = (12 - hk2) / 80
    asr1 = -(bs / as_ + hk2) / 2
    term = a * jnp.exp(jnp.maximum(asr1, -100.0)) * (
        1 - c * (bs - as_) * (1 - d * bs) / 3 + c * d * as_ * as_)
    bvn = jnp.where(asr1 > -100, term, 0.0)
    b = jnp.sqrt(bs)
    ok_hk = hk2 > -100
    sp = math.sqrt(_TWOPI) * ndtr(-b / a)
    tail = jnp.exp(-jnp.where(ok_hk, hk2, 0.0) / 2) * sp * b * (1 - c * bs * (1 - d * bs) / 3)
    bvn = bvn - jnp.where(ok_hk, tail, 0.0)
    half_a = (a / 2)[..., None]
    bs_, hk_, c_, d_ = bs[..., None], hk2[..., None], c[..., None], d[..., None]
    xs = (half_a * nodes) ** 2
    asr_i = -(bs_ / xs + hk_) / 2
    sp_i = 1 + c_ * xs * (1 + 5 * d_ * xs)
    rs = jnp.sqrt(1 - xs)
    ep = jnp.exp(-(hk_ / 2) * xs / (1 + rs) ** 2) / rs
    terms = half_a * weights * jnp.exp(jnp.maximum(asr_i, -100.0)) * (ep - sp_i)
    bvn = bvn + jnp.sum(jnp.where(asr_i > -100, terms, 0.0), axis=-1)
    bvn = jnp.where(inner, -bvn / _TWOPI, 0.0)
    pos_part = bvn + ndtr(-jnp.maximum(h, k2))
    ell = jnp.where(h < 0, ndtr(k2) - ndtr(h), ndtr(-h) - ndtr(-k2))
    neg_part = jnp.where(h >= k2, -bvn, ell - bvn)
    return jnp.where(neg, neg_part, pos_part)


def _bvnu(h: Array, k: Array, r: Array) -> Array:
    """Genz's BVNU: P(U1 > h, U2 > k) for correlation r (all arrays of one shape).

    Every element evaluates both branches (a select): the quadrature runs over a trailing
    axis of 20 nodes, the shorter rules padded (XLA fuses it into the sum). For one class
    of |r| at a time, :func:`bvnu_in_class` evaluates only the rule that class needs.
    """
    dtype = h.dtype
    absr = jnp.abs(r)
    low = absr < 0.925
    row = jnp.where(absr < 0.3, 0, jnp.where(absr < 0.75, 1, 2))
    x = jnp.asarray(_NODES, dtype)[row]
    w = jnp.asarray(_WEIGHTS, dtype)[row]  # (..., 20)
    out = jnp.where(low, _low(h, k, jnp.where(low, r, 0.0), x, w), _high(h, k, r))
    return jnp.clip(out, 0.0, 1.0).astype(dtype)


# The four rules of BVNU by |r|: [0, 0.3) 6 nodes, [0.3, 0.75) 12, [0.75, 0.925) 20, and
# [0.925, 1] the expansion about |r| = 1 (Genz 2004).
BVN_CLASSES = 4


def bvn_class(rho: Array) -> Array:
    """Which of Genz's four rules serves correlation ``rho`` (0, 1, 2: the 6-, 12-, 20-point
    Gauss-Legendre rules for |rho| < 0.3, < 0.75, < 0.925; 3: |rho| >= 0.925)."""
    a = jnp.abs(rho)
    return jnp.where(a < 0.3, 0, jnp.where(a < 0.75, 1, jnp.where(a < 0.925, 2, 3)))


def bvn_cdf_in_class(h: Array, k: Array, rho: Array, cls: int) -> Array:
    """Phi2(h, k; rho) by the one rule ``cls`` (a Python int, :func:`bvn_class`) for every
    element: the value of :func:`bvn_cdf` where ``bvn_class(rho) == cls``, at a fraction of
    its cost (6 or 12 nodes instead of 2 x 20). Arguments of one shape and dtype; no
    custom derivative (differentiate :func:`bvn_cdf`)."""
    hc = -jnp.clip(h, -_BIG, _BIG)
    kc = -jnp.clip(k, -_BIG, _BIG)
    r = jnp.clip(rho, -1.0, 1.0)
    if cls < 3:
        n = (6, 12, 20)[cls]
        out = _low(hc, kc, r, jnp.asarray(_NODES[cls, :n], h.dtype),
                   jnp.asarray(_WEIGHTS[cls, :n], h.dtype))
    else:
        out = _high(hc, kc, r)
    return jnp.clip(out, 0.0, 1.0).astype(h.dtype)


@jax.custom_jvp
def _phi2(h: Array, k: Array, rho: Array) -> Array:
    hc = jnp.clip(h, -_BIG, _BIG)
    kc = jnp.clip(k, -_BIG, _BIG)
    return _bvnu(-hc, -kc, jnp.clip(rho, -1.0, 1.0))


def _safe_ratio(num: Array, den: Array, ok: Array) -> Array:
    """num/den where ok, else +-inf by the sign of num (0 stays 0): Phi of it is a step."""
    step = jnp.where(num > 0, jnp.inf, jnp.where(num < 0, -jnp.inf, 0.0))
    return jnp.where(ok, num / jnp.where(ok, den, 1.0), step)


@_phi2.defjvp
def _phi2_jvp(primals, tangents):
    h, k, rho = primals
    th, tk, trho = tangents
    out = _phi2(h, k, rho)
    hc = jnp.clip(h, -_BIG, _BIG)
    kc = jnp.clip(k, -_BIG, _BIG)
    rc = jnp.clip(rho, -1.0, 1.0)
    r2 = (1 - rc) * (1 + rc)
    ok = r2 > jnp.finfo(r2.dtype).eps ** 2
    r = jnp.sqrt(jnp.where(ok, r2, 1.0))
    dh = _pdf(hc) * ndtr(_safe_ratio(kc - rc * hc, r, ok))
    dk = _pdf(kc) * ndtr(_safe_ratio(hc - rc * kc, r, ok))
    quad = (hc - rc * kc) ** 2 / jnp.where(ok, r2, 1.0) + kc * kc
    drho = jnp.where(ok, jnp.exp(-quad / 2) / (_TWOPI * r), 0.0)
    # Outside the clip range the value is constant in that argument.
    dh = jnp.where(jnp.abs(h) < _BIG, dh, 0.0)
    dk = jnp.where(jnp.abs(k) < _BIG, dk, 0.0)
    return out, dh * th + dk * tk + drho * trho


def _pdf(x: Array) -> Array:
    return jnp.exp(-x * x / 2) / math.sqrt(_TWOPI)


def bvn_cdf(h: Array, k: Array, rho: Array) -> Array:
    """Phi2(h, k; rho) = P(U1 < h, U2 < k) for standard normals of correlation rho.

    Broadcasts its arguments; float64 when x64 is enabled, else float32. ``rho`` is
    clipped to [-1, 1]; infinite h, k are allowed.
    """
    h, k, rho = jnp.broadcast_arrays(*(jnp.asarray(v, dtype=jnp.result_type(float, h, k, rho))
                                       for v in (h, k, rho)))
    return _phi2(h, k, rho)


def bvn_upper(h: Array, k: Array, rho: Array) -> Array:
    """L(h, k; rho) = P(U1 > h, U2 > k) = Phi2(-h, -k; rho)."""
    return bvn_cdf(-jnp.asarray(h), -jnp.asarray(k), rho)
