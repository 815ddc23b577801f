"""analytic/propagate.py: Gaussian moments propagated through a whole network.

Oracles: 10^6-sample Monte Carlo through the real network (4 standard errors) where the
propagation is exact, with the regime checked in the test (a conv net whose one tied
pooling window exercises Clark's two-input formula); the same Monte Carlo with stated
tolerances where it is an approximation; the Affine-ReLU-Affine closed form of
:mod:`analytic.moments` for an MLP (both exact); exact identities between the modes.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytic import linearize, montecarlo
from analytic.moments import hidden_moments, moments
from analytic.propagate import (
    MODES,
    pool_first,
    pool_windows,
    propagate,
    propagate_batch,
)
from analytic.tightness import sym_rel_error
from nets.models import Layer, Net, init_params, max_pool, mlp

pytestmark = pytest.mark.usefixtures("enable_x64")

CONV_NET = Net((Layer("conv1", "conv", 2, 3), Layer("relu1", "relu"),
                Layer("pool1", "maxpool", window=2), Layer("flatten", "flatten"),
                Layer("fc1", "dense", 3)))


def _f64(tree):
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)


def _conv_params(shape):
    p = _f64(init_params(CONV_NET, jax.random.PRNGKey(0), shape))
    p["conv1"]["bias"] = jnp.array([0.3, -0.1])
    p["fc1"]["bias"] = jnp.array([0.1, -0.2, 0.3])
    return p


def _mc(net, params, mu, cov, seed=2):
    fn = jax.jit(lambda k: montecarlo.mc_moments(montecarlo.net_fn(net, params), mu, cov, k,
                                                 samples=10**6, chunk=10**4))
    return fn(jax.random.PRNGKey(seed))


def _z(out, mc):
    return (float(jnp.abs((out.mean - mc.mean) / mc.mean_se).max()),
            float(jnp.abs((out.cov - mc.cov) / mc.cov_se).max()))


def _pre(params, shape):
    """conv1 alone, on a flat input."""
    net = Net(CONV_NET.layers[:1])
    return (lambda x: net.apply({"params": {"conv1": params["conv1"]}},
                                x.reshape(1, *shape)).reshape(-1))


@pytest.fixture(scope="module")
def tied():
    """A 4x4 input where one pool window (the largest) has an exact tie of its two
    largest pre-activations (one pixel solved for it), and everything else is decided:
    that window's third entry and every other window's runner-up trail their maximum by
    > 10 standard deviations of the difference, and every pooled maximum is > 10
    standard deviations from 0 (the ReLU's kink). There the propagation is exact up to
    terms < 1e-20 (Phi(-10)): Clark's two-input max and a linear map elsewhere; the
    linearization cannot represent the tie."""
    shape, sigma = (4, 4, 1), 0.003
    params = _conv_params(shape)
    pre = _pre(params, shape)
    mu = jax.random.uniform(jax.random.PRNGKey(8), shape, jnp.float64)
    J = jax.jacfwd(pre)(mu.reshape(-1))
    z = pre(mu)
    idx = pool_windows((4, 4, 2), 2)
    w = int(np.argmax(z[idx].max(1)))
    order = np.argsort(-np.asarray(z[idx[w]]))
    p1, p2 = idx[w, order[0]], idx[w, order[1]]
    q = int(np.argmax(np.abs(J[p1] - J[p2])))
    mu = mu.reshape(-1).at[q].add((z[p2] - z[p1]) / (J[p1, q] - J[p2, q])).reshape(shape)
    # the regime, checked
    z, S = pre(mu), sigma**2 * J @ J.T
    zw = np.asarray(z[idx])
    top = np.argsort(-zw, axis=1)
    a, b = idx[np.arange(len(idx)), top[:, 0]], idx[np.arange(len(idx)), top[:, 1]]
    gaps = np.asarray((z[a] - z[b]) / jnp.sqrt(S[a, a] + S[b, b] - 2 * S[a, b]))
    assert abs(gaps[w]) < 1e-9 and np.delete(gaps, w).min() > 10
    c = idx[w, top[w, 2]]  # the tied window's third entry is far behind
    assert (z[a[w]] - z[c]) / jnp.sqrt(S[a[w], a[w]] + S[c, c] - 2 * S[a[w], c]) > 10
    assert np.abs(np.asarray(z[a] / jnp.sqrt(S[a, a]))).min() > 10
    return params, mu, sigma


def test_conv_net_matches_a_million_samples_where_exact(tied):
    params, mu, sigma = tied
    mc = _mc(CONV_NET, params, mu, sigma**2)
    out = propagate(CONV_NET, params, mu, sigma**2)
    z_mean, z_cov = _z(out, mc)
    assert z_mean < 4 and z_cov < 4, (z_mean, z_cov)
    # power: the linearization (no tie) misses by hundreds of standard errors
    lin = moments(linearize.linearize(CONV_NET, params, mu), mu, sigma**2)
    assert _z(lin, mc)[0] > 100


def test_conv_net_approximation_at_larger_noise():
    """Random 6x6 input, sigma 0.05 and 0.2: many near-tied windows and ReLUs near
    their kink, so every later layer's Gaussian assumption is an approximation.
    Measured (symmetric relative error vs 10^6 samples; mean, variances):

        sigma   propagate full   propagate diagonal   linearize + exact
        0.05    0.0013, 0.0019   0.012, 0.107         0.030, 0.042
        0.2     0.016,  0.072    0.071, 0.137         0.24,  0.25

    Bounds below: ~1.5x the measured errors, and the linearization 5x worse at 0.05."""
    shape = (6, 6, 1)
    params = _conv_params(shape)
    params["conv1"]["bias"] = 0.3 * jax.random.normal(jax.random.PRNGKey(3), (2,))
    mu = jax.random.uniform(jax.random.PRNGKey(1), shape, jnp.float64)
    for sigma, mean_tol, var_tol in ((0.05, 0.002, 0.003), (0.2, 0.025, 0.11)):
        mc = _mc(CONV_NET, params, mu, sigma**2)
        out = propagate(CONV_NET, params, mu, sigma**2)
        e_mean = float(sym_rel_error(out.mean, mc.mean))
        e_var = float(sym_rel_error(jnp.diag(out.cov), jnp.diag(mc.cov)))
        assert e_mean < mean_tol and e_var < var_tol, (sigma, e_mean, e_var)
        if sigma == 0.05:
            lin = moments(linearize.linearize(CONV_NET, params, mu), mu, sigma**2)
            assert float(sym_rel_error(lin.mean, mc.mean)) > 5 * e_mean
            assert float(sym_rel_error(jnp.diag(lin.cov), jnp.diag(mc.cov))) > 5 * e_var
        w = np.linalg.eigvalsh(np.asarray(out.cov))
        assert w.min() >= -1e-12 * w.max()  # PSD (Clark's weights keep it so)


SHAPE = (2, 3, 1)  # d = 6 inputs


@pytest.fixture(scope="module")
def mlp_net():
    net = mlp(num_classes=3, hidden=(12,))
    params = _f64(init_params(net, jax.random.PRNGKey(0), SHAPE))
    params["fc1"]["bias"] = 0.5 * jax.random.normal(jax.random.PRNGKey(5), (12,))
    params["fc2"]["bias"] = jax.random.normal(jax.random.PRNGKey(6), (3,))
    mu = 0.5 * jax.random.normal(jax.random.PRNGKey(1), SHAPE)
    a = 0.4 * jax.random.normal(jax.random.PRNGKey(2), (6, 6))
    return net, params, mu, {"scalar": jnp.asarray(0.3), "diag": 0.1 + jnp.arange(6.0) / 10,
                             "full": a @ a.T}


@pytest.mark.parametrize("kind", ["scalar", "diag", "full"])
def test_mlp_equals_the_affine_relu_affine_closed_form(mlp_net, kind):
    """Both exact: the propagation through flatten, fc1, relu, fc2 is the closed form
    of analytic.moments on the net's own weights (independent wiring of the same
    ReLU formulas); diagonal mode is its ``diagonal`` method's variances."""
    net, params, mu, covs = mlp_net
    lin = linearize.affine_relu_affine(net, params)
    exact = moments(lin, mu, covs[kind], "exact")
    out = propagate(net, params, mu, covs[kind])
    np.testing.assert_allclose(out.mean, exact.mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out.cov, exact.cov, rtol=1e-10, atol=1e-12)
    diag = moments(lin, mu, covs[kind], "diagonal")
    dg = propagate(net, params, mu, covs[kind], mode="diagonal")
    np.testing.assert_allclose(dg.mean, exact.mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dg.cov, jnp.diag(jnp.diag(diag.cov)), rtol=1e-10, atol=1e-12)


def test_two_relus_equal_the_layer_by_layer_closed_form(mlp_net):
    """A net with two ReLU layers takes the staged path (one compiled ReLU formula for
    both, on a padded state): exact, so equal to the closed form wired by hand, layer by
    layer (W S W^T and :func:`analytic.moments.hidden_moments` at each ReLU)."""
    _, _, mu, covs = mlp_net
    net = mlp(num_classes=3, hidden=(7, 4))  # widths 7 then 4: the second is padded
    params = _f64(init_params(net, jax.random.PRNGKey(3), SHAPE))
    for j, key in enumerate(("fc1", "fc2", "fc3")):
        params[key]["bias"] = 0.4 * jax.random.normal(jax.random.PRNGKey(10 + j),
                                                      params[key]["bias"].shape)
    m, S = mu.reshape(-1), covs["full"]
    for key in ("fc1", "fc2", "fc3"):
        W, b = params[key]["kernel"].T, params[key]["bias"]
        m, S = W @ m + b, W @ S @ W.T
        if key != "fc3":
            m, S = hidden_moments(m, S, "exact")
    out = propagate(net, params, mu, covs["full"])
    np.testing.assert_allclose(out.mean, m, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(out.cov, S, rtol=1e-10, atol=1e-14)


def test_staged_conv_net_equals_its_two_halves():
    """Two conv-ReLU-pool blocks (staged: the ReLUs share one compiled formula, the
    second block runs on the padded state reshaped to (H, W, C)) give what the two
    halves give one after the other (each with one ReLU, not staged; the second from
    the first's mean and full covariance)."""
    net = Net((Layer("conv1", "conv", 2, 3), Layer("relu1", "relu"),
               Layer("pool1", "maxpool", window=2), Layer("conv2", "conv", 3, 2),
               Layer("relu2", "relu"), Layer("flatten", "flatten"), Layer("fc1", "dense", 3)))
    shape = (6, 6, 1)
    params = _f64(init_params(net, jax.random.PRNGKey(0), shape))
    params["conv1"]["bias"] = jnp.array([0.3, -0.1])
    params["conv2"]["bias"] = jnp.array([0.1, -0.2, 0.05])
    mu = jax.random.uniform(jax.random.PRNGKey(1), shape, jnp.float64)
    head, tail = Net(net.layers[:3]), Net(net.layers[3:])
    for mode in MODES:
        mid = propagate(head, params, mu, 0.05**2, mode=mode)
        ref = propagate(tail, params, mid.mean.reshape(3, 3, 2), mid.cov, mode=mode)
        out = propagate(net, params, mu, 0.05**2, mode=mode)
        np.testing.assert_allclose(out.mean, ref.mean, rtol=1e-9)
        np.testing.assert_allclose(out.cov, ref.cov, rtol=1e-8, atol=1e-14)
    xs = jnp.stack([mu, mu[::-1]])  # vmapped: the loops over the ReLU layers batched
    batch = propagate_batch(net, params, xs, 0.05**2, batch_size=2)
    for x, mean, cov in zip(xs, batch.mean, batch.cov, strict=True):
        one = propagate(net, params, x, 0.05**2)
        np.testing.assert_allclose(mean, one.mean, rtol=1e-12)
        np.testing.assert_allclose(cov, one.cov, rtol=1e-10, atol=1e-16)


ENDS_AT_RELU = {  # name: net, input shape, input covariance form
    "dense": (Net((Layer("flatten", "flatten"), Layer("fc1", "dense", 5),
                   Layer("relu1", "relu"))), (2, 3, 1), "full"),
    "conv": (Net((Layer("conv1", "conv", 2, 3), Layer("relu1", "relu"))), (4, 4, 1), "diag"),
}


@pytest.mark.parametrize("name", sorted(ENDS_AT_RELU))
@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**16), scale=st.floats(0.01, 1.0))
def test_diagonal_mode_is_the_full_diagonal_up_to_the_first_relu(name, seed, scale):
    """A net with one ReLU and no pooling, ending at the ReLU: its pre-activations are
    exact in both modes (diagonal mode carries a full input covariance as a square
    root, per-input variances through the squared weights), so the variances agree
    exactly and the means too."""
    net, shape, kind = ENDS_AT_RELU[name]
    keys = jax.random.split(jax.random.PRNGKey(seed), 4)
    params = _f64(init_params(net, keys[0], shape))
    first = net.layers[0].name if net.layers[0].kind != "flatten" else net.layers[1].name
    params[first]["bias"] = 0.3 * jax.random.normal(keys[1], params[first]["bias"].shape)
    mu = jax.random.normal(keys[2], shape)
    d = int(np.prod(shape))
    a = jax.random.normal(keys[3], (d, d))
    cov = scale**2 * (a @ a.T / d if kind == "full" else jnp.abs(mu))
    full = propagate(net, params, mu, cov)
    dg = propagate(net, params, mu, cov, mode="diagonal")
    np.testing.assert_allclose(dg.mean, full.mean, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(jnp.diag(dg.cov), jnp.diag(full.cov), rtol=1e-8, atol=1e-14)


def test_relu_then_pool_is_pool_then_relu():
    """max(relu a, relu b) = relu(max(a, b)): the swap (``pool_first``) changes nothing in
    the function, and propagating either order gives the same moments."""
    swapped = Net(pool_first(CONV_NET.layers))
    assert [lyr.kind for lyr in swapped.layers][1:3] == ["maxpool", "relu"]
    shape = (6, 6, 1)
    params = _conv_params(shape)
    x = jax.random.uniform(jax.random.PRNGKey(1), (3, *shape), jnp.float64)
    np.testing.assert_array_equal(CONV_NET.apply({"params": params}, x),
                                  swapped.apply({"params": params}, x))
    for mode in MODES:
        a = propagate(CONV_NET, params, x[0], 0.01, mode=mode)
        b = propagate(swapped, params, x[0], 0.01, mode=mode)
        np.testing.assert_allclose(a.mean, b.mean, rtol=1e-14)
        np.testing.assert_allclose(a.cov, b.cov, rtol=1e-14)


def test_pool_windows_index_the_max_pool():
    x = jax.random.normal(jax.random.PRNGKey(0), (5, 7, 3))  # odd sizes are cropped
    idx = pool_windows(x.shape, 2)
    np.testing.assert_array_equal(x.reshape(-1)[idx].max(1),
                                  max_pool(x[None], 2).reshape(-1))


def test_batch_and_float32():
    shape = (6, 6, 1)
    params = _conv_params(shape)
    xs = jax.random.uniform(jax.random.PRNGKey(1), (3, *shape), jnp.float64)
    one = [propagate(CONV_NET, params, x, 0.05**2) for x in xs]
    batch = propagate_batch(CONV_NET, params, xs, 0.05**2, batch_size=2)  # traced: jittable
    np.testing.assert_allclose(batch.mean, np.stack([o.mean for o in one]), rtol=1e-12)
    np.testing.assert_allclose(batch.cov, np.stack([o.cov for o in one]), rtol=1e-10)
    with jax.enable_x64(False):  # float32 keeps 3 digits of the variances at sigma 0.01
        p32 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
        out32 = propagate(CONV_NET, p32, jnp.asarray(xs[0], jnp.float32), 0.01**2)
        assert out32.cov.dtype == jnp.float32
    out64 = propagate(CONV_NET, params, xs[0], 0.01**2)
    np.testing.assert_allclose(out32.mean, out64.mean, rtol=1e-5)
    np.testing.assert_allclose(jnp.diag(out32.cov), jnp.diag(out64.cov), rtol=1e-3)


def test_one_clear_error_for_what_it_does_not_handle():
    net = Net((Layer("flatten", "flatten"), Layer("drop", "dropout"), Layer("fc1", "dense", 3)))
    with pytest.raises(ValueError, match="'drop' is a 'dropout'"):
        propagate(net, {}, jnp.zeros((2, 2, 1)), 0.1)
    shape = (4, 4, 1)
    params = _conv_params(shape)
    with pytest.raises(ValueError, match="mode"):
        propagate(CONV_NET, params, jnp.zeros(shape), 0.1, mode="low_rank")
    with pytest.raises(ValueError, match="cov"):
        propagate(CONV_NET, params, jnp.zeros(shape), jnp.ones(5))
