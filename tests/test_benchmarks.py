"""The benchmarks start as benchmarks/README.md says to run them (``python
benchmarks/NAME_bench.py`` from the checkout root): no script shadows a package."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.name for p in (ROOT / "benchmarks").glob("*_bench.py"))


def test_every_benchmark_is_documented():
    readme = (ROOT / "benchmarks" / "README.md").read_text()
    assert SCRIPTS and all(f"python benchmarks/{s}" in readme for s in SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_starts_as_documented(script):
    out = subprocess.run([sys.executable, f"benchmarks/{script}", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "usage:" in out.stdout
