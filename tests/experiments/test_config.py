from pathlib import Path

import pytest

from experiments import config
from experiments.train import protocol as experiment


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


def test_config_files_are_plain_data_valid_for_their_task():
    from experiments import cli as run

    for path in sorted(Path("configs").glob("[!_]*.py")):
        assert "import ml_collections" in path.read_text()
        assert not [line for line in path.read_text().splitlines()
                    if line.startswith(("from ", "import ")) and "ml_collections" not in line], path
        cfg = config.load_file(path)
        merged, _, axes = run.resolve(cfg)
        assert merged.task == cfg.task and not axes, path
        for key, value in config.flatten(cfg.to_dict()):  # every value the file sets is kept
            node = merged
            for part in key.split("."):
                node = node[part]
            assert node == value, (path, key)
    with pytest.raises(config.ConfigError, match="does not exist"):
        config.load_file("configs/missing.py")


def test_parse_override():
    assert config.parse_override("a.b=(1, 2)") == ("a.b", (1, 2))
    assert config.parse_override("a=adam") == ("a", "adam")
    assert config.parse_override("a=x=y") == ("a", "x=y")
    with pytest.raises(config.ConfigError):
        config.parse_override("a.b")


def test_lists_in_scalar_fields_are_sweep_axes():
    ref = experiment.defaults()
    plain, axes = config.split_sweeps(
        {"train": {"learning_rate": [1e-3, 1], "seeds": [0, 1], "epochs": 3},
         "model": {"hidden": [(8,), [16, 4]], "name": "mlp"}}, ref)
    # a list of ints for the tuple key seeds is its value; a list of tuples is a sweep
    assert plain == {"train": {"seeds": [0, 1], "epochs": 3}, "model": {"name": "mlp"}}
    assert axes == {"train.learning_rate": [1e-3, 1.0], "model.hidden": [(8,), (16, 4)]}
    assert isinstance(axes["train.learning_rate"][1], float)  # each value type-checked
    assert config.sweep_points(axes) == [
        {"train.learning_rate": 1e-3, "model.hidden": (8,)},
        {"train.learning_rate": 1e-3, "model.hidden": (16, 4)},
        {"train.learning_rate": 1.0, "model.hidden": (8,)},
        {"train.learning_rate": 1.0, "model.hidden": (16, 4)}]
    with pytest.raises(config.ConfigError, match="expects int"):
        config.split_sweeps({"train": {"epochs": [1, "two"]}}, ref)
    with pytest.raises(config.ConfigError, match="empty list"):
        config.split_sweeps({"train": {"epochs": []}}, ref)
    with pytest.raises(config.ConfigError, match="Did you mean 'train.epochs'"):
        config.split_sweeps({"train": {"epoch": [1, 2]}}, ref)


def test_a_config_file_can_assign_a_sweep_and_the_command_line_overrides_it():
    from experiments import cli

    cfg = experiment.defaults()
    cfg.train.learning_rate = [1e-3, 1e-2]  # would raise in a type-safe ConfigDict
    cfg.model.name = ["lenet5", "mlp"]
    _, _, axes = cli.resolve(cfg)
    assert axes == {"train.learning_rate": [1e-3, 1e-2], "model.name": ["lenet5", "mlp"]}
    merged, _, axes = cli.resolve(cfg, config.nest([config.parse_override("model.name=mlp"),
                                                    config.parse_override("train.epochs=[1,2]")]))
    assert axes == {"train.learning_rate": [1e-3, 1e-2], "train.epochs": [1, 2]}
    assert merged.model.name == "mlp"


def test_parse_override_bare_word_lists():
    assert config.parse_override("model.name=[lenet5, mlp]") == ("model.name", ["lenet5", "mlp"])
    assert config.parse_override("x=[1e-3,3e-3]") == ("x", [1e-3, 3e-3])
