"""The per-step tracker hook of nets.train: the track is updated after every optimizer
step with a key of its own, checkpointed with the state, and read by regularizers that
ask for it; vector penalties with per-model weight vectors."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nets import adversarial, data, models, train
from nets.data import Dataset

SPEC = train.TrainSpec(epochs=2, batch_size=32, learning_rate=3e-3)


@pytest.fixture(scope="module")
def tiny():
    """96 digits at 7x7 (every 4th pixel): fast to compile and to train."""
    full = data.load("digits", "train")
    return Dataset(full.images[:96, ::4, ::4], full.labels[:96], 10)


@pytest.fixture(scope="module")
def net():
    """Two small conv layers and a dense one: the layer kinds of LeNet, at a fraction of
    its compile time."""
    L = models.Layer
    return models.Net((L("conv1", "conv", 3, 3), L("relu1", "relu"),
                       L("conv2", "conv", 4, 3, "VALID"), L("relu2", "relu"),
                       L("flatten", "flatten"), L("fc1", "dense", 10)))


class Recorder:
    """A generic tracker: steps seen, sum of |dw| of conv1, the last key, a random draw."""

    def init(self, params, key):
        return {"n": jnp.zeros((), jnp.int32), "moved": jnp.zeros(()), "key": key,
                "draw": jax.random.uniform(key, ())}

    def update(self, track, old, new, key):
        moved = jnp.abs(new["conv1"]["kernel"] - old["conv1"]["kernel"]).sum()
        return {"n": track["n"] + 1, "moved": track["moved"] + moved, "key": key,
                "draw": jax.random.uniform(key, ())}


def test_track_is_updated_every_step_with_its_own_key(tiny, net):
    states, _ = train.fit(net, tiny, None, SPEC, seeds=(0, 1), step_tracker=Recorder())
    steps = SPEC.epochs * (96 // 32)
    np.testing.assert_array_equal(states["track"]["n"], [steps, steps])
    assert np.all(np.asarray(states["track"]["moved"]) > 0)
    for i in range(2):  # the key after the last step: fold_in(fold_in(key, stream), step)
        s = train.select(states, i)
        expected = train.track_key(s["key"], steps)
        np.testing.assert_array_equal(s["track"]["key"], expected)
        # not the adversarial stream's key, nor a data-order key
        assert not np.array_equal(expected, adversarial.step_key(s["key"], steps - 1))
        assert not np.array_equal(expected, jax.random.fold_in(s["key"], SPEC.epochs - 1))
    # Its randomness does not change the training (same params as without a tracker).
    plain, _ = train.fit(net, tiny, None, SPEC, seeds=(0, 1))
    assert "track" not in plain
    chex.assert_trees_all_close(plain["params"], states["params"], rtol=1e-5, atol=1e-6)


def test_resume_with_a_tracker_equals_uninterrupted(tiny, net, tmp_path):
    spec = train.TrainSpec(epochs=3, batch_size=32, learning_rate=3e-3)
    straight, _ = train.fit(net, tiny, None, spec, seeds=(0,), step_tracker=Recorder())

    def interrupt(epoch, states):
        if epoch == 1:
            raise KeyboardInterrupt

    ckpt = str(tmp_path / "ckpt")
    with pytest.raises(KeyboardInterrupt):
        train.fit(net, tiny, None, spec, seeds=(0,), step_tracker=Recorder(),
                  checkpoint_dir=ckpt, on_epoch=interrupt)
    resumed, _ = train.fit(net, tiny, None, spec, seeds=(0,), step_tracker=Recorder(),
                           checkpoint_dir=ckpt)
    chex.assert_trees_all_equal(resumed, straight)
    assert int(resumed["track"]["n"][0]) == 9


def test_regularizer_that_uses_the_track_gets_it(tiny, net):
    seen = []

    def reg(params, track):
        seen.append(sorted(track))
        # pull conv1 towards 0 only once the tracker has counted steps: n > 0
        return (track["n"] > 0) * jnp.sum(params["conv1"]["kernel"] ** 2)

    reg.uses_track = True
    one = train.TrainSpec(epochs=1, batch_size=32, learning_rate=3e-3)
    _, hist = train.fit(net, tiny, None, one, seeds=(0, 0), reg_weights=(0.0, 10.0),
                        regularizer=reg, step_tracker=Recorder())
    assert seen and seen[0] == ["draw", "key", "moved", "n"]
    # The penalty counted (it is zero at the first step only, where n = 0).
    loss = hist[-1]["train_loss"]
    assert loss[1] > loss[0] + 1.0
    with pytest.raises(ValueError, match="uses_track"):
        train.fit(net, tiny, None, one, regularizer=reg)


def test_vector_penalty_with_weight_vectors_equals_scalar_runs(tiny, net):
    def conv1(params):
        return jnp.sum(params["conv1"]["kernel"] ** 2)

    def conv2(params):
        return jnp.sum(params["conv2"]["kernel"] ** 2)

    one = train.TrainSpec(epochs=1, batch_size=32, learning_rate=3e-3)
    both, _ = train.fit(net, tiny, None, one, seeds=(0, 0, 0),
                        reg_weights=[[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]],
                        regularizer=lambda p: jnp.stack([conv1(p), conv2(p)]))
    for i, fn in ((1, conv1), (2, conv2)):
        alone, _ = train.fit(net, tiny, None, one, seeds=(0,), reg_weights=(3.0,),
                             regularizer=fn)
        chex.assert_trees_all_close(train.select(both, i)["params"],
                                    train.select(alone, 0)["params"], rtol=1e-3, atol=1e-5)
    k = np.asarray(both["params"]["conv1"]["kernel"])
    assert not np.allclose(k[1], k[0], rtol=1e-3, atol=1e-5)  # the penalty acted
