"""The one shape every compression step has: `apply(model, ctx) -> model`."""

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

from .errors import ConfigError
from .schema import Options, _suggest

STRATEGIES = {}


@dataclasses.dataclass
class Context:
    """What a strategy may use while it runs: data, the training engine, the teacher, its folder.

    `notes` and `metrics` flow into the stage's report (e.g. layers that could not be
    pruned, per-layer sparsity), so nothing a strategy had to skip stays hidden.
    """

    data: Any                      # slimkit.data.DataBundle
    engine: Any                    # slimkit.engine.Engine
    input_shape: list              # [1, C, H, W]
    out_dir: Path                  # this stage's own folder
    teacher: Any = None            # the model before the first compressing stage
    original: Any = None           # the model the pipeline was given
    stage_name: str = ""
    notes: list = dataclasses.field(default_factory=list)
    metrics: dict = dataclasses.field(default_factory=dict)

    def note(self, text):
        self.notes.append(text)


@dataclasses.dataclass
class Strategy(Options):
    """Base class of every compression strategy.

    Subclasses are dataclasses of `option(...)` fields (their config), declare their
    YAML `type` with `class X(Strategy, type_name="x")`, and implement `apply`.
    Set `compresses = False` for steps that only train (the teacher is the model as it
    was before the first step that compresses), and `tasks = ("classification",)` for a
    step that only works on classifiers (a pipeline rejects it on other tasks up front).
    """

    type_name: ClassVar[str] = ""
    compresses: ClassVar[bool] = True
    tasks: ClassVar = None  # the task names (slimkit.tasks) it works on; None = every task

    def __init_subclass__(cls, type_name=None, **kwargs):
        super().__init_subclass__(**kwargs)
        if type_name:
            cls.type_name = type_name
            STRATEGIES[type_name] = cls

    def apply(self, model, ctx: Context):
        """Return the compressed model (may be `model` changed in place, or a new one)."""
        raise NotImplementedError

    # --- optional hooks -------------------------------------------------------------
    def measure(self, model, ctx: Context, report):
        """Adjust the stage report after the default measurement (e.g. an exported model)."""

    def save(self, model, folder: Path, ctx: Context):
        """Write what `restore` needs to rebuild this stage's result."""
        from .checkpoint import save_model

        save_model(model, folder)

    def restore(self, model, folder: Path, ctx: Context):
        """Rebuild this stage's result from `folder`, given the model it started from."""
        from .checkpoint import load_model

        return load_model(folder, model)

    @property
    def display_name(self):
        return getattr(self, "name", None) or self.type_name

    def to_config(self):
        return {"type": self.type_name, **self.to_dict()}


def strategy_from_config(entry, path):
    """Build a Strategy from a config entry `{type: ..., **options}`."""
    if not isinstance(entry, dict):
        raise ConfigError(path, f"a stage is a mapping with a 'type', got {entry!r}",
                          f"valid types: {', '.join(sorted(STRATEGIES))}")
    entry = dict(entry)
    kind = entry.pop("type", None)
    if kind is None:
        raise ConfigError(path, "missing 'type'", f"valid types: {', '.join(sorted(STRATEGIES))}")
    if kind not in STRATEGIES:
        raise ConfigError(f"{path}.type", f"unknown stage type {kind!r}", _suggest(kind, sorted(STRATEGIES)))
    return STRATEGIES[kind].from_dict(entry, path)

