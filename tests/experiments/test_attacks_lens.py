"""The attacks task end to end through scripts/run.py, with tiny settings."""

import json
from pathlib import Path

import pytest

from experiments import cli as run_script

ROOT = Path(__file__).resolve().parents[2]


def test_attacks_study_writes_robust_accuracy_per_attack_and_eps(tmp_path):
    args = ["--config", str(ROOT / "configs" / "attacks.py"), "--no-progress",
            f"--workdir={tmp_path}", "--config.train.epochs=2", "--config.attacks.images=64",
            "--config.attacks.names=('fgsm', 'pgd', 'deepfool')", "--config.attacks.steps=3",
            "--config.attacks.linf_eps=(0.0, 0.1, 0.3)", "--config.attacks.l2_eps=(0.0, 2.0)",
            "--config.attacks.deepfool_steps=5"]
    results = run_script.main(args)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["robust_accuracy"] == results["robust_accuracy"]
    ra = saved["robust_accuracy"]
    assert set(ra) == {"fgsm", "pgd", "deepfool"}
    assert set(ra["pgd"]) == {"0", "0.1", "0.3"} and set(ra["deepfool"]) == {"0", "2"}
    assert ra["fgsm"]["0"] == ra["pgd"]["0"] == ra["deepfool"]["0"]  # clean accuracy
    assert ra["pgd"]["0.3"] <= ra["pgd"]["0.1"] <= ra["pgd"]["0"]
    assert (tmp_path / "robust_accuracy.png").is_file()
    assert "| pgd |" in (tmp_path / "report.md").read_text()


def test_unknown_attack_name_is_a_config_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_script.main(["--config", str(ROOT / "configs" / "attacks.py"), "--no-progress",
                         f"--workdir={tmp_path}", "--config.attacks.names=('pgdd',)"])
    assert "attacks.names: unknown ['pgdd']" in capsys.readouterr().err
