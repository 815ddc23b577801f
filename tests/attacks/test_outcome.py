"""Per-example outcomes and the bisection of minimal eps, against closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import Partial

from attacks import evaluate, gradient
from attacks.common import example_keys
from attacks.outcome import distance, minimal_eps, outcome

D = 12  # inputs 2x2x3


def _affine(w, b, x):
    """Two classes, logits (0, w.x + b): class 1 where w.x + b > 0."""
    z = x.reshape(x.shape[0], -1) @ w + b
    return jnp.stack([jnp.zeros_like(z), z], -1)


@pytest.fixture(scope="module")
def affine():
    rng = np.random.default_rng(0)
    w = jnp.asarray(rng.normal(size=D), jnp.float32)
    x = jnp.asarray(rng.uniform(0.35, 0.65, size=(24, 2, 2, 3)), jnp.float32)
    b = -float(jnp.median(x.reshape(24, -1) @ w))  # about half the examples in each class
    fn = Partial(_affine, w, jnp.float32(b))
    y = fn(x).argmax(-1)
    return fn, x, y, np.asarray(w, np.float64), b


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_minimal_eps_matches_the_closed_form_distance_to_the_hyperplane(affine, norm):
    """For an affine binary classifier the smallest linf (l2) perturbation that flips the
    decision is |w.x + b| / ||w||_1 (/ ||w||_2), when the box does not bind; PGD reaches
    the optimal corner, so the bisection must land within eps_max / 2^steps above it."""
    fn, x, y, w, b = affine
    margin = np.abs(np.asarray(x, np.float64).reshape(24, -1) @ w + b)
    exact = margin / (np.abs(w).sum() if norm == "linf" else np.sqrt((w * w).sum()))
    eps_max, steps = (0.3, 12) if norm == "linf" else (1.0, 12)
    # l2 from x itself: every step moves along w, so PGD reaches the optimum exactly (from a
    # random start the orthogonal part shrinks only slowly, ~3% off after 20 steps)
    attack = (evaluate.make_attack("pgd", steps=20) if norm == "linf"
              else evaluate.make_attack("pgd_l2", steps=20, random_init=False))
    got = minimal_eps(attack, fn, x, y, eps_max=eps_max, steps=steps, key=jax.random.PRNGKey(1))
    inside = exact < eps_max * 0.95  # the others must come back as inf
    assert inside.sum() >= 12
    tol = eps_max / 2**steps + 1e-4
    np.testing.assert_array_less(exact[inside] - 1e-4, got[inside])
    np.testing.assert_array_less(got[inside], exact[inside] + tol)
    assert np.all(np.isinf(got[exact > eps_max * 1.05]))


def test_minimal_eps_is_zero_for_misclassified_and_independent_of_chunks(affine):
    fn, x, y, *_ = affine
    y_bad = y.at[:3].set(1 - y[:3])  # three examples now misclassified clean
    attack = evaluate.make_attack("pgd", steps=10)
    key = jax.random.PRNGKey(2)
    a = minimal_eps(attack, fn, x, y_bad, eps_max=0.3, steps=6, key=key, chunk=5)
    b = minimal_eps(attack, fn, x, y_bad, eps_max=0.3, steps=6, key=key, chunk=24)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[:3], 0.0)
    assert np.all(a[3:] > 0)


def test_outcome_reads_success_and_distance_like_numpy(affine):
    fn, x, y, *_ = affine
    xa = gradient.pgd(fn, x, y, eps=0.05, steps=10, key=jax.random.PRNGKey(0))
    out = outcome(fn, x, y, xa, norm="linf")
    pred = np.asarray(fn(xa)).argmax(-1)
    np.testing.assert_array_equal(out.success, pred != np.asarray(y))
    np.testing.assert_allclose(out.distance, np.abs(np.asarray(xa - x)).reshape(24, -1).max(1),
                               rtol=1e-6)
    assert out.clean_correct.all()
    assert out.robust_accuracy == pytest.approx(1 - out.success.mean())


def test_distance_norms_against_numpy():
    d = np.random.default_rng(3).normal(size=(5, 3, 2, 1)).astype(np.float32)
    flat = d.reshape(5, -1)
    np.testing.assert_allclose(distance(jnp.asarray(d), "l1"), np.abs(flat).sum(1), rtol=1e-6)
    np.testing.assert_allclose(distance(jnp.asarray(d), "l2"), np.linalg.norm(flat, axis=1),
                               rtol=1e-6)
    np.testing.assert_allclose(distance(jnp.asarray(d), "linf"), np.abs(flat).max(1), rtol=1e-6)


def test_bad_arguments_are_one_clear_error(affine):
    fn, x, y, *_ = affine
    attack = evaluate.make_attack("pgd", steps=5)
    with pytest.raises(ValueError, match="eps_max"):
        minimal_eps(attack, fn, x, y, eps_max=np.inf)
    with pytest.raises(ValueError, match="steps"):
        minimal_eps(attack, fn, x, y, eps_max=0.3, steps=0)
    with pytest.raises(ValueError, match="x_adv has shape"):
        outcome(fn, x, y, x[:3], norm="linf")
    with pytest.raises(ValueError, match="unknown norm"):
        outcome(fn, x, y, x, norm="l3")


def test_per_example_keys_make_bisection_reproducible(affine):
    fn, x, y, *_ = affine
    attack = evaluate.make_attack("pgd", steps=5)
    keys = example_keys(jax.random.PRNGKey(4), x.shape[0])
    a = minimal_eps(attack, fn, x, y, eps_max=0.3, steps=5, key=keys)
    b = minimal_eps(attack, fn, x[::-1], y[::-1], eps_max=0.3, steps=5, key=keys[::-1])
    np.testing.assert_array_equal(a, b[::-1])
