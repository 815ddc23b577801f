import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nets import data, models, train, xla
from nets.data import Dataset

SPEC = train.TrainSpec(epochs=2, batch_size=32, learning_rate=3e-3)


@pytest.fixture(scope="module")
def small():
    full, test = data.load("digits", "train"), data.load("digits", "test")
    return Dataset(full.images[:256], full.labels[:256], 10), Dataset(
        test.images[:128], test.labels[:128], 10)


@pytest.fixture(scope="module")
def net():
    return models.lenet5()


def test_vmapped_seeds_equal_separate_runs(small, net):
    # Equal up to float32 rounding: XLA batches the S models' convolutions as one grouped
    # convolution, which sums in another order; 16 Adam steps keep that below 1e-4.
    together, _ = train.fit(net, *small, SPEC, seeds=(0, 1, 2))
    for i, seed in enumerate((0, 1, 2)):
        alone, _ = train.fit(net, *small, SPEC, seeds=(seed,))
        chex.assert_trees_all_close(train.select(together, i)["params"],
                                    train.select(alone, 0)["params"], rtol=1e-3, atol=1e-4)
    # and different seeds really are different models
    p = together["params"]["conv1"]["kernel"]
    assert not np.allclose(p[0], p[1])


def test_vmapped_learning_rate_sweep_equals_separate_runs(small, net):
    # Per-model hyperparameters live in the optimizer state (optax.inject_hyperparams),
    # so models with different learning rates share one compiled step.
    spec = train.TrainSpec(epochs=1, batch_size=32, optimizer="momentum", momentum=0.8)
    lrs, momenta = [1e-3, 3e-2], [0.8, 0.5]
    together, _ = train.fit(net, small[0], None, spec, seeds=(0, 0),
                            hparams={"learning_rate": lrs, "momentum": momenta})
    for i, (lr, mom) in enumerate(zip(lrs, momenta)):
        alone, _ = train.fit(net, small[0], None, train.TrainSpec(
            epochs=1, batch_size=32, optimizer="momentum", learning_rate=lr, momentum=mom),
            seeds=(0,))
        chex.assert_trees_all_close(train.select(together, i)["params"],
                                    train.select(alone, 0)["params"], rtol=1e-3, atol=1e-5)
    p = together["params"]["fc3"]["kernel"]
    assert not np.allclose(p[0], p[1])  # the learning rate really differed
    with pytest.raises(ValueError, match="no hyperparameter"):
        train.fit(net, small[0], None, spec, seeds=(0,), hparams={"weight_decay": [0.1]})


def test_resume_equals_uninterrupted(small, net, tmp_path):
    spec = train.TrainSpec(epochs=3, batch_size=32, learning_rate=3e-3)
    straight, hist_straight = train.fit(net, *small, spec, seeds=(0, 1))

    def interrupt(epoch, states):
        if epoch == 1:
            raise KeyboardInterrupt  # during epoch 1: only epoch 0 is checkpointed

    ckpt = str(tmp_path / "ckpt")
    with pytest.raises(KeyboardInterrupt):
        train.fit(net, *small, spec, seeds=(0, 1), checkpoint_dir=ckpt, on_epoch=interrupt)
    logged = []
    resumed, hist = train.fit(net, *small, spec, seeds=(0, 1), checkpoint_dir=ckpt,
                              log=logged.append)
    chex.assert_trees_all_equal(resumed, straight)
    assert [r["epoch"] for r in logged] == [0, 1, 2]  # restored epoch 0 re-logged first
    np.testing.assert_allclose(hist[-1]["train_loss"], hist_straight[-1]["train_loss"])
    # A finished run resumes to itself without training again.
    again, _ = train.fit(net, *small, spec, seeds=(0, 1), checkpoint_dir=ckpt)
    chex.assert_trees_all_equal(again, straight)


def test_non_finite_loss_stops_with_the_step_named(small, net, tmp_path):
    images = small[0].images.copy()
    images[:] = np.nan
    bad = Dataset(images, small[0].labels, 10)
    with pytest.raises(train.NonFiniteLossError, match=r"non-finite loss nan at step 0 \(epoch 0, batch 0\)") as info:
        train.fit(net, bad, None, SPEC, checkpoint_dir=str(tmp_path / "c"))
    assert "no checkpoint was written yet" in str(info.value)  # none exists: no false comfort
    with pytest.raises(train.NonFiniteLossError, match="no checkpoint folder"):
        train.fit(net, bad, None, SPEC)
    # one good epoch checkpointed, then the resumed second epoch meets NaNs
    one = train.TrainSpec(epochs=1, batch_size=32, learning_rate=3e-3)
    train.fit(net, small[0], None, one, checkpoint_dir=str(tmp_path / "d"))
    with pytest.raises(train.NonFiniteLossError,
                       match=r"at step 8 \(epoch 1.*the last checkpoint \(epoch 0\) is intact"):
        train.fit(net, bad, None, SPEC, checkpoint_dir=str(tmp_path / "d"))


def test_divergence_names_the_first_bad_step(small, net):
    spec = train.TrainSpec(epochs=3, batch_size=32, optimizer="sgd", learning_rate=1e6)
    with pytest.raises(train.NonFiniteLossError) as info:
        train.fit(net, *small, spec)
    # Rerun the same steps by hand and find the first non-finite loss independently.
    optimizer = train.make_optimizer(spec)
    state = train.init_states(net, optimizer, (0,), (28, 28, 1))
    epoch_fn = train.make_epoch_fn(net, optimizer, spec.batch_size)
    first = None
    for epoch in range(3):
        state, m = epoch_fn(state, jnp.asarray(small[0].images), jnp.asarray(small[0].labels), epoch)
        bad = np.flatnonzero(~np.isfinite(np.asarray(m["loss"][0])))
        if bad.size:
            first = epoch * 8 + bad[0]
            break
    assert first is not None and f"at step {first} " in str(info.value)


def test_epoch_function_compiles_once(small, net):
    optimizer = train.make_optimizer(SPEC)
    epoch_fn = train.make_epoch_fn(net, optimizer, SPEC.batch_size)
    state = train.init_states(net, optimizer, (0,), (28, 28, 1))
    x, y = jnp.asarray(small[0].images), jnp.asarray(small[0].labels)
    for epoch in range(3):
        state, _ = epoch_fn(state, x, y, epoch)
    state, _ = epoch_fn(state, x + 0.1, y, 7)  # new data, same shapes
    assert epoch_fn._cache_size() == 1


def test_scan_epoch_equals_the_step_loop(small, net):
    loop, _ = train.fit(net, *small, SPEC, seeds=(0, 1))
    scan_spec = train.TrainSpec(epochs=2, batch_size=32, learning_rate=3e-3, loop="scan")
    scan, _ = train.fit(net, *small, scan_spec, seeds=(0, 1))
    chex.assert_trees_all_close(scan["params"], loop["params"], rtol=1e-4, atol=1e-5)


def test_auto_loop_is_the_scan_on_every_backend(small, net, monkeypatch):
    assert train.TrainSpec().loop == "auto"
    assert jax.default_backend() == "cpu"
    assert train.resolve_loop("auto") == "scan"
    assert [train.resolve_loop(name) for name in ("python", "scan")] == ["python", "scan"]
    made = []

    def spy(*args, **kwargs):
        made.append(make(*args, **kwargs))
        return made[-1]

    make = train.make_epoch_fn
    monkeypatch.setattr(train, "make_epoch_fn", spy)
    train.fit(net, small[0], None, train.TrainSpec(epochs=1, batch_size=128))
    assert [fn.loop for fn in made] == ["scan"]  # what fit ran by default on CPU
    xla.compiler_options()  # cached with the real backend before the backend is faked
    optimizer = train.make_optimizer(SPEC)
    for backend in ("gpu", "tpu"):
        monkeypatch.setattr(jax, "default_backend", lambda b=backend: b)
        assert train.resolve_loop("auto") == "scan"
        assert make(net, optimizer, 32).loop == "scan"  # nothing is traced here
        assert make(net, optimizer, 32, loop="python").loop == "python"  # a name wins


def test_an_unknown_loop_is_one_clear_error(small, net):
    for call in (lambda: train.resolve_loop("while"),
                 lambda: train.make_epoch_fn(net, train.make_optimizer(SPEC), 32, loop="while"),
                 lambda: train.fit(net, small[0], None, train.TrainSpec(loop="while"))):
        with pytest.raises(ValueError, match=r"unknown train loop 'while'; choose one of "
                                             r"\('auto', 'python', 'scan'\)"):
            call()


def test_training_learns_and_the_regularizer_enters_the_loss(small, net):
    def l2(params):
        return sum(jnp.sum(w**2) for w in jax.tree.leaves(params))

    states, hist = train.fit(net, *small, SPEC, seeds=(0, 0), reg_weights=(0.0, 1e-2),
                             regularizer=l2)
    assert hist[-1]["train_loss"][0] < hist[0]["train_loss"][0]
    norms = [float(l2(train.select(states, i)["params"])) for i in range(2)]
    assert norms[1] < norms[0]  # same seed, only the penalty differs
    assert min(hist[-1]["test_accuracy"]) > 0.5


def test_bad_arguments_are_clear_errors(small, net):
    with pytest.raises(ValueError, match="fewer than one batch"):
        train.fit(net, small[0], None, train.TrainSpec(batch_size=10_000))
    with pytest.raises(ValueError, match="unknown optimizer"):
        train.make_optimizer(train.TrainSpec(optimizer="lbfgs"))
    with pytest.raises(ValueError, match="2 seeds but 1 reg_weights"):
        train.fit(net, *small, SPEC, seeds=(0, 1), reg_weights=(0.1,))


def test_host_fed_training_equals_the_device_resident_run():
    # TrainSpec.host_data: the train set stays on the host, batches gathered there and
    # sent ahead (nets.stream); the same batches in the same order, so bit-equal params
    full = data.load("digits", "train")
    tr = data.Dataset(full.images[:256], full.labels[:256], 10)
    net, spec = models.lenet5(), train.TrainSpec(epochs=2, batch_size=32)
    a, ha = train.fit(net, tr, None, spec, seeds=(0, 1))
    b, hb = train.fit(net, tr, None, dataclasses.replace(spec, host_data=True), seeds=(0, 1))
    chex.assert_trees_all_equal(a["params"], b["params"])
    assert [h["train_loss"] for h in ha] == [h["train_loss"] for h in hb]
