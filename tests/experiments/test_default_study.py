"""The composed study end to end (two lenses, tiny settings, two seeds): the findings
table is the lenses' findings as saved in results.json, and a second run reuses the
trained models and the finished lenses."""

import json
import math
from pathlib import Path

import pytest

from experiments import cli as run_script
from experiments import study
from experiments.config import ConfigError
from experiments.rundir import RunDir

ROOT = Path(__file__).resolve().parents[2]

# The study's plumbing is under test here; AutoAttack and its PGD-AT models are tested
# through the attacks lens (tests/experiments/test_attacks_lens.py).
AA_TINY = ["--config.attacks.autoattack.enabled=False"]
TINY = ["--config.train.epochs=2", "--config.train.seeds=(0,1)",
        "--config.study.parts=('attacks', 'som')",
        "--config.attacks.images=32", "--config.attacks.names=('fgsm', 'pgd')",
        "--config.attacks.steps=2", "--config.attacks.linf_eps=(0.0, 0.1)",
        "--config.som.steps=5", "--no-progress", *AA_TINY]


def num(v: float) -> str:
    return f"{v:.3f}"


def test_study_findings_table_is_built_from_results_json(tmp_path, capsys):
    out = run_script.main([f"--workdir={tmp_path}", *TINY])
    saved = json.loads((tmp_path / "results.json").read_text())
    lenses = [f["lens"] for f in saved["findings"]]
    assert lenses[0] == "train" and "attacks" in lenses and "som" in lenses
    for name in ("train", "attacks", "som"):
        part = json.loads((tmp_path / name / "results.json").read_text())
        assert saved["parts"][name] == part
        mine = [f for f in saved["findings"] if f["lens"] == name]
        assert [f["estimate"] for f in mine] == [f["estimate"] for f in part["findings"]]
    report = (tmp_path / "report.md").read_text()
    assert report.startswith("# Uncertainty and robustness of lenet5 on digits")
    for f in saved["findings"]:
        assert f["verdict"] in ("yes", "no", "inconclusive")
        assert "95% interval" in f["rule"] and f["method"]
        # the row quotes the saved numbers: estimate [lo, hi], the rule and the verdict
        if f["lo"] is not None and math.isfinite(f["lo"]):
            assert f"{num(f['estimate'])} [{num(f['lo'])}, {num(f['hi'])}]" in report
        assert f["rule"] in report and f"**{f['verdict']}**" in report
        assert (tmp_path / f["figure"]).is_file(), f["figure"]
    assert out["findings"] == saved["findings"]
    assert "(som/report.md)" in report
    capsys.readouterr()

    # Again: everything is reused, nothing retrains or reruns.
    again = run_script.main([f"--workdir={tmp_path}", *TINY])
    log = capsys.readouterr().out
    assert log.count("finished earlier") == 3 and "running" not in log
    assert again["findings"] == out["findings"]


def test_study_parts_are_checked_before_anything_runs(tmp_path):
    config = study.defaults()
    config.study.parts = ("attacks", "sam")
    with pytest.raises(ConfigError, match=r"study.parts: unknown \['sam'\]"):
        study.run(config, RunDir(tmp_path), progress=False)
    assert not (tmp_path / "train").exists()
