"""The distribution installs as a wheel and its console script runs the main job from a
folder outside the checkout, with the configs that travel inside the package (issue 15)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_installs_and_its_console_script_runs_outside_the_checkout(tmp_path):
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(tmp_path / "dist"), str(ROOT)],
                   check=True, capture_output=True, timeout=600)
    wheel = next((tmp_path / "dist").glob("cnn_uncertainty-*.whl"))
    site = tmp_path / "site"
    # --no-deps --target: the wheel alone, the dependencies from this environment
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=600)
    env = {**os.environ, "PYTHONPATH": str(site)}
    away = tmp_path / "elsewhere"
    away.mkdir()
    where = subprocess.run([sys.executable, "-c", "import experiments; print(experiments.__file__)"],
                           cwd=away, env=env, capture_output=True, text=True, check=True)
    assert where.stdout.strip().startswith(str(site))  # the wheel's copy, not the checkout
    assert (site / "LICENSE").exists() or any(site.glob("cnn_uncertainty-*.dist-info/licenses/LICENSE"))
    out = subprocess.run([str(site / "bin" / "cnn-uncertainty"), "--config", "train",
                          "--no-progress", "--config.train.epochs=1", "--config.train.seeds=(0,)",
                          "--workdir", "run"], cwd=away, env=env, capture_output=True, text=True,
                         timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    results = json.loads((away / "run" / "results.json").read_text())
    assert len(results["history"]) == 1 and (away / "run" / "report.md").is_file()
