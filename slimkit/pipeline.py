"""Compose strategies into stages and measure the model after every one of them.

    pipeline = Pipeline(model, "digits", stages=[Finetune(epochs=5)], out_dir="runs/quick")
    reports = pipeline.run()          # baseline first, then one StageReport per stage

Each stage writes its model and report to `out_dir/NN-name/`; `run(resume=True)` (or
`slimkit run --resume`) restores finished stages instead of running them again.
"""

import copy
import json
import shutil
import time
from pathlib import Path

from .checkpoint import save_model
from .data import DataBundle, DataConfig, load_dataset
from .engine import Engine, TrainConfig, set_seed
from .errors import ConfigError, ResumeError
from .measure import count_flops, count_params, latency_method, measure_latency, saved_size
from .report import ConsoleTable, ReportConfig, StageReport, write_reports
from .strategy import Context, Strategy
from .tasks import check_stages

DONE = "stage.json"


class Pipeline:
    """A model, its data and a list of strategies run in order, each followed by a measurement."""

    def __init__(self, model, data="digits", stages=(), input_shape=None, train=None, engine=None,
                 out_dir="runs/latest", report=None, model_spec=None, verbose=True, task=None):
        self.data = _as_bundle(data)
        self.input_model = model  # never changed: stages work on a copy
        self.model = model        # the result after run()
        self.stages = list(stages)
        for i, stage in enumerate(self.stages):
            if not isinstance(stage, Strategy):
                raise ConfigError(f"stages[{i}]", f"{stage!r} is not a slimkit Strategy",
                                  "use Finetune(...), FilterPruning(...), ... or a subclass of slimkit.Strategy")
        names = [self.stage_name(i) for i in range(len(self.stages))]
        if len(set(names)) != len(names):
            raise ConfigError("stages", f"stage names repeat: {names}", "give stages distinct `name`s")
        train_config = train if isinstance(train, TrainConfig) else TrainConfig(**(train or {}))
        self.engine = engine or Engine(self.data, train_config, task)
        check_stages(getattr(self.engine, "task", None), self.stages)
        self.input_shape = list(input_shape) if input_shape else [1, *self.data.input_shape]
        self.report_config = report if isinstance(report, ReportConfig) else ReportConfig(**(report or {}))
        self.out_dir = Path(out_dir)
        self.model_spec = model_spec
        self.verbose = verbose
        self.reports = []

    def stage_name(self, index):
        return self.stages[index].display_name

    def stage_dir(self, index):
        return self.out_dir / f"{index + 1:02d}-{self.stage_name(index)}"

    # --- running ------------------------------------------------------------------------
    def run(self, resume=False):
        """Run (or resume) every stage; returns the StageReports, baseline first."""
        task = getattr(self.engine, "task", None)
        if task is not None:  # a bad task.output stops here, before any work or file change
            task.check_outputs(self.input_model, self.input_shape)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._check_resume(resume)
        names = (task.metric_names or None) if task is not None else ("top1", "top5")  # None: a user metric's
        table = ConsoleTable(metric_names=names) if self.verbose else None
        if table:
            table.header()
        original = self.input_model
        model = copy.deepcopy(original)
        teacher = None
        self.reports = []
        baseline_dir = self.out_dir / "00-baseline"
        baseline = self._load_done(baseline_dir) if resume else None
        if baseline is None:
            start = time.perf_counter()
            baseline = self.measure(model, baseline_dir, "baseline", "input model", start)
            self._mark_done(baseline_dir, baseline, {"type": "baseline"})
        self._emit(table, baseline)
        resuming = resume
        for i, stage in enumerate(self.stages):
            if teacher is None and stage.compresses:
                teacher = copy.deepcopy(model)
                teacher.eval()
            folder = self.stage_dir(i)
            ctx = Context(data=self.data, engine=self.engine, input_shape=self.input_shape, out_dir=folder,
                          teacher=teacher, original=original, stage_name=self.stage_name(i))
            done = self._load_done(folder, stage.to_config()) if resuming else None
            if done is not None:
                model = stage.restore(model, folder, ctx)
                self._emit(table, done)
                continue
            resuming = False  # later stages depend on this one: run them all again
            if folder.exists():
                shutil.rmtree(folder)
            folder.mkdir(parents=True)
            set_seed(self.engine.config.seed + i + 1)
            start = time.perf_counter()
            model = stage.apply(model, ctx)
            if model is None:
                raise TypeError(f"{type(stage).__name__}.apply returned None; it must return the model")
            stage.save(model, folder, ctx)
            report = self.measure(model, folder, ctx.stage_name, stage.type_name, start, ctx, stage)
            self._mark_done(folder, report, stage.to_config())
            self._emit(table, report)
        self.model = model
        self.write()
        return self.reports

    def measure(self, model, folder, name, strategy, start, ctx=None, stage=None):
        """Measure `model` now; the weights are saved in `folder` and their size is read from disk."""
        folder = Path(folder)
        if not (folder / "model.pdparams").is_file():
            save_model(model, folder, self.model_spec)
        cfg = self.report_config
        flops, zero_types = count_flops(model, self.input_shape)
        metrics = self.engine.evaluate(model, cfg.eval_split)
        latency_shape = [cfg.latency_batch, *self.input_shape[1:]]
        notes = list(ctx.notes) if ctx else []
        previous = self.reports[-1].extra.get("flops_zero_types") if self.reports else None
        if zero_types and zero_types != previous:
            notes.append(f"paddle.flops counts these layer types as zero FLOPs: {', '.join(zero_types)}")
        report = StageReport(
            stage=name, strategy=strategy, flops=flops, params=count_params(model),
            top1=metrics.get("top1"), top5=metrics.get("top5"), size_bytes=saved_size(folder / "model.pdparams"),
            latency_ms=measure_latency(model, latency_shape, cfg.latency_warmup, cfg.latency_runs),
            seconds=0.0, latency_method=latency_method(latency_shape, cfg.latency_warmup, cfg.latency_runs),
            notes=notes, extra={**(ctx.metrics if ctx else {}), "flops_zero_types": zero_types},
            metrics={k: v for k, v in metrics.items() if k not in ("loss", "samples")})
        if stage is not None:
            stage.measure(model, ctx, report)
        report.seconds = round(time.perf_counter() - start, 2)
        return report

    def write(self):
        """Write report.json / report.md of the stages run so far."""
        return write_reports(self.reports, self.out_dir, {"config": self.describe()})

    def describe(self):
        return {"data": self.data.name, "input_shape": self.input_shape, "model_spec": self.model_spec,
                "train": self.engine.config.to_dict() if hasattr(self.engine.config, "to_dict") else None,
                "task": _task_options(self.engine), "stages": [s.to_config() for s in self.stages]}

    # --- bookkeeping --------------------------------------------------------------------
    def _emit(self, table, report):
        self.reports.append(report)
        if table:
            table.row(report)
        self.write()

    def _mark_done(self, folder, report, config):
        # Written last: a stage folder without it is an interrupted stage and runs again.
        (Path(folder) / DONE).write_text(json.dumps({"config": config, "report": report.to_dict()}, indent=2))

    def _load_done(self, folder, config=None):
        path = Path(folder) / DONE
        if not path.is_file():
            return None
        saved = json.loads(path.read_text())
        if config is not None and saved["config"] != json.loads(json.dumps(config)):
            return None
        return StageReport.from_dict(saved["report"])

    def _check_resume(self, resume):
        marker = self.out_dir / "pipeline.json"
        current = {"data": self.data.name, "input_shape": self.input_shape, "model_spec": self.model_spec,
                   "train": self.engine.config.to_dict() if hasattr(self.engine.config, "to_dict") else None,
                   "task": _task_options(self.engine)}
        current = json.loads(json.dumps(current))
        if resume and marker.is_file():
            saved = json.loads(marker.read_text())
            if saved != current:
                changed = sorted(k for k in current if saved.get(k) != current[k])
                raise ResumeError(f"{self.out_dir} holds a run with a different {', '.join(changed)}",
                                  "run without --resume (starts over), or choose another --out folder")
        if not resume:
            for old in self.out_dir.glob("[0-9][0-9]-*"):
                shutil.rmtree(old)
        marker.write_text(json.dumps(current, indent=2))


def _task_options(engine):
    # A run measured with another loss or metric is another run: resume must not mix them.
    task = getattr(engine, "task", None)
    return task.config.to_dict() if task is not None else None


def _as_bundle(data):
    if isinstance(data, DataBundle):
        return data
    if isinstance(data, str):
        return load_dataset(DataConfig(name=data))
    if isinstance(data, DataConfig):
        return load_dataset(data)
    if isinstance(data, dict):
        return load_dataset(DataConfig.from_dict(data, "data"))
    raise ConfigError("data", f"expected a dataset name, DataConfig or DataBundle, got {type(data).__name__}")
