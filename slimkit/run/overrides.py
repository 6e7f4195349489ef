"""`--set KEY=VALUE`: change one value of a YAML config from the command line.

    --set train.epochs=1 --set stages[1].target_flops_reduction=0.4 --set "data={name: mnist}"

KEY is a dotted path with list indices; VALUE is read as YAML (numbers, true/false, null,
lists and mappings). The changed config is validated exactly like the file.
"""

import copy
import re

import yaml

from ..core.errors import ConfigError
from .yamlfile import parse_bounded

_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)|\[(-?\d+)\]")


def parse_key(key):
    """`stages[1].ratio` -> ['stages', 1, 'ratio']; a malformed key is a ConfigError."""
    parts = []
    for chunk in key.split("."):
        matches = list(_PART.finditer(chunk))
        if not chunk or "".join(m.group(0) for m in matches) != chunk or matches[0].group(1) is None:
            raise ConfigError(f"--set {key}", "not a key path", "write it like train.epochs or stages[1].ratio")
        parts += [m.group(1) if m.group(1) is not None else int(m.group(2)) for m in matches]
    return parts


def apply_overrides(raw, assignments):
    """Return a copy of the config mapping `raw` with each `KEY=VALUE` of `assignments` set."""
    config = copy.deepcopy(raw or {})
    for text in assignments:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {text}", "expected KEY=VALUE", "e.g. --set train.epochs=1")
        parsed = _parse_value(value, key.strip())
        _assign(config, parse_key(key.strip()), parsed, key.strip())
    return config


def _parse_value(text, key):
    try:
        value = parse_bounded(text, f"--set {key}") if text.strip() else ""
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:  # YAML 1.1 reads 1e-3 as a string; on a command line it is a number
            return float(value)
        except ValueError:
            pass
    return value


def _assign(config, parts, value, key):
    node = config
    for depth, part in enumerate(parts[:-1]):
        node = _step(node, part, parts[depth + 1], key)
    last = parts[-1]
    if isinstance(last, int):
        _check_index(node, last, key)
    elif not isinstance(node, dict):
        raise ConfigError(key, f"{_path(parts[:-1])} is not a mapping", "set a key of a mapping")
    node[last] = value


def _step(node, part, following, key):
    if isinstance(part, int):
        _check_index(node, part, key)
        return node[part]
    if not isinstance(node, dict):
        raise ConfigError(key, f"cannot set {part!r} inside a {type(node).__name__}", "check the key path")
    if node.get(part) is None:
        if isinstance(following, int):
            raise ConfigError(key, f"{part!r} is not a list in the config", "index only lists the file has")
        node[part] = {}
    return node[part]


def _check_index(node, index, key):
    if not isinstance(node, list):
        raise ConfigError(key, f"[{index}] indexes a {type(node).__name__}, not a list", "check the key path")
    if not -len(node) <= index < len(node):
        raise ConfigError(key, f"index {index} is out of range: the list has {len(node)} entries",
                          f"use 0..{len(node) - 1}")


def _path(parts):
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".") or "the config"
