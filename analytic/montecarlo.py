"""Monte Carlo mean and covariance of a network's output for x ~ N(mu, Sigma).

The reference the closed forms are judged against: samples go through the *real*
network, ``chunk`` at a time, inside one ``lax.scan`` that keeps streaming sums only, so
memory is O(chunk) whatever the number of samples (10^6 samples of a LeNet fit easily).

Per chunk c of size b: mean_c and M_c = sum (y - mean_c)(y - mean_c)^T; chunks are merged
with the pairwise update of Chan, Golub & LeVeque (1979, "Updating formulae and a
pairwise algorithm for computing sample variances"):

    n = n_a + b, delta = mean_c - mean_a, mean = mean_a + delta b / n,
    M = M_a + M_c + delta delta^T n_a b / n,   Cov = M / (n - 1).

Standard errors are batch means: the standard deviation of the per-chunk estimates over
sqrt(number of chunks) (for the mean, sqrt(diag Cov / n) is also exact).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from analytic import checks
from analytic.linearize import mm

Array = jax.Array


class MCMoments(NamedTuple):
    """Sample mean (k,), covariance (k, k) and their standard errors."""

    mean: Array
    cov: Array
    mean_se: Array
    cov_se: Array


def noise_sqrt(cov: Array, mu: Array) -> tuple[str, Array]:
    """How to draw N(0, cov) on the flattened input: ("diag", std of shape (d,)) or
    ("full", L with L L^T = cov, from an eigendecomposition, so singular cov is fine)."""
    d = mu.size
    cov = jnp.asarray(cov, mu.dtype)
    if checks.cov_form(cov.shape, mu.shape, d) == "full":
        w, U = jnp.linalg.eigh((cov + cov.T) / 2)
        return "full", U * jnp.sqrt(jnp.maximum(w, 0.0))
    v = jnp.broadcast_to(cov.reshape(-1) if cov.ndim else cov, (d,))
    return "diag", jnp.sqrt(jnp.maximum(v, 0.0))


def sample_inputs(key: Array, mu: Array, cov: Array, n: int) -> Array:
    """``n`` draws of x ~ N(mu, cov), shaped (n, *mu.shape)."""
    kind, root = noise_sqrt(cov, mu)
    eps = jax.random.normal(key, (n, mu.size), mu.dtype)
    noise = eps * root if kind == "diag" else mm(eps, root.T)
    return mu + noise.reshape(n, *mu.shape)


def _check_sampling(samples: int, chunk: int) -> None:
    """``chunk`` >= 2 samples (a chunk's covariance divides by chunk - 1) and ``samples``
    a multiple of it, with at least two chunks (the standard errors need two)."""
    checks.check_int(chunk, "chunk", 2)
    if samples % chunk or samples < 2 * chunk:
        raise ValueError(f"samples={samples} must be a multiple of chunk={chunk}, "
                         f"with at least two chunks")


def mc_moments(fn: Callable[[Array], Array], mu: Array, cov: Array, key: Array, *,
               samples: int = 10_000, chunk: int = 1_000, check: bool = True) -> MCMoments:
    """Monte Carlo moments of ``fn(x)`` for x ~ N(mu, cov), one ``mu`` (vmap for more).

    ``fn`` maps a batch (b, *mu.shape) to outputs (b, k), e.g.
    ``lambda x: net.apply({"params": p}, x)``. ``samples`` must be a multiple of
    ``chunk``; chunk i uses ``fold_in(key, i)``.

    ``check`` (default True): one ValueError for a ``mu`` with NaN/inf, variances that
    are negative or NaN/inf, a full ``cov`` that is not symmetric or not PSD, or a ``cov``
    shape that fits no input of ``mu``'s shape (values only outside jit / vmap; see
    :mod:`analytic.checks`). ``check=False`` skips them; ``samples`` / ``chunk`` are
    always checked.
    """
    _check_sampling(samples, chunk)
    mu = jnp.asarray(mu)
    if check:
        checks.check_finite(mu, "mu")
        checks.check_cov(cov, mu.shape, mu.size)
    kind, root = noise_sqrt(cov, mu)
    k = jax.eval_shape(fn, jnp.zeros((1, *mu.shape), mu.dtype)).shape[-1]

    def draw(i):
        eps = jax.random.normal(jax.random.fold_in(key, i), (chunk, mu.size), mu.dtype)
        noise = eps * root if kind == "diag" else mm(eps, root.T)
        return fn(mu + noise.reshape(chunk, *mu.shape))

    def body(carry, i):
        n_a, mean_a, m2_a = carry
        y = draw(i)
        mean_c = y.mean(0)
        yc = y - mean_c
        m2_c = mm(yc.T, yc)
        n = n_a + chunk
        delta = mean_c - mean_a
        mean = mean_a + delta * (chunk / n)
        m2 = m2_a + m2_c + jnp.outer(delta, delta) * (n_a * chunk / n)
        return (n, mean, m2), (mean_c, m2_c / (chunk - 1))

    dtype = mu.dtype
    init = (jnp.zeros((), dtype), jnp.zeros((k,), dtype), jnp.zeros((k, k), dtype))
    (n, mean, m2), (means, covs) = jax.lax.scan(body, init, jnp.arange(samples // chunk))
    chunks = samples // chunk
    return MCMoments(mean, m2 / (n - 1),
                     means.std(0, ddof=1) / jnp.sqrt(chunks),
                     covs.std(0, ddof=1) / jnp.sqrt(chunks))


def mc_moments_batch(fn: Callable[[Array], Array], mus: Array, cov: Array, key: Array, *,
                     samples: int = 10_000, chunk: int = 1_000,
                     batch_size: int | None = None, check: bool = True) -> MCMoments:
    """:func:`mc_moments` for every input of ``mus`` (N, *shape), the same ``cov`` for all;
    input i uses ``split(key, N)[i]``. ``batch_size`` inputs are vmapped at a time
    (``lax.map``), so at most batch_size * chunk samples are in memory.

    ``check``: the checks of :func:`mc_moments` on ``mus`` (at least one input) and the
    shared ``cov``; ``check=False`` skips them."""
    _check_sampling(samples, chunk)
    mus = jnp.asarray(mus)
    if check:
        if mus.ndim < 1 or mus.shape[0] < 1:
            raise ValueError(f"mus of shape {mus.shape} holds no inputs; pass (N, *shape) "
                             f"with N >= 1")
        checks.check_finite(mus, "mus")
        checks.check_cov(cov, mus.shape[1:], int(mus[0].size))
    keys = jax.random.split(key, mus.shape[0])
    return jax.lax.map(lambda a: mc_moments(fn, a[0], cov, a[1], samples=samples, chunk=chunk,
                                            check=False),
                       (mus, keys), batch_size=batch_size)


def net_fn(net, params) -> Callable[[Array], Array]:
    """``x -> net.apply({"params": params}, x)`` (a batch of inputs to logits)."""
    return lambda x: net.apply({"params": params}, x)
