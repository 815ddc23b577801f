"""The persistent compilation cache of the command line (issue 15): a second run of the
same command compiles nothing new; the cache can be turned off; the folder is chosen
from the environment."""

import subprocess
import sys
from pathlib import Path

from experiments import compile_cache

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--config", "train", "--no-progress", "--config.train.epochs=1",
        "--config.train.seeds=(0,)"]


def entries(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def run(workdir: Path, *extra: str) -> None:
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "run.py"), *ARGS,
                          f"--workdir={workdir}", *extra], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]


def test_second_run_of_the_same_command_compiles_nothing_new(tmp_path):
    """Every compiled program is written to the cache (no minimum compile time), so a
    program compiled again would add an entry: the second run must add none."""
    cache = tmp_path / "cache"
    run(tmp_path / "a", f"--compile-cache={cache}")
    first = entries(cache)
    assert len(first) >= 5  # init, train step, evaluation, ... were all stored
    run(tmp_path / "b", f"--compile-cache={cache}")  # a fresh folder: everything reruns
    assert entries(cache) == first


def test_no_compile_cache_writes_nothing(tmp_path):
    cache = tmp_path / "cache"
    run(tmp_path / "a", f"--compile-cache={cache}", "--no-compile-cache")
    assert entries(cache) == set()


def test_folder_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(compile_cache.ENV, str(tmp_path / "c"))
    assert compile_cache.default_dir() == tmp_path / "c"
    monkeypatch.setenv(compile_cache.ENV, "off")
    assert compile_cache.default_dir() is None
    monkeypatch.delenv(compile_cache.ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert compile_cache.default_dir() == tmp_path / "x" / "cnn-uncertainty" / "jax"
