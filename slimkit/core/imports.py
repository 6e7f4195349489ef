"""Resolve `package.module:name` references (user models, data factories, strategies) to the object they name.

A config naming `module:function` runs that code, as a Python script importing it would.
What a config may name is limited to what it is for: a class or a function written in
Python outside the standard library and the interpreter's builtins (the user's own model
or data code, or a package such as paddle). `os:system`, `subprocess:run`, `builtins:eval`
or `this:s` are refused before anything is imported, so a config cannot run commands.
"""

import importlib
import inspect
import re
import sys

_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_FORBIDDEN = frozenset(sys.stdlib_module_names) | frozenset(sys.builtin_module_names) | {"builtins"}


def import_object(spec, error):
    """The class or function `spec` (`package.module:name`) names; `error(message, hint)` builds the exception.

    Refused (nothing imported): a malformed spec and a module of the standard library or
    the builtins. Refused after the import: anything but a class or a Python function, and
    one the standard library defines (re-exported by another module).
    """
    module_name, attr = check_reference(spec, error)
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise error(f"cannot import {module_name!r} for {spec!r}: {err}",
                    "make the module importable (pip install it or add its folder to PYTHONPATH)") from None
    found = module
    for part in attr.split("."):
        found = getattr(found, part, None)
        if found is None:
            raise error(f"{module_name} has no {attr!r}", "use `package.module:name`")
    if not (inspect.isclass(found) or inspect.isfunction(found)):
        raise error(f"{spec} is a {type(found).__name__}, not a class or a function defined in Python",
                    "name a class or a `def` function of your own")
    if _forbidden(getattr(found, "__module__", None) or "builtins"):
        raise error(f"{spec} is {found.__module__}.{found.__qualname__} of the Python standard library: a config "
                    "may only name your own classes and functions (or a package's)",
                    "point it at a function or class your module defines")
    return found


def is_reference(value):
    """Does `value` name code as `package.module:name` (rather than by a registered name)?"""
    return isinstance(value, str) and ":" in value


def check_reference(spec, error):
    """`(module, name)` of `spec` without importing anything: `error(...)` for a malformed or standard library one."""
    module_name, _, attr = spec.partition(":") if isinstance(spec, str) else ("", "", "")
    if not (_DOTTED.fullmatch(module_name) and _DOTTED.fullmatch(attr)):
        raise error(f"{spec!r} is not of the form `package.module:name`",
                    "name your own code, e.g. `mymodels:build_net` (mymodels.py importable from PYTHONPATH)")
    if _forbidden(module_name):
        raise error(f"{spec!r} names the Python standard library: a config may only name your own classes and "
                    "functions (or a package's)", "point it at your own module, e.g. `mymodels:build_net`; "
                                                  "if your module's name is a standard library name, rename it")
    return module_name, attr


def _forbidden(module_name):
    return module_name.partition(".")[0] in _FORBIDDEN
