"""The composed study end to end (two lenses, tiny settings): findings match the lenses'
results, and a second run reuses the trained model and the finished lenses."""

import json
from pathlib import Path

import pytest

from experiments import cli as run_script
from experiments import study as default
from experiments.config import ConfigError

ROOT = Path(__file__).resolve().parents[2]

TINY = ["--config.train.epochs=2", "--config.study.parts=('attacks', 'som')",
        "--config.attacks.images=32", "--config.attacks.names=('fgsm', 'pgd')",
        "--config.attacks.steps=2", "--config.attacks.linf_eps=(0.0, 0.1)",
        "--config.som.steps=5", "--no-progress"]


def test_study_writes_findings_that_match_the_lens_results(tmp_path, capsys):
    out = run_script.main([f"--workdir={tmp_path}", *TINY])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert [f["lens"] for f in saved["findings"]][:2] == ["nets", "attacks"]
    attacks = json.loads((tmp_path / "attacks" / "results.json").read_text())
    assert saved["parts"]["attacks"] == attacks
    pgd = attacks["robust_accuracy"]["pgd"]["0.1"]
    row = next(f for f in saved["findings"] if f["lens"] == "attacks")
    assert f"PGD {pgd:.3f}" in row["measured"]
    report = (tmp_path / "report.md").read_text()
    assert row["measured"] in report and "(som/report.md)" in report
    for f in saved["findings"]:
        assert f["agrees"] in ("yes", "no", "partly")
        assert (tmp_path / f["figure"]).is_file(), f["figure"]
    assert out["findings"] == saved["findings"]
    capsys.readouterr()

    # Again: everything is reused, nothing retrains or reruns.
    again = run_script.main([f"--workdir={tmp_path}", *TINY])
    log = capsys.readouterr().out
    assert log.count("finished earlier") == 3 and "running" not in log
    assert again["findings"] == out["findings"]


def test_study_parts_are_checked_before_anything_runs(tmp_path):
    config = default.defaults()
    config.study.parts = ("attacks", "sam")
    with pytest.raises(ConfigError, match=r"study.parts: unknown \['sam'\]"):
        default.run(config, run_script.RunDir(tmp_path), progress=False)
    assert not (tmp_path / "train").exists()
