"""The benchmarks start as benchmarks/README.md says to run them (``python
benchmarks/NAME_bench.py`` from the checkout root): no script shadows a package."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.name for p in (ROOT / "benchmarks").glob("*_bench.py"))
DEVICE_SH = ROOT / "benchmarks" / "device.sh"


def device_runs() -> dict[str, list[str]]:
    """script -> every --flag benchmarks/device.sh passes it (full and --quick sizes)."""
    runs = {}
    for line in DEVICE_SH.read_text().splitlines():
        m = re.match(r'\s*"(\w+)\|(\w+\.py)\|([^|]*)\|([^|]*)\|(\d+)\|', line)
        if m:
            runs[m[2]] = re.findall(r"(--[\w-]+)", m[3] + " " + m[4])
    return runs


def test_device_script_is_valid_bash_and_runs_every_benchmark():
    bash = shutil.which("bash")
    assert bash, "bash is needed to run benchmarks/device.sh"
    subprocess.run([bash, "-n", str(DEVICE_SH)], check=True)
    assert sorted(device_runs()) == SCRIPTS
    assert sum(int(re.match(r'\s*"[^|]*\|[^|]*\|[^|]*\|[^|]*\|(\d+)', line)[1])
               for line in DEVICE_SH.read_text().splitlines()
               if re.match(r'\s*"\w+\|\w+\.py\|', line)) <= 300  # its 5-minute budget


def test_every_benchmark_is_documented():
    readme = (ROOT / "benchmarks" / "README.md").read_text()
    assert SCRIPTS and all(f"python benchmarks/{s}" in readme for s in SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_starts_as_documented(script):
    out = subprocess.run([sys.executable, f"benchmarks/{script}", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "usage:" in out.stdout
    unknown = [f for f in device_runs().get(script, []) if f not in out.stdout.split()
               and f"{f}," not in out.stdout.split()]
    assert not unknown, f"benchmarks/device.sh passes {script} flags it lacks: {unknown}"
