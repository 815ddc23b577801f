"""The minmax lens end to end through the command line (tiny settings), and its config
checks."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from experiments import cli as run_script
from experiments import config as config_lib
from experiments.minmax import LENS, claims
from experiments.minmax import protocol as minmax_protocol

ROOT = Path(__file__).resolve().parents[2]

TINY = ["--config.data.name=synthetic", "--config.train.epochs=2", "--config.train.batch_size=128",
        "--config.minmax.lambdas=(0.0, 30.0)",
        "--config.minmax.seeds=(0, 1)", "--config.minmax.images=24",
        "--config.minmax.chunk=24", "--config.minmax.pgd_steps=2",
        "--config.minmax.linf_eps=(0.0, 0.1)"]


def run(tmp_path, *args):
    return run_script.main(["--config", str(ROOT / "configs" / "minmax.py"), "--no-progress",
                            f"--workdir={tmp_path}", *args])


def test_minmax_lens_writes_results_findings_report_and_per_epoch_stats(tmp_path):
    results = run(tmp_path, *TINY)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    assert saved["lambdas"] == [0.0, 30.0] and saved["seeds"] == [0, 1]
    assert saved["eps"] == [0.0, 0.1] and saved["images"] == 24
    assert set(saved["test_accuracy"]) == {"0", "30"}
    for lam in ("0", "30"):
        assert len(saved["test_accuracy"][lam]) == 2
        f = np.asarray(saved["stats"]["fuzziness"]["conv2"][lam])
        assert f.shape == (2, 3) and np.all((0 < f) & (f < 1))  # (seeds, epochs + 1)
        assert np.asarray(saved["clean_correct"][lam]).shape == (2, 24)
        for name in ("fgsm", "pgd"):
            acc = np.asarray(saved["robust_accuracy"][name][lam])  # (seeds, eps)
            assert acc.shape == (2, 2) and np.all(acc[:, 1] <= acc[:, 0])  # eps 0.1 <= clean
            per_image = np.asarray(saved["robust_per_image"][name][lam])
            assert per_image.shape == (2, 24)
            # The per-image values are the eps > 0 column of the accuracy curve, per image.
            np.testing.assert_allclose(per_image.mean(1), acc[:, 1])
        # Clean correctness per image is the eps = 0 attack (no perturbation), per seed.
        np.testing.assert_allclose(np.mean(saved["clean_correct"][lam], 1),
                                   np.asarray(saved["robust_accuracy"]["pgd"][lam])[:, 0])
    # Same seeds, same init: the penalty leaves the init alone and lowers F by the end.
    f0 = np.asarray(saved["stats"]["fuzziness"]["conv2"]["0"])
    f30 = np.asarray(saved["stats"]["fuzziness"]["conv2"]["30"])
    np.testing.assert_array_equal(f0[:, 0], f30[:, 0])
    assert np.all(f30[:, -1] < f0[:, -1])
    # The findings: one per claim, a verdict and finite-or-null interval ends.
    findings = saved["findings"]
    assert [f["claim"] for f in findings] == [c.text for c in claims.CLAIMS]
    for f in findings:
        assert f["verdict"] in ("yes", "no", "inconclusive")
        for end in ("estimate", "lo", "hi"):
            assert f[end] is None or math.isfinite(f[end])
        assert (tmp_path / f["figure"]).is_file(), f["figure"]
    # metrics.jsonl: one record per epoch with every conv layer's stats for all 4 models.
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [0, 1]
    assert len(lines[-1]["fuzziness/conv1"]) == 4 and len(lines[-1]["minmax_index/conv2"]) == 4
    text = (tmp_path / "report.md").read_text()
    for needle in ("## Findings", "Only the paper's abstract is available", "| 30 vs 0 |",
                   "fuzziness_curves.png", "minmax_index_curves.png", "robust_accuracy.png"):
        assert needle in text, needle
    for name in ("fuzziness_curves.png", "minmax_index_curves.png", "robust_accuracy.png",
                 "test_accuracy.png"):
        assert (tmp_path / name).is_file(), name
    assert (tmp_path / "checkpoints").is_dir()


@pytest.mark.parametrize("args, message", [
    (["--config.minmax.lambdas=(1.0, 10.0)"], "must be distinct, >= 0 and include 0"),
    (["--config.minmax.granularity=row"], "minmax.granularity 'row'"),
    (["--config.minmax.layers=('fc1',)"], "minmax.layers: ['fc1'] are not conv layers"),
    (["--config.minmax.linf_eps=(0.3, 0.1)"], "ascending in [0, 1]"),
    (["--config.minmax.linf_eps=(0.0,)"], "at least one eps > 0"),
    (["--config.minmax.images=1"], "minmax.images must be 0 (all) or >= 2"),
    (["--config.train.seeds=(0, 1)"], "unknown config key 'train.seeds'"),
])
def test_bad_settings_are_one_clear_error(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        run(tmp_path, *args)
    assert info.value.code != 0
    assert message in capsys.readouterr().err
    assert not (tmp_path / "checkpoints").exists()  # raised before any training


def test_the_config_file_is_valid_and_runs_the_grid_it_describes():
    config, _, axes = run_script.resolve(config_lib.load_file(ROOT / "configs" / "minmax.py"))
    assert not axes and config.task == "minmax" and config.model.name == "lenet5"
    assert 0.0 in config.minmax.lambdas and len(config.minmax.seeds) >= 3
    assert LENS.own_models and LENS.run is minmax_protocol.run
