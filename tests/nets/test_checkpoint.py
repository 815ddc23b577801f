"""A damaged latest checkpoint (truncated, deleted, or bytes overwritten) is reported and
the previous one is used, so the resumed run ends where an uninterrupted run ends."""

from pathlib import Path

import jax
import numpy as np
import pytest

from nets import data, models, train
from nets.checkpoint import CheckpointError

SPEC = train.TrainSpec(epochs=3, batch_size=64, learning_rate=3e-3)


@pytest.fixture(scope="module")
def setup():
    full, test = data.load("digits", "train"), data.load("digits", "test")
    small = (data.Dataset(full.images[:256], full.labels[:256], 10),
             data.Dataset(test.images[:64], test.labels[:64], 10))
    net = models.mlp(hidden=(16,))
    straight, _ = train.fit(net, *small, SPEC)
    return net, small, straight


def largest_file(folder: Path) -> Path:
    return max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def damage(step_dir: Path, how: str) -> None:
    state = step_dir / "state"
    if how == "delete":
        for p in sorted(state.rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
        state.rmdir()
        return
    target = largest_file(state)
    raw = bytearray(target.read_bytes())
    if how == "truncate":
        target.write_bytes(bytes(raw[: len(raw) // 3]))
    else:  # overwrite: same length, different bytes
        mid = len(raw) // 2
        raw[mid:mid + 64] = bytes((b + 1) % 256 for b in raw[mid:mid + 64])
        target.write_bytes(bytes(raw))


@pytest.mark.parametrize("how", ["overwrite", "truncate", "delete"])
def test_damaged_latest_checkpoint_falls_back_to_the_previous(setup, tmp_path, how):
    net, small, straight = setup
    first = train.TrainSpec(epochs=2, batch_size=64, learning_rate=3e-3)
    train.fit(net, *small, first, checkpoint_dir=str(tmp_path))  # keeps epochs 0 and 1
    damage(tmp_path / "1", how)
    with pytest.warns(UserWarning, match=r"skipped as damaged: epoch 1.*resuming from epoch 0"):
        resumed, history = train.fit(net, *small, SPEC, checkpoint_dir=str(tmp_path))
    assert [r["epoch"] for r in history] == [0, 1, 2]
    for a, b in zip(jax.tree.leaves(resumed["params"]), jax.tree.leaves(straight["params"])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_no_intact_checkpoint_is_one_clear_error(setup, tmp_path):
    net, small, _ = setup
    first = train.TrainSpec(epochs=2, batch_size=64, learning_rate=3e-3)
    train.fit(net, *small, first, checkpoint_dir=str(tmp_path))
    damage(tmp_path / "0", "overwrite")
    damage(tmp_path / "1", "overwrite")
    with pytest.raises(CheckpointError, match="no intact checkpoint .*--overwrite"):
        train.fit(net, *small, SPEC, checkpoint_dir=str(tmp_path))
