"""The `slimkit` command: run a YAML pipeline, re-print a report, re-time a run, list models.

Exit codes: 0 ok, 2 bad config or input, 1 failure, 130 interrupted.
"""

import argparse
import sys
import traceback
from pathlib import Path


def _parser():
    from .._version import __version__

    parser = argparse.ArgumentParser(prog="slimkit", description="Compress PaddlePaddle models and measure the result.")
    parser.add_argument("--version", action="version", version=f"slimkit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a pipeline from a YAML config")
    run.add_argument("config", help="YAML file, e.g. configs/quickstart.yaml")
    run.add_argument("--out", help="output folder (default: runs/<config name>)")
    run.add_argument("--resume", action="store_true", help="restore finished stages from --out instead of rerunning")
    run.add_argument("--overwrite", action="store_true",
                     help="replace the stage folders of a different run in --out (nothing else is touched)")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("--nproc", type=int, metavar="N",
                     help="data-parallel processes on this machine, started by paddle.distributed.launch (gloo on "
                          "CPU, NCCL on GPUs); train.batch_size is per process (docs/parallel.md)")

    check = sub.add_parser("check", help="verify configs as `run` does, without training")
    check.add_argument("config", nargs="+", help="one or more YAML files")
    check.add_argument("--out", help="output folder to verify too (default: runs/<config name>)")
    for p in (run, check):
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                       help="change one value of the config, e.g. train.epochs=1 or stages[1].ratios=0.3 "
                            "(repeatable; VALUE is YAML)")

    report = sub.add_parser("report", help="print the report of a finished run folder")
    report.add_argument("folder")
    report.add_argument("--markdown", action="store_true", help="print report.md instead of the table")

    bench = sub.add_parser("bench", help="re-measure a finished run's stages, all exports timed interleaved")
    bench.add_argument("folder")
    bench.add_argument("--runs", type=int, default=20,
                       help="timed runs per stage before the intervals are first judged (default 20)")
    bench.add_argument("--warmup", type=int, default=10, help="warm-up runs per stage (default 10)")
    bench.add_argument("--rounds", type=int, default=20, help="round-robin rounds the runs are split over")
    bench.add_argument("--width", type=float, default=0.04,
                       help="time until every latency ratio's 95%% interval is narrower than this (default 0.04)")
    bench.add_argument("--drift", type=float, default=None,
                       help="run-to-run drift every ratio's interval is widened by (default: report.latency_drift)")
    bench.add_argument("--budget", type=float, default=60.0,
                       help="seconds the timing may take to narrow the intervals (default 60)")
    bench.add_argument("--clock", choices=["auto", "cpu", "wall"], default="auto",
                       help="process CPU time or wall time of each run (default auto: cpu for 1 thread on the CPU)")
    bench.add_argument("--threads", type=int, default=1, help="predictor CPU threads (default 1)")
    bench.add_argument("--device", help="auto, cpu, gpu or gpu:N (default: the device the run used)")

    sub.add_parser("models", help="list the models known by name")
    export = sub.add_parser("export", help="copy the deployable files of a finished run's stage into a folder")
    export.add_argument("folder", help="the --out folder of a finished run")
    export.add_argument("--stage", help="stage name (default: the last stage)")
    export.add_argument("--format", choices=["paddle", "onnx"], default="paddle",
                        help="paddle: Paddle Inference files; onnx: model.onnx verified in ONNX Runtime")
    export.add_argument("--to", required=True, help="folder to write the files into")
    for p in (run, check, report, bench, export):
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks")
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    code = _guarded(args)
    _leave_if_launched(code)
    return code


def _leave_if_launched(code):
    """A rank of a data-parallel run exits at once, its output flushed.

    The normal interpreter teardown with a gloo context takes about 2 s (measured): a
    failed rank would keep the others waiting, and every run would end later.
    """
    import os

    from ..core.parallel import launched_world_size

    if launched_world_size() > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _guarded(args):
    """Run the command; every failure ends as one readable line (and its exit code)."""
    try:
        return _dispatch(args) or 0
    except KeyboardInterrupt:
        print("\ninterrupted: finished stages are saved; rerun with --resume to continue", file=sys.stderr)
        return 130
    except Exception as err:  # --debug shows the rest
        from ..core.errors import SlimkitError

        if args.debug:
            traceback.print_exc()
        if isinstance(err, OSError) and not isinstance(err, SlimkitError):
            err = _os_error(err, args)  # a full disk or an unwritable file: exit 2 naming the file (or folder)
        if isinstance(err, SlimkitError):
            print(f"error: {_rank_prefix()}{err.message}", file=sys.stderr)
            if err.hint:
                print(f"  hint: {err.hint}", file=sys.stderr)
            return err.exit_code
        print(f"error: {_rank_prefix()}{type(err).__name__}: {err}", file=sys.stderr)
        if not args.debug:
            print("  hint: rerun with --debug for the full traceback", file=sys.stderr)
        return 1


def _os_error(err, args):
    """The OutputError of an OSError no slimkit code named: its file, or the command's output folder."""
    from ..core.files import write_error

    where = err.filename or getattr(args, "out", None) or getattr(args, "to", None) or getattr(args, "folder", None)
    if where is None and getattr(args, "command", None) == "run":
        where = Path("runs") / Path(args.config).stem
    return write_error(f"{where}" if where else "a file", err)


def _rank_prefix():
    """`rank R of N: ` in a data-parallel run, so the failing process is named; empty otherwise."""
    from ..core.parallel import label

    return f"{label()}: " if label() else ""


def _dispatch(args):
    if args.command == "models":
        from ..models.zoo import available_models

        for name, desc in available_models().items():
            print(f"{name:24s} {desc}")
        return 0
    if args.command == "bench":
        return _bench(args)
    if args.command == "report":
        return _report(args)
    if args.command == "export":
        from .ship import export_run

        for path in export_run(args.folder, args.to, args.stage, args.format):
            print(path)
        return 0
    if args.command == "check":
        return _check(args)
    return _run(args)


def _run(args):
    """Run a config; native library output stays in `run.log` in the run folder, off the console."""
    from ..core.parallel import is_main
    from ..report.console import captured_console
    from .config import build_pipeline
    from .config import load_config_all
    from .rundir import append_log

    config = load_config_all(args.config, args.overrides)
    if args.quiet:
        config.train.progress = False
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    if args.nproc is not None and _processes(args) > 1:
        return _launch(args, out)
    log = pipeline = None
    try:
        with captured_console(args.debug, f"slimkit run {args.config}") as log:
            pipeline = build_pipeline(config, out, verbose=not args.quiet)
            reports = pipeline.run(resume=args.resume, overwrite=args.overwrite)
            if is_main():
                _finished(args, reports, out)
    finally:
        if log is not None and is_main():  # rank 0 writes the run's files
            append_log(out, log(), getattr(pipeline, "run_id", None))
    return 0


def _finished(args, reports, out):
    from ..report.rows import ConsoleTable, metric_names

    if args.quiet:  # only the final table
        table = ConsoleTable(metric_names=metric_names(reports))
        table.header()
        for report in reports:
            table.row(report)
    else:
        print(f"\nreports: {out / 'report.json'}  {out / 'report.md'}  log: {out / 'run.log'}")


def _processes(args):
    """`--nproc`, checked: at least 1, and not inside processes paddle.distributed.launch started already."""
    from ..core.errors import ConfigError
    from ..core.parallel import launched_world_size

    if args.nproc < 1:
        raise ConfigError("--nproc", f"{args.nproc} processes", "give --nproc 1 or more")
    if args.nproc > 1 and launched_world_size() > 1:
        raise ConfigError("--nproc", "this process was started by paddle.distributed.launch already",
                          "drop --nproc: the launcher's --nproc_per_node sets the processes")
    return args.nproc


def _launch(args, out):
    """Start the run on `--nproc` processes (slimkit.run.launcher); the config was checked already.

    Everything else `run` checks before work (model, stage order, output folder) rank 0
    checks first thing, and its error ends every rank with the same exit code.
    """
    from .launcher import run_launched
    from .lock import RunLock

    argv = ["run", args.config, "--out", str(out), *[f"--set={item}" for item in args.overrides]]
    argv += [flag for flag, on in (("--resume", args.resume), ("--overwrite", args.overwrite), ("--quiet", args.quiet),
                                   ("--debug", args.debug)) if on]
    with RunLock(out) as lock:  # held here for the whole run: the ranks are told, and run inside it
        return run_launched(args.nproc, argv, out, echo_all=args.debug, env=lock.environment())


def _bench(args):
    from ..deploy.stage_latency import FLOAT_EXPORT_DIR
    from ..models.checkpoint import INFERENCE_DIR
    from ..report.rows import ConsoleTable, ReportConfig, metric_names
    from .bench import bench_run
    from .lock import RunLock
    from .rundir import verify_run

    cfg = ReportConfig.from_dict({"latency_runs": args.runs, "latency_warmup": args.warmup,
                                  "latency_rounds": args.rounds, "latency_ci_width": args.width,
                                  "latency_budget_s": args.budget, "latency_clock": args.clock,
                                  "threads": args.threads,
                                  **({} if args.drift is None else {"latency_drift": args.drift})}, "bench")
    verify_run(args.folder, only=(f"{INFERENCE_DIR}/", f"{FLOAT_EXPORT_DIR}/"))  # what is timed is what ran
    with RunLock(args.folder):  # it rewrites the run's reports: not while a run works there
        reports = bench_run(args.folder, cfg, device=args.device)
    table = ConsoleTable(metric_names=metric_names(reports))
    table.header()
    for r in reports:
        table.row(r)
    print("\nlatency vs baseline, timed in the same rounds (95 % interval): " + ", ".join(
        f"{r.stage} {_ratio_text(r)}" for r in reports[1:]))
    print(f"latency: {r.latency_method}")
    return 0


def _ratio_text(report):
    ratio = report.extra.get("latency_vs_baseline")
    return f"{ratio['value']:.3f}x ({ratio['low']:.3f}-{ratio['high']:.3f})" if ratio else "-"


def _report(args):
    """Print a run folder's table (or report.md); an interrupted run is marked with the stages it lacks."""
    from ..report.rows import ConsoleTable, metric_names, read_reports
    from .rundir import missing_stages

    folder = Path(args.folder)
    reports = read_reports(folder)
    if args.markdown:
        print((folder / "report.md").read_text() if (folder / "report.md").is_file() else "")
    else:
        table = ConsoleTable(metric_names=metric_names(reports))
        table.header()
        for r in reports:
            table.row(r)
    missing = missing_stages(folder, [r.stage for r in reports])
    if missing:
        print(f"\nincomplete run: {len(missing)} stage(s) not finished: {', '.join(missing)} "
              f"(rerun `slimkit run <config> --out {folder} --resume` to finish)")
    return 0


def _check(args):
    """Every check `run` makes before work, for each file; one verdict line (or the problems) per file."""
    from ..core.errors import SlimkitError
    from ..report.console import captured_console
    from .config import build_pipeline
    from .config import load_config_all
    from .preflight import check_pipeline

    worst = 0
    for path in args.config:
        try:
            config = load_config_all(path, args.overrides)
            out = Path(args.out) if args.out else Path("runs") / Path(path).stem
            with captured_console(debug=args.debug):  # tracing prints native lines; they are not the verdict
                check_pipeline(build_pipeline(config, out, verbose=False))
        except SlimkitError as err:
            if args.debug:
                traceback.print_exc()
            print(f"{path}: error: {err.message}", file=sys.stderr)
            if err.hint:
                print(f"  hint: {err.hint}", file=sys.stderr)
            worst = max(worst, err.exit_code)
            continue
        print(f"{path}: ok ({len(config.stages)} stages: {', '.join(s.display_name for s in config.stages)})")
    return worst


if __name__ == "__main__":
    sys.exit(main())
