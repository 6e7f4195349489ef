"""YAML run configs, mapped 1:1 onto the Python API and fully checked before any work starts.

    data:   {name: digits}                 # DataConfig
    model:  {name: small_cnn}              # ModelConfig
    train:  {epochs: 10, lr: 0.05}         # TrainConfig
    report: {latency_runs: 50}             # ReportConfig
    task:   {loss: segmentation}           # TaskConfig (default: the dataset's task)
    device: auto                           # auto | cpu | gpu | gpu:N
    stages:
      - {type: finetune, name: train, epochs: 10}
      - {type: filter_pruning, criterion: l1, target_flops_reduction: 0.5}
"""

import dataclasses
from pathlib import Path
from typing import Optional

import yaml

from ..core import device as devices
from ..core.errors import ConfigError, DataError, raise_all
from ..core.schema import Options, _suggest, field_names, option
from ..data import DataConfig, load_dataset
from ..deploy.formats import ExportConfig
from ..models.zoo import ModelConfig, build_model
from ..report.rows import ReportConfig
from ..strategies.base import Strategy, strategy_from_config
from ..train.engine import TrainConfig
from ..train.tasks import TaskConfig


@dataclasses.dataclass
class RunConfig(Options):
    """A whole run: data, model, training defaults, stages, measurement (a YAML file under configs/)."""

    data: DataConfig = option(default_factory=DataConfig, doc="the dataset (see `data`)")
    model: ModelConfig = option(default_factory=ModelConfig, doc="the model (see `model`)")
    train: TrainConfig = option(default_factory=TrainConfig, doc="training defaults of every stage (see `train`)")
    report: ReportConfig = option(default_factory=ReportConfig, doc="how stages are measured (see `report`)")
    export: ExportConfig = option(default_factory=ExportConfig, doc="deployable files of every stage (see `export`)")
    task: TaskConfig = option(default_factory=TaskConfig, doc="loss, metric and model output (see `task`)")
    stages: list = option(default_factory=list, doc="the strategies to run in order: `{type: ..., options}`")
    input_shape: Optional[list] = option(None, "model input [1, C, H, W]; default: the dataset's shape, batch 1")
    device: str = option("auto", devices.DOC)

    def check(self):
        # First: a block validated on its own (slimkit check) reaches this before the stages rule.
        used = devices.resolve(self.device)
        if self.report.tensorrt:
            devices.check_tensorrt(used)
        built = []
        for i, entry in enumerate(self.stages):
            built.append(entry if isinstance(entry, Strategy) else strategy_from_config(entry, f"stages[{i}]"))
        self.stages = built
        if not self.stages:
            raise ConfigError("stages", "no stages given", "add at least one, e.g. `- {type: finetune, epochs: 5}`")
        names = [s.display_name for s in self.stages]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError("stages", f"stage names repeat: {', '.join(dupes)}", "give each stage a distinct `name`")
        if self.input_shape is not None and (len(self.input_shape) != 4 or
                                             not all(isinstance(v, int) and v > 0 for v in self.input_shape)):
            raise ConfigError("input_shape", f"expected [batch, channels, height, width], got {self.input_shape}")

    def to_dict(self):
        out = super().to_dict()
        out["stages"] = [s.to_config() for s in self.stages]
        return out


def load_config(path, overrides=()):
    """Read and validate a YAML run config; raises ConfigError/DataError naming the bad key or file.

    `overrides` are `KEY=VALUE` strings (`--set`), applied before the validation.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"config file not found: {path}", "give the path of a YAML file, e.g. configs/quickstart.yaml")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(str(path), f"not valid YAML{where}: {getattr(err, 'problem', err)}",
                          "fix the YAML syntax (indentation, colons, quotes)") from None
    if overrides:
        from .overrides import apply_overrides

        if not isinstance(raw, (dict, type(None))):
            raise ConfigError(str(path), "the file is not a mapping of config blocks",
                              "start from configs/quickstart.yaml")
        raw = apply_overrides(raw, overrides)
    return RunConfig.from_dict(raw or {}, "")


def load_config_all(path, overrides=()):
    """`load_config`, but a config with several problems raises them all (ConfigErrors)."""
    from .overrides import apply_overrides

    try:
        return load_config(path, overrides)
    except ConfigError as first:
        raw = yaml.safe_load(Path(path).read_text()) if first.path != str(path) else None
        if overrides and isinstance(raw, dict):
            try:
                raw = apply_overrides(raw, overrides)
            except ConfigError:
                raise first from None
        errors = config_errors(raw, RunConfig) if isinstance(raw, dict) else []
        raise_all(errors or [first])


def config_errors(raw, run_config_class):
    """Every ConfigError of a raw config mapping: each block and each stage validated on its own."""
    errors = []
    blocks = {f.name: f for f in dataclasses.fields(run_config_class)}
    for key in raw:
        if key not in blocks:
            errors.append(ConfigError(str(key), "unknown key", _suggest(key, field_names(run_config_class))))
    for key, value in raw.items():
        if key not in blocks or key == "stages":
            continue
        try:
            run_config_class.from_dict({key: value}, "")
        except ConfigError as err:
            if "stages" not in err.path:
                errors.append(err)
    stages = raw.get("stages") or []
    for i, entry in enumerate(stages if isinstance(stages, list) else []):
        try:
            strategy_from_config(entry, f"stages[{i}]")
        except ConfigError as err:
            errors.append(err)
    if not errors:  # a cross-field rule of the whole config (e.g. repeated stage names)
        try:
            run_config_class.from_dict(raw, "")
        except ConfigError as err:
            errors.append(err)
    return errors


def build_pipeline(config, out_dir, verbose=True):
    """Load the data, build the model and return the Pipeline a RunConfig describes."""
    from .pipeline import Pipeline

    data = load_dataset(config.data, config.task)
    input_shape = config.input_shape
    if config.model.inference is not None:
        from ..exported import program_input_shape

        model = build_model(checkpoint=config.model.checkpoint, inference=config.model.inference)
        spec = model.slimkit_spec  # the resolved prefix: a run rebuilt elsewhere finds the same files
        input_shape = program_input_shape(model, input_shape)
    else:
        known = {"num_classes": data.num_classes, "in_channels": data.input_shape[0],
                 "input_size": data.input_shape[-1]}
        # Data without class labels does not know num_classes: the model's own default (or args) then holds.
        spec = {"name": config.model.name, **{k: v for k, v in known.items() if v is not None}, **config.model.args}
        model = build_model(checkpoint=config.model.checkpoint, seed=config.train.seed, **spec)
    return Pipeline(model, data, stages=config.stages, input_shape=input_shape, train=config.train,
                    out_dir=out_dir, report=config.report, model_spec=spec, verbose=verbose, export=config.export,
                    task=config.task, device=config.device)
