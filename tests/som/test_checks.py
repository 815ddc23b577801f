"""som/checks.py at the public entry points (issue 17): empty, non-2-D or non-finite
data, codebooks of the wrong dimension or size and bad grid / spec fields are one
ValueError naming the argument; valid data passes; ``check=False`` skips the checks;
traced inputs (inside jit / vmap) are never value-checked."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from som import checks, quality
from som.bmu import best_two, bmus
from som.grid import Grid
from som.train import SOMSpec, fit, fit_many, train

GRID = Grid(2, 3)
SPEC = SOMSpec(GRID, steps=2, chunk=16)
KEY = jax.random.PRNGKey(0)
X = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
W = jnp.asarray(X[:6])  # a codebook of GRID's 6 units


def raises(words, fn, *args, **kw):
    with pytest.raises(ValueError) as err:
        fn(*args, **kw)
    msg = str(err.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)
    return msg


def with_nan(rows):
    x = X.copy()
    x[rows, 1] = np.nan
    return x


@pytest.mark.parametrize("x, words", [
    (X[:0], ["x", "empty"]),
    (X[:, :0], ["x", "empty"]),
    (X[0], ["x", "2-D", "shape (4,)"]),
    (X[None], ["x", "2-D"]),
    (with_nan([3]), ["x", "1 of 20 rows", "row 3"]),
    (with_nan([5, 7, 11]), ["x", "3 of 20 rows", "row 5"]),
    (np.where(np.arange(4) == 2, np.inf, X), ["x", "20 of 20 rows", "row 0"]),
])
def test_fit_rejects_bad_data(x, words):
    raises(words, fit, SPEC, KEY, x)
    raises(words, fit, SPEC, KEY, jnp.asarray(x))


def test_fit_many_and_train_reject_bad_data():
    keys = jax.random.split(KEY, 2)
    raises(["xs", "2 of 40 rows", "map 1, row 3"], fit_many, SPEC, keys,
           np.stack([X, with_nan([3, 4])]))
    raises(["xs", "3-D"], fit_many, SPEC, keys, X)
    raises(["xs", "empty"], fit_many, SPEC, keys, np.zeros((2, 0, 4), np.float32))
    raises(["keys", "one key per set"], fit_many, SPEC, jax.random.split(KEY, 3),
           np.stack([X, X]))
    raises(["x", "row 3"], train, SPEC, W, with_nan([3]), KEY)
    raises(["x", "3 features", "weights has 4"], train, SPEC, W, X[:, :3], KEY)
    raises(["weights", "5 units", "grid has 6"], train, SPEC, W[:5], X, KEY)
    raises(["weights", "NaN/inf", "unit 2"], train, SPEC, W.at[2, 0].set(jnp.nan), X, KEY)


@pytest.mark.parametrize("fn", [
    bmus, best_two, quality.quantization_error,
    lambda w, x, **kw: quality.topographic_error(w, x, GRID, **kw)])
def test_map_measures_reject_dimension_mismatch_and_bad_data(fn):
    raises(["x has 3 features", "weights has 4"], fn, W, X[:, :3])
    raises(["x has 5 features", "weights has 4"], fn, W, np.ones((3, 5), np.float32))
    raises(["x", "empty"], fn, W, X[:0])
    raises(["x", "2-D"], fn, W, X[0])
    raises(["x", "1 of 20 rows"], fn, W, with_nan([0]))
    raises(["weights", "2-D"], fn, W[0], X)
    raises(["chunk", ">= 1"], fn, W, X, chunk=0)
    fn(W, X)  # valid inputs pass


def test_topographic_error_needs_the_grid_codebook():
    raises(["weights", "6 units", "grid has 4"], quality.topographic_error, W, X, Grid(2, 2))
    raises(["weights", "1 unit"], best_two, W[:1], X)


@pytest.mark.parametrize("make, words", [
    (lambda: Grid(0, 3), ["grid rows", ">= 1"]),
    (lambda: Grid(2, -1), ["grid cols", ">= 1"]),
    (lambda: Grid(2.5, 3), ["grid rows", "integer"]),
    (lambda: SOMSpec(GRID, steps=0), ["steps", ">= 1"]),
    (lambda: SOMSpec(GRID, steps=2.0), ["steps", "integer"]),
    (lambda: SOMSpec(GRID, chunk=0), ["chunk", ">= 1"]),
    (lambda: SOMSpec(GRID, sigma=-1.0), ["sigma", ">= 0"]),
    (lambda: SOMSpec(GRID, sigma=float("nan")), ["sigma", "finite"]),
    (lambda: SOMSpec(GRID, sigma_end=0.0), ["sigma_end", "> 0"]),
    (lambda: SOMSpec(GRID, "online", learning_rate=-0.1), ["learning_rate", "> 0"]),
    (lambda: SOMSpec(GRID, "online", learning_rate_end=0.0), ["learning_rate_end", "> 0"]),
    (lambda: SOMSpec(GRID, "online", learning_rate=float("inf"), decay="linear"),
     ["learning_rate", "finite"]),
])
def test_bad_grid_and_spec_fields(make, words):
    raises(words, make)


def test_valid_specs_still_build():
    SOMSpec(GRID, "online", learning_rate_end=0.0, decay="linear")  # linear reaches 0 fine
    SOMSpec(GRID, learning_rate=0.0)  # the batch map has no learning rate
    SOMSpec(Grid(np.int64(2), 3), steps=np.int64(3))


def test_check_false_skips_the_checks():
    w = fit(SPEC, KEY, with_nan([3]), check=False)  # the old behaviour: NaN spreads
    assert w.shape == (6, 4)
    assert int(bmus(W, with_nan([0]), check=False)[1]) == int(bmus(W, X)[1])


def test_traced_inputs_are_not_value_checked():
    bad = jnp.asarray(with_nan([3]))
    assert jax.jit(lambda x: fit(SPEC, KEY, x))(bad).shape == (6, 4)
    jax.jit(lambda w, x: quality.quantization_error(w, x))(W, bad)
    # Shapes are still checked when traced (they are known statically).
    raises(["x", "2-D"], jax.jit(lambda x: bmus(W, x)), bad[0])


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 40), d=st.integers(1, 6), seed=st.integers(0, 2**31 - 1),
       bad=st.lists(st.sampled_from([np.nan, np.inf, -np.inf]), max_size=5))
def test_data_checks_count_the_nonfinite_rows(n, d, seed, bad):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    rows = rng.integers(0, n, len(bad))
    x[rows, rng.integers(0, d, len(bad))] = bad
    if len(bad):
        k = len(set(rows.tolist()))
        raises(["x", f"{k} of {n} rows", f"row {rows.min()}"], checks.check_data, x)
    else:
        assert checks.check_data(x) == (n, d)
        checks.check_map_inputs(x[:1], x, chunk=7)
