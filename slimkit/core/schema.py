"""Typed, documented options for config blocks and strategies, validated one way.

Every config block (data, model, train, report) and every strategy is a dataclass of
`option(...)` fields. The same declaration checks Python arguments, checks YAML, and
writes the config reference in docs/, so the three cannot drift apart.
"""

import collections.abc
import dataclasses
import math
import reprlib
import typing
from typing import Any, Literal, Union, get_args, get_origin

from .errors import ConfigError, flatten, raise_all, suggest


def option(default=dataclasses.MISSING, doc="", *, ge=None, gt=None, le=None, lt=None,
           default_factory=dataclasses.MISSING):
    """A dataclass field with a description and optional numeric bounds."""
    meta = {"doc": doc, "ge": ge, "gt": gt, "le": le, "lt": lt}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


class Options:
    """Base of every validated options dataclass: checks itself on construction."""

    def __post_init__(self):
        validate(self)
        self.check()

    def check(self):
        """Cross-field rules; raise ConfigError(field, message, hint)."""

    def to_dict(self):
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.to_dict() if isinstance(value, Options) else value
        return out

    @classmethod
    def from_dict(cls, data, path=""):
        """Build from a mapping, rejecting unknown keys with the closest valid name."""
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(path, f"expected a mapping of options, got {_type_name(data)}",
                              f"valid keys: {', '.join(field_names(cls))}")
        names = field_names(cls)
        # Every problem of the block at once: unknown keys, then each bad value (validate collects them).
        errors = [ConfigError(_join(path, str(key)), "unknown key", suggest(key, names))
                  for key in data if key not in names]
        try:
            built = cls(**{k: v for k, v in data.items() if k in names})
        except ConfigError as err:
            errors += [ConfigError(_join(path, e.path), _strip_path(e), e.hint) for e in flatten([err])]
        except TypeError as err:  # a required option is missing
            missing = [f.name for f in dataclasses.fields(cls) if f.name not in data and _required(f)]
            errors.append(ConfigError(path, f"missing required key(s): {', '.join(missing) or err}",
                                      f"valid keys: {', '.join(names)}"))
        raise_all(errors)
        return built


def field_names(cls):
    return [f.name for f in dataclasses.fields(cls) if f.init]


def validate(obj):
    """Check and convert every field of `obj`; all bad fields are raised together (ConfigErrors)."""
    hints = typing.get_type_hints(type(obj))
    errors = []
    for f in dataclasses.fields(obj):
        if not f.init:
            continue
        try:
            value = _coerce(getattr(obj, f.name), hints[f.name], f.name)
            _check_bounds(value, f, f.name)
        except ConfigError as err:
            errors.append(err)
            continue
        object.__setattr__(obj, f.name, value)
    raise_all(errors)


def _coerce(value, hint, path):
    """Check `value` against `hint`; convert ints to floats and dicts to Options."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return value
    if origin is collections.abc.Callable:  # Python only: YAML gives `package.module:function` strings instead
        if not callable(value):
            raise ConfigError(path, f"expected a function, got {_type_name(value)} {value!r}")
        return value
    if origin is Union:
        return _coerce_union(value, hint, path)
    if origin is Literal:
        if value in args:
            return value
        hint_text = suggest(value, [str(a) for a in args]) if isinstance(value, str) else \
            f"valid choices: {', '.join(map(str, args))}"
        raise ConfigError(path, f"{_short(value)} is not a valid choice", hint_text)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(path, f"expected a list, got {_type_name(value)} {_short(value)}")
        item = args[0] if args else Any
        return [_coerce(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(path, f"expected a mapping, got {_type_name(value)} {_short(value)}")
        key_t, val_t = args if args else (Any, Any)
        return {_coerce(k, key_t, path): _coerce(v, val_t, f"{path}.{k}") for k, v in value.items()}
    if isinstance(hint, type) and issubclass(hint, Options):
        if isinstance(value, hint):
            return value
        if isinstance(value, dict):
            return hint.from_dict(value, path)
        raise ConfigError(path, f"expected a mapping of options, got {_type_name(value)}")
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(path, f"expected a number, got {_type_name(value)} {_short(value)}")
        try:
            number = float(value)
        except OverflowError:  # an integer beyond the float range
            number = math.inf
        if not math.isfinite(number):  # NaN passes every bound check (all comparisons are false)
            raise ConfigError(path, f"{_short(value)} is not a finite number",
                              "give a finite number: NaN and infinity are not option values")
        return number
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, f"expected an integer, got {_type_name(value)} {_short(value)}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, f"expected true or false, got {_type_name(value)} {_short(value)}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(path, f"expected a string, got {_type_name(value)} {_short(value)}")
        return value
    if isinstance(hint, type) and not isinstance(value, hint):
        raise ConfigError(path, f"expected {hint.__name__}, got {_type_name(value)}")
    return value


def _coerce_union(value, hint, path):
    args = get_args(hint)
    if value is None and type(None) in args:
        return None
    errors = []
    for arg in (a for a in args if a is not type(None)):
        try:
            return _coerce(value, arg, path)
        except ConfigError as err:
            errors.append((arg, err))
    for arg, err in errors:
        # The value had the shape of this member (a mapping for nested options, a list, ...) and
        # failed inside it: that error names the exact key (sensitivity.ratios[1]), keep it.
        if err.path != path:
            raise err
        # A string meant as one of the choices: keep that error, it names the closest choice.
        if get_origin(arg) is Literal and isinstance(value, str):
            raise err
        # A number that is not finite: the number member says so.
        if arg is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            raise err
    raise ConfigError(path, f"expected {describe(hint)}, got {_type_name(value)} {_short(value)}")


def _check_bounds(value, f, path):
    meta = f.metadata
    numbers = _numbers(value)
    for v, p in numbers:
        p = f"{path}{p}"
        if meta.get("ge") is not None and v < meta["ge"]:
            raise ConfigError(p, f"{v} is below the minimum {meta['ge']}", bounds_text(meta))
        if meta.get("gt") is not None and v <= meta["gt"]:
            raise ConfigError(p, f"{v} must be greater than {meta['gt']}", bounds_text(meta))
        if meta.get("le") is not None and v > meta["le"]:
            raise ConfigError(p, f"{v} is above the maximum {meta['le']}", bounds_text(meta))
        if meta.get("lt") is not None and v >= meta["lt"]:
            raise ConfigError(p, f"{v} must be less than {meta['lt']}", bounds_text(meta))


def _numbers(value, suffix=""):
    """The numbers a bound applies to: the value itself, or the items/values of a list/dict."""
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [(value, suffix)]
    if isinstance(value, list):
        return [n for i, v in enumerate(value) for n in _numbers(v, f"{suffix}[{i}]")]
    if isinstance(value, dict):
        return [n for k, v in value.items() for n in _numbers(v, f"{suffix}.{k}")]
    return []


def bounds_text(meta):
    lo = f"{meta['ge']} <= " if meta.get("ge") is not None else f"{meta['gt']} < " if meta.get("gt") is not None else ""
    hi = f" <= {meta['le']}" if meta.get("le") is not None else f" < {meta['lt']}" if meta.get("lt") is not None else ""
    return f"allowed range: {lo}value{hi}" if lo or hi else ""


def describe(hint):
    """A short human name of a type hint, for errors and the config reference."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is Union:
        return " or ".join(describe(a) for a in args if a is not type(None)) + \
            (" or null" if type(None) in args else "")
    if origin is Literal:
        return " | ".join(map(str, args))
    if origin in (list, tuple):
        return f"list of {describe(args[0])}" if args else "list"
    if origin is dict:
        return f"mapping of {describe(args[1])}" if args else "mapping"
    if isinstance(hint, type) and issubclass(hint, Options):
        return "mapping"
    if origin is collections.abc.Callable:
        return "function (Python)"
    return {int: "integer", float: "number", str: "string", bool: "true/false", dict: "mapping",
            list: "list"}.get(hint, getattr(hint, "__name__", str(hint)))


def _required(f):
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _join(path, key):
    if not path:
        return key
    if not key:
        return path
    return f"{path}{key}" if key.startswith("[") else f"{path}.{key}"


def _strip_path(err):
    prefix = f"{err.path}: "
    return err.message[len(prefix):] if err.path and err.message.startswith(prefix) else err.message


def _short(value):
    """`repr(value)` within a few lines' length, however large or deep the value (a message never floods)."""
    text = _REPR.repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = 80
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict = 3, 8, 8, 8


def _type_name(value):
    return {dict: "a mapping", list: "a list", str: "a string", bool: "true/false", int: "an integer",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)
