"""batched_moments split over 4 (forced host) devices gives the moments of one device.

One subprocess with 4 devices (the count is fixed when JAX starts) computes the exact
moments of 10 inputs (not a multiple of 4: padding) of a random Affine-ReLU-Affine net,
per-input linearizations and a shared one, split over the devices and on a one-device
mesh; the pytest process (1 device) computes them too.
"""

import textwrap

import numpy as np
import pytest

SCRIPT = textwrap.dedent("""
    import json
    import jax, jax.numpy as jnp, numpy as np
    from analytic import moments
    from analytic.linearize import Linearization
    rng = np.random.default_rng(0)
    n, d, k, b = 40, 12, 3, 10
    lin = Linearization(jnp.asarray(rng.normal(size=(n, d)) / 3, jnp.float32),
                        jnp.asarray(rng.normal(0, 0.3, n), jnp.float32),
                        jnp.asarray(rng.normal(size=(k, n)), jnp.float32), jnp.zeros(k))
    lins = jax.tree.map(lambda a: jnp.stack([a * (1 + 0.1 * i) for i in range(b)]), lin)
    mu = jnp.asarray(rng.normal(size=(b, d)), jnp.float32)
    out = {"devices": len(jax.devices())}
    for name, l, shared in [("per_input", lins, False), ("shared", lin, True)]:
        r = moments.batched_moments(l, mu, 0.2, shared_lin=shared, shared_cov=True)
        out[name] = {"mean": np.asarray(r.mean).tolist(), "cov": np.asarray(r.cov).tolist(),
                     "shards": len(r.mean.sharding.device_set)}
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def runs(on_devices) -> tuple[dict, dict]:
    return on_devices(SCRIPT, 1), on_devices(SCRIPT, 4)


@pytest.mark.parametrize("name", ["per_input", "shared"])
def test_moments_on_four_devices_equal_one(runs, name):
    one, four = runs
    assert (one["devices"], four["devices"]) == (1, 4)
    assert (one[name]["shards"], four[name]["shards"]) == (1, 4)  # really split
    # inputs are independent: only float rounding inside a program of another batch size
    # may differ (measured 1e-6 on means up to 6)
    for key in ("mean", "cov"):
        ref = np.asarray(one[name][key])
        np.testing.assert_allclose(four[name][key], ref, rtol=1e-5,
                                   atol=1e-6 * np.abs(ref).max())
    assert np.std(np.asarray(one[name]["cov"])[:, 0, 0]) > 0  # ten different inputs
