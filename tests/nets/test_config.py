from pathlib import Path

import pytest

from nets import config, experiment


def test_overrides_merge_and_keep_types():
    ref = experiment.defaults()
    out = config.merge(ref, config.nest([config.parse_override("train.learning_rate=1"),
                                         config.parse_override("train.seeds=[0,1,2]"),
                                         config.parse_override("model.name=mlp")]))
    assert out.train.learning_rate == 1.0 and isinstance(out.train.learning_rate, float)
    assert out.train.seeds == (0, 1, 2) and out.model.name == "mlp"
    assert ref.train.learning_rate == 1e-3  # the reference is not mutated


def test_unknown_key_names_the_key_and_the_closest_ones():
    with pytest.raises(config.ConfigError, match=r"unknown config key 'train.epoch'\. Did you mean 'train.epochs'"):
        config.merge(experiment.defaults(), {"train": {"epoch": 3}})
    with pytest.raises(config.ConfigError, match="unknown config key 'nope'"):
        config.merge(experiment.defaults(), {"nope": 1})


@pytest.mark.parametrize("override, expected", [
    ({"train": {"epochs": 2.5}}, "expects int"),
    ({"train": {"epochs": "ten"}}, "expects int"),
    ({"data": {"download": 1}}, "expects bool"),
    ({"train": 3}, "is a section"),
])
def test_wrong_types_are_errors(override, expected):
    with pytest.raises(config.ConfigError, match=expected):
        config.merge(experiment.defaults(), override)


def test_config_files_validate_against_their_task_defaults():
    from study import cli as run

    for path in sorted(Path("configs").glob("*.py")):
        cfg = config.load_file(path)
        defaults, _ = run.TASKS[cfg.task]
        assert config.validate(cfg, defaults()).to_dict() == cfg.to_dict(), path
    with pytest.raises(config.ConfigError, match="does not exist"):
        config.load_file("configs/missing.py")


def test_parse_override():
    assert config.parse_override("a.b=(1, 2)") == ("a.b", (1, 2))
    assert config.parse_override("a=adam") == ("a", "adam")
    assert config.parse_override("a=x=y") == ("a", "x=y")
    with pytest.raises(config.ConfigError):
        config.parse_override("a.b")
