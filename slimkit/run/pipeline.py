"""Compose strategies into stages and measure the model after every one of them.

    pipeline = Pipeline(model, "digits", stages=[Finetune(epochs=5)], out_dir="runs/quick")
    reports = pipeline.run()          # baseline first, then one StageReport per stage

Each stage writes its model and report to `out_dir/NN-name/`; `run(resume=True)` (or
`slimkit run --resume`) restores finished stages instead of running them again.

Started by `paddle.distributed.launch` (`slimkit run --nproc N`), every process runs the
pipeline: training and evaluation are shared (slimkit.core.parallel), and rank 0 alone claims
the folder, writes stage folders and reports and prints the table; the others hand what
their strategies write to a scratch folder of their own.
"""

import contextlib
import copy
import json
import shutil
import tempfile
import time
from pathlib import Path

from ..core import device as devices
from ..core import parallel
from ..core.errors import ConfigError, SlimkitError
from ..core.seeding import seeded, set_seed
from ..core.surgery import model_digest
from ..data.sources import data_identity, to_bundle
from ..deploy.formats import ExportConfig, export_formats
from ..deploy.paddle_inference import INFERENCE_DIR, export_stage, needs_convert
from ..deploy.stage_latency import exported, keep_original, measure_stage, retime_interleaved
from ..models.checkpoint import WEIGHTS, record_spec, save_model
from ..report.console import captured_console
from ..report.curves import write_curves
from ..report.measure import count_flops, count_params, saved_size, weight_sparsity
from ..report.rows import (ConsoleTable, Note, ReportConfig, StageReport, print_retimed,
                           read_report_file, write_reports)
from ..sparsity.masks import holding_masks
from ..strategies.base import Context, Strategy, check_stage_names
from ..train.engine import Engine, check_engine, check_finite_weights, resolve_train_config
from ..train.objective import build_task
from ..train.tasks import check_stages
from . import preflight, rundir
from .lock import RunLock


class Pipeline:
    """A model, its data and a list of strategies run in order, each followed by a measurement."""

    def __init__(self, model, data=None, stages=(), input_shape=None, train=None, engine=None,
                 out_dir="runs/latest", report=None, model_spec=None, verbose=True, num_classes=None, seed=None,
                 export=None, task=None, device="auto"):
        # No default data: without data the engine's own is used, and without either it is an error.
        self.data = to_bundle(data if data is not None else getattr(engine, "data", None), num_classes,
                              input_shape[1:] if input_shape else None, task=task)
        self.input_model = model  # never changed: stages work on a copy
        self.model = model        # the result after run()
        self.stages = list(stages)
        for i, stage in enumerate(self.stages):
            if not isinstance(stage, Strategy):
                raise ConfigError(f"stages[{i}]", f"{stage!r} is not a slimkit Strategy",
                                  "use Finetune(...), FilterPruning(...), ... or a subclass of slimkit.Strategy")
        check_stage_names(self.stages)
        self.train_config = resolve_train_config(train, engine)  # the hyperparameters every stage's Context gets
        self.input_shape = list(input_shape) if input_shape else [1, *self.data.input_shape]
        # The run's loss and metric, for the built-in engine and for stages and exports whatever the engine;
        # for data without labels the original model (`model`, never changed) is the reference.
        self.task = engine.task if isinstance(engine, Engine) else build_task(
            task, self.data, self.train_config.label_smoothing, reference=model, input_shape=self.input_shape)
        self.engine = check_engine(engine) if engine is not None else Engine(self.data, self.train_config, self.task)
        check_stages(self.task, self.stages)
        self.report_config = report if isinstance(report, ReportConfig) else ReportConfig(**(report or {}))
        self.export = export if isinstance(export, ExportConfig) else ExportConfig.from_dict(export, "export")
        self.out_dir = Path(out_dir)
        self.model_spec = model_spec or getattr(model, "slimkit_spec", None)
        self._train_given = train is not None or engine is None  # a user's engine may bring no train block
        self.seed = self.train_config.seed if seed is None else seed  # the CLI's default too: train.seed, 0
        self.verbose = verbose
        self.reports = []
        self.device = device  # checked against the installed Paddle when the run starts (preflight)
        devices.parse(device)
        self.used_device = None  # "cpu" or "gpu:N", once run() has started

    def stage_name(self, index):
        return self.stages[index].display_name

    def stage_dir(self, index):
        return self.out_dir / rundir.stage_folder_name(index + 1, self.stage_name(index))

    # --- running ------------------------------------------------------------------------
    def run(self, resume=False, overwrite=False):
        """Run (or resume) every stage; returns the StageReports, baseline first.

        `out_dir` holding a different run is refused unless `resume` (continue it) or
        `overwrite` (replace its stage folders); nothing slimkit did not write is touched.
        Everything knowable before training is checked first (`slimkit.run.preflight`).
        Seeded by `seed`, so the same call gives the same reports; the caller's random state is kept.
        Runs on `device` (the model is moved there; `self.model` stays there), then the caller's
        `paddle.get_device()` comes back.
        """
        parallel.init()
        self.run_id = None  # this call's, once it claimed the folder
        with seeded(self.seed), self._scratch(), self._locked(), self._logged(), devices.using(self.device) as used:
            self.used_device = used
            return self._run(resume, overwrite)

    @contextlib.contextmanager
    def _logged(self):
        """Native Paddle output off the console and into `run.log`, as `slimkit run` does (it captures already)."""
        with captured_console(title=f"Pipeline.run -> {self.out_dir}") as log:
            try:
                yield
            finally:
                if parallel.is_main():  # rank 0 writes the run's files (a refused run claimed none: nothing)
                    rundir.append_log(self.out_dir, log(), self.run_id)

    @contextlib.contextmanager
    def _locked(self):
        """`out_dir` locked for the whole run (rank 0 holds it; a second run there is refused on every rank)."""
        lock = RunLock(self.out_dir)
        parallel.on_main(lock.acquire, share=lambda _: None)
        try:
            yield
        finally:
            lock.release()

    @contextlib.contextmanager
    def _scratch(self):
        """Ranks other than 0 give their strategies a temporary folder to write in (removed after the run)."""
        self._scratch_dir = None if parallel.is_main() else Path(tempfile.mkdtemp(prefix="slimkit-rank-"))
        try:
            yield
        finally:
            if self._scratch_dir is not None:
                shutil.rmtree(self._scratch_dir, ignore_errors=True)

    def _work_dir(self, folder):
        """Where a stage's strategy writes: its folder on rank 0, a scratch copy of it on the other ranks."""
        if getattr(self, "_scratch_dir", None) is None:
            return folder
        work = self._scratch_dir / folder.name
        work.mkdir(parents=True, exist_ok=True)
        return work

    def _prepare(self, resume, overwrite):
        """Every check before work, then the output folder claimed; returns the console table (or None)."""
        task = self.task

        def claim():  # rank 0 checks and claims the folder; every rank learns the run id (or the error)
            preflight.check_pipeline(self, resume=resume, overwrite=overwrite)  # what `slimkit check` checks
            run_id = rundir.claim(self.out_dir, self.identity(),
                                  rundir.folder_names(s.display_name for s in self.stages),
                                  resume=resume, overwrite=overwrite)
            return run_id, task.num_classes  # the class count the checks settled (the model's, it may be)

        self.run_id, classes = parallel.on_main(claim, share=list, receive=tuple)
        if classes != task.num_classes:
            task.set_classes(classes)
        names = task.metric_names or None  # None: a user metric's, known from the first row
        table = ConsoleTable(metric_names=names) if self.verbose and parallel.is_main() else None
        if table:
            table.header()
        return table

    def _run(self, resume, overwrite):
        table = self._prepare(resume, overwrite)
        original = self.input_model
        model = devices.move(copy.deepcopy(original), self.used_device)
        teacher = None
        self.reports = []
        baseline_dir = self.out_dir / rundir.BASELINE_DIR
        baseline = self._load_done(baseline_dir) if resume else None
        if baseline is None:
            parallel.on_main(lambda: rundir.new_stage_folder(baseline_dir, self.run_id))
            start = time.perf_counter()
            baseline = self.measure(model, baseline_dir, rundir.BASELINE, "input model", start)
            self._mark_done(baseline_dir, baseline, {"type": rundir.BASELINE})
        self._emit(table, baseline, write=not resume)
        resuming = resume
        for i, stage in enumerate(self.stages):
            if teacher is None and stage.compresses:
                teacher = copy.deepcopy(model)
                teacher.eval()
            model, resuming = self._stage(i, stage, model, (teacher, original), table, resuming)
        self.model = model
        # Something ran, or the run was cut before its end (the final re-timing, the report): finish it.
        # A finished run is left as it is.
        if not resuming or not parallel.on_main(lambda: _complete(self.out_dir), share=bool):
            self.reports = parallel.on_main(self._finish, share=lambda rs: [r.to_dict() for r in rs],
                                            receive=lambda ds: [StageReport.from_dict(d) for d in ds])
        return self.reports

    def _finish(self):
        self.retime()
        self.write(complete=True)
        write_curves(self.reports, self.out_dir)
        return self.reports

    def _stage(self, i, stage, model, teachers, table, resuming):
        """Run (or restore) stage `i`; returns the model after it and whether the run is still restoring."""
        teacher, original = teachers
        folder = self.stage_dir(i)
        ctx = Context(data=self.data, engine=holding_masks(self.engine, model), input_shape=self.input_shape,
                      out_dir=self._work_dir(folder), teacher=teacher, original=original,
                      stage_name=self.stage_name(i), train=self.train_config, report=self.report_config,
                      task=self.task)
        done = self._load_done(folder, stage.to_config()) if resuming else None
        if done is not None:
            model = stage.restore(model, folder, ctx)
            self._emit(table, done, write=False)
            return model, True
        # Later stages depend on this one: they all run again.
        parallel.on_main(lambda: rundir.new_stage_folder(folder, self.run_id))
        set_seed(self.seed + i + 1)
        start = time.perf_counter()
        try:
            model = stage.apply(model, ctx)
            if model is None:
                raise TypeError(f"{type(stage).__name__}.apply returned None; it must return the model")
            check_finite_weights(model, f"stage {ctx.stage_name}", "after the stage")  # whatever engine trained it
        except SlimkitError as err:
            _resume_hint(err, self.out_dir, ctx.stage_name)
            raise
        parallel.check_equal(f"the model after stage {ctx.stage_name}", lambda: model_digest(model))
        parallel.on_main(lambda: self._save_stage(stage, model, folder, ctx))
        ctx.metrics["history"] = _take_history(self.engine)
        report = self.measure(model, folder, ctx.stage_name, stage.type_name, start, ctx, stage)
        self._mark_done(folder, report, stage.to_config())
        self._emit(table, report)
        return model, False

    def _save_stage(self, stage, model, folder, ctx):
        stage.save(model, folder, ctx)
        record_spec(folder, self.model_spec)

    def retime(self, clock=None):
        """Time every stage's export interleaved (one go) and update the rows' latency and notes.

        `clock`: a report.timing.Clock (injectable)."""
        names = rundir.folder_names(s.display_name for s in self.stages)[:len(self.reports)]
        folders = [self.out_dir / name for name in names]
        shape = [self.report_config.latency_batch, *self.input_shape[1:]]
        retime_interleaved(self.reports, folders, self.report_config, shape, clock=clock)
        for folder, report in zip(folders, self.reports):  # a resumed run restores the re-timed rows
            self._mark_done(folder, report, rundir.read_stage_record(folder)["config"])
        if self.verbose and self.report_config.runtime != "eager":
            # The rows above carry each stage's first timing; this table is what report.md holds.
            print_retimed(self.reports)

    def measure(self, model, folder, name, strategy, start, ctx=None, stage=None):
        """Measure `model` now; the weights are saved in `folder` and their size is read from disk.

        Every rank evaluates its share of the split; rank 0 measures the rest (files, FLOPs,
        latency) and every rank gets its report.
        """
        metrics = self.engine.evaluate(model, self.report_config.eval_split)
        return parallel.on_main(lambda: self._measure(model, Path(folder), (name, strategy), start, metrics, ctx,
                                                      stage), share=StageReport.to_dict, receive=StageReport.from_dict)

    def _measure(self, model, folder, names, start, metrics, ctx, stage):
        name, strategy = names
        if not (folder / WEIGHTS).is_file():
            save_model(model, folder, self.model_spec)
        export_failed = _export(model, folder, self.input_shape) if exported(folder) is None else None  # QAT/PTQ export
        cfg = self.report_config
        flops, zero_types = count_flops(model, self.input_shape)
        latency_shape = [cfg.latency_batch, *self.input_shape[1:]]
        notes = list(ctx.notes) if ctx else []
        if export_failed:
            notes.append(Note(f"no Paddle Inference export ({export_failed}); latency_ms is the eager forward's", name,
                              "export_failed"))
        previous = self.reports[-1].extra.get("flops_zero_types") if self.reports else None
        if zero_types and zero_types != previous:
            notes.append(Note(f"paddle.flops counts these layer types as zero FLOPs: {', '.join(zero_types)}", name,
                              "flops_zero_types"))
        if ctx is None:  # the baseline of an imported model is the program it came from
            why = keep_original(model, folder, cfg, latency_shape)
            if why:
                notes.append(Note(why, name, "original"))
        deployed = measure_stage(model, folder, cfg, latency_shape)
        notes += [Note(text, name, "noisy") for text in deployed["notes"]]
        report = StageReport(
            stage=name, strategy=strategy, flops=flops, params=count_params(model),
            top1=metrics.get("top1"), top5=metrics.get("top5"), size_bytes=saved_size(folder / WEIGHTS),
            latency_ms=deployed["latency_ms"], seconds=0.0, latency_method=deployed["latency_method"],
            sparsity=weight_sparsity(model),
            notes=notes, extra={**(ctx.metrics if ctx else {}), "flops_zero_types": zero_types, **deployed["extra"]},
            metrics={k: v for k, v in metrics.items() if k not in ("loss", "samples")})
        if stage is not None:
            stage.measure(model, ctx, report)
        export_formats(model, folder, self.input_shape, self.export, report, self._verification_batches,
                       self.task.config.output)
        report.seconds = round(time.perf_counter() - start, 2)
        return report

    def _verification_batches(self):
        """The batches an export is verified on: the evaluated split, through the engine's `batches`."""
        return self.engine.batches(self.report_config.eval_split, self.train_config.eval_batch_size)

    def write(self, complete=False):
        """Write report.json / report.md of the stages run so far (`complete`: the run's final report)."""
        # What deployment must do to inputs first (null: the data was used as given).
        extra = {"config": self.describe(), "input_normalisation": getattr(self.data, "normalisation", None),
                 "complete": complete}
        if self.used_device is not None:
            extra["device"] = devices.record(self.device, self.used_device)
        return write_reports(self.reports, self.out_dir, extra)

    def describe(self):
        """What the run really used: the data's splits, the engine (and its train block), the stages.

        A data-parallel run also records its number of processes (the global batch is
        processes x train.batch_size), so resuming it with another number is refused.
        """
        engine = type(self.engine)
        processes = {"processes": parallel.launched_world_size()} if parallel.launched_world_size() > 1 else {}
        return {"data": self.data.description or self.data.name, "input_shape": self.input_shape,
                "model_spec": self.model_spec, "seed": self.seed, **processes,
                "engine": "slimkit.Engine" if engine is Engine else f"{engine.__module__}.{engine.__qualname__}",
                "train": self.train_config.to_dict() if self._train_given else None, "task": self.task.config.to_dict(),
                "stages": [s.to_config() for s in self.stages]}

    def identity(self):
        """What a resumed run must match: the description, with a checksum of the data's contents."""
        return {**self.describe(), "data_checksum": data_identity(self.data)}

    # --- bookkeeping --------------------------------------------------------------------
    def _emit(self, table, report, write=True):
        # Restored rows are not written one by one: resuming a finished run then rewrites nothing.
        self.reports.append(report)
        if table:
            table.row(report)
        if write:
            parallel.on_main(self.write)

    def _mark_done(self, folder, report, config):
        # Written last: a stage folder without it is an interrupted stage and runs again.
        parallel.on_main(lambda: rundir.write_stage_record(folder, config, report.to_dict()))

    def _load_done(self, folder, config=None):
        """The finished stage's report in `folder` (rank 0 reads it; every rank gets it), or None."""
        return parallel.on_main(lambda: _read_done(folder, config), share=lambda r: r and r.to_dict(),
                                receive=lambda d: d and StageReport.from_dict(d))



def _complete(out_dir):
    """Did a run finish in `out_dir` (its report.json written at the end, `complete: true`)?"""
    try:
        return read_report_file(out_dir).get("complete") is True
    except SlimkitError:  # missing or damaged: written again
        return False

def _export(model, folder, input_shape):
    """Write the stage's Paddle Inference model (<stage>/inference/model.*); the error text if it fails."""
    try:
        if needs_convert(model):
            from ..quant import convert

            model = convert(model)
        export_stage(model, folder, input_shape)
    except Exception as err:  # a model paddle.jit.save cannot trace still gets its other measurements
        shutil.rmtree(Path(folder) / INFERENCE_DIR, ignore_errors=True)
        return f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
    return None


def _read_done(folder, config=None):
    """The report of the stage finished in `folder` with `config`, or None (it runs again)."""
    saved = rundir.read_stage_record(folder)
    if saved is None or (config is not None and saved["config"] != json.loads(json.dumps(config))):
        return None  # not finished, or finished with another config: it runs again
    rundir.verify_stage(folder, saved)  # restoring damaged files would carry them on silently
    return StageReport.from_dict(saved["report"])


def _resume_hint(err, out_dir, stage_name):
    """Add to `err`'s hint that the finished stages are kept and `--resume` continues."""
    resume = (f"the stages before {stage_name} are saved in {out_dir}: fix this and rerun with --resume "
              f"(resume=True) to continue from {stage_name}")
    err.hint = f"{err.hint}; {resume}" if err.hint else resume



def _take_history(engine):
    """The per-epoch history the engine kept of this stage's training (none for an engine without it)."""
    take = getattr(engine, "take_history", None)
    return take() if callable(take) else []
