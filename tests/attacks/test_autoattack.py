"""AutoAttack: the ensemble equals its members run alone (same per-example keys), keeps
the first success inside the ball, finds what gradients miss, and never recompiles."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import attacks
from attacks.autoattack import members
from attacks.common import MIN_BUCKET, bucket_sizes, run_bucketed
from nets import data, models, train

# Small budgets: the ensemble logic, not the members' strength, is under test here (the
# members have their own tests against torchattacks).
SMALL = {"apgd-ce": {"steps": 10}, "apgd-t": {"steps": 10, "n_target_classes": 2},
         "fab-t": {"steps": 10, "n_target_classes": 2}, "square": {"queries": 60}}
EPS = 0.1
# Rows per call: at most MIN_BUCKET, so every call of every member has this one shape
# (with larger chunks the still-robust rest is padded to one of a few power-of-two sizes,
# which ones depending on the data) and a second run can be checked for recompiles.
CHUNK = MIN_BUCKET


@pytest.fixture(scope="module")
def trained():
    """Two MLPs briefly trained on digits, and 150 test images."""
    tr, te = data.load("digits", "train"), data.load("digits", "test")
    net = models.mlp(hidden=(64,))
    states, _ = train.fit(net, tr, te, train.TrainSpec(epochs=4, learning_rate=3e-3),
                          seeds=(0, 1))
    fns = [attacks.model_logits_fn(net, train.select(states, i)["params"]) for i in (0, 1)]
    return fns, jnp.asarray(te.images), jnp.asarray(te.labels)


@pytest.fixture(scope="module")
def result(trained):
    fns, x, y = trained
    return attacks.autoattack(fns[0], x[:150], y[:150], eps=EPS, settings=SMALL,
                              key=jax.random.PRNGKey(0), chunk=CHUNK)


def _alone(fn, x, y, key):
    """Each member of the standard version on ALL examples with the same per-example keys."""
    keys = attacks.example_keys(key, x.shape[0])
    out = {}
    for name, attack, kw in members("standard", "linf"):
        xa = attack(fn, x, y, eps=EPS, key=keys, **{**kw, **SMALL[name]})
        out[name] = attacks.outcome(fn, x, y, xa, norm="linf").robust
    return out


def test_ensemble_equals_the_members_run_alone(trained, result):
    """With one key per example, a member's result on an example does not depend on which
    other examples it sees, so running each member only on the still-robust examples must
    give exactly clean AND (robust under every member alone): the reference's logic."""
    fns, x, y = trained
    alone = _alone(fns[0], x[:150], y[:150], jax.random.PRNGKey(0))
    expected = result.clean_correct.copy()
    for name in ("apgd-ce", "apgd-t", "fab-t", "square"):
        expected &= alone[name]
        assert result.robust_after[name] == pytest.approx(expected.mean())
        # the ensemble is never weaker than a member alone
        assert result.robust_accuracy <= alone[name].mean() + 1e-12
    np.testing.assert_array_equal(result.robust, expected)


def test_first_success_is_kept_inside_the_ball(trained, result):
    fns, x, y = trained
    x, y = np.asarray(x[:150]), np.asarray(y[:150])
    pred = np.asarray(fns[0](jnp.asarray(result.x_adv))).argmax(-1)
    broken = result.broken_by != ""
    assert np.all(pred[broken] != y[broken])  # every broken example is misclassified
    assert np.all(pred[result.robust] == y[result.robust])
    np.testing.assert_array_equal(result.x_adv[result.robust], x[result.robust])
    assert result.distance.max() <= EPS + 1e-6
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    np.testing.assert_array_equal(result.broken_by == "clean", ~result.clean_correct)
    assert set(result.broken_by) <= {"", "clean", "apgd-ce", "apgd-t", "fab-t", "square"}
    np.testing.assert_allclose(
        result.distance, np.abs(result.x_adv - x).reshape(150, -1).max(1), atol=1e-7)


def test_no_recompile_for_new_data_params_and_eps(trained, result):
    """A second run with other images, another model of the same shapes and another eps
    compiles no attack program (only tiny eager slices may be new)."""
    fns, x, y = trained
    names = []

    class Record(logging.Handler):
        def emit(self, record):
            msg = record.getMessage()
            if msg.startswith("Compiling"):
                names.append(msg.split(" with")[0].removeprefix("Compiling "))

    handler = Record()
    logging.getLogger("jax").addHandler(handler)
    try:
        with jax.log_compiles():
            attacks.autoattack(fns[1], x[150:300], y[150:300], eps=0.07, settings=SMALL,
                               key=jax.random.PRNGKey(5), chunk=CHUNK)
    finally:
        logging.getLogger("jax").removeHandler(handler)
    heavy = [n for n in names if n in {
        "jit(_apgd)", "jit(_apgd_t)", "jit(_apgd_one_target)", "jit(_fab)", "jit(_fab_t_one)",
        "jit(_attack)", "jit(_start_chunk)", "jit(_segment_chunk)", "jit(_clean_success)",
        "jit(_logits)", "jit(_predict)"}]
    assert heavy == [], names


def test_square_in_the_ensemble_breaks_a_gradient_masked_model(trained):
    """Rounding the input to 1/8 steps zeroes every input gradient: APGD finds nothing,
    Square (no gradients) still breaks most images."""
    fns, x, y = trained
    fn = jax.tree_util.Partial(lambda f, v: f(jnp.round(v * 8) / 8), fns[0])
    res = attacks.autoattack(fn, x[:64], y[:64], eps=0.15, key=jax.random.PRNGKey(1),
                             version="custom", attacks=("apgd-ce", "square"),
                             settings={"apgd-ce": {"steps": 10}, "square": {"queries": 300}})
    clean = res.clean_correct.mean()
    assert clean > 0.8
    assert res.robust_after["apgd-ce"] >= clean - 0.05
    assert res.robust_after["square"] <= clean - 0.4


def test_versions_follow_the_reference():
    std = [(n, kw) for n, _, kw in members("standard", "linf")]
    assert [n for n, _ in std] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert dict(std)["apgd-t"]["n_target_classes"] == 9
    assert dict(std)["square"]["queries"] == 5000
    l1 = {n: kw for n, _, kw in members("standard", "l1")}
    assert list(l1) == ["apgd-ce", "apgd-t", "fab-t"]  # Square has no l1 version
    assert l1["apgd-ce"]["restarts"] == 5 and l1["apgd-t"]["n_target_classes"] == 5
    plus = [n for n, _, _ in members("plus", "linf")]
    assert plus == ["apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"]
    assert [n for n, _, _ in members("rand", "l2")] == ["apgd-ce", "apgd-dlr"]


@pytest.mark.parametrize("kwargs, match", [
    ({"version": "fast"}, "unknown version"),
    ({"version": "custom"}, "needs attacks"),
    ({"attacks": ("apgd-ce",)}, "only for version='custom'"),
    ({"version": "custom", "attacks": ("pgd",)}, "unknown AutoAttack members"),
    ({"version": "custom", "attacks": ("square",), "norm": "l1", "eps": 5.0}, "no l1"),
    ({"eps": np.inf}, "finite eps"),
    ({"settings": {"apgd-dlr": {"steps": 3}}}, "does not use"),
    ({"chunk": 0}, "chunk"),
])
def test_bad_arguments_are_one_clear_error(trained, kwargs, match):
    fns, x, y = trained
    kwargs = {"eps": EPS, **kwargs}
    with pytest.raises(ValueError, match=match):
        attacks.autoattack(fns[0], x[:4], y[:4], **kwargs)


def test_robust_accuracy_runs_autoattack_per_eps(trained):
    """``robust_accuracy`` with the ensemble gives, per eps, the ensemble's own mask."""
    fns, x, y = trained
    attack = attacks.make_attack("autoattack", settings=SMALL)
    key = jax.random.PRNGKey(0)
    out = attacks.robust_accuracy(fns[0], x[:150], y[:150], {"aa": attack}, [0.0, EPS],
                                  key=key)["aa"]
    direct = attacks.autoattack(fns[0], x[:150], y[:150], eps=EPS, settings=SMALL, key=key)
    np.testing.assert_array_equal(out["correct"][1], direct.robust)
    np.testing.assert_array_equal(out["correct"][0], direct.clean_correct)


def test_bucket_sizes_pad_only_the_rest_to_a_power_of_two():
    assert bucket_sizes(146, 128) == [128, 32]  # the still-robust rest of a chunk run
    assert bucket_sizes(256, 128) == [128, 128]
    assert bucket_sizes(5, 128) == [16] and bucket_sizes(40, 128) == [64]
    assert bucket_sizes(3, 4) == [4] and bucket_sizes(7, 4) == [4, 4] and bucket_sizes(0, 8) == []
    a = np.arange(37.0)
    calls = []

    def double(v):
        calls.append(v.shape[0])
        return 2 * v

    np.testing.assert_array_equal(run_bucketed(double, (a,), 16), 2 * a)
    assert calls == [16, 16, 16]  # 16 + 16 + 5 padded to 16
