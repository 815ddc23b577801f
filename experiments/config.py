"""Config files, command-line overrides and validation against a task's defaults.

A config file is a Python module with ``get_config() -> ml_collections.ConfigDict``
(the big_vision convention). Overrides are ``a.b.c=value`` strings (from
``--config.a.b.c=value`` on the command line) or a nested plain dict (from a notebook).
Every key must exist in the task's defaults and keep its type; otherwise a
:class:`ConfigError` says which key, what was expected and the closest valid keys.

A list given to a scalar key (or a list of sequences to a sequence key, such as
``model.hidden``) is a *sweep*: :func:`split_sweeps` takes those keys out as axes, and
study/sweep.py runs their Cartesian product. Task defaults are built with
:func:`sweepable` so a config file may assign such a list directly.
"""

from __future__ import annotations

import ast
import difflib
import functools
import importlib.util
import itertools
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import ml_collections

ConfigDict = ml_collections.ConfigDict


class ConfigError(ValueError):
    """A config key is unknown or a value has the wrong type."""


def load_file(path: str | Path) -> ConfigDict:
    """Import ``path`` and return its ``get_config()``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    spec = importlib.util.spec_from_file_location(f"_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config file {str(path)!r} defines no get_config()")
    return module.get_config()


def _keys(config: ConfigDict, prefix: str = "") -> list[str]:
    out = []
    for k, v in config.items():
        out.append(prefix + k)
        if isinstance(v, ConfigDict):
            out += _keys(v, prefix + k + ".")
    return out


def _unknown(key: str, reference: ConfigDict) -> ConfigError:
    close = difflib.get_close_matches(key, _keys(reference), n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return ConfigError(f"unknown config key {key!r}.{hint}")


def _check_type(key: str, value: Any, default: Any) -> Any:
    """Return ``value`` converted to the default's type where that is lossless."""
    if default is None or value is None:
        return value
    if isinstance(default, bool) or isinstance(value, bool):
        if isinstance(default, bool) and isinstance(value, bool):
            return value
    elif isinstance(default, float) and isinstance(value, int):
        return float(value)
    elif isinstance(default, (tuple, list)) and isinstance(value, (tuple, list)):
        return type(default)(value)
    elif isinstance(value, type(default)):
        return value
    raise ConfigError(
        f"config key {key!r} expects {type(default).__name__} (default {default!r}), "
        f"got {type(value).__name__} {value!r}"
    )


def merge(reference: ConfigDict, overrides: Mapping[str, Any]) -> ConfigDict:
    """A copy of ``reference`` with a nested mapping of ``overrides`` applied, checked."""
    return _merge(reference, overrides, "", reference)


def _merge(node: ConfigDict, overrides: Mapping[str, Any], prefix: str, root: ConfigDict):
    out = ml_collections.ConfigDict(node.to_dict())
    for key, value in overrides.items():
        full = prefix + key
        if key not in out:
            raise _unknown(full, root)
        if isinstance(out[key], ConfigDict):
            if not isinstance(value, Mapping):
                raise ConfigError(f"config key {full!r} is a section; give a mapping, got {value!r}")
            out[key] = _merge(out[key], value, full + ".", root)
        else:
            out[key] = _check_type(full, value, out[key])
    return out


def _literal(raw: str) -> Any:
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw


def parse_override(text: str) -> tuple[str, Any]:
    """``"a.b=3"`` -> ``("a.b", 3)``; values are Python literals, else plain strings.

    A bracketed list of bare words is a list of strings (``[lenet5,mlp]``), so a sweep
    over names needs no quoting in the shell.
    """
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.path=value")
    key, raw = text.split("=", 1)
    value = _literal(raw)
    if isinstance(value, str) and raw.startswith("[") and raw.endswith("]"):
        value = [_literal(item.strip()) for item in raw[1:-1].split(",") if item.strip()]
    return key.strip(), value


def flatten(nested: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """``{"a": {"b": 1}}`` -> ``[("a.b", 1)]`` (the inverse of :func:`nest`)."""
    out = []
    for key, value in nested.items():
        if isinstance(value, Mapping):
            out += flatten(value, prefix + key + ".")
        else:
            out.append((prefix + key, value))
    return out


def nest(flat: Iterable[tuple[str, Any]]) -> dict:
    """``[("a.b", 1)]`` -> ``{"a": {"b": 1}}``."""
    out: dict = {}
    for key, value in flat:
        node = out
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return out


def set_path(tree: dict, key: str, value: Any) -> None:
    """Set ``tree["a"]["b"] = value`` for ``key = "a.b"`` (sections must exist)."""
    *parents, last = key.split(".")
    for p in parents:
        tree = tree[p]
    tree[last] = value


def validate(config: ConfigDict, reference: ConfigDict) -> ConfigDict:
    """Check every key of ``config`` against ``reference`` (keys and types)."""
    return merge(reference, config.to_dict())


def sweepable(defaults_fn: Callable[[], ConfigDict]) -> Callable[[], ConfigDict]:
    """Wrap a task's ``defaults()`` so its config accepts lists in any field.

    ml_collections configs are type-safe: ``config.train.learning_rate = [1e-3, 1e-2]``
    would raise in the config file. The types are checked here instead (:func:`merge`),
    element by element for a sweep.
    """

    @functools.wraps(defaults_fn)
    def wrapper() -> ConfigDict:
        return ml_collections.ConfigDict(defaults_fn().to_dict(), type_safe=False)

    return wrapper


def _is_sweep(value: Any, default: Any) -> bool:
    if not isinstance(value, (list, tuple)) or isinstance(default, (ConfigDict, Mapping)):
        return False
    if isinstance(default, (list, tuple)):  # a sequence key: a sweep is a list of sequences
        return bool(value) and all(isinstance(v, (list, tuple)) for v in value)
    return True


def split_sweeps(
    values: Mapping[str, Any], reference: ConfigDict, prefix: str = "",
    root: ConfigDict | None = None,
) -> tuple[dict, dict[str, list]]:
    """Split nested ``values`` into (plain values, sweep axes ``{"a.b": [v1, v2, ...]}``).

    Each swept value is type-checked against the reference like a plain one; an empty
    list is an error (a sweep over nothing).
    """
    plain: dict = {}
    axes: dict[str, list] = {}
    for key, value in values.items():
        full = prefix + key
        if key not in reference:
            raise _unknown(full, root or reference)
        default = reference[key]
        if isinstance(default, ConfigDict) and isinstance(value, Mapping):
            plain[key], sub = split_sweeps(value, default, full + ".", root or reference)
            axes.update(sub)
        elif _is_sweep(value, default):
            if not value:
                raise ConfigError(f"config key {full!r} sweeps over an empty list")
            axes[full] = [_check_type(full, v, default) for v in value]
        else:
            plain[key] = value
    return plain, axes


def sweep_points(axes: Mapping[str, list]) -> list[dict[str, Any]]:
    """The Cartesian product of sweep axes, the first axis varying slowest."""
    keys = list(axes)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(axes[k] for k in keys))]
