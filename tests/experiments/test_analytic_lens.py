"""The ``analytic`` lens end to end on two small trained LeNet-5 seeds (scripts/run.py)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from experiments import cli as run_script
from experiments.rundir import jsonable

ROOT = Path(__file__).resolve().parents[2]

SMALL = ["--config.train.epochs=1", "--config.train.seeds=(0,1)",
         "--config.analytic.num_images=4", "--config.analytic.image_chunk=4",
         "--config.analytic.mc_samples=2000", "--config.analytic.mc_chunk=500",
         "--config.analytic.noise_levels=(0.02,0.1)",
         "--config.analytic.class_noise_levels=(0.0,0.1,0.2)",
         "--config.analytic.attack.num_images=2", "--config.analytic.attack.steps=5",
         "--config.analytic.attack.samples=50", "--config.analytic.attack.modes=('mean',)"]
FIGURES = ("tightness.png", "exact_vs_zero_mean.png", "class_means.png", "confusion.png",
           "sensitivity.png")


def run(*args):
    return run_script.main(["--config", str(ROOT / "configs" / "analytic.py"), "--no-progress",
                            *args])


def test_analytic_lens_on_two_small_trained_lenet5_seeds(tmp_path):
    results = run(*SMALL, f"--workdir={tmp_path}")
    for name in ("config.json", "results.json", "report.md", *FIGURES):
        assert (tmp_path / name).is_file(), name
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == jsonable(results)
    assert saved["layer"] == "relu4" and saved["seeds"] == [0, 1] and saved["num_images"] == 4

    t = {m: {s: {k: np.asarray(v) for k, v in d.items()} for s, d in saved["tightness"][m].items()}
         for m in ("exact", "zero_mean", "diagonal")}
    for sigma in ("0.02", "0.1"):
        assert t["exact"][sigma]["var_error"].shape == (2, 4)  # (seeds, images)
        # the output mean is the same closed form for every method
        for m in ("zero_mean", "diagonal"):
            np.testing.assert_allclose(t[m][sigma]["mean_error"], t["exact"][sigma]["mean_error"],
                                       rtol=1e-4)
        mc = np.asarray(saved["mc_var_relative_error"][sigma])
        assert mc.shape == (2, 4) and 0.3 < mc.mean() / math.sqrt(2 / 1999) < 3
    small = t["exact"]["0.02"]
    # At small noise the linearized net is the real one near the image: the expected
    # logits agree with MC closely, the variances within a factor well below 2.
    assert small["mean_error"].max() < 0.05
    assert small["var_error"].mean() < 0.5 and 0.5 < small["var_ratio"].mean() < 1.5
    # The general-mean covariance beats the zero-mean one at small noise, on every seed.
    assert np.all(small["var_error"].mean(1) < t["zero_mean"]["0.02"]["var_error"].mean(1))

    findings = saved["findings"]
    assert len(findings) == 3
    for f in findings:
        assert f["verdict"] in ("yes", "no", "inconclusive")
        for k in ("estimate", "lo", "hi"):
            assert f[k] is None or math.isfinite(f[k])
        assert (tmp_path / f["figure"]).is_file()
    # the tracking finding's estimate is the mean of the stored per-image errors
    assert findings[0]["estimate"] == pytest.approx(small["var_error"].mean())

    att = saved["attacks"]
    assert att["num_images"] == len(att["images"]) <= 2
    if att["num_images"]:
        mean = att["mean"]["untargeted"]
        assert np.asarray(mean["success_rate"]).shape == (2, att["num_images"])
        assert max(mean["max_shift"]) <= 0.2 + 1e-6 and mean["in_bounds"]
        assert np.allclose(att["baseline_isotropic_noise"]["untargeted"]["max_shift"], 0)
    assert np.asarray(saved["confusion"]["matrix"]).shape == (2, 10, 10)
    assert np.asarray(saved["sensitivity"]["std"]).shape == (2, 28, 28)
    assert saved["timings"]["mc_seconds"]["0.1"] > 0
    text = (tmp_path / "report.md").read_text()
    assert "| 0.02 | exact |" in text and "## Findings" in text
    # kinks at the expansion points are counted and the rule used is reported
    assert saved["at_ties"] == "ignore" and "`at_ties=ignore`" in text
    assert set(saved["ties"]) == {"relu1", "pool1", "relu2", "pool2", "relu3"}
    assert all(np.asarray(v).shape == (2,) and min(v) >= 0 for v in saved["ties"].values())


@pytest.mark.parametrize("args, message", [
    (["--config.analytic.methods=('exact','taylor')"], "unknown analytic.methods ['taylor']"),
    (["--config.analytic.methods=('zero_mean',)"], "must include 'exact'"),
    (["--config.analytic.attack.modes=('mean','x')"], "unknown analytic.attack.modes ['x']"),
    (["--config.analytic.mc_samples=1500"], "must be a multiple of analytic.mc_chunk"),
    (["--config.analytic.layer=fc5"], "analytic.layer: unknown layer 'fc5'"),
    (["--config.analytic.at_ties=mean"], "unknown analytic.at_ties 'mean'"),
    (["--config.analytic.nimages=3"], "unknown config key 'analytic.nimages'"),
])
def test_bad_analytic_config_is_one_clear_error(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        run(*args, f"--workdir={tmp_path}")
    assert info.value.code != 0
    assert message in capsys.readouterr().err
    assert not (tmp_path / "checkpoints").exists()  # raised before any training
