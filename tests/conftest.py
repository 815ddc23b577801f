"""Shared test setup: keep JAX on the CPU and quiet; float64 for the oracle tests; the
persistent compilation cache in the user's cache folder (as the command line uses it),
so programs compiled by one test process (an xdist worker, a command-line subprocess)
are loaded, not compiled again, by the others and by the next run of the suite."""

import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # after the environment above, so JAX starts on the CPU
import pytest

from experiments import compile_cache

compile_cache.enable(compile_cache.default_dir())


@pytest.fixture(scope="module")
def enable_x64():
    """float64 for a whole test module (``pytestmark = pytest.mark.usefixtures(...)``);
    the previous setting comes back after the module."""
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", old)


def _on_devices(script: str, devices: int) -> dict:
    """Run ``script`` (Python source) in a fresh process with ``devices`` forced host CPU
    devices (the count is fixed when JAX starts) and return the JSON of its last stdout
    line: the sharding tests' one subprocess per module."""
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    out = subprocess.run([sys.executable, "-c", script], env=env, check=True, text=True,
                         cwd=Path(__file__).resolve().parents[1], capture_output=True,
                         timeout=900).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def on_devices():
    """``on_devices(script, devices) -> dict`` (:func:`_on_devices`)."""
    return _on_devices
