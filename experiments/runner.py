"""Run one lens into a run folder: protocol -> results, claims -> findings, report.

    results = lens.run(config, ctx)          # protocol: numbers only
    findings = lens.findings(results)        # claims: intervals and verdicts
    results.json  <- results + {"findings": [...]}
    report.md     <- provenance header, findings table, the lens's own report
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import ml_collections

from experiments import provenance, render
from experiments.intervals import Interval
from experiments.lens import Lens
from experiments.rundir import RunDir, jsonable

FINDING_COLUMNS = ["claim", "statistic", "estimate [95% interval]", "rule", "verdict", "figure"]


def findings_rows(findings: Sequence[dict]) -> list[list[str]]:
    """Rows of the findings table from the findings as saved in results.json."""
    rows = []
    for f in findings:
        fig = f["figure"]
        estimate = Interval.from_dict(f).fmt()
        rows.append([f"{f['claim']} ({f['source']})", f["statistic"]
                     + (f"; {f['detail']}" if f["detail"] else ""),
                     f"{estimate} ({f['method']})", f["rule"], f"**{f['verdict']}**",
                     f"[figure]({fig})" if fig else ""])
    return rows


def findings_table(findings: Sequence[dict]) -> str:
    return render.table(FINDING_COLUMNS, findings_rows(findings))


def seeds_of(config: ml_collections.ConfigDict) -> tuple:
    """The seeds a config trains (``minmax.seeds`` for the Min-Max lens)."""
    for section in ("minmax", "train"):
        if section in config and "seeds" in config[section]:
            return tuple(config[section].seeds)
    return ()


def run_lens(lens: Lens, config: ml_collections.ConfigDict, run_dir: RunDir,
             progress: bool = True, points: list[dict] | None = None) -> dict:
    """Run ``lens`` with ``config``; write results.json and report.md; return results."""
    t0 = time.perf_counter()
    results = jsonable(lens.run(config, run_dir.context(progress, points)))
    results["findings"] = [f.to_dict() for f in lens.findings(results)]
    results.setdefault("seconds", time.perf_counter() - t0)
    run_dir.write_json("results.json", results)
    text = provenance.header(f"{lens.title}: {config.model.name} on {config.data.name}",
                             seeds_of(config))
    if results["findings"]:
        text += "## Findings\n\n" + findings_table(results["findings"]) + "\n"
    run_dir.write_report(text + lens.report(config, results, run_dir.figure))
    return results
