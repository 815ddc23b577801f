"""A sweep sharded over 4 (forced host) devices returns the same numbers as unsharded:
2 seeds x 2 learning rates, the stacked models a config sweep trains (study/sweep.py)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    from nets import data, models, train
    full = data.load("digits", "train")
    tr = data.Dataset(full.images[:256], full.labels[:256], 10)
    spec = train.TrainSpec(epochs=2, batch_size=32, learning_rate=3e-3)
    states, hist = train.fit(models.lenet5(), tr, None, spec, seeds=(0, 1, 0, 1),
                             hparams={"learning_rate": [1e-3, 1e-3, 3e-3, 3e-3]})
    kernel = states["params"]["conv1"]["kernel"]
    print(json.dumps({"devices": len(jax.devices()),
                      "shards": len(kernel.sharding.device_set),
                      "kernel": np.asarray(kernel).tolist(),
                      "loss": hist[-1]["train_loss"]}))
""")


def _run(devices: int) -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_sharded_sweep_equals_unsharded():
    one, four = _run(1), _run(4)
    assert one["devices"] == 1 and one["shards"] == 1
    assert four["devices"] == 4 and four["shards"] == 4  # each device trains one model
    # Same program partitioned along the model axis: equal up to float32 rounding.
    np.testing.assert_allclose(np.asarray(four["kernel"]), np.asarray(one["kernel"]),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(four["loss"], one["loss"], rtol=1e-4)
