"""nets.stream: a host-kept dataset fed in device batches, in the order training uses.

The oracle for the order is ``nets.train``'s own in-memory path (``EpochFn._order``,
what every epoch gathers on the device); labels ``0..N-1`` name each row, so the rows a
batch holds can be read back from it.
"""

import textwrap

import jax
import numpy as np
import pytest

from nets import data, models, stream, train


def rows(n: int, seed: int = 0) -> data.Dataset:
    rng = np.random.default_rng(seed)
    return data.Dataset(rng.random((n, 4, 3, 1), dtype=np.float32),
                        np.arange(n, dtype=np.int32), n)


def in_memory_order(seeds, n, batch_size, epoch):
    """(S, steps, B) row indices of ``nets.train``'s epoch for models with these seeds."""
    net, opt = models.get_model("mlp"), train.make_optimizer(train.TrainSpec())
    epoch_fn = train.make_epoch_fn(net, opt, batch_size)
    keys = jax.numpy.stack([jax.random.PRNGKey(s) for s in seeds])  # as states["key"]
    return keys, np.asarray(epoch_fn._order(keys, epoch, n))


def collect(it):
    return [tuple(np.asarray(a) for a in batch) for batch in it]


@pytest.mark.parametrize("epoch", [0, 3])
def test_one_model_gets_every_row_once_in_the_training_order(epoch):
    ds = rows(40)
    keys, order = in_memory_order((5,), 40, 8, epoch)
    got = collect(stream.batches(ds, 8, keys[0], epoch=epoch))
    assert len(got) == 5 and all(x.shape == (8, 4, 3, 1) for x, _ in got)
    seen = np.concatenate([y for _, y in got])
    assert sorted(seen.tolist()) == list(range(40))  # every row exactly once
    for i, (x, y) in enumerate(got):  # batch i is the in-memory batch i
        np.testing.assert_array_equal(y, order[0, i])
        np.testing.assert_array_equal(x, ds.images[order[0, i]])
    other = np.concatenate([y for _, y in collect(stream.batches(ds, 8, keys[0], epoch=epoch + 1))])
    assert not np.array_equal(seen, other)  # a new epoch, a new order


def test_stacked_keys_give_each_model_its_own_order():
    ds = rows(30)
    keys, order = in_memory_order((0, 1), 30, 8, epoch=2)  # 3 batches, 6 rows dropped
    got = collect(stream.batches(ds, 8, keys, epoch=2))
    assert len(got) == 3 and got[0][0].shape == (2, 8, 4, 3, 1)
    for i, (x, y) in enumerate(got):
        np.testing.assert_array_equal(y, order[:, i])
        np.testing.assert_array_equal(x, ds.images[order[:, i]])
    assert not np.array_equal(order[0], order[1])


def test_typed_keys_give_the_same_order_as_raw_ones():
    raw = jax.random.PRNGKey(7)
    typed = jax.random.wrap_key_data(raw)
    np.testing.assert_array_equal(stream.epoch_order(raw, 1, 20, 4),
                                  stream.epoch_order(typed, 1, 20, 4))
    np.testing.assert_array_equal(stream.epoch_order(jax.numpy.stack([raw, raw]), 1, 20, 4),
                                  stream.epoch_order(jax.numpy.stack([typed, typed]), 1, 20, 4))


def test_in_order_with_or_without_the_last_partial_batch():
    ds = rows(42)
    kept = collect(stream.batches(ds, 8, drop_remainder=False))
    assert [len(y) for _, y in kept] == [8, 8, 8, 8, 8, 2]
    np.testing.assert_array_equal(np.concatenate([x for x, _ in kept]), ds.images)
    np.testing.assert_array_equal(np.concatenate([y for _, y in kept]), ds.labels)
    dropped = collect(stream.batches(ds, 8))
    assert len(dropped) == 5
    np.testing.assert_array_equal(np.concatenate([y for _, y in dropped]), np.arange(40))
    with pytest.raises(ValueError, match="no full batch"):
        collect(stream.batches(rows(5), 8))


class CountingRows:
    """Host images that count how many batches have been gathered from them."""

    def __init__(self, images):
        self.images, self.gathered = images, 0

    def __getitem__(self, idx):
        self.gathered += 1
        return self.images[idx]


@pytest.mark.parametrize("prefetch", [0, 1, 3])
def test_prefetch_sends_batches_ahead_and_changes_nothing_else(prefetch):
    ds = rows(48)
    key = jax.random.PRNGKey(1)
    plain = collect(stream.batches(ds, 8, key, prefetch=0))
    counting = CountingRows(ds.images)
    it = stream.batches(data.Dataset(counting, ds.labels, 48), 8, key, prefetch=prefetch)
    first = next(it)
    assert counting.gathered == prefetch + 1  # the one handed out and `prefetch` more
    assert isinstance(first[0], jax.Array)
    got = [tuple(np.asarray(a) for a in first), *collect(it)]
    assert counting.gathered == 6 and len(got) == 6
    for (x, y), (x0, y0) in zip(got, plain):
        np.testing.assert_array_equal(x, x0)
        np.testing.assert_array_equal(y, y0)


SCRIPT = textwrap.dedent("""
    import json
    import jax, numpy as np
    from nets import data, sharding, stream
    rng = np.random.default_rng(0)
    ds = data.Dataset(rng.random((40, 4, 3, 1), dtype=np.float32),
                      np.arange(40, dtype=np.int32), 40)
    key = jax.random.PRNGKey(5)
    out = {"devices": len(jax.devices())}
    one = list(stream.batches(ds, 8, key, epoch=1, mesh=sharding.data_mesh(8)))
    out["one"] = {"devices": [len(x.sharding.device_set) for x, _ in one],
                  "spec": list(one[0][0].sharding.spec),
                  "labels": [np.asarray(y).tolist() for _, y in one],
                  "images": [np.asarray(x).tolist() for x, _ in one]}
    keys = jax.numpy.stack([key, jax.random.PRNGKey(6)])
    two = list(stream.batches(ds, 8, keys, mesh=sharding.model_mesh(2, 8)))
    out["two"] = {"devices": [len(x.sharding.device_set) for x, _ in two],
                  "spec": list(two[0][0].sharding.spec),
                  "labels": [np.asarray(y).tolist() for _, y in two]}
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def four_devices(on_devices) -> dict:
    return on_devices(SCRIPT, 4)


def test_batches_split_over_four_devices_hold_the_one_device_rows(four_devices):
    assert four_devices["devices"] == 4
    ds = rows(40)
    key = jax.random.PRNGKey(5)
    one = collect(stream.batches(ds, 8, key, epoch=1))  # this process: one device
    split = four_devices["one"]
    assert split["devices"] == [4] * 5 and split["spec"] == ["data"]
    np.testing.assert_array_equal(split["labels"], [y for _, y in one])
    np.testing.assert_array_equal(np.asarray(split["images"], np.float32),
                                  np.stack([x for x, _ in one]))
    two = four_devices["two"]  # (2, 2) mesh: models and their rows both split
    assert two["devices"] == [4] * 5 and two["spec"] == ["models", "data"]
    keys = jax.numpy.stack([key, jax.random.PRNGKey(6)])
    np.testing.assert_array_equal(two["labels"], [y for _, y in collect(stream.batches(ds, 8, keys))])
