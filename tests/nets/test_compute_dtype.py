"""The compute dtype of a Net (nets.models, nets.conv): float32 by default and bit for bit
the plain float32 computation; bfloat16 on request, with float32 parameters, gradients
and outputs, and errors of bfloat16's size (8-bit mantissa: unit roundoff 2^-8 = 0.0039)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from nets import models, train
from nets.conv import Conv, conv2d

SHAPE = (28, 28, 1)


@pytest.fixture(scope="module")
def setup():
    net = models.get_model("lenet5")
    params = models.init_params(net, jax.random.PRNGKey(0), SHAPE)
    x = jax.random.uniform(jax.random.PRNGKey(1), (8, *SHAPE))
    y = jnp.arange(8) % 10
    return net, net.clone(dtype="bfloat16"), params, x, y


def plain_lenet5(p, x):
    """LeNet-5 written out in float32 from the primitives (the oracle for the default)."""
    h = x
    for name, pad in (("conv1", "SAME"), ("conv2", "VALID")):
        h = models.max_pool(jax.nn.relu(conv2d(h, p[name]["kernel"], pad) + p[name]["bias"]), 2)
    h = h.reshape(h.shape[0], -1)
    for name in ("fc1", "fc2"):
        h = jax.nn.relu(h @ p[name]["kernel"] + p[name]["bias"])
    return h @ p["fc3"]["kernel"] + p["fc3"]["bias"]


def rel(a, b) -> float:
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


def test_default_is_float32_bit_for_bit(setup):
    net, _, p, x, _ = setup
    assert net.dtype == "float32" and models.get_model("lenet5", dtype="float32") == net
    np.testing.assert_array_equal(net.apply({"params": p}, x), plain_lenet5(p, x))
    jaxpr = str(jax.make_jaxpr(lambda p, x: net.apply({"params": p}, x))(p, x))
    assert "bf16" not in jaxpr


def test_bfloat16_is_really_used_and_its_error_is_bfloat16_sized(setup):
    net, net16, p, x, _ = setup
    assert models.get_model("lenet5", dtype="bfloat16") == net16 and net16 != net
    ref, out = net.apply({"params": p}, x), net16.apply({"params": p}, x)
    assert out.dtype == jnp.float32
    assert 1e-4 < rel(out, ref) < 5e-2
    hlo = jax.jit(lambda p, x: net16.apply({"params": p}, x)).lower(p, x).as_text()
    assert re.search(r"stablehlo\.convolution.*tensor<[0-9x]+xbf16>", hlo)  # conv2
    assert len(re.findall(r"stablehlo\.dot_general.*xbf16>", hlo)) == 3  # fc1, fc2, fc3
    assert re.search(r"return .*tensor<8x10xf32>", hlo)


def test_parameters_and_gradients_stay_float32(setup):
    _, net16, p, x, y = setup
    assert all(v.dtype == jnp.float32
               for v in jax.tree.leaves(models.init_params(net16, jax.random.PRNGKey(0), SHAPE)))

    def loss(p, x):
        return optax.softmax_cross_entropy_with_integer_labels(
            net16.apply({"params": p}, x), y).mean()

    gp, gx = jax.grad(loss, argnums=(0, 1))(p, x)
    assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(gp)) and gx.dtype == jnp.float32
    # (LeNet-5's gradients are not compared with float32 ones: a max-pool window whose two
    # largest inputs are within bfloat16's rounding sends its whole gradient elsewhere,
    # so float32 on bfloat16-rounded weights already moves the input gradient by ~10%.)


@pytest.mark.parametrize("cin", [1, 6])  # nets.conv's shifted-sum / col2im CPU paths, in bf16
def test_conv_gradients_in_bfloat16_are_float32_and_bfloat16_accurate(cin):
    x = jax.random.uniform(jax.random.PRNGKey(1), (4, 12, 12, cin))
    w = jax.random.normal(jax.random.PRNGKey(2), (4, 12, 12, 5))
    grads = {}
    for dtype in (None, jnp.bfloat16):
        layer = Conv(5, (3, 3), dtype=dtype)
        p = layer.init(jax.random.PRNGKey(0), x)["params"]
        p = dict(p, bias=p["bias"] + 0.1)  # a nonzero bias, so its cast is exercised
        out = layer.apply({"params": p}, x)
        assert out.dtype == (dtype or jnp.float32)
        grads[dtype] = jax.grad(
            lambda p, x, layer=layer: (layer.apply({"params": p}, x) * w).sum(), (0, 1))(p, x)
    for g, r in zip(jax.tree.leaves(grads[jnp.bfloat16]), jax.tree.leaves(grads[None]), strict=True):
        assert g.dtype == jnp.float32
        assert 1e-4 < rel(g, r) < 5e-2


def test_capture_and_slices_work_in_bfloat16(setup):
    _, net16, p, x, _ = setup
    out, acts = net16.apply({"params": p}, x, capture=True)
    assert tuple(acts) == net16.layer_names
    assert all(a.dtype == jnp.float32 for a in acts.values())
    np.testing.assert_array_equal(out, acts["fc3"])
    # every value is a bfloat16 number: the float32 copy rounds back to itself
    np.testing.assert_array_equal(acts["relu3"].astype(jnp.bfloat16).astype(jnp.float32),
                                  acts["relu3"])
    h = net16.apply({"params": p}, x, stop="relu3")
    np.testing.assert_allclose(net16.apply({"params": p}, h, start="relu3"), out, rtol=1e-6)


def test_a_bfloat16_train_step_updates_float32_master_weights():
    """With learning rate 1e-4 every update is far below bfloat16's spacing at the weights
    (2^-8 |w|), so it survives only in float32 master weights; it matches the float32
    step's update up to bfloat16-sized gradient error."""
    opt = optax.sgd(1e-4)
    x = jax.random.uniform(jax.random.PRNGKey(1), (32, 8, 8, 1))
    y = jnp.arange(32) % 10
    updates = {}
    for dtype in models.COMPUTE_DTYPES:
        net = models.get_model("mlp", hidden=(16,), dtype=dtype)
        state = train.init_state(net, opt, jax.random.PRNGKey(0), (8, 8, 1))
        new, _ = jax.jit(train.make_train_step(net, opt))(state, x, y)
        floats = [v for v in jax.tree.leaves(new) if jnp.issubdtype(v.dtype, jnp.floating)]
        assert floats and all(v.dtype == jnp.float32 for v in floats)
        updates[dtype] = jax.tree.map(jnp.subtract, new["params"], state["params"])
    for u16, u32 in zip(jax.tree.leaves(updates["bfloat16"]), jax.tree.leaves(updates["float32"]),
                        strict=True):
        assert 1e-4 < rel(u16, u32) < 5e-2


def test_unknown_dtype_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown compute dtype 'float16'"):
        models.get_model("lenet5", dtype="float16")
    net = models.Net((models.Layer("flatten", "flatten"),), dtype="fp8")
    with pytest.raises(ValueError, match="choose one of"):
        net.init(jax.random.PRNGKey(0), jnp.zeros((1, 2)))
