"""Deployed latency of pipeline stages: each stage's export timed in its runtime, then all stages interleaved.

After every stage the pipeline writes `<stage>/inference/model.*` (`export_stage`) and
`measure_stage` times it in the Paddle Inference predictor (and the eager forward, for
comparison). Those times are taken minutes apart on a machine others share, so at the end
of a run (and in `slimkit bench RUN_DIR`) `retime_interleaved` times every stage's export
turn by turn in one go and replaces each row's latency by that measurement: ratios between
stages come from the same minute. A stage that then measures slower than the one before it
gets a note ("never silently slower").

A model imported from an exported program (`slimkit.from_inference`) is compared with that
program itself: `keep_original` copies it into the baseline folder (`00-baseline/original/`),
and the baseline row is the original's latency, timed in the same predictor, interleaved with
the stages (its own export is timed beside it: `extra["imported_export_latency_ms"]`).
"""

import shutil
from pathlib import Path

from ..core import device as devices
from .paddle_inference import InferenceModel, program_file, predictor_text, stage_export_prefix
from ..report.timing import eager_latency, eager_latency_method, time_runners

RUNTIME = "onednn_int8"     # oneDNN on the CPU (its int8 passes act on int8 exports only); GPU kernels on a GPU
FLOAT_EXPORT_DIR = "float_inference"  # the float reference export QAT/PTQ stages write beside theirs
SLOWER_NOTE = "slower than the stage before it in the deployment runtime"
SLOWER_TOLERANCE = 0.05     # medians within 5 % count as the same speed on a shared machine
ORIGINAL_DIR = "original"   # the baseline folder's copy of the program an imported model came from


def exported(folder):
    """The stage's export prefix if `folder` holds one, else None."""
    prefix = stage_export_prefix(folder)
    return prefix if Path(str(prefix) + ".pdmodel").is_file() else None


def original_program(folder):
    """The prefix of the original program a baseline folder keeps (`keep_original`), or None."""
    prefix = Path(folder) / ORIGINAL_DIR / "model"
    return prefix if program_file(prefix) else None


def timed_prefix(folder):
    """What a stage folder's latency is measured on: the original program (baseline of an import), else the export."""
    return original_program(folder) or exported(folder)


def keep_original(model, folder, cfg, shape):
    """Copy the program an imported `model` came from into `folder/original/`, if it runs in the stage predictor.

    Returns None, or the note saying why the baseline is timed on the model's own export instead
    (e.g. the PP-OCRv5 detector fails in Paddle 3.3's oneDNN predictor).
    """
    signature = getattr(model, "program_signature", None)
    if signature is None or cfg.runtime == "eager":
        return None
    target = Path(folder) / ORIGINAL_DIR
    target.mkdir(parents=True, exist_ok=True)
    program = Path(signature["program"])
    shutil.copy(program, target / f"model{program.suffix}")
    shutil.copy(signature["params"], target / "model.pdiparams")
    try:
        _predictor(target / "model", cfg).runner(shape)()
    except Exception as err:
        shutil.rmtree(target, ignore_errors=True)
        why = str(err).strip().splitlines()[-1][:200] if str(err).strip() else type(err).__name__
        return (f"the original program {program.name} does not run in the stage predictor ({why}): the baseline's "
                "latency is its imported copy's export")
    return None


def latency_method(cfg, shape, interleaved=None, eager=False, device=None):
    """How `latency_ms` was measured, for the report: runtime, device, input, runs (CPU: threads and ISA flags).

    `device`: where it ran ("cpu", "gpu:N"); default: the session's device, which a run sets.
    """
    device = devices.current() if device is None else device
    runs = f"median of {cfg.latency_runs} runs after {cfg.latency_warmup} warm-up runs"
    if eager or cfg.runtime == "eager":
        eager_text = eager_latency_method(shape, cfg.latency_warmup, cfg.latency_runs, device)
        return f"{eager_text}; {devices.describe(device)}"
    how = (f"all {interleaved} stages' exports timed interleaved (round-robin, {cfg.latency_rounds} rounds) "
           f"at the end of the run" if interleaved else "timed right after the stage")
    kernels = predictor_text(RUNTIME, cfg.threads, device, cfg.tensorrt)
    return (f"Paddle Inference predictor of the stage's export ({kernels}), input {list(shape)}; {runs}, {how}; "
            f"{devices.describe(device)}")


def measure_stage(model, folder, cfg, shape):
    """{latency_ms, latency_method, extra} of the model just exported into `folder`, per `cfg` (ReportConfig)."""
    eager = eager_latency(model, shape, cfg.latency_warmup, cfg.latency_runs)
    extra = {"eager_latency_ms": round(eager, 4), "runtime": cfg.runtime, "threads": cfg.threads,
             "device": devices.current()}
    prefix = timed_prefix(folder)
    if prefix is not None:
        extra["inference_model"] = str(prefix)
    if cfg.runtime == "eager" or prefix is None:
        return {"latency_ms": eager, "latency_method": latency_method(cfg, shape, eager=True), "extra": extra}
    timing = time_runners({"stage": _predictor(prefix, cfg).runner(shape)},
                          cfg.latency_warmup, cfg.latency_runs, rounds=1)["stage"]
    extra.update(latency_p10_ms=round(timing.p10, 4), latency_p90_ms=round(timing.p90, 4))
    return {"latency_ms": timing.median, "latency_method": latency_method(cfg, shape), "extra": extra}


def retime_interleaved(reports, folders, cfg, shape, clock=None):
    """Time every stage's export interleaved and put the results in the reports (in place).

    `folders[i]` is the folder of `reports[i]`. Also times the float reference export of
    QAT/PTQ stages, for the int8 export's speed-up over the float export of the same model.
    Adds the "slower" notes (only those for `runtime: eager`, whose models are not kept). Returns the reports.
    """
    if cfg.runtime == "eager":
        return mark_slower(reports)
    runners = {}
    for i, folder in enumerate(folders):
        imported = exported(folder) if original_program(folder) else None
        for key, prefix in ((i, timed_prefix(folder)), ((i, "float"), _float_reference(folder)),
                            ((i, "imported"), imported)):
            if prefix is not None:
                runners[key] = _predictor(prefix, cfg).runner(shape)
    kwargs = {"clock": clock} if clock else {}
    timings = time_runners(runners, cfg.latency_warmup, cfg.latency_runs, cfg.latency_rounds, **kwargs)
    stages = sum(1 for key in timings if isinstance(key, int))
    for i, report in enumerate(reports):
        if i not in timings:
            continue
        t = timings[i]
        report.latency_ms = t.median
        report.latency_method = latency_method(cfg, shape, interleaved=stages)
        report.extra.update(latency_p10_ms=round(t.p10, 4), latency_p90_ms=round(t.p90, 4), runtime=cfg.runtime,
                            threads=cfg.threads)
        if (i, "imported") in timings:
            report.extra["imported_export_latency_ms"] = round(timings[(i, "imported")].median, 4)
            report.extra["latency_program"] = "original"
        if (i, "float") in timings:
            float_ms = timings[(i, "float")].median
            report.extra["float_export_latency_ms"] = round(float_ms, 4)
            report.extra["int8_speedup_vs_float_export"] = round(float_ms / t.median, 3)
    mark_slower(reports)
    return reports


def _predictor(prefix, cfg):
    # On the session's device: the run's, which Pipeline.run (or bench_run) selects.
    return InferenceModel(prefix, RUNTIME, cfg.threads, tensorrt=cfg.tensorrt)


def _float_reference(folder):
    prefix = Path(folder) / FLOAT_EXPORT_DIR / "model"
    return prefix if Path(str(prefix) + ".pdmodel").is_file() else None


def mark_slower(reports, tolerance=SLOWER_TOLERANCE):
    """Note on every stage slower than the stage before it.

    Slower: the median is above the previous stage's by more than `tolerance`, and so is
    the stage's 10th percentile (most of its runs, not a few unlucky ones, were slower).
    """
    for before, report in zip(reports, reports[1:]):
        report.drop_notes("slower")
        limit = before.latency_ms * (1 + tolerance)
        fastest = report.extra.get("latency_p10_ms", report.latency_ms)
        if before.latency_ms and report.latency_ms > limit and fastest > before.latency_ms:
            ratio = report.latency_ms / before.latency_ms
            report.add_note(f"{report.stage}: {SLOWER_NOTE} ({report.latency_ms:.3f} ms vs "
                            f"{before.latency_ms:.3f} ms for {before.stage}, x{ratio:.2f})", "slower")
    return reports


def stage_folders(run_dir, reports):
    """The folder of every report row of a run: 00-baseline, 01-<stage>, ..."""
    return [Path(run_dir) / f"{i:02d}-{r.stage}" for i, r in enumerate(reports)]


def bench_run(run_dir, cfg, clock=None, device=None):
    """Re-measure a finished run's stages interleaved (`slimkit bench`); rewrites its report; returns the rows.

    `device`: where to time them; default: the device the run used (its report's `device` record).
    """
    from ..core.errors import SlimkitError
    from ..report.rows import StageReport, read_report_file, write_reports

    payload = read_report_file(run_dir)
    reports = [StageReport.from_dict(d) for d in payload["stages"]]
    shape = (payload.get("config") or {}).get("input_shape")
    folders = stage_folders(run_dir, reports)
    missing = [str(f) for f in folders if exported(f) is None]
    if not shape or missing:
        raise SlimkitError(f"{run_dir} has no Paddle Inference model in {', '.join(missing) or 'its config'}",
                           "run the pipeline again with this slimkit version (every stage folder then holds "
                           "inference/model.pdmodel)")
    with devices.using(device or (payload.get("device") or {}).get("used", "auto")):
        retime_interleaved(reports, folders, cfg, [cfg.latency_batch, *shape[1:]], clock=clock)
    write_reports(reports, run_dir, {k: v for k, v in payload.items() if k not in ("stages", "environment")})
    return reports
