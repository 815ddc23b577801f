"""Output mean and covariance of g(x) = B relu(A x + c1) + c2 for x ~ N(mu, Sigma).

z = A x + c1 ~ N(m, S) with m = A mu + c1, S = A Sigma A^T (DESIGN.md, analytic/):

    E[g]   = B E[relu(z)] + c2                      (exact, every method)
    Cov[g] = B C B^T,  C = Cov[relu(z)]

with C from ``method`` (Bibi, Alfadly, Ghanem, CVPR 2018, and this project's extension):

* ``exact``: C_ij from the general-mean cross moment (Rosenbaum 1961 through the
  bivariate normal cdf; :func:`analytic.relu.relu_covariance`);
* ``zero_mean``: the paper's second-moment result, the cross moment of zero-mean pre-activations
  (exact when c1 = -A mu), used as an approximation:
  C_ij = s_i s_j (rho arccos(-rho) + sqrt(1 - rho^2) - 1) / (2 pi);
* ``diagonal``: independent hidden units, C = diag(Var[relu(z_i)]) (exact variances);
* ``batch_moments``: the authors' released form (``batch_moments`` of
  xmodar/network_moments): exact variances on the diagonal, the zero-mean form above off
  it. The strongest cheap alternative to ``exact``, but not always positive semidefinite
  (the two parts come from different distributions).

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
from typing import NamedTuple

import jax
import jax.numpy as jnp

from analytic import checks, relu
from analytic.linearize import Linearization

Array = jax.Array
METHODS = ("exact", "zero_mean", "diagonal", "batch_moments")


class Moments(NamedTuple):
    """Output mean (k,) and covariance (k, k)."""

    mean: Array
    cov: Array


def _check_method(method: str) -> None:
    """``method`` must be one of :data:`METHODS`."""
    checks.check_choice(method, METHODS)


def preactivation(lin: Linearization, mu: Array, cov: Array, full: bool = True
                  ) -> tuple[Array, Array]:
    """(m, S): m = A mu + c1 and S = A Sigma A^T (``full``) or only its diagonal."""
    A = lin.A
    d = A.shape[1]
    mu = jnp.asarray(mu)
    cov = jnp.asarray(cov, A.dtype)
    m = A @ mu.reshape(-1) + lin.c1
    if cov.ndim == 0 or cov.shape == mu.shape or cov.shape == (d,):
        v = jnp.broadcast_to(cov.reshape(-1) if cov.ndim else cov, (d,))
        S = (A * v) @ A.T if full else (A * A) @ v
    elif cov.shape == (d, d):
        S = A @ cov @ A.T if full else jnp.einsum("nd,de,ne->n", A, cov, A)
    else:
        raise ValueError(f"cov of shape {cov.shape} is neither a scalar, {mu.shape}, ({d},) "
                         f"nor ({d}, {d})")
    return m, S


def _sqrt(v: Array) -> Array:
    """sqrt with a zero (not infinite) gradient at 0."""
    ok = v > 0
    return jnp.where(ok, jnp.sqrt(jnp.where(ok, v, 1.0)), 0.0)


def hidden_moments(m: Array, S: Array, method: str = "exact", *, rank_one: bool = False,
                   grouped: bool = True) -> tuple[Array, Array]:
    """(E[relu(z)], Cov[relu(z)]) for z ~ N(m, S); S is (n, n), or (n,) for ``diagonal``.

    ``rank_one=True`` promises S = v v^T (every correlation is +-1, e.g. noise on one
    input pixel): the exact method then skips the bivariate cdf. ``grouped``: each pair
    runs only the formula its correlation needs (:func:`analytic.relu.relu_cross_moment`;
    ``False``: the elementwise form, every branch for every pair).
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
    else:
        off = relu.relu_covariance_zero_mean(si, sj, rho)
        diag = (relu.relu_variance(m, s) if method == "batch_moments"
                else relu.relu_covariance_zero_mean(s, s, jnp.ones_like(s)))
    C = jnp.zeros((n, n), off.dtype).at[iu, ju].set(off)
    return mean, C + C.T + jnp.diag(diag)


def output_moments(m: Array, S: Array, B: Array, c2: Array, method: str = "exact", *,
                   rank_one: bool = False, grouped: bool = True) -> Moments:
    """E[g] = B E[relu(z)] + c2 and Cov[g] = B C B^T, given z ~ N(m, S)
    (``rank_one``, ``grouped``: see :func:`hidden_moments`)."""
    mean_h, C = hidden_moments(m, S, method, rank_one=rank_one, grouped=grouped)
    cov = B @ C @ B.T
    return Moments(B @ mean_h + c2, (cov + cov.T) / 2)


def moments(lin: Linearization, mu: Array, cov: Array, method: str = "exact", *,
            check: bool = True, grouped: bool = True) -> Moments:
    """Mean and covariance of g(x) = B relu(A x + c1) + c2 for x ~ N(mu, cov), one input.

    Compiled once per method and shapes (traced op by op the exact method took 27 s on
    LeNet-5's 84 hidden units, compiled 9 s then milliseconds; issue 15).

    ``check`` (default True): one ValueError, before any computation, for variances that
    are negative or NaN/inf, a full ``cov`` that is not symmetric or not PSD (within
    :func:`analytic.checks.tolerance`), ``mu`` or ``cov`` shapes that do not fit ``lin``
    and an unknown ``method``; values are not checked when traced (inside jit / vmap).
    ``check=False`` skips all of it (e.g. in a hot loop of checked inputs).
    ``grouped``: see :func:`hidden_moments` (``False`` only to compare speeds)."""
    _check_method(method)
    if check:
        checks.check_gaussian(lin, mu, cov)
    return _moments(lin, mu, cov, method, grouped)


@functools.partial(jax.jit, static_argnames=("method", "grouped"))
def _moments(lin: Linearization, mu: Array, cov: Array, method: str,
             grouped: bool = True) -> Moments:
    m, S = preactivation(lin, mu, cov, full=method != "diagonal")
    return output_moments(m, S, lin.B, lin.c2, method, grouped=grouped)


def output_mean(lin: Linearization, mu: Array, cov: Array, *, check: bool = True) -> Array:
    """E[g] alone (the same for every method): needs only the diagonal of S.

    ``check``: the input checks of :func:`moments` (``check=False`` skips them)."""
    if check:
        checks.check_gaussian(lin, mu, cov)
    m, var = preactivation(lin, mu, cov, full=False)
    return lin.B @ relu.relu_mean(m, _sqrt(var)) + lin.c2


def batched_moments(lin: Linearization, mu: Array, cov: Array, method: str = "exact", *,
                    shared_lin: bool = False, shared_cov: bool = False,
                    batch_size: int | None = None, check: bool = True,
                    grouped: bool = True) -> Moments:
    """:func:`moments` over a leading batch axis of ``mu`` (and of ``lin`` unless
    ``shared_lin``, of ``cov`` unless ``shared_cov``). ``batch_size`` bounds memory:
    ``lax.map`` over groups of that many vmapped inputs (None: one vmap).

    ``check``: the input checks of :func:`moments` for every input, plus one batch size
    along the batched arguments (``check=False`` skips them). ``grouped``: see
    :func:`hidden_moments`; the pairs of all inputs of a vmapped group are grouped together
    (so a larger ``batch_size`` lets small layers reach the grouped evaluation)."""
    _check_method(method)
    if check:
        checks.check_gaussian(lin, mu, cov, lin_batched=not shared_lin, mu_batched=True,
                              cov_batched=not shared_cov)
        if batch_size is not None:
            checks.check_int(batch_size, "batch_size")

    def one(args: tuple) -> Moments:
        lin_i, mu_i, cov_i = args
        return _moments(lin if shared_lin else lin_i, mu_i, cov if shared_cov else cov_i, method,
                        grouped)

    xs = (None if shared_lin else lin, mu, None if shared_cov else cov)
    if batch_size is None:
        return jax.vmap(one)(xs)
    return jax.lax.map(one, xs, batch_size=batch_size)
