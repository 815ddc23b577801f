"""analytic/linearize.py: two-stage linearization of nets models."""

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from analytic import linearize
from nets import models


def _init(net, shape):
    """Parameters, initialized under jit (one compilation instead of eager dispatch)."""
    return jax.jit(lambda k: models.init_params(net, k, shape))(jax.random.PRNGKey(0))


def test_mlp_linearization_returns_its_weights_exactly():
    net = models.mlp(num_classes=4, hidden=(7,))
    params = _init(net, (3, 3, 1))
    params["fc1"]["bias"] = jax.random.normal(jax.random.PRNGKey(1), (7,))
    params["fc2"]["bias"] = jax.random.normal(jax.random.PRNGKey(2), (4,))
    x = jax.random.uniform(jax.random.PRNGKey(3), (3, 3, 1))
    lin = jax.jit(lambda v: linearize.linearize(net, params, v))(x)
    np.testing.assert_array_equal(lin.A, params["fc1"]["kernel"].T)
    np.testing.assert_array_equal(lin.B, params["fc2"]["kernel"].T)
    np.testing.assert_allclose(lin.c1, params["fc1"]["bias"], atol=1e-6)
    np.testing.assert_allclose(lin.c2, params["fc2"]["bias"], atol=1e-6)
    direct = linearize.affine_relu_affine(net, params)
    np.testing.assert_array_equal(direct.A, lin.A)
    np.testing.assert_array_equal(direct.c1, params["fc1"]["bias"])
    # the Affine-ReLU-Affine net is its own linearization, at any input
    y = jax.random.normal(jax.random.PRNGKey(4), (3, 3, 1))
    np.testing.assert_allclose(linearize.apply(lin, y), net.apply({"params": params}, y[None])[0],
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="not an Affine-ReLU-Affine"):
        linearize.affine_relu_affine(models.mlp(hidden=(4, 4)), None)


@pytest.fixture(scope="module")
def lenet():
    net = models.lenet5()
    return net, _init(net, (28, 28, 1))


def test_lenet_linearization_is_exact_at_and_near_the_clean_input(lenet):
    net, params = lenet
    x = jax.random.uniform(jax.random.PRNGKey(1), (28, 28, 1))
    lin, logits = jax.jit(lambda v: (linearize.linearize(net, params, v),
                                     net.apply({"params": params}, v[None])[0]))(x)
    assert linearize.last_hidden_relu(net) == "relu4"
    assert lin.A.shape == (84, 784) and lin.B.shape == (10, 84)
    np.testing.assert_allclose(linearize.apply(lin, x), logits, rtol=1e-4, atol=1e-5)
    # A is the Jacobian of the pre-activation; B of the rest (fc3: its weights).
    np.testing.assert_array_equal(lin.B, params["fc3"]["kernel"].T)
    d = 1e-3 * jax.random.normal(jax.random.PRNGKey(2), x.shape)
    pre = net.apply({"params": params}, (x + d)[None], stop="relu4")[0]
    np.testing.assert_allclose(lin.A @ (x + d).reshape(-1) + lin.c1, pre, rtol=1e-3, atol=1e-4)


def test_other_layers_and_errors(lenet):
    net, params = lenet
    x = jax.random.uniform(jax.random.PRNGKey(1), (28, 28, 1))
    lin, logits = jax.jit(lambda v: (linearize.linearize(net, params, v, layer="relu3"),
                                     net.apply({"params": params}, v[None])[0]))(x)
    assert lin.A.shape == (120, 784) and lin.B.shape == (10, 120)
    np.testing.assert_allclose(linearize.apply(lin, x), logits, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="not a relu"):
        linearize.linearize(net, params, x, layer="fc1")
    with pytest.raises(ValueError, match="unknown layer"):
        linearize.linearize(net, params, x, layer="relu9")
    with pytest.raises(ValueError, match="no ReLU"):
        linearize.last_hidden_relu(models.Net((models.Layer("flatten", "flatten"),)))


def test_batch_equals_one_linearization_per_input():
    net = models.mlp(num_classes=3, hidden=(8, 6))  # split at relu2: a real Jacobian
    params = _init(net, (3, 3, 1))
    xs = jax.random.uniform(jax.random.PRNGKey(5), (5, 3, 3, 1))
    batch = jax.jit(lambda v: linearize.linearize_batch(net, params, v, batch_size=2))(xs)
    assert batch.A.shape == (5, 6, 9) and batch.c2.shape == (5, 3)
    one = jax.jit(lambda v: linearize.linearize(net, params, v))
    for i in range(5):  # 5 = two groups of 2 and a remainder
        for got, want in zip(batch, one(xs[i])):
            np.testing.assert_allclose(got[i], want, rtol=1e-5, atol=1e-6)


@contextlib.contextmanager
def _x64():
    """float64 inside the block (finite differences need it), the old setting after."""
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", old)


def _f64(tree):
    return jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), tree)


def _central(f, x, v, t):
    """(f(x + t v) - f(x - t v)) / (2 t): the central derivative of f along v."""
    return (f(x + t * v) - f(x - t * v)) / (2 * t)


def _rel(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


def test_lenet_jacobians_are_the_real_derivatives_at_a_tie_free_point(lenet):
    """A and B against the derivatives of the real network (jax.jacfwd of the two halves,
    and central finite differences in float64 along random directions) at a random input,
    where no pool window is tied and no ReLU input is 0. A Jacobian off by 10% fails here;
    the checks above (g(x0) = N(x0), first order near x0) hold for any A by construction."""
    net, params = lenet
    x = jax.random.uniform(jax.random.PRNGKey(1), (28, 28, 1))
    assert all(int(v) == 0 for v in linearize.count_ties(net, params, x, "relu3").values())
    lin = jax.jit(lambda v: linearize.linearize(net, params, v, layer="relu3"))(x)
    with _x64():
        variables = {"params": _f64(params)}

        def pre(xf):
            return net.apply(variables, xf.reshape(1, 28, 28, 1), stop="relu3").reshape(-1)

        def post(u):
            return net.apply(variables, u[None], start="fc2").reshape(-1)

        x0 = jnp.asarray(x, jnp.float64).reshape(-1)
        u0 = jax.nn.relu(pre(x0))
        np.testing.assert_allclose(lin.A, jax.jit(jax.jacfwd(pre))(x0), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(lin.B, jax.jit(jax.jacfwd(post))(u0), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(lin.A @ x0 + lin.c1, pre(x0), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(lin.B @ u0 + lin.c2, post(u0), rtol=1e-5, atol=1e-5)
        for i in range(3):  # finite differences: independent of JAX's derivative rules
            v = jax.random.normal(jax.random.PRNGKey(10 + i), x0.shape, jnp.float64)
            assert _rel(lin.A @ v, _central(jax.jit(pre), x0, v, 1e-6)) < 1e-4
            w = jax.random.normal(jax.random.PRNGKey(20 + i), u0.shape, jnp.float64)
            assert _rel(lin.B @ w, _central(jax.jit(post), u0, w, 1e-6)) < 1e-4


def test_count_ties_finds_tied_pool_windows_and_relu_zeros(lenet):
    net, params = lenet
    x = jax.random.uniform(jax.random.PRNGKey(1), (28, 28, 1))
    ties = linearize.count_ties(net, params, x)
    assert set(ties) == {"relu1", "pool1", "relu2", "pool2", "relu3"}  # relu4: the split
    assert all(int(v) == 0 for v in ties.values())
    # A constant image: equal conv outputs inside, every window with a positive maximum tied
    flat = linearize.count_ties(net, params, jnp.full((28, 28, 1), 0.5))
    positive = np.asarray(net.apply({"params": params}, jnp.full((1, 28, 28, 1), 0.5),
                                    stop="conv2")[0] > 0)  # pool1's output, (14, 14, 6)
    assert 0 < int(flat["pool1"]) <= positive.sum()
    assert int(flat["pool1"]) >= positive[1:-1, 1:-1].sum()  # away from the padded border
    # A black image through zero biases (the initialization): every conv1 output is 0
    assert int(linearize.count_ties(net, params, jnp.zeros((28, 28, 1)))["relu1"]) == 28 * 28 * 6
    # a tolerance counts near-ties too
    near = linearize.count_ties(net, params, x, tol=10.0)
    assert int(near["pool1"]) == int((net.apply({"params": params}, x[None], stop="conv2") > 0).sum())


def test_tie_rules_at_a_tied_input(lenet):
    """On a constant image (tied windows in pool1 and pool2), float64: ``symmetric``
    makes A u the central derivative of the real net along the fixed direction u, which
    JAX's rule (``ignore``) misses; ``nudge`` is the plain linearization at the tie-free
    x0 + delta u. Away from ties all rules agree."""
    net, params = lenet
    delta = 1e-5
    with _x64():
        p64 = _f64(params)
        x = jnp.full((28, 28, 1), 0.5, jnp.float64)
        lin = {r: linearize.linearize(net, p64, x, at_ties=r, delta=delta)
               for r in linearize.TIE_RULES}
        x0 = x.reshape(-1)
        u = linearize.tie_direction(x0.shape, jnp.float64)

        def pre(xf):
            return net.apply({"params": p64}, xf.reshape(1, 28, 28, 1), stop="relu4").reshape(-1)

        fd = _central(jax.jit(pre), x0, u, delta / 100)
        assert _rel(lin["symmetric"].A @ u, fd) < 1e-6
        assert _rel(lin["ignore"].A @ u, fd) > 1e-2  # the ties matter along u
        for r in ("ignore", "symmetric"):  # offsets at x0: g(x0) = N(x0)
            np.testing.assert_allclose(lin[r].A @ x0 + lin[r].c1, pre(x0), rtol=1e-9, atol=1e-12)
        nudged = x + delta * u.reshape(x.shape)
        assert all(int(v) == 0 for v in linearize.count_ties(net, p64, nudged).values())
        plain = linearize.linearize(net, p64, nudged)
        for got, want in zip(lin["nudge"], plain):
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    # float32, a tie-free input: the symmetric rule is the plain Jacobian (and nudge, the
    # plain linearization at a nearby point, above, too)
    y = jax.random.uniform(jax.random.PRNGKey(1), (28, 28, 1))
    ref = linearize.linearize(net, params, y)
    other = linearize.linearize(net, params, y, at_ties="symmetric")
    np.testing.assert_allclose(other.A, ref.A, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(other.B, ref.B, rtol=1e-3, atol=1e-5)
    with pytest.raises(ValueError, match="unknown at_ties"):
        linearize.linearize(net, params, y, at_ties="mean")
