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
        "--config.minmax.linf_eps=(0.0, 0.1)", "--config.minmax.adv_steps=1",
        "--config.minmax.adv_warmup=0"]
CONDITIONS = ["0", "group/30", "trajectory/30", "init/30", "pgd-at"]


def run(tmp_path, *args):
    return run_script.main(["--config", str(ROOT / "configs" / "minmax.py"), "--no-progress",
                            f"--workdir={tmp_path}", *args])


def test_minmax_lens_writes_results_findings_report_and_per_epoch_stats(tmp_path):
    results = run(tmp_path, *TINY)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    assert saved["lambdas"] == [0.0, 30.0] and saved["seeds"] == [0, 1]
    assert saved["readings"] == ["group", "trajectory", "init"]
    assert saved["conditions"] == CONDITIONS
    assert saved["eps"] == [0.0, 0.1] and saved["images"] == 24
    assert set(saved["test_accuracy"]) == set(CONDITIONS)
    for cond in CONDITIONS:
        assert len(saved["test_accuracy"][cond]) == 2
        for reading in saved["readings"]:
            f = np.asarray(saved["stats"][reading]["fuzziness"]["conv2"][cond])
            assert f.shape == (2, 3) and np.all((0 <= f) & (f <= 1))  # (seeds, epochs + 1)
        assert np.asarray(saved["clean_correct"][cond]).shape == (2, 24)
        for name in ("fgsm", "pgd"):
            acc = np.asarray(saved["robust_accuracy"][name][cond])  # (seeds, eps)
            assert acc.shape == (2, 2) and np.all(acc[:, 1] <= acc[:, 0])  # eps 0.1 <= clean
            per_image = np.asarray(saved["robust_per_image"][name][cond])
            np.testing.assert_allclose(per_image.mean(1), acc[:, 1])
        np.testing.assert_allclose(np.mean(saved["clean_correct"][cond], 1),
                                   np.asarray(saved["robust_accuracy"]["pgd"][cond])[:, 0])
        # the trajectory range at init is the init itself: every weight degenerate
        deg = np.asarray(saved["stats"]["trajectory"]["degenerate"]["conv1"][cond])
        assert np.all(deg[:, 0] == 1) and np.all(deg[:, -1] < 0.05)
    # Same seeds, same init in every condition (PGD-AT too); each penalty lowers its F.
    stats = saved["stats"]
    for reading in ("group", "init"):
        f0 = np.asarray(stats[reading]["fuzziness"]["conv2"]["0"])
        for cond in CONDITIONS[1:]:
            np.testing.assert_array_equal(
                f0[:, 0], np.asarray(stats[reading]["fuzziness"]["conv2"][cond])[:, 0])
        own = np.asarray(stats[reading]["fuzziness"]["conv2"][f"{reading}/30"])
        assert np.all(own[:, -1] < f0[:, -1])
    t0 = np.asarray(stats["trajectory"]["fuzziness"]["conv2"]["0"])[:, -1]
    t30 = np.asarray(stats["trajectory"]["fuzziness"]["conv2"]["trajectory/30"])[:, -1]
    assert np.all(t30 < t0)
    # The findings: one per claim and reading, a verdict and finite-or-null interval ends.
    findings = saved["findings"]
    assert [f["claim"] for f in findings] == [c.text for c in claims.CLAIMS]
    for reading in saved["readings"]:
        assert sum(f"({reading} reading" in f["claim"] for f in findings) == 3
    for f in findings:
        assert f["verdict"] in ("yes", "no", "inconclusive")
        for end in ("estimate", "lo", "hi"):
            assert f[end] is None or math.isfinite(f[end])
        assert (tmp_path / f["figure"]).is_file(), f["figure"]
    # metrics.jsonl: one record per epoch with every reading's stats for the 8 grid models.
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [0, 1]
    for key in ("group/fuzziness/conv1", "trajectory/walk_fuzziness/conv2",
                "init/outside/conv1"):
        assert len(lines[-1][key]) == 8, key
    text = (tmp_path / "report.md").read_text()
    for needle in ("## Findings", "Only the paper's abstract is available",
                   "Reading `trajectory`", "The reverse test", "Which reading do the abstract",
                   "decreasing to their minimum or increasing to their maximum",
                   "reverse_test.png", "robust_accuracy.png"):
        assert needle in text, needle
    for name in ("fuzziness_group.png", "fuzziness_trajectory.png", "fuzziness_init.png",
                 "reverse_test.png", "robust_accuracy.png", "test_accuracy.png"):
        assert (tmp_path / name).is_file(), name
    assert (tmp_path / "checkpoints").is_dir() and (tmp_path / "checkpoints_adversarial").is_dir()


@pytest.mark.parametrize("args, message", [
    (["--config.minmax.lambdas=(1.0, 10.0)"], "must be distinct, >= 0 and include 0"),
    (["--config.minmax.granularity=row"], "minmax.granularity 'row'"),
    (["--config.minmax.layers=('fc1',)"], "minmax.layers: ['fc1'] are not conv layers"),
    (["--config.minmax.linf_eps=(0.3, 0.1)"], "ascending in [0, 1]"),
    (["--config.minmax.linf_eps=(0.0,)"], "at least one eps > 0"),
    (["--config.minmax.images=1"], "minmax.images must be 0 (all) or >= 2"),
    (["--config.minmax.readings=('group', 'orbit')"], "minmax.readings: readings must be"),
    (["--config.minmax.adv_eps=0.0"], "minmax.adv_eps must be in (0, 1]"),
    (["--config.train.adversarial=pgd"], "leave train.adversarial = 'none'"),
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
