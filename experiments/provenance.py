"""Where a result came from: commit, library versions, device, for the report's head."""

from __future__ import annotations

import importlib.metadata
import subprocess
from pathlib import Path

import jax

ROOT = Path(__file__).resolve().parent.parent
LIBRARIES = ("cnn-uncertainty", "jax", "jaxlib", "flax", "optax", "numpy", "scipy",
             "orbax-checkpoint")


def commit() -> str:
    """The checkout's commit (with ``+changes`` when the work tree differs), or
    ``unknown`` outside a git checkout."""
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "-uno"],
                               capture_output=True, text=True, timeout=10, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+changes" if dirty else "")


def versions() -> dict[str, str]:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def device() -> str:
    d = jax.devices()
    return f"{len(d)} x {d[0].device_kind} ({jax.default_backend()})"


def header(title: str, seeds, config_link: str = "config.json") -> str:
    """The report's first lines: what ran, on which code, libraries and device."""
    libs = ", ".join(f"{k} {v}" for k, v in versions().items())
    return (f"# {title}\n\n"
            f"- commit: `{commit()}`\n- libraries: {libs}\n- device: {device()}\n"
            f"- seeds: {', '.join(map(str, seeds))}\n"
            f"- config: [{config_link}]({config_link})\n\n")
