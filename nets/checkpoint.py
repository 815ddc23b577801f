"""Orbax checkpoints of a train state plus its metric history.

The history (a list of JSON records) is saved in the same checkpoint as the arrays, so
a resumed run knows exactly which metrics belong to the state it restored.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


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
        self._mngr.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), history=ocp.args.JsonSave(history)
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

    def close(self) -> None:
        self._mngr.close()
