"""Orbax checkpoints of a train state plus its metric history and a checksum.

The history (a list of JSON records) is saved in the same checkpoint as the arrays, so
a resumed run knows exactly which metrics belong to the state it restored. The last two
checkpoints are kept, each with the SHA-256 of its state's bytes: :meth:`restore_intact`
takes the newest one that loads and matches its checksum, and warns about any it skips
(a truncated file, a deleted folder, overwritten bytes), so a damaged latest checkpoint
costs one epoch instead of the run, and never passes for a good one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import threading
import warnings
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from nets.distributed import fetch


@contextlib.contextmanager
def _ctrl_c_after():
    """Hold a Ctrl-C (SIGINT) that arrives inside the block until the block ends, so a
    checkpoint is written whole or not started (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if held:
        raise KeyboardInterrupt


class CheckpointError(RuntimeError):
    """No checkpoint in the folder could be restored intact."""


def checksum(state: Any) -> str:
    """SHA-256 over the dtype, shape and bytes of every leaf of ``state`` (host values;
    arrays sharded over several processes are gathered, so every process calls this)."""
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(fetch(state)):
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


class Checkpointer:
    """Saves ``{"state": pytree, "history": list}`` under ``directory/<epoch>``."""

    def __init__(self, directory: str, max_to_keep: int = 2):
        self.directory = os.path.abspath(directory)
        self._mngr = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        )

    def latest_step(self) -> int | None:
        return self._mngr.latest_step()

    def save(self, step: int, state: Any, history: list[dict]) -> None:
        with _ctrl_c_after():
            self._save(step, state, history)

    def _save(self, step: int, state: Any, history: list[dict]) -> None:
        self._mngr.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), history=ocp.args.JsonSave(history),
                integrity=ocp.args.JsonSave({"sha256": checksum(state)}),
            ),
        )
        self._mngr.wait_until_finished()

    def restore(self, template: Any, step: int | None = None) -> tuple[Any, list[dict], int]:
        """Restore into the structure of ``template``; returns (state, history, step)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        out = self._mngr.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), history=ocp.args.JsonRestore()
            ),
        )
        return out["state"], list(out["history"]), step

    def _saved_checksum(self, step: int) -> str | None:
        if not os.path.isdir(os.path.join(self.directory, str(step), "integrity")):
            return None  # saved before checksums existed
        out = self._mngr.restore(step, args=ocp.args.Composite(integrity=ocp.args.JsonRestore()))
        return out["integrity"]["sha256"]

    def restore_intact(self, template: Any) -> tuple[Any, list[dict], int]:
        """The newest checkpoint that loads and matches its checksum: (state, history,
        step). Skipped ones are reported with ``warnings.warn``; CheckpointError when none
        is intact."""
        problems = []
        for step in sorted(self._mngr.all_steps(), reverse=True):
            try:
                state, history, step = self.restore(template, step)
                saved = self._saved_checksum(step)
            except Exception as e:  # noqa: BLE001 - any failure to load means "damaged"
                problems.append(f"epoch {step}: {type(e).__name__}: {str(e)[:200]}")
                continue
            if saved is not None and saved != checksum(state):
                problems.append(f"epoch {step}: checksum mismatch (bytes changed on disk)")
                continue
            if problems:
                warnings.warn(f"checkpoints in {self.directory} skipped as damaged: "
                              f"{'; '.join(problems)}; resuming from epoch {step}", stacklevel=2)
            return state, history, step
        raise CheckpointError(
            f"no intact checkpoint in {self.directory} ({'; '.join(problems)}); delete the "
            f"folder (or run with --overwrite) to train from the start")

    def close(self) -> None:
        """Finish any save in flight, then release the manager's threads."""
        try:
            self._mngr.wait_until_finished()
        finally:
            self._mngr.close()
