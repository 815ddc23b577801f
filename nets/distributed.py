"""Runs across hosts: ``jax.distributed`` setup and the few places that differ.

With several processes (one per host, or several per machine for testing), the stacked
models of a run are split over a Mesh of every process's devices (nets.train.shard_models)
and each process trains its share; metrics and final states are gathered to every
process, and only process 0 writes the run folder (nets.report.RunDir). The run folder
must be on a filesystem all hosts share, as orbax's multi-host checkpoints require.

    python scripts/run.py --config ... --distributed                    # auto-detected cluster
    python scripts/run.py --config ... --coordinator host0:1234 --num-processes 2 --process-id 0

On one process everything here is a no-op or a plain ``device_get``.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
    """Join a multi-process run (before any other JAX call). Arguments left ``None`` come
    from the environment (``JAX_COORDINATOR_ADDRESS`` ...) or an auto-detected cluster
    (SLURM, Open MPI, Cloud TPU). CPU devices talk through gloo collectives."""
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id)


def is_main() -> bool:
    """True on the process that writes files and prints (process 0)."""
    return jax.process_index() == 0


def fetch(tree: Any) -> Any:
    """``tree`` as numpy arrays on this host; arrays sharded over other processes' devices
    are all-gathered first (every process must call this together)."""

    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    return jax.tree.map(one, tree)


def agree(flag: bool) -> bool:
    """Process 0's ``flag`` on every process (e.g. "this step is already done"), so all
    processes take the same branch even if their views of the filesystem differ."""
    if jax.process_count() == 1:
        return flag
    return bool(multihost_utils.broadcast_one_to_all(np.asarray(flag)))
