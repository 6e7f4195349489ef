"""Registries of named classes (stage types, pruning criteria, sparsity criteria and schedules), one way.

A base class keeps a `Registry` and adds each subclass that declares a name as it is
defined (`class Mine(Criterion, name="mine")`). A config then names a registered class by
its name (or an alias), or any subclass of the base by `package.module:Class`, which is
imported (that runs the module's code, as a Python script importing it would).
"""

from .errors import ConfigError, suggest
from .imports import import_object, is_reference


class Registry(dict):
    """{name: class} of one kind; `find` resolves a config's name with the closest-name hint."""

    def __init__(self, kind, base_name, case_insensitive=False):
        super().__init__()
        self.kind = kind            # what a name names, in messages ("stage type", "criterion", ...)
        self.base_name = base_name  # the base class users subclass, in messages ("slimkit.Strategy")
        self.case_insensitive = case_insensitive
        self.aliases = {}

    def add(self, name, cls, aliases=()):
        """Register `cls` under `name` (and `aliases`, other names configs may use)."""
        self[name] = cls
        self.aliases.update({self._key(alias): name for alias in aliases})
        return cls

    def valid(self):
        return f"valid: {', '.join(sorted(self))} (or `package.module:Class`)"

    def find(self, name, path, base):
        """The class `name` names (registered name, alias or `package.module:Class` subclassing `base`)."""
        if not isinstance(name, str) or not name:
            raise ConfigError(path, f"expected the name of a {self.kind}, got {name!r}", self.valid())
        if is_reference(name):
            found = import_object(name, lambda message, hint: ConfigError(path, message, hint))
            if not (isinstance(found, type) and issubclass(found, base)):
                raise ConfigError(path, f"{name} is not a subclass of {self.base_name}", self.valid())
            return found
        key = self._key(name)
        key = self.aliases.get(key, key)
        if key not in self:
            raise ConfigError(path, f"unknown {self.kind} {name!r}", suggest(name, sorted(self)))
        return self[key]

    def _key(self, name):
        return name.lower() if self.case_insensitive else name
