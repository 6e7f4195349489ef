"""Deployed latency of pipeline stages: each stage's export timed in its runtime, then all stages interleaved.

After every stage the pipeline writes `<stage>/inference/model.*` (`export_stage`) and
`measure_stage` times it in the Paddle Inference predictor (and the eager forward, for
comparison). Those times are taken minutes apart on a machine others share, so at the end
of a run (and in `slimkit bench RUN_DIR`) `retime_interleaved` times every stage's export
turn by turn in one go (report.timing.measure) and replaces each row's latency by that
measurement: ratios between stages come from the same rounds, each with its confidence
interval, timed until the intervals are narrower than `report.latency_ci_width` or
`report.latency_budget_s` runs out (then a note says how noisy they are). A stage that
measures slower than the one before it gets a note ("never silently slower").

A model imported from an exported program (`slimkit.from_inference`) is compared with that
program itself: `keep_original` copies it into the baseline folder (`00-baseline/original/`),
and the baseline row is the original's latency, timed in the same predictor, interleaved with
the stages (its own export is timed beside it: `extra["imported_export_latency_ms"]`).
"""

import dataclasses
import math
import shutil
from pathlib import Path

from ..core import device as devices
from .paddle_inference import PARAMS_FILE, InferenceModel, program_file, predictor_text, stage_export_prefix
from ..report.intervals import Interval
from ..report.timing import Precision, eager_where, measure, measure_eager

RUNTIME = "onednn_int8"     # oneDNN on the CPU (its int8 passes act on int8 exports only); GPU kernels on a GPU
FLOAT_EXPORT_DIR = "float_inference"  # the float reference export QAT/PTQ stages write beside theirs
SLOWER_NOTE = "slower than the stage before it in the deployment runtime"
SLOWER_TOLERANCE = 0.05     # ratios within 5 % count as the same speed
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
    shutil.copy(signature["params"], target / PARAMS_FILE)
    try:
        _predictor(target / "model", cfg).runner(shape)()
    except Exception as err:
        shutil.rmtree(target, ignore_errors=True)
        why = str(err).strip().splitlines()[-1][:200] if str(err).strip() else type(err).__name__
        return (f"the original program {program.name} does not run in the stage predictor ({why}): the baseline's "
                "latency is its imported copy's export")
    return None


def report_precision(cfg, eager=False, device=None, **overrides):
    """The timer's Precision for `cfg` (ReportConfig): its runs, rounds, interval width, budget and clock.

    The clock `auto` reads the CPU time for the one-thread CPU predictor (other work on the
    machine does not count), the wall clock for several threads, a GPU or the eager forward.
    `overrides` replace Precision fields (e.g. a latency target's own width).
    """
    device = devices.current() if device is None else device
    clock = cfg.latency_clock
    if clock == "auto":
        clock = "cpu" if not eager and cfg.threads == 1 and not device.startswith("gpu") else "wall"
    rounds = max(1, min(cfg.latency_rounds, cfg.latency_runs))
    fields = dict(warmup=cfg.latency_warmup, calls=math.ceil(cfg.latency_runs / rounds), min_rounds=rounds,
                  width=cfg.latency_ci_width, budget=cfg.latency_budget_s, clock=clock,
                  drift=cfg.latency_drift)
    fields.update({k: v for k, v in overrides.items() if v is not None})
    return Precision(**fields)


def latency_method(cfg, shape, interleaved=None, eager=False, device=None):
    """How `latency_ms` was measured, for the report: runtime, device, input, clock and rounds (CPU: threads, ISA).

    `device`: where it ran ("cpu", "gpu:N"); default: the session's device, which a run sets.
    """
    device = devices.current() if device is None else device
    if eager or cfg.runtime == "eager":
        timed = report_precision(cfg, eager=True, device=device).describe()
        return f"{eager_where(shape, device)}; {timed}; {devices.describe(device)}"
    how = (f"all {interleaved} stages' exports timed interleaved at the end of the run, latency ratios "
           f"between stages from the same rounds" if interleaved else "timed right after the stage")
    kernels = predictor_text(RUNTIME, cfg.threads, device, cfg.tensorrt)
    timed = report_precision(cfg, device=device).describe()
    return (f"Paddle Inference predictor of the stage's export ({kernels}), input {list(shape)}; {timed}; {how}; "
            f"{devices.describe(device)}")


def measure_stage(model, folder, cfg, shape):
    """{latency_ms, latency_method, extra, notes} of the model just exported into `folder`, per `cfg` (ReportConfig).

    `notes`: texts saying which figures stayed noisy (the caller makes them the stage's notes).
    """
    prefix = timed_prefix(folder)
    deployed = cfg.runtime != "eager" and prefix is not None
    # Beside a deployed figure the eager one is for comparison: latency_runs runs, its interval
    # recorded, no stopping rule; as the row's own figure it is timed until it is known.
    eager_precision = report_precision(cfg, eager=True)
    if deployed:
        eager_precision = dataclasses.replace(eager_precision, max_rounds=eager_precision.min_rounds)
    eager = measure_eager(model, shape, eager_precision)
    eager_timing = eager.timing("eager")
    extra = {"eager_latency_ms": round(eager_timing.median, 4), "eager_latency_low_ms": round(eager_timing.low, 4),
             "eager_latency_high_ms": round(eager_timing.high, 4), "runtime": cfg.runtime, "threads": cfg.threads,
             "device": devices.current()}
    notes = [f"eager forward: {eager.noise_note()}"] if eager.noise_note() and not deployed else []
    if prefix is not None:
        extra["inference_model"] = str(prefix)
    if not deployed:
        extra.update(_interval_extra(eager_timing), latency_timing=eager.to_dict())
        return {"latency_ms": eager_timing.median, "latency_method": latency_method(cfg, shape, eager=True),
                "extra": extra, "notes": notes}
    found = measure({"stage": _predictor(prefix, cfg).runner(shape)}, None, report_precision(cfg))
    timing = found.timing("stage")
    extra.update(_interval_extra(timing), latency_timing=found.to_dict())
    notes += [found.noise_note()] if found.noise_note() else []
    return {"latency_ms": timing.median, "latency_method": latency_method(cfg, shape), "extra": extra,
            "notes": notes}


def _interval_extra(timing):
    """The spread of a row's latency (10th/90th percentile of its runs) and its median's interval."""
    out = {"latency_p10_ms": round(timing.p10, 4), "latency_p90_ms": round(timing.p90, 4),
           "latency_low_ms": round(timing.low, 4), "latency_high_ms": round(timing.high, 4)}
    if timing.wall_median is not None:
        out["latency_wall_ms"] = round(timing.wall_median, 4)
    return out


def retime_interleaved(reports, folders, cfg, shape, clock=None):
    """Time every stage's export interleaved and put the results in the reports (in place).

    `folders[i]` is the folder of `reports[i]`. Also times the float reference export of
    QAT/PTQ stages, for the int8 export's speed-up over the float export of the same model.
    Every row gets its latency's interval and the interval of its ratio to the baseline and
    to the stage before it; a ratio left wider than `cfg.latency_ci_width` gets a note.
    Adds the "slower" notes (only those for `runtime: eager`, whose models are not kept).
    `clock`: a report.timing.Clock (injectable). Returns the reports.
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
    found = measure(runners, _stage_pairs(runners), report_precision(cfg), clock)
    stages = [key for key in runners if isinstance(key, int)]
    for i, report in enumerate(reports):
        report.drop_notes("noisy")
        if i in runners:
            _retimed_row(report, i, found, stages, cfg, shape)
    mark_slower(reports)
    return reports


def _stage_pairs(runners):
    """The ratios the timing must narrow: every stage to the first and to the one before, int8 to its float export."""
    stages = [key for key in runners if isinstance(key, int)]
    pairs = [(i, stages[0]) for i in stages[1:]]
    pairs += [(b, a) for a, b in zip(stages[1:], stages[2:])]
    pairs += [(key, key[0]) for key in runners if not isinstance(key, int) and key[0] in runners]
    if not pairs and stages:
        pairs = [(stages[0], None)]  # one stage: its own median's interval
    return pairs


def _retimed_row(report, i, found, stages, cfg, shape):
    timing = found.timing(i)
    report.latency_ms = timing.median
    report.latency_method = latency_method(cfg, shape, interleaved=len(stages))
    report.extra.update(_interval_extra(timing), runtime=cfg.runtime, threads=cfg.threads,
                        latency_timing=found.to_dict())
    position = stages.index(i)
    references = {"latency_vs_baseline": stages[0], "latency_vs_previous": stages[position - 1]} if position else {}
    for key in ("latency_vs_baseline", "latency_vs_previous"):
        report.extra.pop(key, None)
        if key in references:
            ratio = found.ratio(i, references[key])
            report.extra[key] = ratio.to_dict()
            within = found.interval(i, references[key])  # this run's rounds: what more timing would narrow
            if within.width > found.precision.width:
                report.add_note(_noisy_ratio(report.stage, key, ratio, within, found), "noisy")
    if (i, "imported") in found.values:
        report.extra["imported_export_latency_ms"] = round(found.timing((i, "imported")).median, 4)
        report.extra["latency_program"] = "original"
    if (i, "float") in found.values:
        float_ms = found.timing((i, "float")).median
        speedup = found.ratio((i, "float"), i)
        report.extra["float_export_latency_ms"] = round(float_ms, 4)
        report.extra["int8_speedup_vs_float_export"] = round(speedup.value, 3)
        report.extra["int8_speedup_interval"] = speedup.to_dict()


def _noisy_ratio(stage, key, ratio, within, found):
    what = "latency ratio to the baseline" if key == "latency_vs_baseline" else "latency ratio to the stage before"
    return (f"{stage}: {what} is noisy: {ratio.text(3, 'x')}, an interval {within.width:.1%} wide after "
            f"{found.rounds} rounds in {found.seconds:.0f} s (asked: {found.precision.width:.0%}); "
            f"{found.preempted:.0%} of the timed runs were preempted by other work")


def _predictor(prefix, cfg):
    # On the session's device: the run's, which Pipeline.run (or bench_run) selects.
    return InferenceModel(prefix, RUNTIME, cfg.threads, tensorrt=cfg.tensorrt)


def _float_reference(folder):
    prefix = Path(folder) / FLOAT_EXPORT_DIR / "model"
    return prefix if Path(str(prefix) + ".pdmodel").is_file() else None


def mark_slower(reports, tolerance=SLOWER_TOLERANCE):
    """Note on every stage slower than the stage before it.

    Slower: the ratio to the stage before is above 1 + `tolerance` and so is its whole
    interval's lower end above 1 (measured slower, not a noisy draw). Rows without a ratio
    interval (eager runtime, older reports) compare medians: above by more than `tolerance`,
    and the stage's 10th percentile above the previous median too.
    """
    for before, report in zip(reports, reports[1:]):
        report.drop_notes("slower")
        if not before.latency_ms:
            continue
        ratio = report.extra.get("latency_vs_previous")
        if ratio is not None:
            measured = Interval.from_dict(ratio)
            slower = measured.value > 1 + tolerance and measured.low > 1
        else:
            measured = Interval(report.latency_ms / before.latency_ms, 0, 0, 0)
            fastest = report.extra.get("latency_p10_ms", report.latency_ms)
            slower = report.latency_ms > before.latency_ms * (1 + tolerance) and fastest > before.latency_ms
        if slower:
            report.add_note(f"{report.stage}: {SLOWER_NOTE} ({report.latency_ms:.3f} ms vs "
                            f"{before.latency_ms:.3f} ms for {before.stage}, x{measured.value:.2f})", "slower")
    return reports
