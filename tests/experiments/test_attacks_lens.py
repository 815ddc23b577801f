"""The attacks lens end to end through scripts/run.py, with tiny settings (2 seeds)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from experiments import cli as run_script
from experiments.claims import VERDICTS

ROOT = Path(__file__).resolve().parents[2]


def test_attacks_lens_writes_per_image_results_findings_and_figures(tmp_path):
    args = ["--config", str(ROOT / "configs" / "attacks.py"), "--no-progress",
            f"--workdir={tmp_path}", "--config.train.epochs=2", "--config.train.seeds=(0, 1)",
            "--config.attacks.images=48", "--config.attacks.chunk=32",
            "--config.attacks.names=('fgsm', 'pgd', 'deepfool')", "--config.attacks.steps=3",
            "--config.attacks.linf_eps=(0.3, 0.0, 0.1)", "--config.attacks.l2_eps=(0.0, 2.0)",
            "--config.attacks.deepfool_steps=5", "--config.attacks.autoattack.steps=2",
            "--config.attacks.autoattack.targets=2", "--config.attacks.autoattack.queries=10",
            "--config.attacks.autoattack.adv_steps=1", "--config.attacks.autoattack.adv_warmup=0"]
    results = run_script.main(args)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == results

    assert saved["eps"] == {"linf": [0.0, 0.1, 0.3], "l2": [0.0, 2.0]}  # sorted
    ra = saved["robust_accuracy"]
    assert set(ra) == {"fgsm", "pgd", "deepfool"}
    assert set(ra["pgd"]) == {"0", "0.1", "0.3"} and set(ra["deepfool"]) == {"0", "2"}
    assert ra["fgsm"]["0"] == ra["pgd"]["0"] == ra["deepfool"]["0"]  # clean accuracy
    assert ra["pgd"]["0.3"] <= ra["pgd"]["0.1"] <= ra["pgd"]["0"]
    for name in ("fgsm", "pgd"):  # per image: (seeds, eps, images), averaging to the table
        mask = np.asarray(saved["correct"][name])
        assert mask.shape == (2, 3, 48) and set(np.unique(mask)) <= {0, 1}
        np.testing.assert_allclose(mask.mean(-1), saved["robust_accuracy_per_seed"][name])
        np.testing.assert_allclose(mask.mean((0, 2)), [ra[name][k] for k in ("0", "0.1", "0.3")])
    assert "deepfool" not in saved["correct"]  # per-image masks only for the claimed pair
    assert np.asarray(saved["robust_accuracy_per_seed"]["deepfool"]).shape == (2, 2)
    for name, cells in saved["robust_accuracy_interval"].items():
        for key, cell in cells.items():
            assert cell["estimate"] == pytest.approx(ra[name][key])
            assert cell["lo"] is None or cell["lo"] <= cell["estimate"] <= cell["hi"]

    finding, aa_vs_pgd, at_raises = saved["findings"]
    assert finding["lens"] == "attacks" and finding["verdict"] in VERDICTS
    assert "linf eps 0.1" in finding["detail"]
    for k in ("estimate", "lo", "hi"):
        assert finding[k] is None or math.isfinite(finding[k])
    assert finding["estimate"] == pytest.approx(ra["fgsm"]["0.1"] - ra["pgd"]["0.1"])
    assert (tmp_path / finding["figure"]).is_file()
    report = (tmp_path / "report.md").read_text()
    assert "## Input attacks" in report and "| pgd |" in report and "robust_accuracy.png" in report

    # AutoAttack on the standard and on PGD-AT models (trained into their own checkpoints)
    aa = saved["autoattack"]
    assert set(aa["models"]) == {"standard", "adversarial"}
    assert (tmp_path / "checkpoints_adversarial").is_dir()
    for m in aa["models"].values():
        robust, pgd = np.asarray(m["robust"]), np.asarray(m["pgd_robust"])
        assert robust.shape == pgd.shape == (2, 48)
        last = [seed["square"] for seed in m["robust_after_per_seed"]]
        np.testing.assert_allclose(robust.mean(1), last)  # the mask ends the member chain
        assert m["robust_accuracy_interval"]["estimate"] == pytest.approx(robust.mean())
    assert "PGD-AT" in aa["models"]["adversarial"]["training"]
    assert aa["settings"]["apgd-t"] == {"steps": 2, "n_target_classes": 2}
    adv = np.asarray(aa["models"]["adversarial"]["robust"], float)
    std = np.asarray(aa["models"]["standard"]["robust"], float)
    assert at_raises["estimate"] == pytest.approx((adv - std).mean())
    pgd_adv = np.asarray(aa["models"]["adversarial"]["pgd_robust"], float)
    assert aa_vs_pgd["estimate"] == pytest.approx((pgd_adv - adv).mean())
    for f in (aa_vs_pgd, at_raises):
        assert f["verdict"] in VERDICTS and (tmp_path / f["figure"]).is_file()
    assert "### AutoAttack (linf eps 0.1, standard version)" in report


def test_unknown_attack_name_is_a_config_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_script.main(["--config", str(ROOT / "configs" / "attacks.py"), "--no-progress",
                         f"--workdir={tmp_path}", "--config.attacks.names=('pgdd',)"])
    assert "attacks.names: unknown ['pgdd']" in capsys.readouterr().err
    assert not (tmp_path / "checkpoints").exists()  # raised before any training


def test_a_single_image_is_a_config_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_script.main(["--config", str(ROOT / "configs" / "attacks.py"), "--no-progress",
                         f"--workdir={tmp_path}", "--config.attacks.images=1"])
    assert "attacks.images: give 0 (all test images) or at least 2" in capsys.readouterr().err
