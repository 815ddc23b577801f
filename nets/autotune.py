"""Pick the fastest of equivalent implementations by timing them once per machine (issue 18).

Some choices (which form of a CPU convolution, how many examples per jitted call) were
fixed by measurement on one CPU, and another CPU ranks the forms differently. As cuDNN's
benchmark mode does, :func:`choose` times each candidate the first time a choice is
needed (compiled and warm: one untimed call, then the best of ``repeats`` timed calls,
each ended by ``jax.block_until_ready``; see :func:`measure`) and records the winner;
later calls return the record without timing. A change from the fixed choice needs a
margin and a second measurement that agrees (:func:`choose`). Records are keyed by the machine (CPU model, visible CPU count,
JAX version, backend) and the caller's key, so a cache folder shared across machines or
JAX upgrades never hands one machine another's choice.

Where: in memory for the process, and in ``<folder>/autotune.json`` once a folder is set
with :func:`set_dir` (command-line runs are meant to set it inside the compilation cache
folder). Writes go
to a temporary file renamed over the old one (``os.replace``), so readers in other
processes see the old or the new file, never half of one; two processes writing at once
may drop one's new entry, which is then timed again, not wrong. An unreadable or
malformed file is reported (:class:`AutotuneCacheWarning`), ignored and rewritten.

Off switch: ``CNN_UNCERTAINTY_AUTOTUNE=0`` (or off/false/no) in the environment, or
``autotune.enabled = False``: :func:`choose` then returns its ``default`` (the fixed
choice) without timing. ``enabled = None`` (the default) follows the environment and,
when it says nothing, tunes only while a folder is set (see :func:`is_enabled`).
"""

from __future__ import annotations

import functools
import json
import os
import platform
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax

ENV = "CNN_UNCERTAINTY_AUTOTUNE"
OFF = ("0", "off", "false", "no")
ON = ("1", "on", "true", "yes")
FILE = "autotune.json"
VERSION = 1

enabled: bool | None = None  # None: the environment, else on only while a folder is set
timer: Callable[[], float] = time.perf_counter  # seconds; tests inject a fake clock

_folder: Path | None = None
_memory: dict[str, str] = {}
_loaded: dict[str, dict] | None = None  # the file's entries, read once per folder
_lock = threading.RLock()


class AutotuneCacheWarning(UserWarning):
    """The autotune file could not be read or held a bad entry; it is timed again."""


def set_dir(folder: str | Path | None) -> Path | None:
    """Keep decisions in ``folder/autotune.json`` (None: in memory only); returns the folder.
    An unusable folder is not an error: decisions stay in memory (as with None)."""
    global _folder, _loaded
    with _lock:
        _loaded = None
        _folder = None
        if folder is not None:
            path = Path(folder).expanduser()
            try:
                path.mkdir(parents=True, exist_ok=True)
                _folder = path
            except OSError as err:
                warnings.warn(f"autotune folder {path} unusable ({err}); decisions kept in memory",
                              AutotuneCacheWarning, stacklevel=2)
        return _folder


def get_dir() -> Path | None:
    """The folder decisions are written to (None: memory only)."""
    return _folder


def is_enabled() -> bool:
    """Whether :func:`choose` times candidates: ``enabled`` if set, else the environment
    variable if set, else True only while a folder is set. (In-memory-only tuning would
    time every shape again in every process: a cost without a lasting gain.)"""
    if enabled is not None:
        return bool(enabled)
    value = os.environ.get(ENV, "").strip().lower()
    if value in OFF:
        return False
    if value in ON:
        return True
    return _folder is not None


def machine() -> str:
    """What a timing depends on besides the code: CPU model, CPUs this process may use,
    JAX version and backend, e.g. ``"Intel(R) Xeon(R) Processor|2cpu|jax 0.10.2|cpu"``."""
    return f"{_cpu()}|jax {jax.__version__}|{jax.default_backend()}"


@functools.cache
def _cpu() -> str:
    """The CPU model (as lscpu prints it, from /proc/cpuinfo) and the usable CPU count."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    model = model or platform.processor() or platform.machine()
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 0
    return f"{model}|{cpus}cpu"


def forget() -> None:
    """Drop the in-memory decisions (the file, if any, is re-read on the next miss)."""
    global _loaded
    with _lock:
        _memory.clear()
        _loaded = None


def measure(candidates: Mapping[str, Callable[[], Any]], repeats: int = 10) -> dict[str, float]:
    """Seconds per call of each candidate: one untimed call each (compilation, caches),
    then ``repeats`` rounds timing every candidate once per round (interleaved, so a change
    of load hits all alike), each call waited for with ``jax.block_until_ready``; the
    minimum over rounds. (Other load only adds time, so the minimum is the least disturbed
    estimate, as Python's ``timeit`` advises; medians flipped choices on a loaded 2-core
    machine.)"""
    for fn in candidates.values():
        jax.block_until_ready(fn())
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            start = timer()
            jax.block_until_ready(fn())
            times[name].append(timer() - start)
    return {name: min(t) for name, t in times.items()}


def choose(
    key: str,
    candidates: Mapping[str, Callable[[], Any]],
    default: str,
    *,
    repeats: int = 10,
    work: Mapping[str, float] | None = None,
    margin: float = 0.1,
) -> str:
    """The name of the fastest candidate for ``key`` on this machine; ``default`` when
    tuning is off (:func:`is_enabled`) or there is nothing to choose.

    ``candidates``: name -> a thunk running that form once on representative inputs (its
    result is waited for), timed together by :func:`measure`; the score is the time
    divided by ``work[name]`` (default 1: e.g. examples per call, to compare chunk sizes
    by time per example). Another candidate replaces ``default`` only when its score is
    lower by more than ``margin`` (a fraction): the fixed choice was measured in context
    (fusion with neighbours, loops), which an isolated timing misses, and near-ties flip
    with noise; for the same reason a change is kept only if a second measurement of the
    two confirms it. Thunks run eagerly, also when ``choose`` is called while JAX traces.
    """
    if default not in candidates:
        raise ValueError(f"default {default!r} is not a candidate of {sorted(candidates)}")
    if not is_enabled() or len(candidates) == 1 or jax.config.jax_disable_jit:
        return default  # (without jit, timings would be of op-by-op dispatch)
    full = f"{machine()}|{key}"
    with _lock:
        if full in _memory and _memory[full] in candidates:
            return _memory[full]
        entry = _read().get(full)
        if entry is not None:
            if entry.get("choice") in candidates:
                _memory[full] = entry["choice"]
                return entry["choice"]
            warnings.warn(f"autotune record for {key!r} names {entry.get('choice')!r}, not one of "
                          f"{sorted(candidates)}; timing again", AutotuneCacheWarning, stacklevel=2)
        with jax.ensure_compile_time_eval():  # run the thunks even while tracing
            times = measure(candidates, repeats)
            choice = _winner(times, work, default, margin)
            recheck = {}
            if choice != default:  # confirm a change with a second, independent measurement
                pair = {name: candidates[name] for name in (default, choice)}
                recheck = measure(pair, repeats)
                choice = _winner(recheck, work, default, margin)
        _memory[full] = choice
        entry = {"choice": choice, "seconds": times, "key": key}
        if recheck:
            entry["recheck_seconds"] = recheck
        _write(full, entry)
        return choice


def _winner(times: Mapping[str, float], work: Mapping[str, float] | None, default: str,
            margin: float) -> str:
    """The candidate with the least time per unit of work if that beats ``default``'s by
    more than ``margin``, else ``default``."""
    scores = {name: t / (work or {}).get(name, 1.0) for name, t in times.items()}
    best = min(scores, key=scores.__getitem__)
    return best if scores[best] < (1 - margin) * scores[default] else default


def choose_size(
    key: str,
    run: Callable[[int], Any],
    sizes: Sequence[int],
    default: int,
    *,
    repeats: int = 2,
    margin: float = 0.1,
) -> int:
    """The size in ``sizes`` (e.g. examples per jitted call) with the least time per unit,
    where ``run(size)`` does ``size`` units of work; ``default`` when tuning is off. One
    warm-up and two timed calls per size by default: each is a whole program's run."""
    names = {str(int(s)): int(s) for s in (*sizes, default)}
    candidates = {name: functools.partial(run, size) for name, size in names.items()}
    work = {name: float(size) for name, size in names.items()}
    return names[choose(key, candidates, str(int(default)), repeats=repeats, work=work, margin=margin)]


def _path() -> Path | None:
    return None if _folder is None else _folder / FILE


def _parse(path: Path) -> dict[str, dict]:
    """The entries of the file at ``path`` ({} when absent); warns and returns {} when it
    cannot be read or is not this module's format."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as err:
        warnings.warn(f"autotune file {path} unreadable ({err}); timing again",
                      AutotuneCacheWarning, stacklevel=4)
        return {}
    try:
        data = json.loads(text)
        entries = data["entries"]
        if data.get("version") != VERSION or not isinstance(entries, dict):
            raise ValueError(f"version {data.get('version')!r}, expected {VERSION}")
        if not all(isinstance(v, dict) for v in entries.values()):
            raise ValueError("an entry is not an object")
    except (ValueError, KeyError, TypeError) as err:
        warnings.warn(f"autotune file {path} is corrupt ({type(err).__name__}: {err}); "
                      f"ignoring it, timing again and rewriting it", AutotuneCacheWarning,
                      stacklevel=4)
        return {}
    return entries


def _read() -> dict[str, dict]:
    """The folder's entries, read once per folder (``forget``/``set_dir`` re-read)."""
    global _loaded
    path = _path()
    if path is None:
        return {}
    if _loaded is None:
        _loaded = _parse(path)
    return _loaded


def _write(full: str, entry: dict) -> None:
    """Merge ``entry`` into the file (re-read first: other processes may have added
    entries) and replace it atomically. A failed write only warns."""
    global _loaded
    path = _path()
    if path is None:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AutotuneCacheWarning)  # already reported by _read
        entries = _parse(path)
    entries[full] = entry
    _loaded = entries
    text = json.dumps({"version": VERSION, "entries": entries}, indent=1, sort_keys=True)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".autotune-", suffix=".json", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as err:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        warnings.warn(f"autotune file {path} not written ({err}); decision kept in memory",
                      AutotuneCacheWarning, stacklevel=3)
