"""The ``study`` task: every lens on one trained model, one report with a findings table.

Layout of the run folder::

    checkpoints/        the shared model (trained once; every lens restores it)
    train/ attacks/ weights/ som/ minmax/ analytic/   each lens's own run folder
    results.json        {"findings": [...], "parts": {lens: that lens's results}}
    report.md           the findings table, then each lens's report linked

A lens whose folder holds a ``done.json`` written for the same config is not run again,
so an interrupted study started again reuses the trained model and finished lenses.
(minmax trains its own lambda x seed models, with checkpoints in ``minmax/``.)
"""

from __future__ import annotations

import time
from pathlib import Path
from types import ModuleType

import ml_collections

from analytic import study as analytic_study
from attacks import study as attacks_study
from attacks import weights_study
from minmax import study as minmax_study
from nets import experiment, report
from nets.config import ConfigError, merge, sweepable
from nets.distributed import agree
from nets.report import RunDir, jsonable
from som import study as som_study
from study.findings import FINDINGS

PARTS: dict[str, ModuleType] = {
    "attacks": attacks_study,
    "weights": weights_study,
    "som": som_study,
    "minmax": minmax_study,
    "analytic": analytic_study,
}
SHARED = ("data", "model", "train")  # sections every lens takes from the study config


@sweepable
def defaults() -> ml_collections.ConfigDict:
    """The ``train`` keys, ``study.parts``, and every lens's own section."""
    c = experiment.defaults()
    c.task = "study"
    c.study = ml_collections.ConfigDict({"parts": tuple(PARTS)})
    for name, module in PARTS.items():
        c[name] = module.defaults()[name]
    return c


def part_config(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
    """The config lens ``name`` runs with: its defaults, overridden by the study's shared
    sections (where the lens has those keys) and by the study's section for it."""
    ref = PARTS[name].defaults()
    shared = {s: {k: v for k, v in config[s].to_dict().items() if k in ref[s]} for s in SHARED}
    return merge(ref, {**shared, name: config[name].to_dict()})


def _run_part(name: str, cfg: ml_collections.ConfigDict, folder: Path, checkpoints: str | None,
              run_fn, progress: bool) -> dict:
    done = report.finished(folder, cfg.to_dict())
    if agree(done is not None):
        print(f"[study] {name}: finished earlier, reusing {folder / 'results.json'}")
        return done
    print(f"[study] {name}: running")
    t0 = time.perf_counter()
    sub = RunDir(folder, checkpoints=checkpoints)
    sub.write_json("config.json", cfg.to_dict())
    results = jsonable(run_fn(cfg, sub, progress=progress))  # as a reused part reads it
    sub.mark_done(cfg.to_dict(), results, seconds=time.perf_counter() - t0)
    return results


def run(config: ml_collections.ConfigDict, run_dir: RunDir, progress: bool = True) -> dict:
    parts = tuple(config.study.parts)
    bad = [p for p in parts if p not in PARTS]
    if bad:
        raise ConfigError(f"study.parts: unknown {bad}; choose from {tuple(PARTS)}")
    shared = run_dir.checkpoints
    train_cfg = merge(experiment.defaults(), {s: config[s].to_dict() for s in SHARED})
    configs = {name: part_config(config, name) for name in parts}  # all errors up front
    t0 = time.perf_counter()
    results = {"train": _run_part("train", train_cfg, run_dir.path / "train", shared,
                                  experiment.run, progress)}
    for name in parts:
        own = None if name == "minmax" else shared
        results[name] = _run_part(name, configs[name], run_dir.path / name, own,
                                  PARTS[name].run, progress)
    findings = [row for name in ("train", *parts) for row in FINDINGS[name](results[name])]
    out = {"findings": findings, "parts": results, "seconds": time.perf_counter() - t0}
    run_dir.write_json("results.json", out)
    run_dir.write_report(_report(config, findings, parts, out["seconds"]))
    return out


def _report(config, findings: list[dict], parts: tuple[str, ...], seconds: float) -> str:
    rows = [[f["lens"], f["claim"], f["measured"], f"**{f['agrees']}**",
             f"[figure]({f['figure']})" if f["figure"] else ""] for f in findings]
    text = (f"# Uncertainty and robustness of {config.model.name} on {config.data.name}\n\n"
            f"Every lens on one trained model (minmax trains its own lambda x seed grid). "
            f"Each row: a paper's claim, what this run measured (the numbers are in "
            f"results.json under `parts`), and whether they agree. Total {seconds:.0f} s.\n\n"
            "## Findings\n\n"
            + report.table(["lens", "claim", "measured here", "agrees", "figure"], rows)
            + "\n## The lenses\n\n")
    for name in ("train", *parts):
        text += f"- [{name}]({name}/report.md)\n"
    return text
