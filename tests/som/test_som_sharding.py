"""The batch SOM fit split over 4 (forced host) devices gives the numbers of one device.

One subprocess with 4 devices (the count is fixed when JAX starts) fits the same maps
twice: by default (the rows split over all 4 devices) and on a one-device mesh
(``mesh=data_mesh(devices=jax.devices()[:1])``, which takes the plain one-device
program). 601 rows do not divide by 4, so the last device's block carries padded rows;
the data sit away from the origin, so a zero padding row counted as a sample would pull
a unit towards 0 and show (it does: with the padding's mask set to 1 the tests fail). This process then fits the same map on its own (one)
device, to tie the one-device mesh to a real one-device run.
"""

import textwrap

import jax
import numpy as np
import pytest

from som import Grid, SOMSpec, fit

N, D, CHUNK = 601, 7, 64  # per device: 151 rows (+1 padding on the last) in 3 chunks of 64

SCRIPT = textwrap.dedent(f"""
    import json, re
    import jax, jax.numpy as jnp, numpy as np
    from experiments import compile_cache
    compile_cache.enable(compile_cache.default_dir())  # as the rest of the suite
    from nets.sharding import data_mesh
    from som import Grid, SOMSpec, fit, fit_many
    from som.train import _fit, voronoi_sums

    def clusters(seed):
        r = np.random.default_rng(seed)
        c = r.normal(size=(4, {D})) * 3 + 5  # away from 0, where the padding rows sit
        return jnp.asarray(c[r.integers(0, 4, {N})] + 0.3 * r.normal(size=({N}, {D})),
                           jnp.float32)
    x = clusters(0)
    xs = jnp.stack([clusters(s) for s in (1, 2, 3)])
    one = data_mesh(devices=jax.devices()[:1])
    spec = SOMSpec(Grid(4, 5, "hexagonal"), steps=8, sigma=2.0, sigma_end=0.5, chunk={CHUNK})
    rand = SOMSpec(Grid(3, 4), steps=6, init="random", neighborhood="bubble", sigma=1.5,
                   chunk={CHUNK})
    key = jax.random.PRNGKey(0)
    keys = jax.random.split(key, 3)
    w4 = fit(spec, key, x)
    out = {{"devices": len(jax.devices()),
           "replicas": len(w4.sharding.device_set),
           "fit": [np.asarray(w4).tolist(), np.asarray(fit(spec, key, x, mesh=one)).tolist()],
           "many": [np.asarray(fit_many(rand, keys, xs)).tolist(),
                    np.asarray(fit_many(rand, keys, xs, mesh=one)).tolist()]}}
    sums = [voronoi_sums(w4, x, {CHUNK}), voronoi_sums(w4, x, {CHUNK}, mesh=one)]
    out["sums"] = [[np.asarray(a).tolist() for a in s] for s in sums]

    hlo = _fit.lower(spec, key, x, data_mesh()).compile().as_text()
    shapes = sorted(set(re.findall(r"f32\\[([\\d,]+),{D}\\]", hlo)))
    out["hlo"] = {{"all-reduce": "all-reduce" in hlo, "all-gather": "all-gather" in hlo,
                  "shapes": shapes}}
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def four(on_devices) -> dict:
    return on_devices(SCRIPT, 4)


def test_sharded_fit_equals_one_device(four):
    assert four["devices"] == 4 and four["replicas"] == 4  # the codebook on every device
    sharded, single = (np.asarray(w) for w in four["fit"])
    # Only the order of the float sums differs (3 chunks per device, then 4 partial sums
    # instead of 10 chunks in a row). Measured max |diff| ~1e-6 on weights of size ~5-10.
    np.testing.assert_allclose(sharded, single, rtol=1e-5, atol=1e-5)
    many4, many1 = (np.asarray(w) for w in four["many"])
    np.testing.assert_allclose(many4, many1, rtol=1e-5, atol=1e-5)
    assert not np.allclose(many4[0], many4[1], atol=0.1)  # three different maps


def test_voronoi_sums_split_over_devices_are_the_one_device_sums(four):
    (s4, n4), (s1, n1) = four["sums"]
    np.testing.assert_array_equal(n4, n1)  # whole counts: exact in float32
    assert sum(n4) == N  # every real row once, no padding row
    np.testing.assert_allclose(s4, s1, rtol=1e-5, atol=1e-4)


def test_one_device_mesh_is_a_one_device_run(four):
    # The reference above is the one-device program: the same numbers in this process.
    spec = SOMSpec(Grid(4, 5, "hexagonal"), steps=8, sigma=2.0, sigma_end=0.5, chunk=CHUNK)
    r = np.random.default_rng(0)
    c = r.normal(size=(4, D)) * 3 + 5
    x = np.asarray(c[r.integers(0, 4, N)] + 0.3 * r.normal(size=(N, D)), np.float32)
    here = np.asarray(fit(spec, jax.random.PRNGKey(0), x))
    np.testing.assert_allclose(np.asarray(four["fit"][1]), here, rtol=1e-5, atol=1e-5)


def test_rows_are_split_and_the_sums_all_reduced(four):
    hlo = four["hlo"]
    # Partial Voronoi sums all-reduced, the data never gathered onto one device.
    assert hlo["all-reduce"] and not hlo["all-gather"]
    # The (., d) arrays of the program, by leading dimensions: each device scans its own
    # block of 3 chunks of 64 rows; no array holds the chunks of all 4 blocks (4, 3, 64)
    # or the one-device program's 10 chunks.
    dims = [tuple(map(int, s.split(","))) for s in hlo["shapes"]]
    assert (1, 3, 64) in dims
    chunked = [d for d in dims if 64 in d]
    assert max(np.prod(d) for d in chunked) == 3 * 64, chunked
