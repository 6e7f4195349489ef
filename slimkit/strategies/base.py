"""The one shape every compression step has: `apply(model, ctx) -> model`."""

import dataclasses
from pathlib import Path
from typing import Any, ClassVar, Optional

from ..core.errors import ConfigError
from ..core.registry import Registry
from ..core.schema import Options, option
from ..report.rows import Note, ReportConfig
from ..train.engine import Engine, TrainConfig
from ..train.objective import build_task

STRATEGIES = Registry("stage type", "slimkit.Strategy")


@dataclasses.dataclass
class Context:
    """What a strategy may use while it runs: data, the training engine, the task, the teacher, its folder.

    `train` holds the run's resolved hyperparameters (epochs, lr, batch sizes, progress,
    seed, ...) and `task` the run's objective (loss, metric, the output they read; for data
    without labels the agreement with the original model): a strategy takes them from here,
    and from the engine only the four methods of `slimkit.train.engine.EngineProtocol`, so
    any engine implementing them works. `report` holds how stages
    are measured. `note()` and `metrics` flow into the stage's report (layers that could
    not be pruned, per-layer sparsity), so nothing a strategy had to skip stays hidden;
    `scratch` carries values from `apply` to `measure` that are not reported.
    """

    data: Any                      # slimkit.data.DataBundle
    engine: Any                    # an EngineProtocol (slimkit.train.engine.Engine by default)
    input_shape: list              # [1, C, H, W]
    out_dir: Path                  # this stage's own folder
    teacher: Any = None            # the model before the first compressing stage
    original: Any = None           # the model the pipeline was given
    stage_name: str = ""
    train: Optional[TrainConfig] = None    # default: the engine's config (slimkit.Engine) or TrainConfig()
    report: Optional[ReportConfig] = None  # default: ReportConfig()
    task: Any = None               # slimkit.train.tasks.Objective; default: the engine's, or the data's task
    notes: list = dataclasses.field(default_factory=list)
    metrics: dict = dataclasses.field(default_factory=dict)
    scratch: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.train is None:
            self.train = self.engine.config if isinstance(self.engine, Engine) else TrainConfig()
        if self.report is None:
            self.report = ReportConfig()
        if self.task is None:
            self.task = self.engine.task if isinstance(self.engine, Engine) else build_task(None, self.data)

    def note(self, text, kind="info"):
        """Add a note to the stage report; `kind` lets later code select it (skipped, target, ...)."""
        self.notes.append(Note(text, self.stage_name, kind))

    def hyper(self, name, value=None):
        """`value`, or the run's default of hyperparameter `name` (a `train` option) when it is None."""
        return getattr(self.train, name) if value is None else value


@dataclasses.dataclass
class Strategy(Options):
    """Base class of every compression strategy.

    Subclasses are dataclasses of `option(...)` fields (their config), declare their
    YAML `type` with `class X(Strategy, type_name="x")`, and implement `apply`.
    Set `compresses = False` for steps that only train (the teacher is the model as it
    was before the first step that compresses), and `tasks = ("classification",)` for a
    step that only works on classifiers (a pipeline rejects it on other tasks up front).
    A subclass without `type_name` is still reachable from YAML as `type: package.module:Class`.

    What the checks before a run (slimkit.run.preflight) need to know of a stage, it declares
    here: `quantizes`, `traces`, `restructures`, `trains`, `needs_teacher`, and the hooks
    `preflight` (mistakes knowable on the built model, such as layer names) and
    `order_errors` (mistakes against the stages after it). A user's own subclass gets the
    same checks as the built-in ones by setting them.
    """

    type_name: ClassVar[str] = ""
    compresses: ClassVar[bool] = True
    tasks: ClassVar = None  # the task names (slimkit.train.tasks) it works on; None = every task
    quantizes: ClassVar[bool] = False  # the model it returns is quantized
    traces: ClassVar[bool] = False  # needs a float model it can trace or quantize: refused after a quantizing stage
    restructures: ClassVar[bool] = False  # changes layer shapes: later stages cannot be judged on the built model

    name: Optional[str] = option(None, "stage name in reports and folders; default: the stage's type")

    def __init_subclass__(cls, type_name=None, **kwargs):
        super().__init_subclass__(**kwargs)
        if type_name:
            cls.type_name = type_name
            STRATEGIES.add(type_name, cls)
        else:  # recorded as the `package.module:Class` a config names it by, so a resume rebuilds it
            cls.type_name = f"{cls.__module__}:{cls.__qualname__}"

    def __post_init__(self):
        super().__post_init__()
        check_stage_name(self.name, "name")

    def apply(self, model, ctx: Context):
        """Return the compressed model (may be `model` changed in place, or a new one)."""
        raise NotImplementedError

    @property
    def trains(self):
        """Does it run optimizer steps on the model it is given? (zeroed weights would fill in again)"""
        return False

    @property
    def needs_teacher(self):
        """Does it need the model before the first compressing stage as its teacher?"""
        return False

    # --- optional hooks -------------------------------------------------------------
    def preflight(self, model, input_shape, as_built=True):
        """The mistakes knowable before any work on `model`, the untrained model as built (a copy).

        Return a list of SlimkitError (or raise the first), paths relative to the stage
        (`skip`, `ratios.conv1`): unknown layer names, a target the model cannot reach.
        `as_built` is False when an earlier stage changes the structure (`restructures`):
        only what does not depend on the shapes can be judged then.
        """
        return []

    def order_errors(self, later):
        """ConfigErrors of this stage against the stages that run after it (`later`), paths relative to the stage."""
        return []

    def measure(self, model, ctx: Context, report):
        """Adjust the stage report after the default measurement (e.g. an exported model)."""

    def save(self, model, folder: Path, ctx: Context):
        """Write what `restore` needs to rebuild this stage's result."""
        from ..models.checkpoint import save_model

        save_model(model, folder)

    def restore(self, model, folder: Path, ctx: Context):
        """Rebuild this stage's result from `folder`, given the model it started from."""
        from ..models.checkpoint import load_into

        return load_into(model, folder)

    @property
    def display_name(self):
        return self.name or self.type_name.rpartition(":")[2]

    def to_config(self):
        return {"type": self.type_name, **self.to_dict()}


MAX_NAME = 100  # characters; a stage folder is `NN-name`, and file systems allow 255 bytes


def check_stage_name(name, path):
    """ConfigError unless `name` (None: the stage's type) can be a folder name inside `--out`, and nothing else.

    A stage's folder is `out/NN-name`: a separator, `..`, a NUL or an empty name would put it
    elsewhere, nest it, or fail only after the work before it.
    """
    if name is None:
        return
    fix = "use letters, digits, '-', '_' and '.' (the name becomes the folder `NN-name` inside --out), " \
          "or leave `name` out to use the stage's type"
    if not name.strip():
        raise ConfigError(path, "a stage name cannot be empty", fix)
    bad = sorted({c for c in name if c in "/\\" or ord(c) < 32 or ord(c) == 127})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        raise ConfigError(path, f"{name!r} holds {shown}: a stage name is one folder name, not a path", fix)
    if set(name) == {"."}:
        raise ConfigError(path, f"{name!r} is not a folder name", fix)
    if len(name) > MAX_NAME:
        raise ConfigError(path, f"the stage name is {len(name)} characters long, more than {MAX_NAME}", fix)


def check_stage_names(stages):
    """ConfigError unless every stage's name (set, or its type) is a folder name and no two stages share one."""
    for i, stage in enumerate(stages):
        check_stage_name(stage.display_name, f"stages[{i}].name")  # also a name set after construction
    names = [s.display_name for s in stages]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError("stages", f"stage names repeat: {', '.join(dupes)}", "give each stage a distinct `name`")


def strategy_class(kind, path):
    """The Strategy class of a config `type`: a registered name or `package.module:Class`."""
    return STRATEGIES.find(kind, path, Strategy)


def strategy_from_config(entry, path):
    """Build a Strategy from a config entry `{type: ..., **options}`."""
    valid = f"valid types: {', '.join(sorted(STRATEGIES))}"
    if not isinstance(entry, dict):
        raise ConfigError(path, f"a stage is a mapping with a 'type', got {entry!r}", valid)
    entry = dict(entry)
    kind = entry.pop("type", None)
    if kind is None:
        raise ConfigError(path, "missing 'type'", valid)
    if not isinstance(kind, str):
        raise ConfigError(f"{path}.type", f"expected a string, got {kind!r}", valid)
    return strategy_class(kind, f"{path}.type").from_dict(entry, path)
