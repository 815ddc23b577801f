"""Config files, command-line overrides and validation against a task's defaults.

A config file is a Python module with ``get_config() -> ml_collections.ConfigDict``
(the big_vision convention). Overrides are ``a.b.c=value`` strings (from
``--config.a.b.c=value`` on the command line) or a nested plain dict (from a notebook).
Every key must exist in the task's defaults and keep its type; otherwise a
:class:`ConfigError` says which key, what was expected and the closest valid keys.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
from collections.abc import Iterable, Mapping
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


def parse_override(text: str) -> tuple[str, Any]:
    """``"a.b=3"`` -> ``("a.b", 3)``; values are Python literals, else plain strings."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.path=value")
    key, raw = text.split("=", 1)
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return key.strip(), value


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


def validate(config: ConfigDict, reference: ConfigDict) -> ConfigDict:
    """Check every key of ``config`` against ``reference`` (keys and types)."""
    return merge(reference, config.to_dict())
