"""The minmax lens's claims on constructed results: each verdict (yes / no /
inconclusive) and the interval against an independent computation."""

import numpy as np
import pytest
from scipy import stats

from experiments.minmax import claims

LAYERS = ("conv1", "conv2")


def t_interval(values):
    """Independent Student-t 95% interval of the mean (scipy)."""
    v = np.asarray(values, float)
    return stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=stats.sem(v))


def results_with(deltas: dict[str, list[float]], *, pgd=None, fgsm=None, clean=None,
                 lambdas=(0.0, 10.0, 100.0), n=50) -> dict:
    """Results in the protocol's shape. ``deltas[layer]``: per-seed fuzziness change at
    lambda = 0 (the other lambdas fall by 0.2). ``pgd``/``fgsm``/``clean``: per-lambda
    key -> (seeds, images) arrays (default: all zeros)."""
    seeds = len(next(iter(deltas.values())))
    epochs = 4
    init = 0.74 + 0.01 * np.arange(seeds)[:, None]

    def curve(delta):  # (seeds, epochs + 1), linear from init to init + delta
        return init + np.asarray(delta, float)[:, None] * np.linspace(0, 1, epochs + 1)

    keys = [f"{lam:g}" for lam in lambdas]
    zeros = {k: np.zeros((seeds, n)) for k in keys}
    return {
        "lambdas": list(lambdas), "seeds": list(range(seeds)), "conv_layers": list(deltas),
        "images": n,
        "stats": {"fuzziness": {layer: {k: curve(d if k == "0" else [-0.2] * seeds).tolist()
                                        for k in keys} for layer, d in deltas.items()}},
        "clean_correct": {k: v.tolist() for k, v in (clean or zeros).items()},
        "robust_per_image": {"fgsm": {k: v.tolist() for k, v in (fgsm or zeros).items()},
                             "pgd": {k: v.tolist() for k, v in (pgd or zeros).items()}},
    }


# --- claim (a): fuzziness falls during ordinary training ---------------------------------

@pytest.mark.parametrize("conv1, conv2, verdict", [
    ([-0.05, -0.06, -0.04], [-0.03, -0.02, -0.04], "yes"),
    ([0.05, 0.06, 0.04], [0.03, 0.02, 0.04], "no"),
    ([-0.05, 0.04, 0.01], [-0.03, 0.02, 0.00], "inconclusive"),
])
def test_fuzziness_verdicts(conv1, conv2, verdict):
    f = claims.findings(results_with({"conv1": conv1, "conv2": conv2}))[0]
    assert f.claim is claims.FUZZINESS_FALLS and f.verdict == verdict


def test_fuzziness_interval_is_t_over_seeds_of_the_layer_mean():
    conv1, conv2 = [-0.05, -0.08, -0.02, -0.06], [0.01, -0.03, 0.00, -0.01]
    f = claims.findings(results_with({"conv1": conv1, "conv2": conv2}))[0]
    per_seed = (np.asarray(conv1) + np.asarray(conv2)) / 2
    lo, hi = t_interval(per_seed)
    assert f.interval.estimate == pytest.approx(per_seed.mean(), rel=1e-9)
    assert (f.interval.lo, f.interval.hi) == pytest.approx((lo, hi), rel=1e-9)
    assert f.interval.method == "t over 4 seeds"
    # Per layer too, quoted in the detail; the per-layer intervals are independent t's.
    per_layer = claims.fuzziness_changes(results_with({"conv1": conv1, "conv2": conv2}))
    for layer, d in (("conv1", conv1), ("conv2", conv2)):
        assert (per_layer[layer].lo, per_layer[layer].hi) == pytest.approx(t_interval(d), rel=1e-9)
        assert f"{layer} {per_layer[layer].fmt()}" in f.detail
    # Another lambda's curves are not lambda = 0's (they fall by 0.2 in every seed).
    other = claims.fuzziness_changes(results_with({"conv1": conv1, "conv2": conv2}), 100.0)
    assert other["mean"].estimate == pytest.approx(-0.2)


# --- claim (b): the largest lambda is more robust under PGD --------------------------------

def per_image(rng, seeds, n, shift, noise=0.3):
    """Per-image robust scores (lambda = 0: base; the other: base + shift + noise)."""
    base = rng.uniform(0.2, 0.6, size=(seeds, n))
    return base, base + shift + noise * rng.standard_normal((seeds, n))


@pytest.mark.parametrize("shift, verdict", [(0.3, "yes"), (-0.3, "no"), (0.0, "inconclusive")])
def test_robustness_verdicts_use_the_largest_lambda_and_pgd(shift, verdict):
    rng = np.random.default_rng(1)
    base, top = per_image(rng, 3, 60, shift, noise=0.05 if shift else 0.3)
    _, middle = per_image(rng, 3, 60, -shift)  # lambda = 10 goes the other way
    pgd = {"0": base, "10": middle, "100": top}
    fgsm = {"0": base, "10": top, "100": middle}  # FGSM goes the other way too
    f = claims.findings(results_with({"conv1": [-0.1, -0.1, -0.1]}, pgd=pgd, fgsm=fgsm, n=60))[1]
    assert f.claim is claims.MORE_ROBUST and f.verdict == verdict
    assert f.interval.estimate == pytest.approx((top - base).mean(), rel=1e-9)


def test_robustness_interval_is_paired_by_seed_and_image():
    # Every image of seed s gains exactly d_s: no image variation, so the interval is the
    # Student t over the seeds' gains (the seed-only part of the two-part interval).
    gains = np.array([0.08, 0.10, 0.09])
    rng = np.random.default_rng(2)
    base = rng.uniform(0.0, 1.0, size=(3, 40))
    pgd = {"0": base, "10": base, "100": base + gains[:, None]}
    res = results_with({"conv1": [-0.1, -0.1, -0.1]}, pgd=pgd, n=40)
    f = claims.findings(res)[1]
    assert f.interval.estimate == pytest.approx(gains.mean(), rel=1e-9)
    assert (f.interval.lo, f.interval.hi) == pytest.approx(t_interval(gains), rel=1e-6)
    # Unpaired (shuffling images within the regularized model) would be much wider.
    shuffled = dict(pgd, **{"100": rng.permuted(pgd["100"], axis=1)})
    wide = claims.findings(results_with({"conv1": [-0.1] * 3}, pgd=shuffled, n=40))[1]
    assert wide.interval.hi - wide.interval.lo > 2 * (f.interval.hi - f.interval.lo)


def test_robustness_detail_quotes_fgsm_and_clean_changes():
    rng = np.random.default_rng(3)
    base = rng.integers(0, 2, size=(3, 30)).astype(float)
    clean = {"0": base, "10": base, "100": np.ones_like(base)}
    fgsm = {"0": base, "10": base, "100": base * 0}
    res = results_with({"conv1": [-0.1] * 3}, clean=clean, fgsm=fgsm, n=30)
    changes = claims.robustness_changes(res, 100.0)
    assert changes["clean"].estimate == pytest.approx((1 - base).mean())
    assert changes["fgsm"].estimate == pytest.approx(-base.mean())
    detail = claims.findings(res)[1].detail
    assert f"FGSM {changes['fgsm'].fmt()}" in detail
    assert f"clean accuracy {changes['clean'].fmt()}" in detail
    assert "lambda = 100 vs 0 on 30 test images" in detail


def test_no_regularized_model_is_inconclusive():
    res = results_with({"conv1": [-0.1, -0.1, -0.1]}, lambdas=(0.0,))
    f = claims.findings(res)[1]
    assert f.verdict == "inconclusive" and "no model trained with lambda > 0" in f.detail
