"""The command line of scripts/run.py, importable (tests, notebooks): compose the libraries
from a config and write a run folder.

    python scripts/run.py [--config configs/NAME.py] [--config.a.b=value ...] [--workdir DIR]

The run folder (default ``runs/<config name>``) gets config.json, metrics.jsonl,
results.json, report.md, figures and checkpoints/. Running the same command again
resumes from the checkpoints instead of starting over.

A list given to any scalar key (``--config.train.learning_rate=[1e-3,1e-2]``, or in the
config file) is a sweep over its values (study/sweep.py). ``--distributed`` or
``--coordinator/--num-processes/--process-id`` run one command on several hosts
(nets/distributed.py).
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import jax
import ml_collections

ROOT = Path(__file__).resolve().parent.parent  # a checkout (or site-packages when installed)

from experiments import compile_cache, guard, provenance, registry, study, sweep
from experiments import config as config_lib
from experiments.rundir import RunDir
from experiments.runner import run_lens
from experiments.train import protocol as train_protocol
from nets import autotune, distributed
from nets.checkpoint import CheckpointError
from nets.data import DatasetNotPreparedError
from nets.train import NonFiniteLossError


def task_defaults(task: str) -> ml_collections.ConfigDict:
    """Every key task ``task`` (a lens, or ``study``) knows, with its default."""
    return study.defaults() if task == "study" else registry.get(task).defaults()


def run_task(config: ml_collections.ConfigDict, run_dir: RunDir, progress: bool = True,
             points: list[dict] | None = None) -> dict:
    """Run ``config.task`` into ``run_dir`` (the study, or one lens)."""
    if config.task == "study":
        return study.run(config, run_dir, progress)
    return run_lens(registry.get(config.task), config, run_dir, progress, points)


# Errors caused by the config or the data, reported as one line instead of a traceback.
USER_ERRORS = (DatasetNotPreparedError, NonFiniteLossError, CheckpointError)


def resolve(config: ml_collections.ConfigDict, overrides: dict | None = None):
    """Validate ``config`` (plus nested ``overrides``) against its task's defaults.

    Returns (config, :func:`run_task`, sweep axes): a list given to a scalar key, in the file
    or in an override, is a sweep axis ``{"a.b": [values]}`` (empty: a single run); the
    returned config holds the other values.
    """
    task = (overrides or {}).get("task") or config.get("task", "train")
    if task != "study" and task not in registry.MODULES:
        raise config_lib.ConfigError(
            f"unknown task {task!r}; choose one of {sorted([*registry.MODULES, 'study'])}")
    reference = task_defaults(task)
    file_values, axes = config_lib.split_sweeps(config.to_dict(), reference)
    over_values, over_axes = config_lib.split_sweeps(overrides or {}, reference)
    overridden = {k for k, _ in config_lib.flatten(over_values)} | set(over_axes)
    axes = {**{k: v for k, v in axes.items() if k not in overridden}, **over_axes}
    merged = config_lib.merge(config_lib.merge(reference, file_values), over_values)
    if "train" in merged:  # one line now, not a traceback after an epoch of work
        train_protocol.train_spec(merged.train)
    if "model" in merged:
        train_protocol.check_model(merged.model)
    return merged, run_task, axes


def _configs_dir() -> Path:
    """The bundled config files: ``configs/`` in a checkout, ``experiments/configs`` in
    an installed wheel (pyproject.toml maps one onto the other)."""
    checkout = ROOT / "configs"
    if checkout.is_dir():
        return checkout
    return Path(importlib.util.find_spec("experiments.configs").submodule_search_locations[0])


def bundled_configs() -> list[str]:
    return sorted(p.stem for p in _configs_dir().glob("*.py") if not p.stem.startswith("_"))


def config_path(name: str) -> Path:
    """``name`` as a file path if it is one, else the bundled config of that name."""
    path = Path(name)
    if path.is_file() or path.suffix == ".py" or "/" in name:
        return path
    return _configs_dir() / f"{name}.py"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="default",
                        help="config file with get_config(), or the name of a bundled one "
                             f"({', '.join(bundled_configs())}); default: default")
    parser.add_argument("--workdir", default=None,
                        help="run folder (default ./runs/<config name>)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--compile-cache", metavar="DIR", default=None,
                        help="folder of JAX's persistent compilation cache (default: "
                             f"${compile_cache.ENV} or ~/.cache/cnn-uncertainty/jax)")
    parser.add_argument("--no-compile-cache", action="store_true",
                        help="compile everything afresh (no persistent compilation cache, and no "
                             "autotune records; CNN_UNCERTAINTY_AUTOTUNE=0 turns autotune off)")
    parser.add_argument("--overwrite", action="store_true",
                        help="the run folder holds a different run: delete it and start again")
    parser.add_argument("--resume-anyway", action="store_true",
                        help="the run folder holds a different run: keep its checkpoints and "
                             "finished parts, and record the new config")
    multi = parser.add_argument_group(
        "across hosts (jax.distributed; start the same command on every host, with a "
        "run folder they share)")
    multi.add_argument("--distributed", action="store_true",
                       help="join a multi-process run; settings from the environment or cluster")
    multi.add_argument("--coordinator", help="HOST:PORT of process 0 (implies --distributed)")
    multi.add_argument("--num-processes", type=int, help="number of processes")
    multi.add_argument("--process-id", type=int, help="this process's index")
    args, rest = parser.parse_known_args(argv)
    flat = []
    for item in rest:
        if not item.startswith("--config."):
            parser.error(f"unrecognized argument {item!r}; overrides look like --config.a.b=value")
        flat.append(config_lib.parse_override(item[len("--config."):]))
    try:
        config, run_fn, axes = resolve(config_lib.load_file(config_path(args.config)),
                                       config_lib.nest(flat))
    except config_lib.ConfigError as e:
        parser.exit(2, f"config error: {e}\n")
    if not args.no_compile_cache:
        folder = compile_cache.enable(args.compile_cache or compile_cache.default_dir())
        if folder is not None:  # CPU convolution forms timed once per machine (nets.autotune)
            autotune.set_dir(folder / "autotune")
    if args.distributed or args.coordinator or args.num_processes or args.process_id is not None:
        distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    workdir = Path(args.workdir or Path.cwd() / "runs" / Path(args.config).stem)
    full = config.to_dict()
    for key, values in axes.items():  # the fingerprint holds the sweep's lists too
        config_lib.set_path(full, key, values)
    print_ = print if distributed.is_main() else (lambda *a, **k: None)
    lock = guard.Lock(workdir)
    try:
        if distributed.is_main():
            new = guard.fingerprint(full, provenance.commit())
            lock.acquire()  # first: a folder in use is reported as such
            guard.check(workdir, new, overwrite=args.overwrite, resume_anyway=args.resume_anyway)
        run_dir = RunDir(workdir)
        run_dir.write_json("config.json", full)
        if distributed.is_main():
            run_dir.write_json(guard.FINGERPRINT, new)
        print(f"run folder: {workdir} (process {jax.process_index()} of {jax.process_count()}, "
               f"{jax.device_count()} {jax.default_backend()} devices)", flush=True)
        progress = not args.no_progress and distributed.is_main()
        if axes:
            results = sweep.run(config.task, run_fn, config, axes, run_dir, progress=progress)
        else:
            results = run_fn(config, run_dir, progress=progress)
    except guard.RunFolderError as e:
        parser.exit(2, f"error: {e}\n")
    except config_lib.ConfigError as e:
        parser.exit(2, f"config error: {e}\n")
    except USER_ERRORS as e:
        parser.exit(1, f"error: {e}\n")
    except KeyboardInterrupt:
        parser.exit(130, "interrupted; run the same command to resume\n")
    except OSError as e:  # disk full, permissions: name the file
        parser.exit(1, f"error: cannot write in {workdir}: {e.strerror or e} "
                       f"({e.filename or workdir}); free space or fix permissions, then run the "
                       f"same command to resume\n")
    finally:
        lock.release()
    print_(f"report: {workdir / 'report.md'}")
    return results


def entry() -> None:
    """The ``cnn-uncertainty`` console script (exit status 0 on success)."""
    main()
