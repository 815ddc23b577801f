"""scripts/run.py end to end: the run folder, resume, and errors as one clear line."""

import json
from pathlib import Path

import pytest
import tensorflow_datasets as tfds

from experiments import cli as run_script

ROOT = Path(__file__).resolve().parents[2]


def run(*args):
    return run_script.main(["--config", str(ROOT / "configs" / "train.py"), "--no-progress", *args])


def test_train_run_writes_the_run_folder_and_resumes(tmp_path):
    results = run("--config.train.epochs=2", "--config.train.seeds=(0,1)", f"--workdir={tmp_path}")
    for name in ("config.json", "metrics.jsonl", "results.json", "report.md",
                 "train_loss.png", "test_accuracy.png"):
        assert (tmp_path / name).is_file(), name
    assert (tmp_path / "checkpoints").is_dir()
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["test_accuracy"] == pytest.approx(results["test_accuracy"])
    assert saved["parameters"] == 61706 and len(saved["test_accuracy_per_seed"]) == 2
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [0, 1]
    assert json.loads((tmp_path / "config.json").read_text())["train"]["epochs"] == 2
    assert "| lenet5 | digits | 2 |" in (tmp_path / "report.md").read_text()
    # Same command again: restored from the checkpoint, same numbers, full metrics.
    again = run("--config.train.epochs=2", "--config.train.seeds=(0,1)", f"--workdir={tmp_path}")
    assert again["test_accuracy_per_seed"] == results["test_accuracy_per_seed"]
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [0, 1]


def test_one_epoch_on_mock_tfds(tmp_path):
    with tfds.testing.mock_data(num_examples=64):
        results = run("--config.data.name=mnist", "--config.train.epochs=1",
                      "--config.train.batch_size=32", f"--workdir={tmp_path}")
    assert results["train_images"] == 64 and 0.0 <= results["test_accuracy"] <= 1.0


@pytest.mark.parametrize("args, message", [
    (["--config.train.epoch=3"], "unknown config key 'train.epoch'. Did you mean 'train.epochs'"),
    (["--config.train.epochs=abc"], "expects int"),
    (["--config.model.name=resnet"], "unknown model 'resnet'"),
    (["--config.model.dtype=float16"], "unknown model.dtype 'float16'"),
    (["--config.train.optimizer=lbfgs"], "unknown train.optimizer 'lbfgs'"),
    (["--config.train.epochs=-1"], "train.epochs must be >= 1, got -1"),
    (["--config.train.batch_size=0"], "train.batch_size must be >= 1, got 0"),
    (["--config.train.eval_every=0"], "train.eval_every must be >= 1, got 0"),
    (["--config.train.checkpoint_every=0"], "train.checkpoint_every must be >= 1, got 0"),
    (["--config.train.seeds=()"], "train.seeds is empty"),
    (["--config.data.name=cifar10", "--config.data.data_dir=DIR"], "'cifar10' is not prepared"),
])
def test_bad_input_is_one_clear_error(args, message, tmp_path, capsys):
    args = [a.replace("DIR", str(tmp_path / "tfds")) for a in args]
    with pytest.raises(SystemExit) as info:
        run(*args, f"--workdir={tmp_path / 'run'}")
    assert info.value.code != 0
    err = capsys.readouterr().err
    assert message in err and err.strip().count("\n") == 0, err  # one line
