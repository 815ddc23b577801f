"""analytic/padded_relu.py: ReLU moments of the leading n units of a padded state.

Oracle: :func:`analytic.moments.hidden_moments` (``method="exact"``) on the unpadded
units, for a layer of no pair, one of two elementwise pieces (the second partly
masked) and one of more pairs than a grouped chunk (two chunks, the second partly
masked); the padding's rows and columns must be 0.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from analytic.moments import hidden_moments
from analytic.padded_relu import CHUNK, PIECE, hidden_moments_padded, pair_table

pytestmark = pytest.mark.usefixtures("enable_x64")


def test_pair_table_puts_the_first_units_pairs_first():
    i, j = pair_table(7)
    assert len(i) % CHUNK == 0
    for n in range(8):
        p = n * (n - 1) // 2
        assert set(zip(i[:p].tolist(), j[:p].tolist(), strict=True)) == {
            (a, b) for b in range(n) for a in range(b)}
    assert (i[21:] == 7).all() and (j[21:] == 7).all()


def test_matches_hidden_moments_on_the_leading_units():
    size = 760  # 288,420 pairs: two chunks
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    a = jax.random.normal(keys[0], (size, 40)) / 6
    S = a @ a.T + 1e-3 * jnp.eye(size)
    m = 0.3 * jax.random.normal(keys[1], (size,))
    fn = jax.jit(hidden_moments_padded)
    for n in (1, 130, 730):  # no pair; 8,385 pairs: two pieces; 266,085: two chunks
        assert n < 2 or PIECE < n * (n - 1) // 2 < 2 * PIECE or n * (n - 1) // 2 > CHUNK
        mp = jnp.zeros(size).at[:n].set(m[:n])
        Sp = jnp.zeros((size, size)).at[:n, :n].set(S[:n, :n])
        mean, cov = fn(mp, Sp, jnp.asarray(n))
        ref_mean, ref_cov = hidden_moments(m[:n], S[:n, :n], "exact")
        np.testing.assert_allclose(mean[:n], ref_mean, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(cov[:n, :n], ref_cov, rtol=1e-10, atol=1e-15)
        assert not np.asarray(mean[n:]).any() and not np.asarray(cov[n:]).any()
        assert not np.asarray(cov[:, n:]).any()
