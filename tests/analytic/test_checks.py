"""analytic/checks.py at the public entry points (issue 17): every bad input is one
ValueError naming the argument; valid inputs (random PSD covariances L L^T, float32
included) pass; ``check=False`` skips the checks; traced inputs (inside jit / vmap) are
never value-checked."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytic import checks, montecarlo, uses
from analytic.gaussian_attack import gaussian_attack, gaussian_attack_models
from analytic.linearize import Linearization
from analytic.moments import batched_moments, moments, output_mean
from nets import models

SHAPE = (2, 3)  # d = 6 inputs
D, H, K = 6, 5, 3
KEYS = jax.random.split(jax.random.PRNGKey(0), 4)
LIN = Linearization(jax.random.normal(KEYS[0], (H, D)), 0.1 * jnp.ones(H),
                    jax.random.normal(KEYS[1], (K, H)), jnp.zeros(K))
MU = jax.random.uniform(KEYS[2], SHAPE)
_L = np.random.default_rng(0).normal(size=(D, 3))
PSD = _L @ _L.T                      # rank 3: singular but PSD
NOT_PSD = PSD - 0.5 * np.eye(D)      # min eigenvalue -0.5
ASYM = PSD + np.triu(np.ones((D, D)), 1)
BAD_COVS = [  # (cov, words the message must contain)
    (-0.1, ["cov", "1 negative"]),
    (np.nan, ["cov", "NaN/inf"]),
    (np.inf, ["cov", "NaN/inf"]),
    (np.array([0.1, 0.2, -1e-3, 0.1, 0.1, 0.1]), ["cov", "negative"]),
    (np.where(np.arange(D).reshape(SHAPE) == 4, np.nan, 0.1), ["cov", "NaN/inf"]),
    (NOT_PSD, ["cov", "not positive semidefinite", "min eigenvalue -0.5"]),
    (ASYM, ["cov", "not symmetric"]),
    (np.where(np.eye(D) > 0, np.nan, 0.0), ["cov", "NaN/inf"]),
    (np.ones(7), ["cov", "shape (7,)"]),
    (np.eye(7), ["cov", "shape (7, 7)"]),
]


def mlp_fn(x):
    """A batch (b, 2, 3) to (b, 3) outputs: g = B relu(A x + c1) + c2."""
    return jax.vmap(lambda xi: LIN.B @ jax.nn.relu(LIN.A @ xi.reshape(-1) + LIN.c1) + LIN.c2)(x)


def raises(words, fn, *args, **kw):
    with pytest.raises(ValueError) as err:
        fn(*args, **kw)
    msg = str(err.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)
    return msg


# --- each entry point rejects each bad covariance, naming it -----------------------------

ENTRY_POINTS = {
    "moments": lambda cov, **kw: moments(LIN, MU, cov, **kw),
    "output_mean": lambda cov, **kw: output_mean(LIN, MU, cov, **kw),
    "batched_moments": lambda cov, **kw: batched_moments(
        LIN, jnp.stack([MU, MU]), cov, shared_lin=True, shared_cov=True, **kw),
    "mc_moments": lambda cov, **kw: montecarlo.mc_moments(
        mlp_fn, MU, cov, KEYS[3], samples=20, chunk=10, **kw),
    "mc_moments_batch": lambda cov, **kw: montecarlo.mc_moments_batch(
        mlp_fn, jnp.stack([MU, MU]), cov, KEYS[3], samples=20, chunk=10, **kw),
}


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize("cov, words", BAD_COVS, ids=range(len(BAD_COVS)))
def test_bad_covariance_is_one_value_error_naming_cov(entry, cov, words):
    raises(words, ENTRY_POINTS[entry], cov)


@pytest.mark.parametrize("entry", ["moments", "output_mean", "mc_moments"])
def test_check_false_skips_the_checks(entry):
    out = ENTRY_POINTS[entry](-0.1, check=False)  # no longer a ValueError
    assert jax.tree.leaves(out)


def test_traced_inputs_are_not_value_checked():
    # Values are unknown while a caller's jit / vmap traces: bad ones pass silently.
    jit_moments = jax.jit(lambda c: moments(LIN, MU, c))
    jit_mean = jax.jit(lambda m, c: output_mean(LIN, m, c))
    for cov in (-0.1, np.nan, NOT_PSD, ASYM):
        jit_moments(jnp.asarray(cov, jnp.float32))
    jit_mean(MU.at[0, 0].set(jnp.nan), jnp.float32(-1.0))
    jax.jit(lambda c: montecarlo.mc_moments(mlp_fn, MU, c, KEYS[3], samples=20,
                                            chunk=10))(jnp.float32(-0.1))
    jax.vmap(lambda c: moments(LIN, MU, c))(jnp.array([-0.1, 0.1]))
    jax.jit(lambda s: uses.expected_logits_vs_noise(LIN, MU, s))(jnp.array([-0.1, jnp.nan]))
    # A shape that fits nothing is an error also when traced (it is known statically).
    raises(["cov", "shape (7,)"], jit_moments, jnp.ones(7))


# --- shapes, methods, batches ---------------------------------------------------------------

def test_shape_mismatches_name_the_argument():
    raises(["mu", "7 entries", "d = 6"], moments, LIN, jnp.ones(7), 0.1)
    raises(["mu", "NaN/inf"], moments, LIN, MU.at[0, 0].set(jnp.nan), 0.1)
    raises(["lin", "c1"], moments, LIN._replace(c1=jnp.ones(H + 1)), MU, 0.1)
    raises(["lin", "A (n, d)"], moments, LIN._replace(A=jnp.ones(D)), MU, 0.1)
    raises(["method", "'taylor'"], moments, LIN, MU, 0.1, "taylor")
    raises(["method"], batched_moments, LIN, MU[None], 0.1, "taylor", shared_lin=True)
    mus = jnp.stack([MU, MU, MU])
    raises(["cov", "batch size 3", "shared_cov"], batched_moments, LIN, mus, jnp.ones(2),
           shared_lin=True)
    raises(["lin.A", "batch size 3", "shared_lin"], batched_moments,
           jax.tree.map(lambda a: jnp.stack([a, a]), LIN), mus, 0.1, shared_cov=True)
    raises(["lin", "batch axis"], batched_moments, LIN, mus, 0.1, shared_cov=True)
    raises(["cov[1]", "not positive semidefinite"], batched_moments, LIN, mus,
           jnp.stack([PSD, NOT_PSD, PSD]), shared_lin=True)
    raises(["cov", "negative"], batched_moments, LIN, mus, jnp.array([0.1, -0.1, 0.1]),
           shared_lin=True)
    raises(["chunk", ">= 2"], montecarlo.mc_moments, mlp_fn, MU, 0.1, KEYS[3], samples=10,
           chunk=1)
    raises(["mus", "NaN/inf"], montecarlo.mc_moments_batch, mlp_fn,
           jnp.stack([MU, MU.at[0, 1].set(jnp.inf)]), 0.1, KEYS[3], samples=20, chunk=10)


def test_valid_batches_pass_and_agree_with_one_by_one():
    mus = jnp.stack([MU, MU + 0.1])
    covs = jnp.stack([jnp.asarray(PSD, jnp.float32), 0.1 * jnp.eye(D)])
    out = batched_moments(LIN, mus, covs, "diagonal", shared_lin=True)
    for i in range(2):
        np.testing.assert_allclose(out.cov[i], moments(LIN, mus[i], covs[i], "diagonal").cov,
                                   rtol=1e-5, atol=1e-6)


# --- the uses that take a noise level --------------------------------------------------------

def test_uses_reject_bad_noise_levels():
    raises(["sigmas", "standard deviation", "1 negative"], uses.expected_logits_vs_noise,
           LIN, MU, jnp.array([0.0, -0.1]))
    raises(["sigmas", "NaN/inf"], uses.expected_logits_vs_noise, LIN, MU, [0.1, np.nan])
    raises(["x", "7 entries"], uses.expected_logits_vs_noise, LIN, jnp.ones(7), [0.1])
    raises(["method"], uses.expected_logits_vs_noise, LIN, MU, [0.1], "taylor")
    raises(["sigma", "negative"], uses.sensitivity_map, LIN, MU, 1, -0.2)
    raises(["sigma", "NaN/inf"], uses.sensitivity_map, LIN, MU, 1, np.inf)
    raises(["y = 3", "[0, 3)"], uses.sensitivity_map, LIN, MU, 3, 0.1)
    raises(["y", "scalar"], uses.sensitivity_map, LIN, MU, jnp.array([1, 2]), 0.1)
    out = uses.expected_logits_vs_noise(LIN, MU, jnp.array([-0.1]), check=False)
    assert out.mean.shape == (1, K)


# --- gaussian_attack: arguments and arrays ---------------------------------------------------

@pytest.fixture(scope="module")
def attack_setup():
    net = models.mlp(num_classes=5, hidden=(8,))
    params = models.init_params(net, jax.random.PRNGKey(0), (4, 4, 1))
    x = jax.random.uniform(jax.random.PRNGKey(2), (3, 4, 4, 1))
    return net, params, x, jnp.array([0, 1, 2])


@pytest.mark.parametrize("change, words", [
    ({"x": "scaled"}, ["x spans", "outside bounds"]),
    ({"x": "nan"}, ["x", "NaN/inf"]),
    ({"y": [0, 1, 5]}, ["y", "outside [0, 5)"]),
    ({"y": [0, 1]}, ["y", "shape (3,)"]),
    ({"y": "onehot"}, ["y", "one-hot"]),
    ({"target": [9, 0, 0]}, ["target", "outside [0, 5)"]),
    ({"eps": -0.1}, ["eps >= 0"]),
    ({"eps": np.inf}, ["finite eps", "eps = hi - lo"]),
    ({"sigma": np.nan}, ["finite sigma"]),
    ({"lr": 0.0}, ["lr > 0"]),
    ({"steps": -1}, ["steps", ">= 0"]),
    ({"samples": 0}, ["samples", ">= 1"]),
    ({"mode": "x"}, ["mode", "'x'"]),
    ({"objective": "x"}, ["objective"]),
    ({"method": "x"}, ["method"]),
    ({"bounds": (1.0, 0.0)}, ["bounds", "lo < hi"]),
])
@pytest.mark.parametrize("models_axis", [False, True])
def test_gaussian_attack_bad_arguments(attack_setup, change, words, models_axis):
    net, params, x, y = attack_setup
    kw = {"eps": 0.1, "sigma": 0.2, "steps": 2, "samples": 4, "key": KEYS[3]}
    change = dict(change)
    if change.get("x") == "scaled":
        x = x * 255
    elif change.get("x") == "nan":
        x = x.at[0, 0, 0, 0].set(jnp.nan)
    if change.get("y") == "onehot":
        y = jax.nn.one_hot(y, 5)
    elif "y" in change:
        y = jnp.asarray(change["y"])
    if "target" in change:
        change["target"] = jnp.asarray(change["target"])
    kw.update({k: v for k, v in change.items() if k not in ("x", "y")})
    if models_axis:
        raises(words, gaussian_attack_models, net,
               jax.tree.map(lambda a: jnp.stack([a, a]), params), x, y, **kw)
    else:
        raises(words, gaussian_attack, net, params, x, y, **kw)


# --- hypothesis: valid covariances pass, broken ones fail -----------------------------------

@settings(max_examples=40, deadline=None)
@given(d=st.integers(1, 40), rank=st.integers(0, 40), scale=st.floats(1e-4, 1e4),
       seed=st.integers(0, 2**31 - 1), f32=st.booleans())
def test_random_psd_covariances_pass(d, rank, scale, seed, f32):
    rng = np.random.default_rng(seed)
    L = scale * rng.normal(size=(d, min(rank, d)))
    dtype = np.float32 if f32 else np.float64
    cov = (L.astype(dtype) @ L.astype(dtype).T)  # float32 products: rounding, not symmetry
    cov = np.triu(cov) + np.triu(cov, 1).T       # exactly symmetric, as L @ L.T should be
    assert checks.check_cov(cov, (d,), d) == "full"
    assert checks.check_cov(jnp.asarray(cov), (d,), d) == "full"


@settings(max_examples=25, deadline=None)
@given(rank=st.integers(0, D), scale=st.floats(1e-3, 1e3), seed=st.integers(0, 2**31 - 1))
def test_random_psd_covariances_pass_moments(rank, scale, seed):
    L = scale * np.random.default_rng(seed).normal(size=(D, rank))
    out = moments(LIN, MU, jnp.asarray(L @ L.T, jnp.float32))
    assert np.isfinite(np.asarray(out.mean)).all()


@settings(max_examples=40, deadline=None)
@given(d=st.integers(2, 30), seed=st.integers(0, 2**31 - 1), shift=st.floats(1e-3, 10.0))
def test_shifted_below_zero_is_not_psd(d, seed, shift):
    rng = np.random.default_rng(seed)
    L = rng.normal(size=(d, d))
    cov = L @ L.T
    w = np.linalg.eigvalsh(cov)
    # Move the smallest eigenvalue to -shift * (largest |eigenvalue|): far past the tolerance.
    cov = cov - (w[0] + shift * w[-1]) * np.eye(d)
    msg = raises(["cov", "not positive semidefinite", "min eigenvalue"], checks.check_cov,
                 cov, (d,), d)
    named = float(re.search(r"min eigenvalue (\S+) <", msg).group(1))
    np.testing.assert_allclose(named, -shift * w[-1], rtol=6e-3)  # 3 digits


@settings(max_examples=40, deadline=None)
@given(v=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=D,
                  max_size=D))
def test_variance_vectors_pass_iff_finite_and_nonnegative(v):
    v = np.asarray(v, np.float32)
    ok = bool(np.isfinite(v).all() and (v >= 0).all())
    if ok:
        assert checks.check_cov(v, SHAPE, D) == "diag"
    else:
        raises(["cov", ">= 0 and finite"], checks.check_cov, v, SHAPE, D)
