"""The som task end to end through scripts/run.py, with tiny settings."""

import json
from pathlib import Path

import pytest

from experiments import cli as run_script

ROOT = Path(__file__).resolve().parents[2]

TINY = ["--no-progress", "--config.train.epochs=1", "--config.som.rows=4",
        "--config.som.cols=5", "--config.som.steps=4", "--config.som.images=40",
        "--config.som.pgd_steps=2", "--config.som.permutations=3", "--config.som.chunk=256",
        "--config.som.attacks=('fgsm', 'noise')"]


def test_som_study_writes_measures_per_layer(tmp_path):
    results = run_script.main(["--config", str(ROOT / "configs" / "som.py"),
                               f"--workdir={tmp_path}", *TINY])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["layers"] == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    assert saved["per_layer"] == results["per_layer"]
    for m in saved["per_layer"].values():
        assert 1 <= m["distinct_bmus"] <= 20
        assert 0 <= m["nmi"] <= 1 and m["mi_bits"] >= 0 and m["class_dispersion"] >= 0
        for attack in ("fgsm", "noise"):
            assert 0 <= m[attack]["moved_fraction"] <= 1
            assert m[attack]["mean_distance"] >= 0
    assert saved["accuracy"]["fgsm"] <= saved["accuracy"]["clean"]
    assert isinstance(saved["verdict"]["shallow_more_homogeneous"], bool)
    report = (tmp_path / "report.md").read_text()
    assert "| conv1 | 6 |" in report and "## Verdict" in report
    for fig in ("som_hit_maps.png", "som_measures_vs_depth.png"):
        assert (tmp_path / fig).is_file()


def test_bad_som_settings_are_config_errors(tmp_path, capsys):
    for arg, message in [("--config.som.topology=triangle", "unknown topology"),
                         ("--config.som.layers=('conv9',)", "som.layers")]:
        with pytest.raises(SystemExit):
            run_script.main(["--config", str(ROOT / "configs" / "som.py"),
                             f"--workdir={tmp_path}", *TINY, arg])
        assert message in capsys.readouterr().err
