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

from ..core import device as devices
from ..core.errors import ConfigError, DataError, SlimkitError, flatten, raise_all, suggest
from ..core.schema import Options, field_names, option
from ..data import DataConfig, load_dataset
from ..deploy.formats import ExportConfig
from ..models.zoo import ModelConfig, build_model
from ..report.rows import ReportConfig
from ..strategies.base import Strategy, check_stage_names, strategy_from_config
from ..train.engine import TrainConfig
from ..train.tasks import TaskConfig
from .yamlfile import load_yaml


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
        check_stage_names(self.stages)
        if self.input_shape is not None and (len(self.input_shape) != 4 or
                                             not all(isinstance(v, int) and v > 0 for v in self.input_shape)):
            raise ConfigError("input_shape", f"expected [batch, channels, height, width], got {self.input_shape}")

    def to_dict(self):
        out = super().to_dict()
        out["stages"] = [s.to_config() for s in self.stages]
        return out


MAX_STAGES = 100  # a pipeline of a few stages; a list far longer is a mistake (or an attack), refused at once


def read_config(path, overrides=()):
    """The raw mapping of a YAML run config file with `overrides` applied; ConfigError/DataError naming the file.

    The YAML is read within bounds (slimkit.run.yamlfile: size, aliases, nesting) and the
    stages counted before anything is built from it.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"config file not found: {path}", "give the path of a YAML file, e.g. configs/quickstart.yaml")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(str(path), f"cannot be read: {err}", "give a YAML text file") from None
    raw = load_yaml(text, str(path))
    if overrides:
        from .overrides import apply_overrides

        if not isinstance(raw, (dict, type(None))):
            raise ConfigError(str(path), "the file is not a mapping of config blocks",
                              "start from configs/quickstart.yaml")
        raw = apply_overrides(raw, overrides)
    stages = raw.get("stages") if isinstance(raw, dict) else None
    if isinstance(stages, list) and len(stages) > MAX_STAGES:
        raise ConfigError("stages", f"{len(stages):,} stages: more than {MAX_STAGES}",
                          "a pipeline has a few stages; split the work into several runs")
    return raw


def load_config(path, overrides=()):
    """Read and validate a YAML run config; raises ConfigError/DataError naming the bad key or file.

    `overrides` are `KEY=VALUE` strings (`--set`), applied before the validation.
    """
    return RunConfig.from_dict(read_config(path, overrides) or {}, "")


def load_config_all(path, overrides=()):
    """`load_config`, but every mistake of the config is raised at once (ConfigErrors).

    Besides each block and stage, layer names of the stages that are valid are checked
    against the model when the data and model blocks are (slimkit.run.preflight), so a
    config with typos and a wrong layer name takes one round, not two.
    """
    raw = read_config(path, overrides)
    try:
        return RunConfig.from_dict(raw or {}, "")
    except ConfigError as first:
        errors = config_errors(raw, RunConfig) if isinstance(raw, dict) else []
        if errors:
            errors += layer_errors_of_valid_stages(raw, errors)
        raise_all(errors or [first])


def layer_errors_of_valid_stages(raw, errors):
    """The layer-name errors of the stages that are valid in `raw`, against the model it builds ([] if it cannot)."""
    from .preflight import layer_name_errors

    broken = {err.path.partition(".")[0].partition("[")[0] for err in errors}
    if broken & {"data", "model", "input_shape", "task", "device", ""}:
        return []  # the model cannot be built as the config says
    stages = {}
    for i, entry in enumerate(raw.get("stages") or []):
        try:
            stages[i] = strategy_from_config(entry, f"stages[{i}]")
        except ConfigError:
            continue
    if not stages:
        return []
    try:
        data = load_dataset(DataConfig.from_dict(raw.get("data"), "data"))
        model, _, shape = _model_of(ModelConfig.from_dict(raw.get("model"), "model"), data, raw.get("input_shape"))
        return layer_name_errors(list(stages.values()), model, shape, indices=list(stages))
    except SlimkitError:
        return []  # reported by the round that builds the pipeline


def config_errors(raw, run_config_class):
    """Every ConfigError of a raw config mapping: each block and each stage validated on its own."""
    errors = []
    blocks = {f.name: f for f in dataclasses.fields(run_config_class)}
    for key in raw:
        if key not in blocks:
            errors.append(ConfigError(str(key), "unknown key", suggest(key, field_names(run_config_class))))
    for key, value in raw.items():
        if key not in blocks or key == "stages":
            continue
        try:
            run_config_class.from_dict({key: value}, "")
        except ConfigError as err:
            errors += [e for e in flatten([err]) if "stages" not in e.path]
    stages = raw.get("stages") or []
    for i, entry in enumerate(stages if isinstance(stages, list) else []):
        try:
            strategy_from_config(entry, f"stages[{i}]")
        except ConfigError as err:
            errors += flatten([err])
    if not errors:  # a cross-field rule of the whole config (e.g. repeated stage names)
        try:
            run_config_class.from_dict(raw, "")
        except ConfigError as err:
            errors += flatten([err])
    return errors


def build_pipeline(config, out_dir, verbose=True):
    """Load the data, build the model and return the Pipeline a RunConfig describes."""
    from .pipeline import Pipeline

    data = load_dataset(config.data, config.task)
    model, spec, input_shape = _model_of(config.model, data, config.input_shape, config.train.seed)
    return Pipeline(model, data, stages=config.stages, input_shape=input_shape, train=config.train,
                    out_dir=out_dir, report=config.report, model_spec=spec, verbose=verbose, export=config.export,
                    task=config.task, device=config.device)


def _model_of(model_config, data, input_shape=None, seed=0):
    """(model, spec, input_shape) of a ModelConfig for `data`; the spec is stored to rebuild the model."""
    if model_config.inference is not None:
        from ..exported import program_input_shape

        model = build_model(checkpoint=model_config.checkpoint, inference=model_config.inference)
        # The resolved prefix: a run rebuilt elsewhere finds the same files.
        return model, model.slimkit_spec, program_input_shape(model, input_shape)
    known = {"num_classes": data.num_classes, "in_channels": data.input_shape[0], "input_size": data.input_shape[-1]}
    # Data without class labels does not know num_classes: the model's own default (or args) then holds.
    spec = {"name": model_config.name, **{k: v for k, v in known.items() if v is not None}, **model_config.args}
    model = build_model(checkpoint=model_config.checkpoint, seed=seed, **spec)
    return model, spec, input_shape or [1, *data.input_shape]
