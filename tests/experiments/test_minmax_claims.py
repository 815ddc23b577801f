"""The minmax lens's claims on constructed results, under every reading: each verdict
(yes / no / inconclusive) and the interval against an independent computation."""

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
                 lambdas=(0.0, 10.0, 100.0), n=50, walk=0.1, robust_shift=None) -> dict:
    """Results in the protocol's shape, every reading. ``deltas[layer]``: per-seed
    fuzziness change (group, init) at lambda = 0, and the trajectory's F minus the walk's
    (walk F = 0.5 + ``walk``; penalized conditions fall by 0.2). ``pgd``/``fgsm``/
    ``clean``: condition -> (seeds, images) (default zeros). ``robust_shift``: per-seed
    end-statistic shift of the PGD-AT models (None: no PGD-AT models)."""
    seeds = len(next(iter(deltas.values())))
    epochs = 4
    init = 0.74 + 0.01 * np.arange(seeds)[:, None]
    conds = ["0"] + [f"{r}/{lam:g}" for r in claims.READINGS for lam in lambdas if lam > 0]
    if robust_shift is not None:
        conds.append("pgd-at")

    def delta_of(cond, d):
        if cond == "0":
            return np.asarray(d, float)
        if cond == "pgd-at":
            return np.asarray(d, float) + np.asarray(robust_shift, float)
        return np.full(seeds, -0.2)

    def curve(delta):  # (seeds, epochs + 1), linear from init to init + delta
        return init + delta[:, None] * np.linspace(0, 1, epochs + 1)

    stats = {}
    for r in claims.READINGS:
        stats[r] = {"fuzziness": {}, "walk_fuzziness": {}, "near_ends": {},
                    "walk_near_ends": {}}
        for layer, d in deltas.items():
            for stat in stats[r]:
                stats[r][stat][layer] = {}
            for c in conds:
                if r == "trajectory":  # end F = walk F + delta
                    w = np.full((seeds, epochs + 1), 0.5 + walk)
                    f = w + delta_of(c, d)[:, None]
                    stats[r]["walk_fuzziness"][layer][c] = w.tolist()
                    stats[r]["near_ends"][layer][c] = (0.6 - f / 2).tolist()
                    stats[r]["walk_near_ends"][layer][c] = (0.6 - w / 2).tolist()
                else:
                    f = curve(delta_of(c, d))
                stats[r]["fuzziness"][layer][c] = f.tolist()
    zeros = {k: np.zeros((seeds, n)) for k in conds}
    return {
        "lambdas": list(lambdas), "seeds": list(range(seeds)), "conv_layers": list(deltas),
        "images": n, "readings": list(claims.READINGS), "conditions": conds,
        "stats": stats,
        "clean_correct": {k: v.tolist() for k, v in (clean or zeros).items()},
        "robust_per_image": {"fgsm": {k: v.tolist() for k, v in (fgsm or zeros).items()},
                             "pgd": {k: v.tolist() for k, v in (pgd or zeros).items()}},
    }


def by_claim(results) -> dict:
    return {f.claim: f for f in claims.findings(results)}


# --- claim (a): the weights move to the ends, under each reading --------------------------

@pytest.mark.parametrize("reading", claims.READINGS)
@pytest.mark.parametrize("conv1, conv2, verdict", [
    ([-0.05, -0.06, -0.04], [-0.03, -0.02, -0.04], "yes"),
    ([0.05, 0.06, 0.04], [0.03, 0.02, 0.04], "no"),
    ([-0.05, 0.04, 0.01], [-0.03, 0.02, 0.00], "inconclusive"),
])
def test_to_ends_verdicts(reading, conv1, conv2, verdict):
    f = by_claim(results_with({"conv1": conv1, "conv2": conv2}))[claims.TO_ENDS[reading]]
    assert f.verdict == verdict


@pytest.mark.parametrize("reading", claims.READINGS)
def test_to_ends_interval_is_t_over_seeds_of_the_layer_mean(reading):
    conv1, conv2 = [-0.05, -0.08, -0.02, -0.06], [0.01, -0.03, 0.00, -0.01]
    res = results_with({"conv1": conv1, "conv2": conv2})
    f = by_claim(res)[claims.TO_ENDS[reading]]
    per_seed = (np.asarray(conv1) + np.asarray(conv2)) / 2
    lo, hi = t_interval(per_seed)
    assert f.interval.estimate == pytest.approx(per_seed.mean(), rel=1e-9)
    assert (f.interval.lo, f.interval.hi) == pytest.approx((lo, hi), rel=1e-9)
    assert f.interval.method == "t over 4 seeds"
    per_layer = claims.end_changes(res, reading)
    for layer, d in (("conv1", conv1), ("conv2", conv2)):
        assert (per_layer[layer].lo, per_layer[layer].hi) == pytest.approx(t_interval(d), rel=1e-9)
        assert f"{layer} {per_layer[layer].fmt()}" in f.detail
    other = claims.end_changes(res, reading, f"{reading}/100")
    assert other["mean"].estimate == pytest.approx(-0.2)


def test_trajectory_statistic_is_against_the_random_walk_not_the_init():
    # The walk's F changes with `walk`; the weights' F minus it does not.
    a = claims.end_changes(results_with({"conv1": [-0.1, -0.12, -0.08]}, walk=0.0), "trajectory")
    b = claims.end_changes(results_with({"conv1": [-0.1, -0.12, -0.08]}, walk=0.3), "trajectory")
    assert a["mean"].estimate == pytest.approx(-0.1) == b["mean"].estimate
    near = claims.near_ends_changes(results_with({"conv1": [-0.1, -0.12, -0.08]}))
    assert near["mean"].estimate == pytest.approx(0.05)  # (0.6 - F/2) - (0.6 - walkF/2)
    f = by_claim(results_with({"conv1": [-0.1, -0.12, -0.08]}))[claims.TO_ENDS["trajectory"]]
    assert f"weights minus random walk: {near['mean'].fmt()}" in f.detail


# --- claim (c): the reverse test --------------------------------------------------------

@pytest.mark.parametrize("shift, verdict", [([-0.05, -0.06, -0.04], "yes"),
                                            ([0.05, 0.06, 0.04], "no"),
                                            ([-0.05, 0.06, 0.0], "inconclusive")])
def test_reverse_test_is_paired_by_seed(shift, verdict):
    res = results_with({"conv1": [-0.1, 0.2, 0.05]}, robust_shift=shift)
    for reading in claims.READINGS:
        f = by_claim(res)[claims.REVERSE[reading]]
        assert f.verdict == verdict
        # paired: the large seed-to-seed spread of the baseline cancels
        assert (f.interval.lo, f.interval.hi) == pytest.approx(t_interval(shift), rel=1e-9)


def test_without_pgd_at_models_the_reverse_test_is_inconclusive():
    f = by_claim(results_with({"conv1": [-0.1, -0.1, -0.1]}))[claims.REVERSE["group"]]
    assert f.verdict == "inconclusive" and "minmax.reverse = False" in f.detail


def test_one_finding_per_claim_and_reading():
    res = results_with({"conv1": [-0.1, -0.1, -0.1]}, robust_shift=[0.0, 0.1, 0.0])
    fs = claims.findings(res)
    assert [f.claim for f in fs] == list(claims.CLAIMS) and len(fs) == 9


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
    pgd = {"0": base}
    fgsm = {"0": base}
    for i, r in enumerate(claims.READINGS):  # only the group penalty at 100 moves
        pgd.update({f"{r}/10": middle, f"{r}/100": top if r == "group" else base})
        fgsm.update({f"{r}/10": top, f"{r}/100": middle})  # FGSM goes the other way too
    found = by_claim(results_with({"conv1": [-0.1, -0.1, -0.1]}, pgd=pgd, fgsm=fgsm, n=60))
    f = found[claims.MORE_ROBUST["group"]]
    assert f.verdict == verdict
    assert f.interval.estimate == pytest.approx((top - base).mean(), rel=1e-9)
    assert found[claims.MORE_ROBUST["init"]].interval.estimate == 0.0


def test_robustness_interval_is_paired_by_seed_and_image():
    # Every image of seed s gains exactly d_s: no image variation, so the interval is the
    # Student t over the seeds' gains (the seed-only part of the two-part interval).
    gains = np.array([0.08, 0.10, 0.09])
    rng = np.random.default_rng(2)
    base = rng.uniform(0.0, 1.0, size=(3, 40))
    pgd = {"0": base, **{f"{r}/{lam}": base for r in claims.READINGS for lam in (10, 100)}}
    pgd["trajectory/100"] = base + gains[:, None]
    res = results_with({"conv1": [-0.1, -0.1, -0.1]}, pgd=pgd, n=40)
    f = by_claim(res)[claims.MORE_ROBUST["trajectory"]]
    assert f.interval.estimate == pytest.approx(gains.mean(), rel=1e-9)
    assert (f.interval.lo, f.interval.hi) == pytest.approx(t_interval(gains), rel=1e-6)
    # Unpaired (shuffling images within the regularized model) would be much wider.
    shuffled = dict(pgd, **{"trajectory/100": rng.permuted(pgd["trajectory/100"], axis=1)})
    wide = by_claim(results_with({"conv1": [-0.1] * 3}, pgd=shuffled, n=40))[
        claims.MORE_ROBUST["trajectory"]]
    assert wide.interval.hi - wide.interval.lo > 2 * (f.interval.hi - f.interval.lo)


def test_robustness_detail_quotes_fgsm_and_clean_changes():
    rng = np.random.default_rng(3)
    base = rng.integers(0, 2, size=(3, 30)).astype(float)
    others = {f"{r}/{lam}": base for r in claims.READINGS for lam in (10, 100)}
    clean = {"0": base, **others, "init/100": np.ones_like(base)}
    fgsm = {"0": base, **others, "init/100": base * 0}
    res = results_with({"conv1": [-0.1] * 3}, clean=clean, fgsm=fgsm, n=30)
    changes = claims.robustness_changes(res, "init/100")
    assert changes["clean"].estimate == pytest.approx((1 - base).mean())
    assert changes["fgsm"].estimate == pytest.approx(-base.mean())
    detail = by_claim(res)[claims.MORE_ROBUST["init"]].detail
    assert f"FGSM {changes['fgsm'].fmt()}" in detail
    assert f"clean accuracy {changes['clean'].fmt()}" in detail
    assert "lambda = 100 vs 0 on 30 test images" in detail


def test_no_regularized_model_is_inconclusive():
    res = results_with({"conv1": [-0.1, -0.1, -0.1]}, lambdas=(0.0,))
    f = by_claim(res)[claims.MORE_ROBUST["group"]]
    assert f.verdict == "inconclusive" and "no model trained with lambda > 0" in f.detail
