"""The minmax task end to end through scripts/run.py (tiny settings), its config checks,
and the verdict logic on constructed numbers."""

import json
from pathlib import Path

import pytest

from experiments import cli as run_script
from experiments import config as config_lib
from experiments.minmax import protocol as study

ROOT = Path(__file__).resolve().parents[2]

TINY = ["--config.data.name=synthetic", "--config.train.epochs=2", "--config.train.batch_size=128",
        "--config.minmax.lambdas=(0.0, 30.0)",
        "--config.minmax.seeds=(0, 1)", "--config.minmax.images=32",
        "--config.minmax.chunk=32", "--config.minmax.pgd_steps=2",
        "--config.minmax.linf_eps=(0.0, 0.1)"]


def run(tmp_path, *args):
    return run_script.main(["--config", str(ROOT / "configs" / "minmax.py"), "--no-progress",
                            f"--workdir={tmp_path}", *args])


def test_minmax_study_writes_results_report_and_per_epoch_stats(tmp_path):
    results = run(tmp_path, *TINY)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["verdict"] == json.loads(json.dumps(results["verdict"]))
    assert saved["lambdas"] == [0.0, 30.0] and saved["seeds"] == [0, 1]
    assert set(saved["by_lambda"]) == {"0", "30"}
    for entry in saved["by_lambda"].values():
        assert len(entry["test_accuracy"]["per_seed"]) == 2
        f = entry["layers"]["conv2"]["fuzziness"]
        assert 0 < f["init"]["mean"] < 1 and 0 < f["end"]["mean"] < 1
        assert set(entry["layers"]["conv1"]) >= {"minmax_index", "kurtosis", "small_fraction"}
        for name in ("fgsm", "pgd"):
            r = entry["robust_accuracy"][name]
            assert len(r["mean"]) == 2 and r["mean"][1] <= r["mean"][0]  # eps 0.1 <= clean
    by = saved["by_lambda"]
    # Same seeds, same init: the penalty leaves the init alone and lowers F by the end.
    assert by["30"]["layers"]["conv1"]["fuzziness"]["init"] == by["0"]["layers"]["conv1"]["fuzziness"]["init"]
    assert by["30"]["layers"]["conv2"]["fuzziness"]["end"]["mean"] < by["0"]["layers"]["conv2"]["fuzziness"]["end"]["mean"]
    assert saved["verdict"]["a"]["answer"] in ("yes", "partly", "no")
    assert saved["verdict"]["b"]["answer"] in ("yes", "no")
    # metrics.jsonl: one record per epoch with every conv layer's stats for all 4 models.
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [0, 1]
    assert len(lines[-1]["fuzziness/conv1"]) == 4 and len(lines[-1]["minmax_index/conv2"]) == 4
    text = (tmp_path / "report.md").read_text()
    for needle in ("Only the paper's abstract is available", "**(a)", "**(b)",
                   "fuzziness_curves.png", "minmax_index_curves.png", "robust_accuracy.png",
                   "| 30 |", "### PGD"):
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
    (["--config.train.seeds=(0, 1)"], "unknown config key 'train.seeds'"),
])
def test_bad_settings_are_one_clear_error(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        run(tmp_path, *args)
    assert info.value.code != 0
    assert message in capsys.readouterr().err


def test_the_config_file_is_valid_and_runs_the_grid_it_describes():
    config, run_fn, _ = run_script.resolve(config_lib.load_file(ROOT / "configs" / "minmax.py"))
    assert run_fn is study.run and config.model.name == "lenet5"
    assert 0.0 in config.minmax.lambdas and len(config.minmax.seeds) >= 3


def fake_entry(f_init, f_end, clean, fgsm, pgd):
    """A by_lambda entry with per-seed numbers (conv1 only)."""
    def s(v):
        return {"mean": sum(v) / len(v), "std": 0.0, "per_seed": list(v)}
    return {"test_accuracy": s(clean),
            "layers": {"conv1": {"fuzziness": {"init": s(f_init), "end": s(f_end)},
                                 "minmax_index": {"init": s([0.4] * 3), "end": s([0.4] * 3)}}},
            "robust_mean": {"fgsm": s(fgsm), "pgd": s(pgd)}}


def test_verdicts_on_constructed_numbers():
    base = fake_entry([0.74] * 3, [0.70, 0.71, 0.72], [0.97] * 3, [0.30, 0.31, 0.29],
                      [0.20, 0.21, 0.19])
    a = study.verdict_a(base, ["conv1"])
    assert a["answer"] == "yes" and a["layers"]["conv1"]["seeds_falling"] == 3
    flat = fake_entry([0.74] * 3, [0.735, 0.745, 0.74], [0.97] * 3, [0.3] * 3, [0.2] * 3)
    assert study.verdict_a(flat, ["conv1"])["answer"] == "no"
    by = {
        "0": base,
        "1": fake_entry([0.74] * 3, [0.5] * 3, [0.965] * 3, [0.40, 0.41, 0.39], [0.30, 0.31, 0.29]),
        "10": fake_entry([0.74] * 3, [0.4] * 3, [0.90] * 3, [0.50, 0.51, 0.49], [0.40, 0.41, 0.39]),
        "100": fake_entry([0.74] * 3, [0.3] * 3, [0.97] * 3, [0.30, 0.33, 0.27], [0.10, 0.11, 0.09]),
    }
    b = study.verdict_b(by, [0.0, 1.0, 10.0, 100.0], tolerance=0.02)
    assert b["answer"] == "yes"  # lambda=1: similar clean accuracy, more robust under both
    assert b["per_lambda"]["1"]["supports"]
    assert not b["per_lambda"]["10"]["supports"]  # more robust, but clean accuracy dropped
    assert b["per_lambda"]["100"]["fgsm"]["call"] == "no clear difference"
    assert b["per_lambda"]["100"]["pgd"]["call"] == "less robust"
    assert "lambda=100 the one-step FGSM shows no loss" in b["text"]
    del by["1"]
    assert study.verdict_b(by, [0.0, 10.0, 100.0], tolerance=0.02)["answer"] == "no"
