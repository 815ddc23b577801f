"""Real process faults through the command line: kill -9 mid-training then the same
command resumes to the uninterrupted result; two concurrent runs on one folder."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--config", "train", "--no-progress", "--config.train.epochs=8",
        "--config.train.seeds=(0,)", "--config.train.batch_size=32"]


def command(workdir: Path) -> list[str]:
    return [sys.executable, str(ROOT / "scripts" / "run.py"), *ARGS, f"--workdir={workdir}"]


def epochs_logged(workdir: Path) -> int:
    path = workdir / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.is_file() else 0


def start_until_two_epochs(workdir: Path) -> subprocess.Popen:
    """Start a run in ``workdir`` and return once it has logged two epochs (or ended)."""
    proc = subprocess.Popen(command(workdir), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while epochs_logged(workdir) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    return proc


def test_kill_9_mid_run_then_resume_equals_an_uninterrupted_run(tmp_path):
    killed = tmp_path / "killed"
    proc = start_until_two_epochs(killed)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert 2 <= epochs_logged(killed) < 8

    resumed = subprocess.run(command(killed), cwd=ROOT, capture_output=True, text=True,
                             timeout=300, check=False)  # the stale lock is taken over
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    straight = subprocess.run(command(tmp_path / "straight"), cwd=ROOT, capture_output=True,
                              text=True, timeout=300, check=False)
    assert straight.returncode == 0, straight.stderr[-2000:]
    a, b = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("killed", "straight"))
    assert a["test_accuracy_per_seed"] == b["test_accuracy_per_seed"]
    assert [json.loads(x)["epoch"] for x in (killed / "metrics.jsonl").read_text().splitlines()] \
        == list(range(8))


def test_two_concurrent_runs_on_one_folder(tmp_path):
    """Started together: one runs, the other stops with one line naming the holder (or,
    if the first already finished, resumes its finished run); never a traceback or a
    duplicated epoch."""
    procs = [subprocess.Popen(command(tmp_path), cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes in ([0, 0], [0, 2]), outs
    for p, (_, err) in zip(procs, outs):
        if p.returncode == 2:
            assert "is in use by process" in err and err.strip().count("\n") == 0, err
        assert "Traceback" not in err, err
    epochs = [json.loads(x)["epoch"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert epochs == list(range(8))


def test_ctrl_c_stops_with_one_line_and_the_run_resumes(tmp_path):
    proc = start_until_two_epochs(tmp_path)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == "interrupted; run the same command to resume"
    assert "Traceback" not in err and not (tmp_path / "run.lock").exists()
    again = subprocess.run(command(tmp_path), cwd=ROOT, capture_output=True, text=True,
                           timeout=300, check=False)
    assert again.returncode == 0, again.stderr[-2000:]
