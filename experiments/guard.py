"""Keeping a run folder honest: it is never reused for different work without saying so,
and only one process writes it at a time.

``run.json`` records the run's fingerprint: the full config (sweep axes included) and
the code version (the commit, see :mod:`experiments.provenance`). A later command on the
same folder with a different fingerprint stops before anything in the folder is touched,
naming the differing keys and the fixes: a new ``--workdir``, ``--overwrite`` (delete
the folder's contents and start again) or ``--resume-anyway`` (keep its checkpoints and
finished parts, record the new fingerprint). ``run.lock`` holds the pid of the process
running in the folder; a second process is refused while that pid is alive.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from experiments.config import flatten

FINGERPRINT = "run.json"
LOCK = "run.lock"


class RunFolderError(RuntimeError):
    """The run folder holds different work, or another process is using it."""


def fingerprint(config: dict, code: str) -> dict:
    """What determines a run's results: its config (JSON types) and the code version."""
    return json.loads(json.dumps({"config": config, "code": code}, default=list))


def differences(old: dict, new: dict) -> list[str]:
    """``key: old -> new`` for every config key (and the code) that differs."""
    a, b = dict(flatten(old.get("config", {}))), dict(flatten(new.get("config", {})))
    out = [f"{k}: {a.get(k, '(absent)')!r} -> {b.get(k, '(absent)')!r}"
           for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    if old.get("code") != new.get("code"):
        out.append(f"code: {old.get('code')} -> {new.get('code')}")
    return out


def check(folder: Path, new: dict, *, overwrite: bool = False, resume_anyway: bool = False) -> None:
    """Refuse a folder that holds a different run (see the module doc); with
    ``overwrite`` empty it first. Nothing is written here except by ``overwrite``."""
    path = folder / FINGERPRINT
    if overwrite:
        if folder.exists():
            for child in folder.iterdir():
                if child.name != LOCK:
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
        return
    if resume_anyway or not folder.exists() or not any(folder.iterdir()):
        return
    fixes = ("use a new --workdir, or --overwrite to delete it and start again, or "
             "--resume-anyway to keep its checkpoints")
    if not path.is_file():
        others = [c.name for c in folder.iterdir() if c.name != LOCK]
        if others:
            raise RunFolderError(f"run folder {folder} holds files of an unknown run "
                                 f"({', '.join(sorted(others)[:4])}); {fixes}")
        return
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise RunFolderError(f"run folder {folder}: {FINGERPRINT} is unreadable ({e}); {fixes}") from e
    diff = differences(old, new)
    if diff:
        shown = "; ".join(diff[:5]) + (f"; and {len(diff) - 5} more" if len(diff) > 5 else "")
        raise RunFolderError(f"run folder {folder} holds a different run ({shown}); {fixes}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Lock:
    """``run.lock`` with this process's pid. It appears atomically with its content (a
    hard link of a finished temporary file), so another process never reads it empty; a
    stale lock (its pid is gone, e.g. after kill -9) is taken over."""

    def __init__(self, folder: Path):
        self.path = folder / LOCK
        self.held = False

    def _holder(self) -> int:
        try:
            return int(self.path.read_text().strip() or 0)
        except (OSError, ValueError):
            return 0

    def acquire(self) -> Lock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{LOCK}.{os.getpid()}")
        tmp.write_text(str(os.getpid()))
        try:
            for _ in range(3):
                try:
                    os.link(tmp, self.path)
                except FileExistsError:
                    pid = self._holder()
                    if pid and pid != os.getpid() and _alive(pid):
                        raise RunFolderError(
                            f"run folder {self.path.parent} is in use by process {pid} "
                            f"({LOCK}); wait for it to finish, stop it, or use another "
                            f"--workdir") from None
                    if self._holder() == pid:  # still the stale holder: take it over
                        self.path.unlink(missing_ok=True)
                    continue
                self.held = True
                return self
        finally:
            tmp.unlink(missing_ok=True)
        raise RunFolderError(f"could not take {self.path}; another process keeps replacing it")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False
