"""A run folder is never silently reused for different work, a failed start leaves it
as it was, and a second process is kept out (issue 17, items 1, 2, 4 and 7)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import cli, guard

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--config", str(ROOT / "configs" / "train.py"), "--no-progress",
        "--config.train.epochs=1", "--config.train.seeds=(0,)", "--config.model.name=mlp",
        "--config.model.hidden=(8,)", "--config.train.batch_size=256"]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run(tmp_path, *extra):
    return cli.main([*TINY, f"--workdir={tmp_path}", *extra])


def test_a_changed_config_stops_before_touching_the_folder(tmp_path, capsys):
    first = run(tmp_path)
    before = snapshot(tmp_path)
    for extra, key in ((["--config.train.epochs=2"], "train.epochs: 1 -> 2"),
                       (["--config.model.name=lenet5"], "model.name: 'mlp' -> 'lenet5'"),
                       (["--config.train.learning_rate=0.05"], "train.learning_rate: 0.001 -> 0.05")):
        with pytest.raises(SystemExit) as info:
            run(tmp_path, *extra)
        err = capsys.readouterr().err
        assert info.value.code == 2 and err.count("\n") == 1, err
        assert key in err and "--workdir" in err and "--overwrite" in err, err
        assert snapshot(tmp_path) == before  # config.json, metrics.jsonl, checkpoints intact

    # --overwrite starts again with the new config; --resume-anyway records it and goes on
    second = run(tmp_path, "--config.train.epochs=2", "--overwrite")
    assert json.loads((tmp_path / "config.json").read_text())["train"]["epochs"] == 2
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [0, 1]
    assert second["test_accuracy_per_seed"] != first["test_accuracy_per_seed"]
    run(tmp_path, "--config.train.eval_every=2", "--resume-anyway")
    saved = json.loads((tmp_path / guard.FINGERPRINT).read_text())
    assert saved["config"]["train"]["eval_every"] == 2


def test_the_task_given_on_the_command_line_is_the_task_that_runs(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:  # train.py has no attacks section: a clear error
        run(tmp_path, "--config.task=attacks", "--config.attacks.names=('pgdd',)")
    assert info.value.code == 2
    assert "attacks.names: unknown ['pgdd']" in capsys.readouterr().err


def test_a_second_process_is_kept_out_and_a_stale_lock_is_taken_over(tmp_path, capsys):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        tmp_path.mkdir(exist_ok=True)
        (tmp_path / guard.LOCK).write_text(str(holder.pid))
        with pytest.raises(SystemExit) as info:
            run(tmp_path)
        err = capsys.readouterr().err
        assert info.value.code == 2 and f"in use by process {holder.pid}" in err
        assert sorted(p.name for p in tmp_path.iterdir()) == [guard.LOCK]
    finally:
        holder.kill()
        holder.wait()
    run(tmp_path)  # the holder is gone: its lock is stale and taken over
    assert not (tmp_path / guard.LOCK).exists()
    assert (tmp_path / "results.json").is_file()


def test_metrics_deleted_mid_run_are_rebuilt(tmp_path):
    from experiments.rundir import RunDir

    run_dir = RunDir(tmp_path)
    run_dir.log({"epoch": 0})
    (tmp_path / "metrics.jsonl").unlink()  # deleted while the run goes on
    run_dir.log({"epoch": 1})
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [0, 1]
    run_dir.log({"epoch": 2})
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 3
