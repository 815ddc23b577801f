"""JAX's persistent compilation cache for command-line runs (issue 15).

Most of a small run's wall time on a CPU is XLA compilation (a LeNet-5 study compiles
hundreds of programs). With the cache on, every compiled program is stored on disk keyed
by its HLO, the compile options and the backend, so a second run of the same command (a
resume, a rerun, another run of the same shapes) loads them instead of compiling. The
key excludes source locations (``jax_compilation_cache_include_metadata_in_key`` is
False by default), so the same program built from another call site is shared too.

The folder is ``$CNN_UNCERTAINTY_CACHE`` if set, else ``$XDG_CACHE_HOME/cnn-uncertainty/
jax`` (``~/.cache/...``); ``--compile-cache DIR`` overrides it and
``--no-compile-cache`` (or ``CNN_UNCERTAINTY_CACHE=off``) turns it off. Every program is
cached, not only those over JAX's default one second of compile time: this project's
programs are many and small, and skipping them was most of the saving left on the table.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

ENV = "CNN_UNCERTAINTY_CACHE"
OFF = ("off", "0", "false", "no", "")


def default_dir() -> Path | None:
    """The cache folder from the environment (None when ``$CNN_UNCERTAINTY_CACHE`` is off)."""
    if ENV in os.environ:
        value = os.environ[ENV]
        return None if value.strip().lower() in OFF else Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cnn-uncertainty" / "jax"


def enable(folder: str | Path | None) -> Path | None:
    """Turn the persistent cache on in ``folder`` (None: leave it off); returns the folder.

    Must run before the first compilation of the process: JAX reads these settings when
    it first uses the cache. An unwritable folder is not an error: the run compiles as
    if there were no cache (JAX warns once).
    """
    if folder is None:
        return None
    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder
