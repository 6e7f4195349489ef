"""The module paths slimkit had before its modules moved into packages: they still import.

`from slimkit.engine import EngineProtocol` gives the module that now lives at
`slimkit.train.engine` (the same module object, not a copy). Paths the documentation
teaches import silently; the other old paths work with a DeprecationWarning naming the new one.
"""

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings

# Old paths the docs name, for users' scripts and strategies.
DOCUMENTED = {
    "slimkit.errors": "slimkit.core.errors",
    "slimkit.schema": "slimkit.core.schema",
    "slimkit.surgery": "slimkit.core.surgery",
    "slimkit.device": "slimkit.core.device",
    "slimkit.parallel": "slimkit.core.parallel",
    "slimkit.engine": "slimkit.train.engine",
    "slimkit.tasks": "slimkit.train.tasks",
    "slimkit.metrics": "slimkit.train.metrics",
    "slimkit.strategy": "slimkit.strategies.base",
    "slimkit.deploy.timing": "slimkit.report.timing",
}
MOVED = {
    "slimkit._paddle": "slimkit.core.paddle_build",
    "slimkit.imports": "slimkit.core.imports",
    "slimkit.seeding": "slimkit.core.seeding",
    "slimkit.checkpoint": "slimkit.models.checkpoint",
    "slimkit.data_sources": "slimkit.data.sources",
    "slimkit.shapes": "slimkit.data.shapes",
    "slimkit.console": "slimkit.report.console",
    "slimkit.curves": "slimkit.report.curves",
    "slimkit.measure": "slimkit.report.measure",
    "slimkit.config": "slimkit.run.config",
    "slimkit.overrides": "slimkit.run.overrides",
    "slimkit.preflight": "slimkit.run.preflight",
    "slimkit.pipeline": "slimkit.run.pipeline",
    "slimkit.rundir": "slimkit.run.rundir",
    "slimkit.cli": "slimkit.run.cli",
    "slimkit.launcher": "slimkit.run.launcher",
    "slimkit.reference": "slimkit.run.reference",
}
OLD_PATHS = {**DOCUMENTED, **MOVED}


def new_path(old):
    """The module `old` (e.g. "slimkit.engine") is now, or None if it did not move."""
    return OLD_PATHS.get(old)


def resolve(old):
    """Import and return the module an old path names (warning for undocumented ones)."""
    new = OLD_PATHS[old]
    if old in MOVED:
        warnings.warn(f"{old} moved to {new}", DeprecationWarning, stacklevel=3)
    return importlib.import_module(new)


class _OldPaths(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old path and hands the import system the moved module itself."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in OLD_PATHS:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec):
        module = resolve(spec.name)
        spec.loader_state = module.__spec__  # the import system overwrites __spec__; exec_module puts it back
        return module

    def exec_module(self, module):
        module.__spec__ = module.__spec__.loader_state


def install():
    """Put the finder on `sys.meta_path` once (importing slimkit does this)."""
    if not any(isinstance(f, _OldPaths) for f in sys.meta_path):
        sys.meta_path.append(_OldPaths())
