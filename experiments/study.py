"""The ``study`` task: every lens on the same trained seeds, one report with the findings.

Layout of the run folder::

    checkpoints/        the shared models (S seeds, trained once; every lens restores them)
    train/ attacks/ weights/ som/ minmax/ analytic/   each lens's own run folder
    results.json        {"findings": [...], "parts": {lens: that lens's results}}
    report.md           provenance, the findings table, then each lens's report linked

A lens whose folder holds a ``done.json`` written for the same config is not run again,
so an interrupted study started again reuses the trained models and finished lenses.
(minmax trains its own lambda x seed models, with checkpoints in ``minmax/``.)
"""

from __future__ import annotations

import time
from pathlib import Path

import ml_collections

from experiments import provenance, registry
from experiments.config import ConfigError, merge, sweepable
from experiments.rundir import RunDir, finished
from experiments.runner import findings_table, run_lens
from nets.distributed import agree

SHARED = ("data", "model", "train")  # sections every lens takes from the study config


@sweepable
def defaults() -> ml_collections.ConfigDict:
    """The ``train`` keys, ``study.parts``, and every lens's own section."""
    c = registry.get("train").defaults()
    c.task = "study"
    c.study = ml_collections.ConfigDict({"parts": registry.PARTS})
    for name in registry.PARTS:
        c[name] = registry.get(name).defaults()[name]
    return c


def part_config(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
    """The config lens ``name`` runs with: its defaults, overridden by the study's shared
    sections (where the lens has those keys) and by the study's section for it."""
    ref = registry.get(name).defaults()
    shared = {s: {k: v for k, v in config[s].to_dict().items() if k in ref[s]} for s in SHARED}
    own = {name: config[name].to_dict()} if name in config else {}
    return merge(ref, {**shared, **own})


def _run_part(name: str, cfg: ml_collections.ConfigDict, folder: Path, checkpoints: str | None,
              progress: bool) -> dict:
    done = finished(folder, cfg.to_dict())
    if agree(done is not None):
        print(f"[study] {name}: finished earlier, reusing {folder / 'results.json'}")
        return done
    print(f"[study] {name}: running", flush=True)
    t0 = time.perf_counter()
    sub = RunDir(folder, checkpoints=checkpoints)
    sub.write_json("config.json", cfg.to_dict())
    results = run_lens(registry.get(name), cfg, sub, progress)
    sub.mark_done(cfg.to_dict(), results, seconds=time.perf_counter() - t0)
    return results


def run(config: ml_collections.ConfigDict, run_dir: RunDir, progress: bool = True) -> dict:
    parts = tuple(config.study.parts)
    bad = [p for p in parts if p not in registry.PARTS]
    if bad:
        raise ConfigError(f"study.parts: unknown {bad}; choose from {registry.PARTS}")
    configs = {name: part_config(config, name) for name in ("train", *parts)}  # errors first
    t0 = time.perf_counter()
    results = {}
    for name in ("train", *parts):
        own = registry.get(name).own_models
        results[name] = _run_part(name, configs[name], run_dir.path / name,
                                  None if own else run_dir.checkpoints, progress)
    findings = [dict(f, figure=f"{name}/{f['figure']}" if f["figure"] else "")
                for name in ("train", *parts) for f in results[name]["findings"]]
    out = {"findings": findings, "parts": results, "seconds": time.perf_counter() - t0}
    run_dir.write_json("results.json", out)
    run_dir.write_report(_report(config, findings, parts, out["seconds"]))
    return out


def _report(config, findings: list[dict], parts: tuple[str, ...], seconds: float) -> str:
    verdicts = {v: sum(f["verdict"] == v for f in findings) for v in ("yes", "no", "inconclusive")}
    text = provenance.header(
        f"Uncertainty and robustness of {config.model.name} on {config.data.name}",
        config.train.seeds)
    text += (f"Every lens on the same {len(config.train.seeds)} trained seeds (minmax trains "
             f"its own lambda x seed grid). Each row is a paper's claim, the statistic this run "
             f"computed for it with a 95% interval (how the interval is formed is in "
             f"brackets), the rule that turns the interval into a verdict, and the verdict. "
             f"All numbers are in results.json (`findings`, and each lens's under `parts`). "
             f"Verdicts: {verdicts['yes']} yes, {verdicts['no']} no, "
             f"{verdicts['inconclusive']} inconclusive. Total {seconds:.0f} s.\n\n"
             "## Findings\n\n" + findings_table(findings) + "\n## The lenses\n\n")
    for name in ("train", *parts):
        text += f"- [{registry.get(name).title}]({name}/report.md)\n"
    return text
