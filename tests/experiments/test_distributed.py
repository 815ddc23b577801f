"""Two processes joined by jax.distributed (2 CPU devices each) train a stacked sweep
split over all 4 devices, and get the numbers of one process on one device."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--config", str(ROOT / "configs" / "train.py"), "--no-progress",
        "--config.train.epochs=2", "--config.train.batch_size=64", "--config.model.name=mlp",
        "--config.model.hidden=(64,)", "--config.train.seeds=(0,1)",
        "--config.train.learning_rate=[1e-3,1e-2]"]


def _env(devices: int) -> dict:
    return dict(os.environ, JAX_PLATFORMS="cpu",
                XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _results(workdir: Path) -> tuple[list, list]:
    sub = workdir / "sweep" / "stacked"
    points = json.loads((workdir / "results.json").read_text())["points"]
    losses = [json.loads(x)["train_loss"] for x in (sub / "metrics.jsonl").read_text().splitlines()]
    return [p["test_accuracy"] for p in points], losses


def test_two_processes_equal_one(tmp_path):
    run = [sys.executable, str(ROOT / "scripts" / "run.py"), *ARGS]
    single = subprocess.run([*run, f"--workdir={tmp_path / 'one'}"], env=_env(1), cwd=ROOT, check=False,
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-2000:]
    port = _free_port()
    procs = [subprocess.Popen(
        [*run, f"--workdir={tmp_path / 'two'}", f"--coordinator=localhost:{port}",
         "--num-processes=2", f"--process-id={i}"],
        env=_env(2), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    assert "(process 0 of 2, 4 cpu devices)" in outs[0][0]
    assert "(process 1 of 2, 4 cpu devices)" in outs[1][0]
    acc1, loss1 = _results(tmp_path / "one")
    acc2, loss2 = _results(tmp_path / "two")
    # the 4 models (2 learning rates x 2 seeds) were split one per device over 2 hosts:
    # each process wrote its own shards into the orbax checkpoint
    state = tmp_path / "two" / "sweep" / "stacked" / "checkpoints" / "1" / "state"
    assert (state / "ocdbt.process_0").is_dir() and (state / "ocdbt.process_1").is_dir()
    np.testing.assert_allclose(loss2, loss1, rtol=1e-4)
    np.testing.assert_allclose(acc2, acc1, atol=1e-6)
