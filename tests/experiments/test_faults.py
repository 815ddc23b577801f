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


# A real full disk or read-only mount cannot be made without privileges (and chmod does
# not stop root), so the filesystem faults are injected into an otherwise real command-
# line process: every write below the run folder raises the OSError the kernel would give.
FAULTY = r'''
import builtins, errno, io, os, sys
root, workdir, fault = sys.argv[1], os.path.realpath(sys.argv[2]), sys.argv[3]
sys.path.insert(0, root)
code = {"full": errno.ENOSPC, "readonly": errno.EROFS}[fault]
state = {"appends": 0}

def inside(path):
    return os.path.realpath(os.fspath(path)).startswith(workdir)

def fail(path):
    raise OSError(code, os.strerror(code), os.fspath(path))

def guarded_open(real):
    def opener(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)) and inside(file) and set(mode) & set("wax+"):
            if fault == "readonly":  # every write fails at once
                fail(file)
            if mode.startswith("a"):  # full: the disk fills at the third epoch's metrics line
                state["appends"] += 1
                if state["appends"] >= 2:
                    fail(file)
        return real(file, mode, *args, **kwargs)
    return opener

io.open = guarded_open(io.open)
builtins.open = guarded_open(builtins.open)
if fault == "readonly":
    for name, target in (("mkdir", 0), ("link", 1), ("replace", 1), ("rename", 1)):
        real = getattr(os, name)
        def wrapped(*args, _real=real, _i=target, **kwargs):
            if inside(args[_i]):
                fail(args[_i])
            return _real(*args, **kwargs)
        setattr(os, name, wrapped)
from experiments.cli import main
main(sys.argv[4:])
'''


SHORT = [*ARGS, "--config.train.epochs=3"]


def run_with_fault(tmp_path: Path, workdir: Path, fault: str) -> subprocess.CompletedProcess:
    script = tmp_path / "faulty.py"
    script.write_text(FAULTY)
    return subprocess.run([sys.executable, str(script), str(ROOT), str(workdir), fault,
                           *SHORT, f"--workdir={workdir}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)


def test_disk_full_mid_run_is_one_line_and_the_same_command_resumes(tmp_path):
    workdir = tmp_path / "run"
    out = run_with_fault(tmp_path, workdir, "full")
    assert out.returncode == 1, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert lines[0].startswith(f"error: cannot write in {workdir}: No space left on device")
    assert "metrics.jsonl" in lines[0] and "run the same command to resume" in lines[0]
    assert epochs_logged(workdir) == 2 and not (workdir / "run.lock").exists()
    again = subprocess.run([*command(workdir), "--config.train.epochs=3"], cwd=ROOT, capture_output=True, text=True,
                           timeout=300, check=False)
    assert again.returncode == 0, again.stderr[-2000:]
    epochs = [json.loads(x)["epoch"] for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert epochs == list(range(3))


def test_read_only_run_folder_is_one_line_and_the_folder_is_untouched(tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    out = run_with_fault(tmp_path, workdir, "readonly")
    assert out.returncode == 1, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert lines[0].startswith(f"error: cannot write in {workdir}: Read-only file system")
    assert list(workdir.iterdir()) == []
