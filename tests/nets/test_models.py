import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nets import models


def conv_count(k, cin, cout):
    return k * k * cin * cout + cout


def dense_count(nin, nout):
    return nin * nout + nout


def test_lenet5_has_61706_parameters():
    params = models.init_params(models.lenet5(), jax.random.PRNGKey(0), (28, 28, 1))
    # Independent count from the architecture: 28 -SAME conv-> 28 -pool-> 14 -VALID 5x5-> 10
    # -pool-> 5, so fc1 sees 5*5*16 = 400 inputs.
    expected = (conv_count(5, 1, 6) + conv_count(5, 6, 16) + dense_count(400, 120)
                + dense_count(120, 84) + dense_count(84, 10))
    assert expected == 61706
    assert models.count_params(params) == expected


def test_lenet_bibi_and_mlp_parameter_counts():
    p = models.init_params(models.lenet_bibi(), jax.random.PRNGKey(0), (28, 28, 1))
    # SAME convs, two 2x2 pools: 28 -> 14 -> 7; fc1 sees 7*7*64.
    assert models.count_params(p) == (conv_count(5, 1, 32) + conv_count(5, 32, 64)
                                      + dense_count(7 * 7 * 64, 1024) + dense_count(1024, 10))
    p = models.init_params(models.mlp(hidden=(32,)), jax.random.PRNGKey(0), (28, 28, 1))
    assert models.count_params(p) == dense_count(784, 32) + dense_count(32, 10)


def test_alexnet_shapes_and_width():
    net = models.alexnet(width=0.25)
    p = models.init_params(net, jax.random.PRNGKey(0), (32, 32, 3))
    assert [k for k in p] == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc1", "fc2", "fc3"]
    assert p["conv1"]["kernel"].shape == (3, 3, 3, 16)
    assert net.apply({"params": p}, jnp.zeros((2, 32, 32, 3))).shape == (2, 10)


def test_capture_returns_every_layer_and_the_logits():
    net = models.lenet5()
    p = models.init_params(net, jax.random.PRNGKey(1), (28, 28, 1))
    x = jax.random.uniform(jax.random.PRNGKey(2), (3, 28, 28, 1))
    out, acts = net.apply({"params": p}, x, capture=True)
    assert tuple(acts) == net.layer_names
    np.testing.assert_array_equal(out, acts["fc3"])
    np.testing.assert_array_equal(out, net.apply({"params": p}, x))
    assert acts["pool2"].shape == (3, 5, 5, 16)
    np.testing.assert_array_equal(acts["relu1"], np.maximum(acts["conv1"], 0))


def test_slices_compose_to_the_whole_network():
    net = models.lenet_bibi()
    p = models.init_params(net, jax.random.PRNGKey(0), (28, 28, 1))
    x = jax.random.uniform(jax.random.PRNGKey(3), (2, 28, 28, 1))
    h = net.apply({"params": p}, x, stop="relu3")
    np.testing.assert_allclose(net.apply({"params": p}, h, start="relu3"),
                               net.apply({"params": p}, x), rtol=1e-6)
    with pytest.raises(ValueError, match="unknown layer 'relu9'"):
        net.apply({"params": p}, x, stop="relu9")


def test_max_pool_equals_flax_reduce_window_pool():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 11, 10, 3))  # odd size: floor like VALID
    ours = models.max_pool(x, 2)
    ref = nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")
    np.testing.assert_array_equal(ours, ref)


def test_unknown_model_and_bad_kwarg_are_clear_errors():
    with pytest.raises(ValueError, match="unknown model 'lenet6'"):
        models.get_model("lenet6")
    with pytest.raises(ValueError, match="lenet5"):
        models.get_model("lenet5", width=2.0)


def test_misuse_is_one_clear_error():
    import jax.numpy as jnp

    from nets import models, train
    from nets.data import Dataset

    net = models.get_model("lenet5")
    params = models.init_params(net, jax.random.PRNGKey(0), (28, 28, 1))
    with pytest.raises(ValueError, match=r"expects 1 input channel\(s\) last .*transpose"):
        net.apply({"params": params}, jnp.zeros((2, 1, 28, 28)))  # NCHW
    with pytest.raises(ValueError, match=r"expects a batch of NHWC images .*got shape \(28, 28, 1\)"):
        net.apply({"params": params}, jnp.zeros((28, 28, 1)))  # one image, no batch axis
    images = np.zeros((8, 28, 28, 1), np.float32)
    one_hot = Dataset(images, np.eye(10, dtype=np.float32)[np.arange(8) % 10], 10)
    with pytest.raises(ValueError, match=r"one-hot labels\? use labels.argmax\(-1\)"):
        train.fit(net, one_hot, None, train.TrainSpec(epochs=1, batch_size=4))
