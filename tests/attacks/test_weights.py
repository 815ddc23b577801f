"""attacks/weights.py and attacks/weights_sweep.py (the lens end to end is in
tests/experiments/test_weights_lens.py).

Oracles are independent of the implementation where possible: counts of zeros against
Python's ``round(p * n)``, a Python loop over (p, trial) with full forward passes and
``np.argsort`` for top-k against the vmapped, prefix-sharing sweep, and distribution
checks with tolerances derived from the sample size.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats

from attacks import weights as W
from attacks import weights_sweep as S
from nets import data, models

KEY = jax.random.PRNGKey(0)
ENTRYWISE = ("synapse_knockout", "mutation", "resample")


def nonzero(shape, seed=0, scale=1.0):
    """Values that are never zero (so a zero means 'knocked out') and, with probability
    one, all distinct. NumPy, so that building test data compiles nothing."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.5, 1.5, shape) * rng.choice([-1.0, 1.0], shape)
    return jnp.asarray(scale * x, jnp.float32)


# One jitted perturbation per (layer, kind, target), shared by the tests below so that
# each setting compiles once for the whole file.
perturb = jax.jit(W.perturb, static_argnames=("layer", "kind", "target"))


@pytest.fixture(scope="module")
def net():
    return models.lenet5()


@pytest.fixture(scope="module")
def params(net):
    """LeNet-5 parameters with every leaf random and nonzero (biases included), so that
    a perturbation of any target is visible."""
    shapes = jax.eval_shape(lambda: models.init_params(net, KEY, (28, 28, 1)))
    leaves, tree = jax.tree.flatten(shapes)
    return jax.tree.unflatten(tree, [nonzero(x.shape, i, 0.2) for i, x in enumerate(leaves)])


def targets_of(kind):
    """Node knockout has no target (it removes whole units); the others have two."""
    return ("weights",) if kind == "node_knockout" else ("weights", "biases")


# --- the perturbations -----------------------------------------------------------------

@jax.jit
def _knockout(w, p, key):
    return W.synapse_knockout(w, p, key)


@settings(max_examples=30, deadline=None)
@given(n=st.sampled_from([1, 7, 60, 150]), p=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
def test_synapse_knockout_zeroes_exactly_round_pn_entries(n, p, seed):
    frac = p * n - np.floor(p * n)
    assume(abs(frac - 0.5) > 1e-3)  # float32 p*n may round the other way at exact halves
    w = nonzero((n,), seed)
    out = np.asarray(_knockout(w, p, jax.random.PRNGKey(seed)))  # p traced: one compile per n
    zero = out == 0
    assert zero.sum() == round(p * n)
    np.testing.assert_array_equal(out[~zero], np.asarray(w)[~zero])  # the rest untouched


@pytest.mark.parametrize("shape", [(5, 5, 3, 8), (20, 7)])  # conv HWIO and dense (in, out)
@pytest.mark.parametrize("p", [0.0, 0.3, 0.5, 1.0])
def test_node_knockout_zeroes_exactly_round_p_units_with_their_bias(shape, p):
    kernel, bias = nonzero(shape), nonzero(shape[-1:], 5)
    k2, b2 = jax.jit(W.node_knockout)(kernel, bias, p, KEY)
    k2, b2 = np.asarray(k2), np.asarray(b2)
    units = shape[-1]
    dead = np.all(k2.reshape(-1, units) == 0, axis=0)
    assert dead.sum() == round(p * units)
    np.testing.assert_array_equal(b2 == 0, dead)  # a unit's bias dies with its weights
    live = ~dead
    np.testing.assert_array_equal(k2[..., live], np.asarray(kernel)[..., live])
    np.testing.assert_array_equal(b2[live], np.asarray(bias)[live])


def test_masks_are_nested_in_p_for_one_key():
    masks = jax.vmap(W.random_mask, in_axes=(None, None, 0))(KEY, (40, 3), jnp.linspace(0, 1, 11))
    masks = np.asarray(masks).reshape(11, -1)
    assert [m.sum() for m in masks] == [round(0.1 * i * 120) for i in range(11)]
    assert np.all(masks[:-1] <= masks[1:])  # chosen at p_i => chosen at p_{i+1}


@pytest.mark.parametrize("kind", W.KINDS)
@pytest.mark.parametrize("layer", ["conv1", "fc2"])
def test_only_the_chosen_layer_and_target_change(params, kind, layer):
    for target in targets_of(kind):
        out = perturb(params, 0.5, KEY, layer=layer, kind=kind, target=target)
        changed = {(name, leaf) for name in params for leaf in params[name]
                   if not np.array_equal(out[name][leaf], params[name][leaf])}
        if kind == "node_knockout":
            assert changed == {(layer, "kernel"), (layer, "bias")}
        else:
            assert changed == {(layer, W.TARGETS[target])}


@pytest.mark.parametrize("kind", W.KINDS)
def test_p_zero_is_the_identity(params, kind):
    for target in targets_of(kind):
        out = perturb(params, 0.0, KEY, layer="fc2", kind=kind, target=target)
        chex.assert_trees_all_equal(out, params)


@pytest.mark.parametrize("kind", W.KINDS)
def test_same_key_same_perturbation_different_keys_differ(params, kind):
    for target in targets_of(kind):
        leaf = W.TARGETS[target]
        a, b, c = (perturb(params, 0.4, jax.random.PRNGKey(s), layer="fc2", kind=kind,
                           target=target) for s in (1, 1, 2))
        chex.assert_trees_all_equal(a, b)
        assert not np.array_equal(a["fc2"][leaf], c["fc2"][leaf])


def test_mutation_noise_has_std_p_times_std_w():
    # A non-Gaussian layer (uniform) so that std(w) is not the noise's own scale.
    n = 200_000
    w = jax.random.uniform(KEY, (400, 500), minval=-0.3, maxval=0.1)
    ps = jnp.array([0.1, 0.5, 1.0])
    out = jax.jit(jax.vmap(W.mutation, in_axes=(None, 0, None)))(w, ps, jax.random.PRNGKey(7))
    sigma_w = float(np.std(np.asarray(w, np.float64)))
    for p, o in zip(np.asarray(ps), np.asarray(out, np.float64)):
        noise = o - np.asarray(w, np.float64)
        sigma = p * sigma_w
        # Sample std of n normals: standard error sigma / sqrt(2 n) (0.16% here); allow
        # 5 standard errors. Sample mean: standard error sigma / sqrt(n).
        assert abs(noise.std() / sigma - 1) < 5 / np.sqrt(2 * n)
        assert abs(noise.mean()) < 5 * sigma / np.sqrt(n)
        # and it is Gaussian: Kolmogorov-Smirnov against N(0, sigma^2).
        assert stats.kstest(noise.ravel() / sigma, "norm").pvalue > 1e-3


def test_resample_draws_from_the_layers_own_values():
    n, p = 1000, 0.5
    w = nonzero((25, 40), 3)  # 1000 distinct values
    out = np.asarray(jax.jit(W.resample)(w, p, KEY))
    original = np.asarray(w)
    assert np.isin(out, original).all()  # every value is one of the layer's own
    changed = (out != original).sum()
    # round(p n) = 500 entries are redrawn; a redraw equals the old value with chance
    # 1/n, so about 0.5 of them are expected unchanged (P(more than 5) < 1e-4).
    k = round(p * n)
    assert k - 5 <= changed <= k
    # at p = 1 the layer is a bootstrap sample of itself: many values repeat
    full = np.asarray(W.resample(w, 1.0, KEY))
    assert np.isin(full, original).all() and len(np.unique(full)) < 0.75 * n


def test_vmap_over_keys_and_p_equals_separate_calls(params):
    f = functools.partial(W.perturb, layer="conv1", kind="synapse_knockout")
    ps, keys = jnp.array([0.0, 0.3, 0.9]), jax.random.split(KEY, 2)
    batched = jax.jit(jax.vmap(jax.vmap(f, in_axes=(None, None, 0)), in_axes=(None, 0, None)))(
        params, ps, keys)
    for i, p in enumerate(ps):
        for t, key in enumerate(keys):
            one = f(params, p, key)["conv1"]["kernel"]
            np.testing.assert_array_equal(batched["conv1"]["kernel"][i, t], one)


def test_bad_names_are_clear_errors(params):
    with pytest.raises(ValueError, match="unknown perturbation kind 'dropout'"):
        W.perturb(params, 0.1, KEY, layer="conv1", kind="dropout")
    with pytest.raises(ValueError, match="unknown layer 'conv9'"):
        W.perturb(params, 0.1, KEY, layer="conv9", kind="mutation")
    with pytest.raises(ValueError, match="unknown target 'bias'"):
        W.perturb(params, 0.1, KEY, layer="conv1", kind="mutation", target="bias")


# --- the sweep --------------------------------------------------------------------------

def test_label_rank_breaks_ties_like_argmax():
    z = jnp.array([[0.0, 0.0, 0.0], [1.0, 3.0, 3.0], [2.0, 1.0, 0.0]])
    y = jnp.array([2, 2, 0])
    np.testing.assert_array_equal(S.label_rank(z, y), [2, 1, 0])
    assert (np.asarray(S.label_rank(z, y)) < 1).tolist() == (np.argmax(z, -1) == y).tolist()


def test_vmapped_sweep_equals_a_python_loop(net, params):
    # 450 images = 3 chunks of 128 + a padded 66: the padding must not count.
    te = data.load("digits", "test")
    images, labels = te.images, te.labels
    ps, trials = (0.0, 0.7, 1.0), 2
    key = jax.random.PRNGKey(3)
    kinds, targets, layers = ("synapse_knockout", "node_knockout"), ("weights",), ("conv1", "fc3")
    n = len(labels)
    out = S.sweep(net, params, images, labels, key, ps=ps, trials=trials, kinds=kinds,
                  targets=targets, layers=layers)
    full_logits = jax.jit(lambda prm: net.apply({"params": prm}, images))
    for name, kind, target, layer in S.plan(kinds, targets, layers):
        keys = S.trial_keys(key, kind, target, layer, trials)
        f = functools.partial(perturb, layer=layer, kind=kind, target=target)
        top1, top5 = np.zeros((len(ps), trials)), np.zeros((len(ps), trials))
        for i, p in enumerate(ps):
            for t in range(trials):
                z = np.asarray(full_logits(f(params, p, keys[t])))
                top1[i, t] = (z.argmax(-1) == labels).mean()
                order = np.argsort(-z, axis=-1, kind="stable")[:, :5]
                top5[i, t] = (order == labels[:, None]).any(-1).mean()
        # Equal up to one image: the batched convolutions sum in another order, which may
        # flip a prediction sitting exactly on a decision boundary.
        np.testing.assert_allclose(out[name][layer]["top1"], top1, atol=1 / n + 1e-12)
        np.testing.assert_allclose(out[name][layer]["topk"], top5, atol=1 / n + 1e-12)
    # p = 0 is the clean network in every trial
    clean1, _ = S.clean_accuracy(net, params, images, labels)
    np.testing.assert_allclose(out["synapse_knockout/weights"]["fc3"]["top1"][0], clean1)


def test_sweep_does_not_recompile_for_the_same_shapes(net, params):
    te = data.load("digits", "test")
    x, y = jnp.asarray(te.images[:32]), jnp.asarray(te.labels[:32])
    run = functools.partial(S.sweep_accuracy, net, layer="fc2", kind="mutation", chunk=16)
    run(params, x, y, [0.0, 0.5], jax.random.split(KEY, 3))
    size = S.layer_counts._cache_size()
    other = jax.tree.map(lambda a: a * 2, params)
    run(other, x[::-1], y[::-1], (0.2, 0.9), jax.random.split(KEY + 1, 3))
    assert S.layer_counts._cache_size() == size


def stack(trees):
    return jax.tree.map(lambda *a: jnp.stack(a), *trees)


def test_stacked_sweep_equals_one_sweep_per_model(net, params):
    """All settings of a layer in one call, S models in one call: the same numbers as
    each model swept alone, and one compile per layer however many models and kinds."""
    te = data.load("digits", "test")
    x, y = te.images[:40], te.labels[:40]
    models_ = [params, jax.tree.map(lambda a: -a, params), jax.tree.map(lambda a: a * 3, params)]
    keys = jax.random.split(jax.random.PRNGKey(11), 3)
    targets = ("weights", "biases")
    kinds = ("node_knockout", "mutation")
    kw = {"ps": (0.0, 0.4, 1.0), "trials": 2, "kinds": kinds, "targets": targets,
          "layers": ("fc2", "fc3"), "chunk": 16}
    before = S.layer_counts._cache_size()
    out = S.sweep(net, stack(models_), x, y, keys, stacked=True, **kw)
    assert S.layer_counts._cache_size() == before + 2  # one program per layer
    assert sorted(out) == ["mutation/biases", "mutation/weights", "node_knockout"]
    for i, prm in enumerate(models_):
        alone = S.sweep(net, prm, x, y, keys[i], **kw)
        for name in alone:
            for layer in ("fc2", "fc3"):
                for metric in ("top1", "topk"):
                    assert out[name][layer][metric].shape == (3, 3, 2)
                    np.testing.assert_array_equal(out[name][layer][metric][i],
                                                  alone[name][layer][metric])
    # and a setting swept on its own gives the numbers it gets among the others
    k1, _ = S.sweep_accuracy(net, params, x, y, kw["ps"],
                             S.trial_keys(keys[0], "mutation", "biases", "fc3", 2),
                             layer="fc3", kind="mutation", target="biases", chunk=16)
    np.testing.assert_array_equal(k1, out["mutation/biases"]["fc3"]["top1"][0])


def test_stacked_clean_accuracy_equals_each_model(net, params):
    te = data.load("digits", "test")
    x, y = te.images[:50], te.labels[:50]
    models_ = [params, jax.tree.map(lambda a: a * 0.5 + 0.01, params)]
    top1, top5 = S.clean_accuracy(net, stack(models_), x, y, chunk=16, stacked=True)
    for i, prm in enumerate(models_):
        z = np.asarray(net.apply({"params": prm}, x))
        assert top1[i] == pytest.approx((z.argmax(-1) == y).mean())
        order = np.argsort(-z, axis=-1, kind="stable")[:, :5]
        assert top5[i] == pytest.approx((order == y[:, None]).any(-1).mean())


# --- input checks (issue 17) ---------------------------------------------------------------

@settings(deadline=None, max_examples=30)
@given(kind=st.sampled_from(W.KINDS),
       p=st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32),
                   st.floats(-1.0, 2.0, width=32)))
def test_strength_outside_its_range_is_one_clear_error(params, kind, p):
    top = np.inf if kind == "mutation" else 1.0
    valid = np.isfinite(p) and 0.0 <= p <= top
    if valid:
        W.perturb(params, p, KEY, layer="conv1", kind=kind)
        return
    with pytest.raises(ValueError, match=f"{kind} strength p=.* is out of range; use "):
        W.perturb(params, p, KEY, layer="conv1", kind=kind)
    # check=False skips the check (for a hot loop that validated its grid once)
    W.perturb(params, p, KEY, layer="conv1", kind=kind, check=False)


def test_mutation_takes_any_nonnegative_strength_knockout_a_fraction(params):
    W.perturb(params, 3.0, KEY, layer="conv1", kind="mutation")
    with pytest.raises(ValueError, match="0 <= p <= 1"):
        W.perturb(params, 1.5, KEY, layer="conv1", kind="synapse_knockout")


def test_traced_strength_is_not_checked_inside_jit(params):
    f = jax.jit(lambda p: W.perturb(params, p, KEY, layer="conv1", kind="resample"))
    np.testing.assert_array_equal(f(0.0)["conv1"]["kernel"], params["conv1"]["kernel"])


def test_sweep_rejects_a_bad_grid_before_any_work(net, params):
    x = jnp.zeros((4, 8, 8, 1))
    y = jnp.zeros((4,), jnp.int32)
    with pytest.raises(ValueError, match="synapse_knockout strength p=1.2"):
        S.sweep(net, params, x, y, KEY, ps=(0.0, 1.2), kinds=("synapse_knockout",))
    with pytest.raises(ValueError, match="trials must be an integer >= 1"):
        S.sweep(net, params, x, y, KEY, ps=(0.0, 0.5), trials=0)
