"""The example notebook runs as printed: every code cell, in order, in one namespace (as
a Jupyter kernel would run it), from a folder outside the checkout."""

import json
import os
from pathlib import Path

import matplotlib

ROOT = Path(__file__).resolve().parents[1]


def test_tour_notebook_runs_cell_by_cell(tmp_path, capsys):
    matplotlib.use("Agg")
    nb = json.loads((ROOT / "examples" / "tour.ipynb").read_text())
    cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert len(cells) >= 6  # one per lens, the networks and the setup
    namespace: dict = {}
    old = Path.cwd()
    os.chdir(tmp_path)
    try:
        for i, cell in enumerate(cells):
            source = "".join(cell["source"])
            exec(compile(source, f"tour.ipynb cell {i}", "exec"), namespace)  # noqa: S102 (our notebook)
    finally:
        os.chdir(old)
    out = capsys.readouterr().out
    for expected in ("test accuracy per seed", "fuzziness", "AutoAttack robust",
                     "knocked out", "closed form vs Monte Carlo", "topographic error"):
        assert expected in out, out
