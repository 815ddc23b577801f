"""Training sharded over 4 (forced host) devices returns the numbers of one device.

One subprocess per device count (the count is fixed when JAX starts) trains, on 256
digits for 2 epochs of batch 32 with SGD + momentum:

* one model, its batch split over the mesh's ``data`` axis (data parallelism): (1, 4);
* two models with their own learning rates (a stacked sweep, experiments/sweep.py), the
  epoch a ``lax.scan``: the models split over the ``models`` axis, each model's batch
  over ``data``: (2, 2).
"""

import textwrap

import numpy as np
import pytest

from nets import train

SCRIPT = textwrap.dedent("""
    import dataclasses, json, re
    import jax, numpy as np
    from experiments import compile_cache
    compile_cache.enable(compile_cache.default_dir())  # as the rest of the suite
    from nets import conv, data, models, train
    full = data.load("digits", "train")
    tr = data.Dataset(full.images[:256], full.labels[:256], 10)
    net = models.lenet5()
    out = {"devices": len(jax.devices()),
           "meshes": {f"{s},{b}": list(train.model_mesh(s, b).devices.shape)
                      for s, b in [(1, 32), (2, 32), (4, 32), (3, 32), (1, 30), (1, None)]}}

    # SGD with momentum, not Adam: Adam's update is invariant to the gradient's scale,
    # so a gradient summed instead of averaged over the data devices would go unseen.
    spec = train.TrainSpec(epochs=2, batch_size=32, optimizer="momentum", learning_rate=0.05)
    for name, seeds, lrs, loop in [("one", (0,), [0.05], "python"),
                                   ("two", (0, 1), [0.05, 0.02], "scan")]:
        states, hist = train.fit(net, tr, None, dataclasses.replace(spec, loop=loop),
                                 seeds=seeds, hparams={"learning_rate": lrs})
        leaves = jax.tree.leaves(states["params"])
        out[name] = {
            "shards": len(leaves[0].sharding.device_set),
            "params": np.concatenate([np.asarray(x).reshape(len(seeds), -1) for x in leaves],
                                     axis=1).tolist(),
            "loss": [h["train_loss"] for h in hist]}

    if len(jax.devices()) > 1:
        # The compiled step of one model on the (1, 4) mesh, with XLA's convolutions (the
        # path off CPU; nets.conv's CPU forward of conv1 all-gathers its batch).
        conv.CPU_PATHS = False
        mesh = train.model_mesh(1, 32)
        opt = train.make_optimizer(spec)
        epoch_fn = train.make_epoch_fn(net, opt, 32, mesh=mesh)
        st = train.init_states(net, opt, (0,), (28, 28, 1))
        st, (x, y) = train.shard_models(st, (tr.images, tr.labels), mesh)
        try:  # a batch the mesh's data axis does not divide: one clear error
            train.make_epoch_fn(net, opt, 30, mesh=mesh)
        except ValueError as e:
            out["indivisible"] = str(e)
        order = epoch_fn._order(st["key"], 0, x.shape[0])
        hlo = epoch_fn._step.lower(st, x, y, order, 0).compile().as_text()
        # images in the program: f32[..., 28, 28, 1], how many per array (256: the data)
        counts = {int(np.prod([int(d) for d in lead.split(",") if d]))
                  for lead in re.findall(r"f32\\[([\\d,]*?)28,28,1\\]", hlo)}
        out["hlo"] = {"all-reduce": "all-reduce" in hlo, "all-gather": "all-gather" in hlo,
                      "images per array": sorted(counts)}
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def runs(on_devices) -> tuple[dict, dict]:
    return on_devices(SCRIPT, 1), on_devices(SCRIPT, 4)


def test_meshes(runs):
    one, four = runs
    assert one["devices"] == 1 and four["devices"] == 4
    assert set(map(tuple, one["meshes"].values())) == {(1, 1)}
    # models: gcd(S, 4) devices; data: the largest divisor of the batch in what is left.
    assert four["meshes"] == {"1,32": [1, 4], "2,32": [2, 2], "4,32": [4, 1],
                              "3,32": [1, 4], "1,30": [1, 3], "1,None": [1, 4]}


def test_data_devices():
    assert [train.data_devices(4, b) for b in (64, 32, 30, 6, 7, None)] == [4, 4, 3, 3, 1, 4]
    assert train.data_devices(1, 64) == 1


@pytest.mark.parametrize("name", ["one", "two"])
def test_data_parallel_equals_one_device(runs, name):
    one, four = (r[name] for r in runs)
    assert one["shards"] == 1 and four["shards"] == 4  # (1, 4) and (2, 2): all 4 devices
    # Only the order of the batch sums differs (4 or 2 partial sums, then an all-reduce).
    # Measured after 16 steps: max |diff| 8e-8 on params up to 0.6 that moved by up to
    # 0.2 (median 1e-3); a step 10% larger (learning rate 0.055) moves them 0.08 apart.
    p1, p4 = np.asarray(one["params"]), np.asarray(four["params"])
    np.testing.assert_allclose(p4, p1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(four["loss"], one["loss"], rtol=1e-5)
    if name == "two":
        assert not np.allclose(p4[0], p4[1])  # two different models


def test_a_mesh_that_does_not_divide_the_batch_is_one_clear_error(runs):
    assert runs[1]["indivisible"].startswith("batch size 30 is not divisible by the mesh's 4 "
                                             "data devices")


def test_the_batch_is_split_and_the_gradients_all_reduced(runs):
    # Four devices, one model: each device gathers 8 of the 32 images, keeps them (no
    # all-gather, no whole batch anywhere), and the gradients are all-reduced.
    assert runs[1]["hlo"] == {"all-reduce": True, "all-gather": False,
                              "images per array": [8, 256]}
