"""Config sweeps: stacked hyperparameter points, sequential points, the report, reuse."""

import json
from pathlib import Path

import numpy as np
import pytest

from experiments import cli, sweep
from experiments.rundir import RunDir
from experiments.train import protocol as experiment

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--no-progress", "--config.train.epochs=1", "--config.train.batch_size=128",
        "--config.model.name=mlp", "--config.model.hidden=(32,)"]


def test_mixed_sweep_stacks_learning_rates_and_runs_epochs_in_turn(tmp_path):
    out = cli.main(["--config", str(ROOT / "configs" / "train.py"), f"--workdir={tmp_path}",
                    *TINY, "--config.train.learning_rate=[1e-3,1e-2]",
                    "--config.train.epochs=[1,2]", "--config.train.seeds=(0,1)"])
    assert out["axes"] == {"train.learning_rate": [1e-3, 1e-2], "train.epochs": [1, 2]}
    points = out["points"]
    assert [(p["train.epochs"], p["train.learning_rate"]) for p in points] == [
        (1, 1e-3), (1, 1e-2), (2, 1e-3), (2, 1e-2)]
    # epochs changes the run, so one sub-run per value, each stacking both learning rates
    for epochs in (1, 2):
        sub = tmp_path / "sweep" / f"train.epochs={epochs}"
        saved = json.loads((sub / "results.json").read_text())["points"]
        assert [p["train.learning_rate"] for p in saved] == [1e-3, 1e-2]
        metrics = [json.loads(x) for x in (sub / "metrics.jsonl").read_text().splitlines()]
        assert len(metrics[-1]["test_accuracy"]) == 4  # 2 learning rates x 2 seeds, one run
        rows = [p for p in points if p["train.epochs"] == epochs]
        np.testing.assert_allclose([p["test_accuracy"] for p in rows],
                                   [p["test_accuracy"] for p in saved])
        np.testing.assert_allclose(  # point i holds models 2i, 2i+1 (its two seeds)
            np.reshape(metrics[-1]["test_accuracy"], (2, 2)).mean(1),
            [p["test_accuracy"] for p in saved])
    assert json.loads((tmp_path / "results.json").read_text())["points"] == json.loads(
        json.dumps(points))
    report = (tmp_path / "report.md").read_text()
    assert "# Sweep (train): 4 points" in report and (tmp_path / "sweep.png").is_file()
    assert report.count("](sweep/train.epochs=") == 4


def test_a_stacked_point_equals_its_single_run(tmp_path):
    base = ["--config", str(ROOT / "configs" / "train.py"), *TINY]
    swept = cli.main([*base, f"--workdir={tmp_path / 's'}", "--config.train.learning_rate=[1e-3,2e-2]"])
    alone = cli.main([*base, f"--workdir={tmp_path / 'a'}", "--config.train.learning_rate=2e-2"])
    assert swept["points"][1]["test_accuracy"] == pytest.approx(alone["test_accuracy"], abs=1e-6)
    assert (tmp_path / "s" / "sweep" / "stacked" / "checkpoints").is_dir()


def test_finished_points_are_reused_and_changed_ones_rerun(tmp_path):
    calls = []

    def run_fn(config, run_dir, progress=True):
        calls.append(config.train.epochs)
        return {"test_accuracy": 0.5 + config.train.epochs / 10}

    config = experiment.defaults()
    first = sweep.run("train", run_fn, config, {"train.epochs": [1, 2]}, RunDir(tmp_path))
    assert calls == [1, 2]
    again = sweep.run("train", run_fn, config, {"train.epochs": [1, 2, 3]}, RunDir(tmp_path))
    assert calls == [1, 2, 3]  # only the new point ran
    assert again["points"][:2] == first["points"]
    config.train.batch_size = 32  # another config: the same folders are run again
    sweep.run("train", run_fn, config, {"train.epochs": [1]}, RunDir(tmp_path))
    assert calls == [1, 2, 3, 1]


def test_stacking_a_hyperparameter_the_optimizer_lacks_is_a_config_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--config", str(ROOT / "configs" / "train.py"), f"--workdir={tmp_path}",
                  *TINY, "--config.train.momentum=[0.5,0.9]"])
    assert exit_info.value.code == 2  # config errors exit 2
    err = capsys.readouterr().err
    assert "'train.momentum' cannot be stacked: optimizer 'adam' takes train.learning_rate" in err
