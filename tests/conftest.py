"""Shared test setup: keep JAX on the CPU and quiet; float64 for the oracle tests; the
persistent compilation cache in the user's cache folder (as the command line uses it),
so programs compiled by one test process (an xdist worker, a command-line subprocess)
are loaded, not compiled again, by the others and by the next run of the suite."""

import os

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
