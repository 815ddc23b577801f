"""The ``analytic`` task end to end on a small trained LeNet-5 (scripts/run.py)."""

import json
from pathlib import Path

import pytest

from experiments import cli as run_script

ROOT = Path(__file__).resolve().parents[2]

SMALL = ["--config.train.epochs=1", "--config.analytic.num_images=4",
         "--config.analytic.image_chunk=4", "--config.analytic.mc_samples=2000",
         "--config.analytic.mc_chunk=500", "--config.analytic.noise_levels=(0.02,0.1)",
         "--config.analytic.class_noise_levels=(0.0,0.1,0.2)",
         "--config.analytic.attack.num_images=2", "--config.analytic.attack.steps=5",
         "--config.analytic.attack.samples=50", "--config.analytic.attack.modes=('mean',)"]


def run(*args):
    return run_script.main(["--config", str(ROOT / "configs" / "analytic.py"), "--no-progress",
                            *args])


def test_analytic_run_on_a_small_trained_lenet5(tmp_path):
    results = run(*SMALL, f"--workdir={tmp_path}")
    for name in ("config.json", "results.json", "report.md", "tightness.png", "class_means.png",
                 "confusion.png", "sensitivity.png"):
        assert (tmp_path / name).is_file(), name
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["layer"] == "relu4" and saved["num_images"] == 4
    for method in ("exact", "zero_mean", "diagonal"):
        for sigma in ("0.02", "0.1"):
            t = saved["tightness"][method][sigma]
            assert 0 <= t["mean_error"] <= 2 and 0 <= t["var_error"] <= 2
    # The general-mean covariance is at least as tight as the paper's zero-mean form.
    assert saved["exact_at_least_as_tight"] is True
    for v in saved["exact_vs_zero_mean"].values():
        assert v["exact"] <= v["zero_mean"]
    att = saved["attacks"]["mean"]["untargeted"]
    assert att["max_shift"] <= 0.1 + 1e-6 and att["in_bounds"] and 0 <= att["success_rate"] <= 1
    assert saved["timings"]["mc_seconds"]["0.1"] > 0
    text = (tmp_path / "report.md").read_text()
    assert "| 0.02 | exact |" in text and "at least as tight as" in text
    assert results["test_accuracy"] == saved["test_accuracy"]


@pytest.mark.parametrize("args, message", [
    (["--config.analytic.methods=('exact','taylor')"], "unknown analytic.methods ['taylor']"),
    (["--config.analytic.attack.modes=('mean','x')"], "unknown analytic.attack.modes ['x']"),
    (["--config.analytic.mc_samples=1500"], "must be a multiple of analytic.mc_chunk"),
    (["--config.analytic.nimages=3"], "unknown config key 'analytic.nimages'"),
])
def test_bad_analytic_config_is_one_clear_error(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        run(*args, f"--workdir={tmp_path}")
    assert info.value.code != 0
    assert message in capsys.readouterr().err
