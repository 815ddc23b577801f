"""The single entry point: compose the libraries from a config and write a run folder.

    python scripts/run.py [--config configs/NAME.py] [--config.a.b=value ...] [--workdir DIR]

The run folder (default ``runs/<config name>``) gets config.json, metrics.jsonl,
results.json, report.md, figures and checkpoints/. Running the same command again
resumes from the checkpoints instead of starting over. The logic is in
:mod:`experiments.cli` (``main``, ``resolve``), importable from a notebook.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from experiments.cli import main

if __name__ == "__main__":
    main()
