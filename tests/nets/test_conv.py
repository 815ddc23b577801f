"""nets.conv: the CPU paths compute XLA's convolution and all its derivatives.

Oracle: ``lax.conv_general_dilated`` (``conv.reference``) and autodiff through it, in
float64, on shapes that take each path (1 input channel: shifted-sum forward; <= SMALL_CIN
input channels: col2im input gradient; more: XLA) with SAME, VALID, explicit and
even-sized padding, odd batches and a batch of 1; and with each form ``nets.autotune``
may pick forced in turn. Autotune is off here (the fixed choices) unless a test says.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nets import autotune, conv

pytestmark = pytest.mark.usefixtures("enable_x64", "fixed_choices")


@pytest.fixture
def fixed_choices(monkeypatch):
    """The module doc's fixed CPU paths, whatever the environment says."""
    monkeypatch.setattr(autotune, "enabled", False)


# (batch, height, width, cin, cout, kh, kw, padding)
SHAPES = [
    (3, 7, 8, 1, 4, 5, 5, "SAME"),  # LeNet conv1-like, odd batch
    (1, 6, 6, 1, 2, 3, 3, "VALID"),  # batch 1 (forward stays XLA's)
    (4, 6, 5, 3, 5, 4, 2, "SAME"),  # even kernel: asymmetric SAME padding
    (2, 7, 7, 6, 8, 3, 3, "VALID"),  # LeNet conv2-like
    (2, 5, 5, 1, 3, 3, 3, ((1, 2), (0, 1))),  # explicit padding
    (2, 5, 5, 12, 3, 3, 3, "SAME"),  # more than SMALL_CIN input channels: XLA throughout
]


def _data(shape, seed=0):
    n, h, w, cin, cout, kh, kw, padding = shape
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(n, h, w, cin)))
    k = jnp.asarray(rng.normal(size=(kh, kw, cin, cout)))
    return x, k, padding


def _close(a, b):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-10, atol=1e-10)


def _derivatives(conv2d, padding):
    """Value, gradients, JVP, Hessian-vector product, reverse-over-reverse, vmap over
    kernels and Jacobians of ``conv2d``: one jitted function (one compile per shape)."""

    def f(x, k):
        return conv2d(x, k, padding)

    def loss(x, k):
        return jnp.sum(jnp.sin(f(x, k)))

    @jax.jit
    def run(x, k):
        tangents = (0.3 * x[::-1], 0.7 * k[::-1])
        ks = jnp.stack([k, -2 * k])
        one = x[:1]
        return {
            "value": f(x, k),
            "grad": jax.grad(loss, (0, 1))(x, k),
            "jvp": jax.jvp(f, (x, k), tangents),
            "hvp": jax.jvp(jax.grad(loss, (0, 1)), (x, k), tangents)[1],
            "grad_of_grad": jax.grad(lambda x: jnp.sum(jax.grad(loss)(x, k) ** 2))(x),
            "vmap_kernels": jax.vmap(lambda kk: jax.grad(loss, (0, 1))(x, kk))(ks),
            "jacrev": jax.jacrev(lambda v: f(v, k))(one),
            "jacfwd": jax.jacfwd(lambda v: f(v, k))(one),
        }

    return run


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_value_and_derivatives_equal_xla(shape):
    _assert_equals_xla(*_data(shape))


def _assert_equals_xla(x, k, padding, why: str = "") -> None:
    """conv.conv2d's value and derivatives equal those of XLA's convolution."""
    ours = _derivatives(conv.conv2d, padding)(x, k)
    ref = _derivatives(conv.reference, padding)(x, k)
    for name in ref:
        try:
            _close(ours[name], ref[name])
        except AssertionError as err:
            raise AssertionError(f"{name} differs from XLA's{why}") from err


def _primitives(jaxpr) -> set[str]:
    """Every primitive in a jaxpr, inner jaxprs (loops, custom rules, jits) included."""
    names = set()
    for eqn in jaxpr.eqns:
        names.add(eqn.primitive.name)
        for param in eqn.params.values():
            for inner in param if isinstance(param, tuple) else (param,):
                inner = getattr(inner, "jaxpr", inner)  # ClosedJaxpr -> Jaxpr
                if hasattr(inner, "eqns"):
                    names |= _primitives(inner)
    return names


def test_cpu_paths_avoid_xla_convolution_where_they_apply():
    """On CPU the conv1-like forward and the input gradient contain no XLA convolution;
    with CPU_PATHS off (or more input channels) they do. The benchmarks time the gain."""
    if jax.default_backend() != "cpu":
        pytest.skip("the CPU paths are only taken on the CPU backend")
    x, k, padding = _data(SHAPES[0])
    forward = jax.make_jaxpr(lambda x: conv.conv2d(x, k, padding))(x).jaxpr
    input_grad = jax.make_jaxpr(jax.grad(lambda x: conv.conv2d(x, k, padding).sum()))(x).jaxpr
    kernel_grad = jax.make_jaxpr(jax.grad(lambda k: conv.conv2d(x, k, padding).sum()))(k).jaxpr
    assert "conv_general_dilated" not in _primitives(forward)
    assert "conv_general_dilated" not in _primitives(input_grad)
    assert "conv_general_dilated" in _primitives(kernel_grad)  # XLA's kernel gradient

    wide_x, wide_k, _ = _data(SHAPES[-1])
    wide = jax.make_jaxpr(jax.grad(lambda x: conv.conv2d(x, wide_k, "SAME").sum()))(wide_x)
    assert "conv_general_dilated" in _primitives(wide.jaxpr)

    old = conv.CPU_PATHS
    try:
        conv.CPU_PATHS = False
        off = jax.make_jaxpr(lambda x: conv.conv2d(x, k, padding) + 0.0)(x).jaxpr
        assert "conv_general_dilated" in _primitives(off)
    finally:
        conv.CPU_PATHS = old


def test_conv_module_matches_flax_conv():
    """Same parameters from the same key, same outputs, as nn.Conv (float32)."""
    jax.config.update("jax_enable_x64", False)
    try:
        x = jax.random.uniform(jax.random.PRNGKey(0), (5, 12, 12, 1))
        for padding in ("SAME", "VALID"):
            ours = conv.Conv(6, (5, 5), padding)
            flax_conv = nn.Conv(6, (5, 5), padding=padding)
            p_ours = ours.init(jax.random.PRNGKey(3), x)
            p_flax = flax_conv.init(jax.random.PRNGKey(3), x)
            _close(p_ours, p_flax)
            p_flax["params"]["bias"] = p_flax["params"]["bias"] + 0.1
            np.testing.assert_allclose(ours.apply(p_flax, x), flax_conv.apply(p_flax, x),
                                       rtol=1e-5, atol=1e-5)
    finally:
        jax.config.update("jax_enable_x64", True)


def test_pads_follow_xla():
    """SAME pads (k-1)//2 before and k//2 after, as XLA does (worked out by hand)."""
    assert conv.pads("SAME", (5, 5)) == ((2, 2), (2, 2))
    assert conv.pads("SAME", (4, 2)) == ((1, 2), (0, 1))
    assert conv.pads("VALID", (3, 3)) == ((0, 0), (0, 0))
    assert conv.pads(((1, 2), (0, 3)), (3, 3)) == ((1, 2), (0, 3))


def _forced(monkeypatch, choice: str) -> list[str]:
    """Make autotune pick ``choice`` for every part; returns the keys it was asked for."""
    asked = []

    def choose(key, candidates, default, **kwargs):
        asked.append(key)
        return choice

    monkeypatch.setattr(autotune, "enabled", True)
    monkeypatch.setattr(autotune, "choose", choose)
    return asked


@pytest.mark.parametrize("choice, shape", [("xla", SHAPES[0]), ("ours", SHAPES[-1])], ids=str)
def test_each_form_autotune_may_pick_equals_xla(monkeypatch, choice, shape):
    """XLA's forms where the fixed choice is ours (conv1-like: all three parts), col2im
    where it is XLA's (12 input channels): all derivatives still equal XLA's, and the
    forcing took."""
    asked = _forced(monkeypatch, choice)
    x, k, padding = _data(shape)
    _assert_equals_xla(x, k, padding, f" with autotune choosing {choice}")
    parts = {key.split("|")[0] for key in asked}
    expected = {"nets.conv.kernel_gradient", "nets.conv.input_gradient"}
    assert parts == expected | ({"nets.conv.forward"} if k.shape[2] == 1 else set())
    out, input_grad = jax.vjp(lambda x: conv.conv2d(x, k, padding), x)  # backward only
    backward = jax.make_jaxpr(input_grad)(out).jaxpr
    assert ("conv_general_dilated" in _primitives(backward)) == (choice == "xla")


def test_timed_forms_compute_the_same_function(monkeypatch):
    """What autotune times for each part: both forms return what autodiff through XLA's
    convolution returns on the same arrays (so the timing compares equal work); on the
    explicit, asymmetric padding shape, which takes all three parts."""
    shape = SHAPES[4]
    seen = {}

    def choose(key, candidates, default, **kwargs):
        seen[key.split("|")[0]] = {name: np.asarray(run()) for name, run in candidates.items()}
        return default

    monkeypatch.setattr(autotune, "enabled", True)
    monkeypatch.setattr(autotune, "choose", choose)
    x, k, padding = _data(shape)
    jax.grad(lambda x, k: conv.conv2d(x, k, padding).sum(), (0, 1))(x, k)  # asks for every part
    assert set(seen) == {"nets.conv.forward", "nets.conv.input_gradient", "nets.conv.kernel_gradient"}
    for part, outs in seen.items():
        assert set(outs) == {"ours", "xla"}
        np.testing.assert_allclose(outs["ours"], outs["xla"], rtol=1e-10, atol=1e-10,
                                   err_msg=part)
    # the forms ran on dummies of the traced shapes; the xla form is autodiff's own
    rng = np.random.default_rng(0)
    xd, kd = (jnp.asarray(rng.standard_normal(v.shape)) for v in (x, k))
    out, vjp = jax.vjp(lambda a, b: conv.reference(a, b, padding), xd, kd)
    g = jnp.asarray(rng.standard_normal(out.shape))
    dx, dk = vjp(g)
    _close(seen["nets.conv.kernel_gradient"]["xla"], dk)
    _close(seen["nets.conv.input_gradient"]["xla"], dx)
    _close(seen["nets.conv.forward"]["xla"], out)


def test_real_autotune_while_tracing(monkeypatch):
    """Autotune on (memory only, real clock): timing runs inside jit and grad tracing, the
    result still equals XLA's, and a second trace asks nothing new (remembered)."""
    monkeypatch.setattr(autotune, "enabled", True)
    autotune.set_dir(None)
    autotune.forget()
    x, k, padding = _data((2, 6, 6, 1, 2, 3, 3, "SAME"))
    loss = jax.jit(jax.value_and_grad(lambda x, k: jnp.sum(jnp.sin(conv.conv2d(x, k, padding))), (0, 1)))
    ref = jax.value_and_grad(lambda x, k: jnp.sum(jnp.sin(conv.reference(x, k, padding))), (0, 1))
    _close(loss(x, k), ref(x, k))
    parts = {key.split("|")[4] for key in autotune._memory}
    assert parts == {"nets.conv.forward", "nets.conv.input_gradient", "nets.conv.kernel_gradient"}

    def no_timing(*args, **kwargs):
        raise AssertionError("timed again")

    monkeypatch.setattr(autotune, "measure", no_timing)
    again = jax.jit(jax.grad(lambda x, k: jnp.sum(jnp.cos(conv.conv2d(x, k, padding))), (0, 1)))
    jax.block_until_ready(again(x, k))  # a new function, the same shapes: remembered
    autotune.forget()
