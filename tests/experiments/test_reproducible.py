"""The same command twice on one machine gives the same results.json (timing fields
aside), and the report opens with where the numbers came from."""

import json
from pathlib import Path

from experiments import cli

ROOT = Path(__file__).resolve().parents[2]
TIMING = ("seconds", "compile_seconds", "timings")


def strip(tree):
    """``tree`` without timing fields (wall-clock times differ run to run)."""
    if isinstance(tree, dict):
        return {k: strip(v) for k, v in tree.items()
                if not any(k.startswith(t) or k.endswith(t) for t in TIMING)}
    if isinstance(tree, list):
        return [strip(v) for v in tree]
    return tree


def test_same_command_twice_gives_the_same_results(tmp_path):
    args = ["--config", str(ROOT / "configs" / "train.py"), "--no-progress",
            "--config.train.epochs=1", "--config.train.seeds=(0,1)",
            "--config.model.name=mlp", "--config.model.hidden=(16,)"]
    cli.main([*args, f"--workdir={tmp_path / 'a'}"])
    cli.main([*args, f"--workdir={tmp_path / 'b'}"])
    a, b = (json.loads((tmp_path / d / "results.json").read_text()) for d in "ab")
    assert strip(a) == strip(b)
    assert a["findings"] and a["findings"][0]["verdict"] in ("yes", "no", "inconclusive")
    report = (tmp_path / "a" / "report.md").read_text().splitlines()
    assert report[0].startswith("# Training: mlp on digits")
    head = "\n".join(report[:8])
    for what in ("- commit: `", "- libraries: cnn-uncertainty", "jax ", "- device: ",
                 "- seeds: 0, 1", "[config.json](config.json)"):
        assert what in head, what
