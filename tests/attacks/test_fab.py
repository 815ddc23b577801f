"""FAB (attacks/fab.py): the box-constrained hyperplane projection against LP / QP
oracles, the closed-form minimal distance of an affine classifier, bounds and eps
properties, DeepFool comparison on a trained MLP, chunking, recompiles, and (slow)
agreement with torchattacks."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.tree_util import Partial
from scipy.optimize import linprog, minimize

from attacks import minimal
from attacks.common import model_logits_fn
from attacks.fab import fab, hyperplane_projection
from nets import models

# the module: the package exports the function of the same name as attacks.fab
fab_mod = importlib.import_module("attacks.fab")

SMALL = {"steps": 3, "restarts": 2, "bounds": (-1.0, 2.0)}  # one program for several tests
ORD = {"linf": np.inf, "l2": 2, "l1": 1}
DUAL = {"linf": 1, "l2": 2, "l1": np.inf}


def _norms(a, b, norm):
    return np.linalg.norm(np.asarray(a - b, np.float64).reshape(a.shape[0], -1), ORD[norm],
                          axis=1)


def _linear(W, b, x):
    return x.reshape(x.shape[0], -1) @ W + b


@pytest.fixture(scope="module")
def tiny():
    """A random 2-layer net on 6x6x1 inputs with 4 classes: cheap to compile, nonlinear."""
    net = models.mlp(num_classes=4, hidden=(16,))
    params = models.init_params(net, jax.random.PRNGKey(0), (6, 6, 1))
    return model_logits_fn(net, params)


@pytest.fixture(scope="module")
def trained(digits_mlp):
    """An MLP trained briefly on digits (about 95% test accuracy), as in test_input_attacks."""
    net, params, te = digits_mlp
    return net, params, jnp.asarray(te.images[:200]), jnp.asarray(te.labels[:200])


# --- the projection ------------------------------------------------------------------

def _oracle(t, w, b, norm, lo, hi):
    """min ||d|| s.t. w·(t + d) = b, lo <= t + d <= hi with scipy: linf and l1 as linear
    programs (HiGHS), l2 as a QP (SLSQP). Returns (d or None, feasible)."""
    n, r, box = len(t), b - w @ t, list(zip(lo - t, hi - t))
    if norm == "linf":  # variables (d, s): min s, -s <= d_i <= s
        A = np.block([[np.eye(n), -np.ones((n, 1))], [-np.eye(n), -np.ones((n, 1))]])
        res = linprog(np.r_[np.zeros(n), 1.0], A_ub=A, b_ub=np.zeros(2 * n),
                      A_eq=np.r_[w, 0.0][None], b_eq=[r], bounds=box + [(0, None)],
                      method="highs")
        return (res.x[:n] if res.status == 0 else None), res.status == 0
    if norm == "l1":  # d = u - v, u, v >= 0: min sum(u + v)
        res = linprog(np.ones(2 * n), A_eq=np.r_[w, -w][None], b_eq=[r],
                      bounds=[(0, h) for _, h in box] + [(0, -lo_) for lo_, _ in box],
                      method="highs")
        return (res.x[:n] - res.x[n:] if res.status == 0 else None), res.status == 0
    feasible = linprog(np.zeros(n), A_eq=w[None], b_eq=[r], bounds=box,
                       method="highs").status == 0
    res = minimize(lambda d: 0.5 * d @ d, np.zeros(n), jac=lambda d: d, method="SLSQP",
                   bounds=box, constraints=[{"type": "eq", "fun": lambda d: w @ d - r,
                                             "jac": lambda d: w}],
                   options={"ftol": 1e-15, "maxiter": 1000})
    return (res.x if feasible else None), bool(feasible)


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_projection_matches_an_optimization_oracle(norm):
    """Random small instances (float64): feasible ones reach the hyperplane inside the box
    with the oracle's optimal norm (l2: the unique optimum itself); infeasible ones (the
    hyperplane misses the box) return the box corner farthest along w, as the reference."""
    rng = np.random.default_rng({"linf": 0, "l2": 1, "l1": 2}[norm])
    checked = {True: 0, False: 0}
    with jax.enable_x64(True):
        for dim in (1, 6):
            m = 40
            lo, hi = -0.5, 1.5
            t = rng.uniform(lo, hi, (m, dim))
            t[:5, 0] = hi  # some points on the box faces
            w = rng.normal(size=(m, dim))
            w[rng.random((m, dim)) < 0.15] = 0.0  # some coordinates without influence
            b = np.sum(w * t, 1) + rng.normal(size=m) * rng.choice([0.05, 0.5, 3.0], m)
            b[-1] = w[-1] @ t[-1]  # one point already on its hyperplane: d = 0
            d = np.asarray(hyperplane_projection(jnp.asarray(t), jnp.asarray(w),
                                                 jnp.asarray(b), norm=norm, bounds=(lo, hi)))
            assert d.dtype == np.float64
            z = t + d
            assert np.all(z >= lo) and np.all(z <= hi)  # always inside the box
            for i in range(m):
                ref, feasible = _oracle(t[i], w[i], b[i], norm, np.full(dim, lo),
                                        np.full(dim, hi))
                checked[feasible] += 1
                if feasible:
                    assert w[i] @ z[i] == pytest.approx(b[i], abs=1e-9)
                    assert np.linalg.norm(d[i], ORD[norm]) == pytest.approx(
                        np.linalg.norm(ref, ORD[norm]), rel=1e-7, abs=1e-9)
                    if norm == "l2":
                        np.testing.assert_allclose(d[i], ref, atol=1e-6)
                else:
                    toward = np.sign(w[i] * np.sign(b[i] - w[i] @ t[i]))
                    corner = np.where(toward > 0, hi, np.where(toward < 0, lo, t[i]))
                    np.testing.assert_allclose(z[i], corner, atol=1e-12)
            np.testing.assert_allclose(d[-1], 0.0, atol=1e-12)
    assert checked[True] > 40 and checked[False] > 5  # both cases were exercised


def test_projection_is_accurate_in_float32():
    rng = np.random.default_rng(3)
    t = rng.uniform(0, 1, (16, 200)).astype(np.float32)
    w = rng.normal(size=(16, 200)).astype(np.float32)
    b = np.sum(w * t, 1) + rng.normal(size=16).astype(np.float32)
    for norm in ("linf", "l2", "l1"):
        d = np.asarray(hyperplane_projection(t, w, b, norm=norm))
        assert np.all(t + d >= 0) and np.all(t + d <= 1)
        resid = np.sum(w.astype(np.float64) * (t + d), 1) - b
        assert np.max(np.abs(resid)) < 1e-3  # ||w||_1 ~ 160: relative error ~1e-5


# --- the attack: exact answers on affine models ----------------------------------------

@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_finds_the_closed_form_minimal_distance_of_an_affine_classifier(norm):
    """For Z = W^T x + c the distance from x to the nearest other class in norm p is
    min_{k != y} (Z_y - Z_k) / ||W_y - W_k||_q (q the dual norm), with the box loose.
    FAB (and, in l1, FAB-T over all other classes) reaches it within 1% (eta = 1.05
    overshoots each step, beta pulls back: the best iterate ends ~0.5% above the minimum)."""
    rng = np.random.default_rng(4)
    W, c = rng.normal(size=(36, 4)).astype(np.float32), rng.normal(size=4).astype(np.float32)
    x = (0.4 + 0.2 * rng.random((6, 6, 6, 1))).astype(np.float32)
    z = x.reshape(6, -1) @ W + c
    y = z.argmax(1)
    exact = np.array([min((z[i, y[i]] - z[i, k]) / np.linalg.norm(W[:, y[i]] - W[:, k],
                                                                  DUAL[norm])
                          for k in range(4) if k != y[i]) for i in range(6)])
    fn = Partial(_linear, jnp.asarray(W), jnp.asarray(c))
    # FAB-T differs only in its hyperplane (target vs y), so one norm checks it
    for targeted in (False, True) if norm == "l1" else (False,):
        xa = fab(fn, jnp.asarray(x), jnp.asarray(y), norm=norm, steps=10, targeted=targeted,
                 n_target_classes=3, bounds=(-20.0, 20.0))
        ratio = _norms(xa, x, norm) / exact
        assert np.all(np.asarray(fn(xa).argmax(-1)) != y)
        assert np.all(ratio >= 1 - 1e-4) and np.all(ratio <= 1.01), ratio


# --- properties ----------------------------------------------------------------------

@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), eps_frac=st.floats(0.0, 1.0),
       case=st.sampled_from([("linf", False), ("l2", True), ("l1", False)]))
def test_stays_in_bounds_and_within_eps(tiny, seed, eps_frac, case):
    """Any eps, shifted bounds, two restarts (the random one included), FAB and FAB-T: the
    result is in the bounds, within eps of x, and where it differs from x it is
    misclassified. (Three norm / mode cases: each one is a compile.)"""
    norm, targeted = case
    bounds = (-1.0, 2.0)
    eps = eps_frac * {"linf": 1.0, "l2": 4.0, "l1": 20.0}[norm]
    kx, ky, ka = jax.random.split(jax.random.PRNGKey(seed), 3)
    x = jax.random.uniform(kx, (4, 6, 6, 1), minval=bounds[0], maxval=bounds[1])
    y = jax.random.randint(ky, (4,), 0, 4)
    xa = fab(tiny, x, y, eps=eps, norm=norm, targeted=targeted, n_target_classes=2, key=ka,
             **SMALL)
    assert xa.shape == x.shape and bool(jnp.all(jnp.isfinite(xa)))
    assert float(xa.min()) >= bounds[0] and float(xa.max()) <= bounds[1]
    assert np.all(_norms(xa, x, norm) <= eps * (1 + 1e-6) + 1e-6)
    moved = np.any(np.asarray(xa != x).reshape(4, -1), 1)
    assert np.all(np.asarray(tiny(xa).argmax(-1))[moved] != np.asarray(y)[moved])


def test_finite_eps_keeps_exactly_the_adversarials_within_it_and_never_recompiles(tiny):
    """With one start (from x) eps only selects: an example gets the eps = inf result if
    its norm is <= eps, else x. (With restarts eps also caps the random radius.) New eps,
    data and parameters of the same shapes reuse the compiled program."""
    x = jax.random.uniform(jax.random.PRNGKey(1), (4, 6, 6, 1), minval=-1.0, maxval=2.0)
    y = tiny(x).argmax(-1)
    y = y.at[0].set((y[0] + 1) % 4)  # one misclassified example: it gets x back
    kw = {"norm": "l2", "key": jax.random.PRNGKey(2), **SMALL, "restarts": 1}
    free = fab(tiny, x, y, **kw)
    before = fab_mod._fab.compiled()._cache_size()
    dist = _norms(free, x, "l2")
    assert dist[0] == 0.0 and np.all(dist[1:] > 0)
    eps = float(np.mean(np.sort(dist[1:])[:2]))  # between the two smallest norms
    capped = fab(tiny, x, y, eps=eps, **kw)
    inside = dist <= eps
    assert inside.sum() == 2  # the misclassified example and the smallest norm
    np.testing.assert_array_equal(np.asarray(capped)[inside], np.asarray(free)[inside])
    np.testing.assert_array_equal(np.asarray(capped)[~inside], np.asarray(x)[~inside])
    np.testing.assert_array_equal(fab(tiny, x, y, eps=0.0, **kw), x)
    moved = Partial(tiny.func, jax.tree.map(lambda p: p * 1.01, tiny.args[0]))
    fab(moved, x * 0.5, y, eps=0.3, **kw)
    assert fab_mod._fab.compiled()._cache_size() == before


def test_results_do_not_depend_on_the_chunking(tiny):
    """Per-example keys: chunks of 4 (the last one padded) equal one chunk of 10, and the
    first 4 examples alone equal their rows in the batch."""
    x = jax.random.uniform(jax.random.PRNGKey(3), (10, 6, 6, 1), minval=-1.0, maxval=2.0)
    y = jnp.arange(10) % 4
    kw = {"norm": "linf", "key": jax.random.PRNGKey(4), **SMALL}
    whole = np.asarray(fab(tiny, x, y, chunk=10, **kw))
    np.testing.assert_array_equal(np.asarray(fab(tiny, x, y, chunk=4, **kw)), whole)
    np.testing.assert_array_equal(np.asarray(fab(tiny, x[:4], y[:4], **kw)), whole[:4])
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        fab(tiny, x, y, chunk=0, **kw)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_robust_only_fab_t_breaks_the_same_examples_as_the_plain_form(tiny, norm):
    """FAB-T as AutoAttack runs it (each target, each restart only on the examples still
    unbroken within eps, packed into chunks of 4 and smaller) breaks exactly the examples
    the plain form (every target on every example, vmapped) breaks, with two restarts
    too; with one target and one restart the points are equal as well."""
    x = jax.random.uniform(jax.random.PRNGKey(3), (13, 6, 6, 1), minval=-1.0, maxval=2.0)
    y = tiny(x).argmax(-1)
    y = y.at[0].set((y[0] + 1) % 4)  # misclassified clean: left alone by both
    eps = {"linf": 0.15, "l2": 0.6}[norm]
    kw = {**SMALL, "eps": eps, "norm": norm, "targeted": True, "n_target_classes": 3,
          "key": jax.random.PRNGKey(4), "chunk": 4}
    plain = np.asarray(fab(tiny, x, y, **kw))
    packed = np.asarray(fab(tiny, x, y, robust_only=True, **kw))
    moved = np.any((plain != np.asarray(x)).reshape(13, -1), 1)
    assert 0 < moved.sum() < 12 and not moved[0]  # some broken, some not
    np.testing.assert_array_equal(np.any((packed != np.asarray(x)).reshape(13, -1), 1), moved)
    assert np.all(np.asarray(tiny(packed).argmax(-1))[moved] != np.asarray(y)[moved])
    assert np.all(_norms(packed, x, norm) <= eps * (1 + 1e-6))
    one = {**kw, "n_target_classes": 1, "restarts": 1}
    np.testing.assert_array_equal(np.asarray(fab(tiny, x, y, robust_only=True, **one)),
                                  np.asarray(fab(tiny, x, y, **one)))


def test_works_inside_a_callers_jit_and_eps_vmap(tiny):
    x = jax.random.uniform(jax.random.PRNGKey(5), (4, 6, 6, 1))
    y = jnp.arange(4)
    kw = {"norm": "l1", "key": jax.random.PRNGKey(6), **SMALL}
    grid = jnp.array([0.5, 2.0, jnp.inf])
    direct = [np.asarray(fab(tiny, x, y, eps=float(e), **kw)) for e in grid]
    inside = jax.jit(lambda x: jax.vmap(lambda e: fab(tiny, x, y, eps=e, **kw))(grid))(x)
    np.testing.assert_allclose(np.asarray(inside), np.stack(direct), atol=1e-6)


def test_bad_arguments_are_clear_errors(tiny):
    x, y = jnp.zeros((2, 6, 6, 1)), jnp.zeros((2,), int)
    with pytest.raises(ValueError, match="unknown norm"):
        fab(tiny, x, y, norm="l3")
    with pytest.raises(ValueError, match="restarts must be >= 1"):
        fab(tiny, x, y, restarts=0)
    with pytest.raises(ValueError, match="n_target_classes must be >= 1"):
        fab(tiny, x, y, targeted=True, n_target_classes=0)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        fab(tiny, x, y, steps=0)
    with pytest.raises(ValueError, match="eps must be >= 0"):
        fab(tiny, x, y, eps=-1.0)


# --- strength on a trained model ---------------------------------------------------------

@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_norms_no_larger_than_deepfool_on_a_trained_mlp(trained, norm):
    """On the digits MLP (nearly linear around each test point) both attacks find the
    nearest boundary; FAB's norm is within 1% of DeepFool's (overshoot 0.02) or smaller
    for >= 95% of the correctly classified examples (measured: 100%, median ratio 1.005:
    FAB's eta = 1.05 leaves its best iterate ~0.5% above the boundary)."""
    net, params, x, y = trained
    fn = model_logits_fn(net, params)
    x, y = x[:100], y[:100]
    ok = np.asarray(fn(x).argmax(-1) == y)
    assert ok.mean() > 0.9
    xf = fab(fn, x, y, norm=norm, steps=30)
    xd = minimal.deepfool(fn, x, y, norm=norm, steps=50)
    fooled_f = np.asarray(fn(xf).argmax(-1) != y)
    fooled_d = np.asarray(fn(xd).argmax(-1) != y)
    assert fooled_f[ok].mean() >= fooled_d[ok].mean() and fooled_f[ok].mean() == 1.0
    nf, nd = _norms(xf, x, norm)[ok], _norms(xd, x, norm)[ok]
    assert np.mean(nf <= nd * 1.01) >= 0.95


# --- agreement with the reference (slow: torch) ----------------------------------------

@pytest.mark.slow
def test_agrees_with_torchattacks_fab_linf(trained):
    """torchattacks.FAB (the fra31/auto-attack algorithm) on the same weights in PyTorch,
    Linf, 100 steps, one start from x (deterministic in both): the minimal norms agree
    per example (median |ratio - 1| < 1e-4, all within 1%) and the robust accuracies at
    eps = 0.05 differ by less than the 95% sampling half-width sqrt(2 p (1-p) / n) of a
    difference of two proportions (measured: identical; see the report)."""
    torch = pytest.importorskip("torch")
    torchattacks = pytest.importorskip("torchattacks")
    torch.set_num_threads(1)
    net, params, x, y = trained
    fn = model_logits_fn(net, params)
    k1, b1 = np.asarray(params["fc1"]["kernel"]), np.asarray(params["fc1"]["bias"])
    k2, b2 = np.asarray(params["fc2"]["kernel"]), np.asarray(params["fc2"]["bias"])
    tm = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(*k1.shape), torch.nn.ReLU(),
                             torch.nn.Linear(*k2.shape)).eval()
    with torch.no_grad():
        for layer, k, b in ((tm[1], k1, b1), (tm[3], k2, b2)):
            layer.weight.copy_(torch.from_numpy(k.T.copy()))
            layer.bias.copy_(torch.from_numpy(b.copy()))
    xt = torch.from_numpy(np.array(x)).permute(0, 3, 1, 2).contiguous()  # NCHW, C = 1
    yt = torch.from_numpy(np.array(y)).long()
    assert np.max(np.abs(tm(xt).detach().numpy() - np.asarray(fn(x)))) < 1e-4
    ok = np.asarray(fn(x).argmax(-1) == y)

    def torch_fab(eps):
        attack = torchattacks.FAB(tm, norm="Linf", eps=eps, steps=100, n_restarts=1)
        return jnp.asarray(attack(xt, yt).permute(0, 2, 3, 1).numpy())

    # minimal norms (eps = 1 covers the box)
    xa_t, xa_j = torch_fab(1.0), fab(fn, x, y, norm="linf", steps=100)
    fooled_t = np.asarray(fn(xa_t).argmax(-1) != y)
    fooled_j = np.asarray(fn(xa_j).argmax(-1) != y)
    both = ok & fooled_t & fooled_j
    assert fooled_j[ok].mean() >= fooled_t[ok].mean() - 0.01
    ratio = _norms(xa_j, x, "linf")[both] / _norms(xa_t, x, "linf")[both]
    med_t, med_j = np.median(_norms(xa_t, x, "linf")[both]), np.median(
        _norms(xa_j, x, "linf")[both])
    print(f"\nmedian linf norm: torchattacks {med_t:.5f}, ours {med_j:.5f}; per-example "
          f"ratio min {ratio.min():.5f} median {np.median(ratio):.6f} max {ratio.max():.5f}")
    assert np.median(np.abs(ratio - 1)) < 1e-4 and np.all(np.abs(ratio - 1) < 0.01)
    # robust accuracy at eps
    eps = 0.05
    acc_t = float(np.mean(np.asarray(fn(torch_fab(eps)).argmax(-1) == y)))
    acc_j = float(np.mean(np.asarray(fn(fab(fn, x, y, eps=eps, steps=100)).argmax(-1) == y)))
    p, n = (acc_t + acc_j) / 2, len(y)
    half = 1.96 * np.sqrt(2 * p * (1 - p) / n)
    print(f"robust accuracy at linf eps {eps}: torchattacks {acc_t:.3f}, ours {acc_j:.3f}, "
          f"95% half-width {half:.3f} (n = {n})")
    assert abs(acc_t - acc_j) <= half
