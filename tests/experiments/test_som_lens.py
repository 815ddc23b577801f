"""The som lens end to end through scripts/run.py, with tiny settings (2 seeds)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from experiments import cli as run_script
from experiments.claims import VERDICTS

ROOT = Path(__file__).resolve().parents[2]

TINY = ["--no-progress", "--config.train.epochs=1", "--config.train.seeds=(0, 1)",
        "--config.som.rows=4", "--config.som.cols=5", "--config.som.steps=4",
        "--config.som.images=40", "--config.som.pgd_steps=2", "--config.som.permutations=3",
        "--config.som.chunk=256", "--config.som.attacks=('pgd', 'noise')"]


def test_som_lens_writes_measures_per_layer_and_seed_findings_and_figures(tmp_path):
    results = run_script.main(["--config", str(ROOT / "configs" / "som.py"),
                               f"--workdir={tmp_path}", *TINY])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == results
    assert saved["layers"] == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    assert saved["shallow_layers"] == ["conv1", "conv2"]
    assert saved["deep_layers"] == ["fc1", "fc2", "fc3"]
    pl = saved["per_layer"]
    for m in pl.values():
        assert all(1 <= d <= 20 for d in m["distinct_bmus"]) and len(m["distinct_bmus"]) == 2
        assert all(0 <= v <= 1 for v in m["nmi"]) and all(v >= 0 for v in m["mi_bits"])
        for attack in ("pgd", "noise"):
            assert all(0 <= v <= 1 for v in m[attack]["moved_fraction"])
            assert all(v >= 0 for v in m[attack]["mean_distance"])
    acc = saved["accuracy"]
    assert all(p <= c for p, c in zip(acc["pgd"], acc["clean"]))
    # Per image: the mean over images is the per-layer moved fractions' excess over noise.
    per_image = saved["moved_over_noise_per_image"]["pgd"]
    for part in ("shallow", "deep"):
        values = np.asarray(per_image[part])
        assert values.shape == (2, 40) and np.all(np.abs(values) <= 1)
        layers = saved[f"{part}_layers"]
        expected = np.mean([np.subtract(pl[n]["pgd"]["moved_fraction"],
                                        pl[n]["noise"]["moved_fraction"]) for n in layers], 0)
        np.testing.assert_allclose(values.mean(1), expected, atol=1e-6)
    assert set(saved["hit_maps"]) == {"clean", "pgd"}
    assert np.asarray(saved["hit_maps"]["clean"]["majority_class"]).shape == (5, 20)

    findings = saved["findings"]
    assert [f["claim"] for f in findings] == [
        "Shallow layers map inputs onto homogeneous codes, deep layers onto diverse ones",
        "Homogeneous (shallow) codes underlie adversarial vulnerability"]
    for f in findings:
        assert f["verdict"] in VERDICTS
        for k in ("estimate", "lo", "hi"):
            assert f[k] is None or math.isfinite(f[k])
        assert (tmp_path / f["figure"]).is_file()
    report = (tmp_path / "report.md").read_text()
    assert "## Internal codes through self-organizing maps" in report
    assert "| conv1 | 6 |" in report and "## Findings" in report
    for fig in ("som_hit_maps.png", "som_codes_vs_depth.png", "som_moves_vs_depth.png"):
        assert (tmp_path / fig).is_file()


def test_bad_som_settings_are_config_errors(tmp_path, capsys):
    for arg, message in [("--config.som.topology=triangle", "unknown topology"),
                         ("--config.som.layers=('conv9',)", "som.layers"),
                         ("--config.som.attacks=('cw',)", "som.attacks"),
                         ("--config.som.scale=minmax", "som.scale")]:
        with pytest.raises(SystemExit):
            run_script.main(["--config", str(ROOT / "configs" / "som.py"),
                             f"--workdir={tmp_path}", *TINY, arg])
        assert message in capsys.readouterr().err
    assert not (tmp_path / "checkpoints").exists()  # rejected before any training
