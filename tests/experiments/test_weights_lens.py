"""The ``weights`` lens end to end through the command line, with tiny settings: two seeds,
one epoch, three layers, two perturbations, p in {0, 0.7, 1}, two trials."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from experiments import cli
from nets import data
from nets import train as train_lib

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "configs" / "weights.py")
LAYERS = ("conv1", "fc2", "fc3")
NAMES = ("synapse_knockout/weights", "node_knockout")
TINY = ["--config.train.epochs=1", "--config.train.seeds=(0,1)", "--config.weights.trials=2",
        "--config.weights.p=(0.0,0.7,1.0)", f"--config.weights.layers={LAYERS}",
        "--config.weights.kinds=('synapse_knockout','node_knockout')",
        "--config.weights.targets=('weights',)", "--no-progress"]


def test_weights_lens_end_to_end(tmp_path, monkeypatch):
    results = cli.main(["--config", CONFIG, f"--workdir={tmp_path}", *TINY])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == results
    assert saved["seeds"] == [0, 1] and saved["p"] == [0.0, 0.7, 1.0] and saved["trials"] == 2
    assert (saved["top_layer"], saved["first_conv"], saved["output_layer"]) == ("fc2", "conv1", "fc3")
    clean = saved["clean"]["top1"]
    assert len(clean) == 2 and all(0.2 < c <= 1 for c in clean)
    assert sorted(saved["accuracy"]) == sorted(NAMES) == sorted(saved["per_seed"])
    labels = data.load("digits", "test").labels
    for name in NAMES:
        assert tuple(saved["accuracy"][name]) == LAYERS
        for layer in LAYERS:
            by_p = saved["accuracy"][name][layer]
            assert sorted(by_p) == ["0", "0.7", "1"]  # experiments.rundir.float_key
            assert all(np.shape(v) == (2, 2) for v in by_p.values())  # (seeds, trials)
            # p = 0 is each seed's clean network, exactly, in every trial
            np.testing.assert_allclose(by_p["0"], np.repeat(np.array(clean)[:, None], 2, 1),
                                       atol=1e-6)
            summary = saved["per_seed"][name][layer]
            assert np.shape(summary["relative"]) == (2, 3)
            np.testing.assert_allclose(np.array(summary["relative"])[:, 0], 1.0, atol=1e-5)
    # every unit of the last layer removed: constant logits, argmax = class 0, every seed
    dead = saved["accuracy"]["node_knockout"]["fc3"]["1"]
    np.testing.assert_allclose(dead, np.mean(labels == 0), atol=1e-6)

    findings = saved["findings"]
    assert len(findings) == 2
    for f in findings:
        assert f["verdict"] in ("yes", "no", "inconclusive")
        assert all(f[k] is None or math.isfinite(f[k]) for k in ("estimate", "lo", "hi"))
        assert f["method"] == "t over 2 seeds"
    report = (tmp_path / "report.md").read_text()
    assert "## Findings" in report and "## Internal weight perturbations" in report
    for png in ("weights_headline.png", "weights_synapse_knockout_weights.png",
                "weights_node_knockout.png"):
        assert (tmp_path / png).stat().st_size > 0 and f"]({png})" in report

    # Again in the same folder: the models come from the checkpoint (no training step),
    # and the sweep gives the same numbers.
    def no_training(*args, **kwargs):
        def refuse(*a, **k):
            raise AssertionError("trained again instead of restoring the checkpoint")
        return refuse

    monkeypatch.setattr(train_lib, "make_epoch_fn", no_training)
    again = cli.main(["--config", CONFIG, f"--workdir={tmp_path}", *TINY])
    assert again["accuracy"] == results["accuracy"]


@pytest.mark.parametrize("override, message", [
    ("--config.weights.kinds=('dropout',)", "weights.kinds: unknown ['dropout']"),
    ("--config.weights.layers=('conv9',)", "weights.layers: unknown ['conv9']"),
    ("--config.weights.p=(0.5,1.5)", "weights.p must lie in [0, 1]"),
    ("--config.weights.model=1", "unknown config key 'weights.model'"),
])
def test_bad_weights_config_is_one_line_before_training(tmp_path, capsys, override, message):
    with pytest.raises(SystemExit) as info:
        cli.main(["--config", CONFIG, f"--workdir={tmp_path}", *TINY, override])
    assert info.value.code != 0 and message in capsys.readouterr().err
    assert not (tmp_path / "checkpoints").exists()  # nothing was trained
