"""Resolve `package.module:name` references (user models, strategies) to the object they name."""

import importlib


def import_object(spec, error):
    """The object `spec` (`package.module:name`) names; `error(message, hint)` builds the exception raised."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise error(f"cannot import {module_name!r} for {spec!r}: {err}",
                    "make the module importable (pip install it or add its folder to PYTHONPATH)") from None
    found = getattr(module, attr, None)
    if found is None:
        raise error(f"{module_name} has no {attr!r}", "use `package.module:name`")
    return found
