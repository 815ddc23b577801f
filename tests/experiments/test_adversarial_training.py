"""Adversarial training from the command line: the ``train.adversarial`` keys are checked
before anything runs, the report names the training objective, a run folder trained
one way is not reused for another, and configs/adversarial.py resolves."""

from pathlib import Path

import pytest

from experiments import cli
from experiments import config as config_lib

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--config", str(ROOT / "configs" / "train.py"), "--no-progress",
        "--config.train.epochs=1", "--config.train.seeds=(0,)", "--config.model.name=mlp",
        "--config.model.hidden=(8,)", "--config.train.batch_size=256"]


@pytest.mark.parametrize("arg, message", [
    ("--config.train.adversarial=fgsm",
     "unknown train.adversarial 'fgsm'; choose one of ('none', 'pgd', 'trades')"),
    ("--config.train.adv_eps=0.0", "train.adv_eps must be in (0, 1] for inputs in [0, 1], got 0.0"),
    ("--config.train.adv_steps=0", "train.adv_steps must be >= 1, got 0"),
    ("--config.train.adv_step_size=-1.0",
     "train.adv_step_size must be >= 0 (0: 2.5 * adv_eps / adv_steps), got -1.0"),
    ("--config.train.trades_beta=-1.0", "train.trades_beta must be >= 0, got -1.0"),
    ("--config.train.adv_warmup=-2", "train.adv_warmup must be >= 0 epochs, got -2"),
    ("--config.train.adv_steps=2.5", "config key 'train.adv_steps' expects int (default 7), got float 2.5"),
])
def test_bad_adversarial_settings_are_one_line_before_anything_runs(arg, message, tmp_path,
                                                                    capsys):
    adversarial = [] if "adversarial=" in arg else ["--config.train.adversarial=trades"]
    with pytest.raises(SystemExit) as info:
        cli.main([*TINY, f"--workdir={tmp_path}", *adversarial, arg])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err == f"config error: {message}\n", err
    assert not tmp_path.exists() or not any(tmp_path.iterdir())  # the folder untouched


def test_the_report_names_the_training_and_the_fingerprint_holds_it(tmp_path, capsys):
    pgd = ["--config.train.adversarial=pgd", "--config.train.adv_steps=2"]
    results = cli.main([*TINY, f"--workdir={tmp_path}", *pgd])
    assert results["training"] == "PGD-AT, Linf eps=0.1, 2 steps of 2.5 eps/2"
    report = (tmp_path / "report.md").read_text()
    assert "Training objective: PGD-AT, Linf eps=0.1, 2 steps of 2.5 eps/2" in report
    assert "| mlp | digits | 1 | PGD-AT, Linf eps=0.1, 2 steps of 2.5 eps/2 |" in report
    capsys.readouterr()
    for extra, key in ((["--config.train.adversarial=trades"], "train.adversarial: 'pgd' -> 'trades'"),
                       (["--config.train.adv_eps=0.2"], "train.adv_eps: 0.1 -> 0.2"),
                       (["--config.train.adv_steps=3"], "train.adv_steps: 2 -> 3"),
                       (["--config.train.adv_warmup=1"], "train.adv_warmup: 0 -> 1"),
                       (["--config.train.trades_beta=1.0"], "train.trades_beta: 6.0 -> 1.0")):
        with pytest.raises(SystemExit) as info:
            cli.main([*TINY, f"--workdir={tmp_path}", *pgd, *extra])
        err = capsys.readouterr().err
        assert info.value.code == 2 and key in err and "--overwrite" in err, err


def test_the_adversarial_config_resolves_and_the_default_study_trains_as_before():
    config, _, axes = cli.resolve(config_lib.load_file(ROOT / "configs" / "adversarial.py"))
    assert config.task == "train" and not axes
    assert (config.train.adversarial, config.train.adv_eps, config.train.adv_steps,
            config.train.adv_warmup, config.model.name) == ("pgd", 0.1, 7, 3, "lenet5")
    default, _, _ = cli.resolve(config_lib.load_file(ROOT / "configs" / "default.py"))
    assert default.train.adversarial == "none"
