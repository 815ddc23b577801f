"""The weight-perturbation sweep split over 4 (forced host) devices counts what one
device counts.

One subprocess with 4 devices (the count is fixed when JAX starts) runs the same sweeps
twice: by default (the images split over all 4 devices) and on a one-device mesh
(``mesh=data_mesh(devices=jax.devices()[:1])``, the plain one-device program; that
program is checked against a Python loop of whole forward passes in test_weights.py).
LeNet-5 with random weights on 50 digits: 50 does not divide by 4, so the last device's
block carries padded images (zeros of label 0, which an unmasked count would score).
"""

import textwrap

import numpy as np
import pytest

SCRIPT = textwrap.dedent("""
    import json, re
    import jax, jax.numpy as jnp, numpy as np
    from experiments import compile_cache
    compile_cache.enable(compile_cache.default_dir())  # as the rest of the suite
    from attacks import weights_sweep as S
    from nets import data, models
    from nets.sharding import data_mesh

    te = data.load("digits", "test")
    x, y = jnp.asarray(te.images[:50]), jnp.asarray(te.labels[:50])
    one, four = data_mesh(devices=jax.devices()[:1]), data_mesh()
    key = jax.random.PRNGKey(1)
    out = {"devices": len(jax.devices())}

    # LeNet-5, conv1 perturbed (the whole network runs per perturbed copy): two settings,
    # p 0 .. 1, 3 trials. The sharded program is compiled once, read, and run.
    net = models.lenet5()
    params = models.init_params(net, jax.random.PRNGKey(0), (28, 28, 1))
    settings = (("synapse_knockout", "weights"), ("mutation", "weights"))
    ps = jnp.asarray([0.0, 0.5, 1.0], jnp.float32)
    keys = S.setting_keys(key, settings, "conv1", 3)
    args = (net, params, x, y, ps, keys)
    kw = dict(layer="conv1", settings=settings, chunk=8)
    compiled = S.layer_counts.lower(*args, **kw, mesh=four).compile()
    out["conv1"] = [np.asarray(compiled(*args[1:])).tolist(),
                    np.asarray(S.layer_counts(*args, **kw, mesh=one)).tolist()]
    hlo = compiled.as_text()
    images = sorted(set(re.findall(r"f32\\[([\\d,]*?),?28,28,1\\]", hlo)))
    out["hlo"] = {"all-reduce": "all-reduce" in hlo, "all-gather": "all-gather" in hlo,
                  "images": images}

    # Two stacked MLPs through the sweep (node knockout of the hidden layer).
    mlp = models.mlp(hidden=(16,))
    p1 = models.init_params(mlp, jax.random.PRNGKey(2), (28, 28, 1))
    two = jax.tree.map(lambda a: jnp.stack([a, 0.5 * a]), p1)
    kw = dict(ps=(0.0, 0.4, 0.8), trials=3, kinds=("node_knockout",), layers=("fc1",),
              chunk=8, stacked=True)
    out["stacked"] = [np.asarray(S.sweep(mlp, two, x, y, jax.random.split(key), **kw, mesh=m)
                                 ["node_knockout"]["fc1"]["top1"]).tolist()
                      for m in (four, one)]
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def four(on_devices) -> dict:
    return on_devices(SCRIPT, 4)


def test_sharded_counts_equal_one_device(four):
    assert four["devices"] == 4
    sharded, single = (np.asarray(c) for c in four["conv1"])
    assert sharded.shape == (2, 2, 3, 3)  # (settings, top1/topk, p, trials)
    np.testing.assert_array_equal(sharded, single)  # whole counts, exactly
    # The sweep saw something: the counts move with p (p = 1 knocks out all of conv1).
    assert sharded.max() <= 50 and len(np.unique(sharded[:, 0])) > 2


def test_sharded_stacked_sweep_equals_one_device(four):
    sharded, single = (np.asarray(a) for a in four["stacked"])
    assert sharded.shape == (2, 3, 3)  # (models, p, trials) top-1 accuracy
    np.testing.assert_array_equal(sharded, single)
    assert not np.array_equal(sharded[0], sharded[1])  # two different models


def test_images_are_split_and_the_counts_all_reduced(four):
    hlo = four["hlo"]
    assert hlo["all-reduce"] and not hlo["all-gather"]
    # Image arrays in the program, by leading dimensions: the (replicated) input of 50
    # images, and per device a block of 13 images padded to 2 chunks of 8 (1, 16); no
    # array holds the blocks of several devices.
    dims = [tuple(int(d) for d in s.split(",") if d) for s in hlo["images"]]
    assert (1, 16) in dims, dims
    assert all(np.prod(d) <= 16 for d in dims if d != (50,)), dims
