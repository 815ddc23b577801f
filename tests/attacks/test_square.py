"""Square Attack: eps-ball and bounds, the reference's p schedule and eta pattern, no
gradients, per-example keys (chunking changes nothing), no recompiles, query budget,
strength against PGD on a trained model, and (slow) agreement with torchattacks.

XLA:CPU compiles each attack program in seconds, so the tiny-model tests share a few
programs: 4 examples of 6x6x1, ``queries=Q``, ``restarts=2`` everywhere."""

import functools
import importlib
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.tree_util import Partial

from attacks import gradient
from attacks.common import model_logits_fn
from nets import data, models, train

# the module: the package exports the function of the same name as attacks.square
sq = importlib.import_module("attacks.square")

Q = 15  # iterations per restart in the tiny-model tests
TINY = {"queries": Q, "restarts": 2}


@pytest.fixture(scope="module")
def tiny_net():
    net = models.mlp(num_classes=4, hidden=(16,))
    return net, models.init_params(net, jax.random.PRNGKey(0), (6, 6, 1))


@pytest.fixture(scope="module")
def tiny(tiny_net):
    """A random 2-layer net on 6x6x1 inputs: cheap, nonlinear."""
    return model_logits_fn(*tiny_net)


@pytest.fixture(scope="module")
def trained(digits_mlp):
    """An MLP trained briefly on digits (28x28, about 95% test accuracy), 128 test images."""
    net, params, te = digits_mlp
    return net, params, jnp.asarray(te.images[:128]), jnp.asarray(te.labels[:128])


def _dist(a, b, norm):
    d = np.asarray(a - b, np.float64).reshape(a.shape[0], -1)
    return np.abs(d).max(1) if norm == "linf" else np.sqrt((d**2).sum(1))


def _acc(fn, x, y):
    return float((fn(x).argmax(-1) == y).mean())


# ---------------------------------------------------------------------------------------
# The reference's formulas, transcribed from fra31/auto-attack autoattack/square.py
# (``p_selection``, ``eta_rectangles``, ``eta`` and the window side), loops and all.


def _ref_p_selection(it, n_queries, p_init):
    it = int(it / n_queries * 10000)
    if 10 < it <= 50:
        return p_init / 2
    elif 50 < it <= 200:
        return p_init / 4
    elif 200 < it <= 500:
        return p_init / 8
    elif 500 < it <= 1000:
        return p_init / 16
    elif 1000 < it <= 2000:
        return p_init / 32
    elif 2000 < it <= 4000:
        return p_init / 64
    elif 4000 < it <= 6000:
        return p_init / 128
    elif 6000 < it <= 8000:
        return p_init / 256
    elif 8000 < it:
        return p_init / 512
    return p_init


def _ref_side(p, h, w, c, norm):
    s = round(math.sqrt(p * (c * h * w) / c))
    if norm == "linf":
        s = max(s, 1)
    else:
        s = max(s, 3)
        if s % 2 == 0:
            s += 1
    return min(s, min(h, w))


def _ref_eta_rectangles(x, y):
    delta = np.zeros((x, y))
    x_c, y_c = x // 2 + 1, y // 2 + 1
    c2 = [x_c - 1, y_c - 1]
    for counter in range(max(x_c, y_c)):
        delta[max(c2[0], 0):min(c2[0] + 2 * counter + 1, x),
              max(0, c2[1]):min(c2[1] + 2 * counter + 1, y)] += 1.0 / (counter + 1) ** 2
        c2[0] -= 1
        c2[1] -= 1
    with np.errstate(invalid="ignore"):  # an empty block (s = 1) stays empty
        return delta / np.sqrt((delta**2).sum())


def _ref_eta(s):
    delta = np.zeros((s, s))
    delta[:s // 2] = _ref_eta_rectangles(s // 2, s)
    delta[s // 2:] = -_ref_eta_rectangles(s - s // 2, s)
    return delta / np.sqrt((delta**2).sum())


# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("queries", [1, 7, 100, 999, 1000, 5000, 10000, 12345])
@pytest.mark.parametrize("p_init", [0.8, 0.3, 0.05])
def test_p_schedule_and_window_sides_equal_the_reference(queries, p_init):
    p = sq.p_schedule(queries, p_init)
    expected = [_ref_p_selection(i, queries, p_init) for i in range(queries)]
    np.testing.assert_array_equal(p, expected)
    for shape in [(28, 28, 1), (32, 32, 3), (6, 6, 1), (10, 7, 2)]:
        for norm in ("linf", "l2"):
            sides = sq.window_sides(queries, p_init, shape, norm)
            side = {pi: _ref_side(pi, *shape, norm) for pi in set(expected)}
            want = [side[pi] for pi in expected]
            np.testing.assert_array_equal(sides, want)


def test_p_halves_at_the_reference_iteration_fractions():
    # with 10,000 queries the breakpoints are iterations themselves: p halves right after
    # iterations 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000
    p = sq.p_schedule(10000, 0.8)
    changes = np.flatnonzero(np.diff(p)) + 1
    np.testing.assert_array_equal(changes, [11, 51, 201, 501, 1001, 2001, 4001, 6001, 8001])
    np.testing.assert_allclose(p[changes], 0.8 / 2.0 ** np.arange(1, 10))
    # rescaled to 1,000 queries: the same fractions of the budget (int(t * 10) > b)
    changes = np.flatnonzero(np.diff(sq.p_schedule(1000, 0.8))) + 1
    np.testing.assert_array_equal(changes, [2, 6, 21, 51, 101, 201, 401, 601, 801])
    # the window is sqrt(p h w): 28x28 linf starts at round(sqrt(0.8 * 784)) = 25 and
    # ends at round(sqrt(0.8 / 512 * 784)) = 1; l2 sides are odd and at least 3
    s = sq.window_sides(10000, 0.8, (28, 28, 1), "linf")
    assert s[0] == 25 and s[-1] == 1
    s2 = sq.window_sides(10000, 0.8, (28, 28, 1), "l2")
    assert np.all(s2 % 2 == 1) and s2.min() == 3 and s2[0] == 25


@pytest.mark.parametrize("m", [12])
def test_eta_equals_the_reference_pattern_and_is_placed_anywhere(m):
    eta = jax.jit(sq.eta, static_argnums=1)  # s traced: one program for every side
    for s in range(1, m + 1):
        ref = np.zeros((m, m))
        ref[:s, :s] = _ref_eta(s)
        np.testing.assert_allclose(eta(s, m), ref, atol=1e-6)
    # placed per example at a corner, maybe transposed, on a 9 x 10 image
    place = jax.jit(lambda s, *corner: sq._place_eta(s, *corner, 9, 10,
                                                     sq._eta_scale(s, 9, jnp.float32)))
    for s in (1, 2, 3, 4, 9):
        corners = [(0, 0, False), (9 - s, 10 - s, True), (min(2, 9 - s), 1, True),
                   (9 - s, 0, False)]
        got = place(s, *(jnp.array(v) for v in zip(*corners)))
        for (vh, vw, flip), placed in zip(corners, got):
            ref = np.zeros((9, 10))
            ref[vh:vh + s, vw:vw + s] = _ref_eta(s).T if flip else _ref_eta(s)
            np.testing.assert_allclose(placed, ref, atol=1e-6)


def test_margin_and_loss_by_hand():
    z = jnp.array([[3.0, 1.0, 2.5], [0.0, 4.0, -1.0]])
    y = jnp.array([0, 2])
    m, v = sq.margin_and_loss(z, y, targeted=False, loss="margin")
    np.testing.assert_allclose(m, [0.5, -5.0])
    np.testing.assert_allclose(v, m)
    ce = -jax.nn.log_softmax(z)[jnp.arange(2), y]
    _, v = sq.margin_and_loss(z, y, targeted=False, loss="ce")
    np.testing.assert_allclose(v, -ce, rtol=1e-6)
    m, v = sq.margin_and_loss(z, y, targeted=True, loss="ce")  # y are targets
    np.testing.assert_allclose(m, [-0.5, 5.0])
    np.testing.assert_allclose(v, ce, rtol=1e-6)


def test_starting_points_are_the_reference_ones():
    x = jax.random.uniform(jax.random.PRNGKey(0), (10, 10, 3), minval=0.3, maxval=0.7)
    # linf: vertical stripes, x + eps * sign with one sign per (column, channel)
    x0 = jax.jit(sq._init_linf, static_argnums=3)(jax.random.PRNGKey(1), x, 0.2, (0.0, 1.0))
    d = np.asarray(x0 - x)
    np.testing.assert_allclose(np.abs(d), 0.2, rtol=1e-5)
    np.testing.assert_allclose(d, np.broadcast_to(d[:1], d.shape), atol=1e-6)
    assert 0 < (d > 0).mean() < 1
    # l2: blocks of side 10 // 5 = 2 on a 5 x 5 grid, each +-eta(2) or its transpose per
    # channel, the whole scaled to norm eps
    x0 = jax.jit(sq._init_l2, static_argnums=3)(jax.random.PRNGKey(2), x, 1.5, (0.0, 1.0))
    d = np.asarray(x0 - x, np.float64)
    np.testing.assert_allclose(np.sqrt((d**2).sum()), 1.5, rtol=1e-5)
    e = 1.5 * _ref_eta(2) / np.sqrt(25 * 3)  # 75 blocks x channels of unit norm
    for r in range(0, 10, 2):
        for q in range(0, 10, 2):
            for c in range(3):
                b = d[r:r + 2, q:q + 2, c]
                assert min(np.abs(b - sgn * f(e)).max() for sgn in (1, -1)
                           for f in (np.asarray, np.transpose)) < 1e-5


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("variant", ["plain", "targeted_shifted"])
@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**16), eps_frac=st.floats(0.0, 1.0), p_init=st.floats(0.05, 1.0))
def test_stays_in_eps_ball_and_bounds(tiny, norm, variant, seed, eps_frac, p_init):
    targeted = variant == "targeted_shifted"
    bounds = (-1.0, 2.0) if targeted else (0.0, 1.0)
    eps = eps_frac * (bounds[1] - bounds[0]) * (1.0 if norm == "linf" else 2.0)
    kx, ky, ka = jax.random.split(jax.random.PRNGKey(seed), 3)
    x = jax.random.uniform(kx, (4, 6, 6, 1), minval=bounds[0], maxval=bounds[1])
    y = jax.random.randint(ky, (4,), 0, 4)
    xa = sq.square(tiny, x, y, eps=eps, norm=norm, targeted=targeted, bounds=bounds,
                   key=ka, p_init=p_init, **TINY)
    assert xa.shape == x.shape and bool(jnp.all(jnp.isfinite(xa)))
    assert np.all(_dist(xa, x, norm) <= eps * (1 + 1e-5) + 1e-6)
    assert float(xa.min()) >= bounds[0] and float(xa.max()) <= bounds[1]
    # an example is either fooled or returned unchanged
    pred = np.asarray(tiny(xa).argmax(-1))
    fooled = pred == np.asarray(y) if targeted else pred != np.asarray(y)
    unchanged = np.all(np.asarray(xa == x).reshape(4, -1), 1)
    assert np.all(fooled | unchanged)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_eps_zero_returns_the_input(tiny, norm):
    x = jax.random.uniform(jax.random.PRNGKey(1), (4, 6, 6, 1))
    y = jnp.array([0, 1, 2, 3])
    np.testing.assert_array_equal(sq.square(tiny, x, y, eps=0.0, norm=norm, **TINY), x)


def test_bad_arguments_are_clear_errors(tiny):
    x, y = jnp.zeros((1, 6, 6, 1)), jnp.zeros((1,), int)
    with pytest.raises(ValueError, match="queries must be >= 1"):
        sq.square(tiny, x, y, eps=0.1, queries=0)
    with pytest.raises(ValueError, match="restarts must be >= 1"):
        sq.square(tiny, x, y, eps=0.1, restarts=0)
    with pytest.raises(ValueError, match="unknown loss"):
        sq.square(tiny, x, y, eps=0.1, loss="dlr")
    with pytest.raises(ValueError, match="unknown norm"):
        sq.square(tiny, x, y, eps=0.1, norm="l1")
    with pytest.raises(ValueError, match="p_init"):
        sq.square(tiny, x, y, eps=0.1, p_init=0.0)
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        sq.square(tiny, x[0], y, eps=0.1)
    with pytest.raises(ValueError, match="outside bounds"):
        sq.square(tiny, x + 3.0, y, eps=0.1)


def test_chunks_and_batch_do_not_change_the_result(tiny):
    # every example draws from its own key: chunks of 3 (the last padded), the whole batch
    # of 4 and the first 3 examples alone give the same points (l2: the richer state)
    x = jax.random.uniform(jax.random.PRNGKey(4), (4, 6, 6, 1))
    y = jnp.array([3, 2, 1, 0])
    kw = dict(eps=1.0, norm="l2", key=jax.random.PRNGKey(5), **TINY)
    whole, nq = sq.square_with_queries(tiny, x, y, chunk=4, **kw)
    before = sq._segment_chunk.compiled()._cache_size()
    chunked, nq3 = sq.square_with_queries(tiny, x, y, chunk=3, **kw)
    head = sq.square(tiny, x[:3], y[:3], key=jax.random.split(jax.random.PRNGKey(9), 4)[:3],
                     **{k: v for k, v in kw.items() if k != "key"})
    assert sq._segment_chunk.compiled()._cache_size() == before + 1  # one program, 3 rows
    np.testing.assert_array_equal(chunked, whole)
    np.testing.assert_array_equal(nq3, nq)
    assert np.any(np.asarray(whole != x))  # something was attacked
    per_key = sq.square(tiny, x, y, key=jax.random.split(jax.random.PRNGKey(9), 4), chunk=4,
                        **{k: v for k, v in kw.items() if k != "key"})
    np.testing.assert_array_equal(head, per_key[:3])


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_repacking_between_segments_does_not_change_the_result(tiny, norm):
    # the host-driven form, its iterations cut into segments and the examples still
    # active re-packed into chunks of at most 4 rows (8 rows, 4 + 4 -> 4, ...) between
    # them, gives the points and query counts of the one-program form (every example of a
    # chunk evaluated until the chunk's last one is done), whatever the segment ends
    x = jax.random.uniform(jax.random.PRNGKey(4), (11, 6, 6, 1))
    y = tiny(x).argmax(-1)  # all correct clean
    eps = 0.2 if norm == "linf" else 1.0
    key = jax.random.PRNGKey(5)
    kw = dict(eps=eps, norm=norm, key=key, chunk=4, **TINY)
    plain, nq_plain = sq.square_with_queries(tiny, x, y, packed=False, **kw)
    assert 1 < nq_plain.min() < nq_plain.max() == 1 + 2 * (Q + 1)  # some finish early
    packed, nq_packed = sq.square_with_queries(tiny, x, y, **kw)  # one segment for Q = 15
    np.testing.assert_array_equal(packed, plain)
    np.testing.assert_array_equal(nq_packed, nq_plain)
    assert sq.segment_ends(Q, first=2, longest=8) == [2, 6, 14, 15]
    sides = jnp.asarray(sq.window_sides(Q, 0.8, (6, 6, 1), norm))
    keys = sq.per_example_keys(key, 11)
    for ends in ([2, 6, 14, 15], [1, 2, 3, 5, 15]):
        xa, nq = sq._attack_packed(tiny, x, y, keys, jnp.float32(eps), sides, 4, restarts=2,
                                   segments=ends, norm=norm, targeted=False, loss="margin",
                                   bounds=(0.0, 1.0))
        np.testing.assert_array_equal(xa, plain)
        np.testing.assert_array_equal(nq, nq_plain)


# ---------------------------------------------------------------------------------------
# No gradients, and the query budget


CALLS = []


@jax.custom_vjp
def _no_grad(x):
    return x


def _no_grad_fwd(x):
    return x, None


def _no_grad_bwd(_, g):
    raise AssertionError("the attack differentiated the model")


_no_grad.defvjp(_no_grad_fwd, _no_grad_bwd)


def _counted(net, params, bias, x):
    """The tiny net plus ``bias``, counting its batch evaluations on the host; any
    attempt to differentiate it raises."""
    jax.debug.callback(lambda: CALLS.append(1))
    return net.apply({"params": params}, _no_grad(x)) + bias


def test_no_gradient_is_taken_and_the_query_budget_holds(tiny_net):
    net, params = tiny_net
    x = jax.random.uniform(jax.random.PRNGKey(6), (4, 6, 6, 1))
    y = jnp.zeros(4, int)
    with pytest.raises(AssertionError, match="differentiated"):
        jax.grad(lambda v: _counted(net, params, 0.0, v).sum())(x)
    CALLS.clear()

    counted = functools.partial(_counted, net)  # one static function: one program

    def run(bias, labels):
        CALLS.clear()
        fn = Partial(counted, params, jnp.asarray(bias, jnp.float32))
        xa, nq = sq.square_with_queries(fn, x, labels, eps=0.5, key=jax.random.PRNGKey(0),
                                        **TINY)
        jax.effects_barrier()
        return xa, np.asarray(nq), len(CALLS)

    bound = 1 + TINY["restarts"] * (Q + 1)  # clean + per restart: start + Q iterations
    # class 0 always wins by 100: never fooled, so every evaluation is spent
    xa, nq, calls = run([100.0, 0, 0, 0], y)
    assert calls == bound and np.all(nq == bound)
    np.testing.assert_array_equal(xa, x)
    # class 0 always wins, labels 1: fooled clean, only the clean evaluation is made
    xa, nq, calls = run([100.0, 0, 0, 0], y + 1)
    assert calls == 1 and np.all(nq == 1)
    # the plain net: the loop stops once every example is fooled
    xa, nq, calls = run([0.0, 0, 0, 0], jnp.arange(4))
    assert np.all(nq <= bound) and nq.max() <= calls <= bound


def _rounded(net, params, x):
    """A model whose input is quantized to 8 bits: d logits / dx = 0 almost everywhere."""
    return net.apply({"params": params}, jnp.round(x * 255.0) / 255.0)


def test_square_breaks_a_model_whose_gradients_are_zero(trained):
    # PGD gets zero gradients, so it moves nowhere from its random start, while Square
    # (logits only) breaks the rounded model about as well as the smooth one.
    net, params, x, y = trained
    fn = Partial(functools.partial(_rounded, net), params)
    clean = _acc(fn, x, y)
    eps = 0.1
    acc_pgd = _acc(fn, gradient.pgd(fn, x, y, eps=eps, steps=10, key=jax.random.PRNGKey(0)), y)
    acc_sq = _acc(fn, sq.square(fn, x, y, eps=eps, queries=1000, key=jax.random.PRNGKey(0)), y)
    assert clean > 0.9
    assert acc_pgd >= clean - 0.05  # PGD fails: measured = clean (0.98) for keys 0-3
    assert acc_sq <= 0.4  # Square-1000 at eps 0.1: measured 0.17-0.20 for keys 0-3


# ---------------------------------------------------------------------------------------
# Trained model: strength and recompiles


def test_strength_close_to_pgd_and_no_recompiles(trained):
    net, params, x, y = trained
    fn = model_logits_fn(net, params)
    key = jax.random.PRNGKey(0)
    programs = (sq._start_chunk, sq._segment_chunk)
    before = [p.compiled()._cache_size() for p in programs]
    for eps, slack in ((0.1, 0.1), (0.15, 0.03)):
        # measured on these 128 images over keys 0-3 (clean 0.98): eps 0.1: Square-2000
        # 0.15-0.17, PGD-20 0.11-0.125; eps 0.15: 0.008-0.016 both
        acc_sq = _acc(fn, sq.square(fn, x, y, eps=eps, queries=2000, key=key), y)
        acc_pgd = _acc(fn, gradient.pgd(fn, x, y, eps=eps, steps=20, key=key), y)
        assert acc_sq <= acc_pgd + slack, (eps, acc_sq, acc_pgd)
    # new data, eps, params, p_init and keys of the same shapes: no program beyond one per
    # bucket size (the examples still active are packed into 16, 32, 64 or 128 rows)
    moved = Partial(fn.func, jax.tree.map(lambda p: p * 1.01, fn.args[0]))
    sq.square(moved, x * 0.5, (y + 1) % 10, eps=0.05, queries=2000, p_init=0.3,
              key=jax.random.PRNGKey(7))
    sq.square(fn, x[::-1], y[::-1], eps=jnp.float32(0.2), queries=2000, key=jax.random.PRNGKey(1))
    for program, n in zip(programs, before):
        assert program.compiled()._cache_size() - n <= 4


def test_targeted_ce_and_l2_on_the_trained_model(trained):
    net, params, x, y = trained
    fn = model_logits_fn(net, params)
    key = jax.random.PRNGKey(0)
    target = (y + 3) % 10  # targeted (CE towards the target): measured 0.99-1.0 reached
    xa = sq.square(fn, x, target, eps=0.3, queries=500, targeted=True, key=key)
    assert float((fn(xa).argmax(-1) == target).mean()) >= 0.95
    # l2, measured after 500 queries: 0.47 at eps 2 and 0.20-0.24 at eps 3 (PGD-20: 0.15
    # at eps 2; clean 0.98): in l2 the black box needs more queries than in linf here
    xa = sq.square(fn, x, y, eps=3.0, norm="l2", queries=500, key=key)
    assert _acc(fn, xa, y) <= 0.3


def test_works_inside_a_callers_jit_and_vmap(tiny):
    x = jax.random.uniform(jax.random.PRNGKey(8), (4, 6, 6, 1))
    y = jnp.array([0, 1, 2, 3])
    key = jax.random.PRNGKey(3)

    @jax.jit
    def grid(x, eps):  # x traced: the attack runs whole, unchecked, inside this program
        return jax.vmap(lambda e: sq.square(tiny, x, y, eps=e, key=key, **TINY))(eps)

    eps = jnp.array([0.0, 0.1, 0.3])
    out = grid(x, eps)
    assert out.shape == (3, *x.shape)
    np.testing.assert_array_equal(out[0], x)
    for j in (1, 2):
        np.testing.assert_allclose(out[j], sq.square(tiny, x, y, eps=eps[j], key=key, **TINY),
                                   atol=1e-6)


# ---------------------------------------------------------------------------------------


def _torch_mlp(params):
    """The digits MLP in torch (NCHW in, the same weights)."""
    torch = pytest.importorskip("torch")
    w1, b1, w2, b2 = (torch.tensor(np.asarray(a)) for a in (
        params["fc1"]["kernel"], params["fc1"]["bias"], params["fc2"]["kernel"],
        params["fc2"]["bias"]))

    class MLP(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.anchor = torch.nn.Parameter(torch.zeros(1))  # torchattacks reads the device

        def forward(self, x):
            h = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
            return torch.relu(h @ w1 + b1) @ w2 + b2

    return MLP()


@pytest.mark.slow
@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 2.0)])
def test_agrees_with_torchattacks(norm, eps):
    """Robust accuracy of Square (1,000 queries) on all 450 digits test images, 3 seeds
    each, here and in torchattacks.Square with the same weights.

    Sampling interval: with per-example fooling probabilities p_i (estimated from all 6
    runs), the difference of the two means over n images and S seeds each has variance
    sum_i 2 p_i (1 - p_i) / (S n^2) under "same attack"; we require it within 3.5 of its
    standard errors, plus 0.005 for float ties between the two frameworks."""
    torch = pytest.importorskip("torch")
    torchattacks = pytest.importorskip("torchattacks")
    torch.set_num_threads(1)
    tr, te = data.load("digits", "train"), data.load("digits", "test")
    net = models.mlp(hidden=(64,))
    states, _ = train.fit(net, tr, te, train.TrainSpec(epochs=8, learning_rate=3e-3))
    params = train.select(states, 0)["params"]
    fn = model_logits_fn(net, params)
    x, y = jnp.asarray(te.images), jnp.asarray(te.labels)
    model = _torch_mlp(params)
    xt = torch.tensor(np.asarray(x)).permute(0, 3, 1, 2).contiguous()
    yt = torch.tensor(np.asarray(y)).long()
    np.testing.assert_allclose(model(xt).detach().numpy(), fn(x), atol=1e-4)
    seeds, queries = range(3), 1000
    ours, theirs, t_ours, t_theirs = [], [], 0.0, 0.0
    for seed in seeds:
        t = time.perf_counter()
        xa = sq.square(fn, x, y, eps=eps, norm=norm, queries=queries,
                       key=jax.random.PRNGKey(seed))
        ours.append(np.asarray(fn(xa).argmax(-1) == y))
        t_ours += time.perf_counter() - t
        t = time.perf_counter()
        atk = torchattacks.Square(model, norm={"linf": "Linf", "l2": "L2"}[norm], eps=eps,
                                  n_queries=queries, seed=seed)
        xta = atk(xt, yt)
        theirs.append((model(xta).argmax(-1) == yt).numpy())
        t_theirs += time.perf_counter() - t
    ours, theirs = np.array(ours), np.array(theirs)
    n, s = ours.shape[1], len(seeds)
    p = np.concatenate([ours, theirs]).mean(0)
    p_var = p * (1 - p) * 2 * s / (2 * s - 1)  # unbiased per-image variance
    se = np.sqrt(np.sum(2 * p_var / s)) / n
    diff = ours.mean() - theirs.mean()
    print(f"\n{norm} eps={eps} queries={queries} n={n}: robust accuracy ours "
          f"{ours.mean(1)} (mean {ours.mean():.4f}, {t_ours:.1f} s), torchattacks "
          f"{theirs.mean(1)} (mean {theirs.mean():.4f}, {t_theirs:.1f} s); diff "
          f"{diff:+.4f}, se {se:.4f}, clean {_acc(fn, x, y):.4f}")
    assert abs(diff) <= 3.5 * se + 0.005
