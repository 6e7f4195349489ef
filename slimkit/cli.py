"""The `slimkit` command: run a YAML pipeline, re-print a report, list models.

Exit codes: 0 ok, 2 bad config or input, 1 failure, 130 interrupted.
"""

import argparse
import sys
import traceback
from pathlib import Path


def _parser():
    from ._version import __version__

    parser = argparse.ArgumentParser(prog="slimkit", description="Compress PaddlePaddle models and measure the result.")
    parser.add_argument("--version", action="version", version=f"slimkit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a pipeline from a YAML config")
    run.add_argument("config", help="YAML file, e.g. configs/quickstart.yaml")
    run.add_argument("--out", help="output folder (default: runs/<config name>)")
    run.add_argument("--resume", action="store_true", help="restore finished stages from --out instead of rerunning")
    run.add_argument("--quiet", action="store_true", help="no progress bars")

    check = sub.add_parser("check", help="validate a config without running it")
    check.add_argument("config")

    report = sub.add_parser("report", help="print the report of a finished run folder")
    report.add_argument("folder")
    report.add_argument("--markdown", action="store_true", help="print report.md instead of the table")

    sub.add_parser("models", help="list the models known by name")
    for p in (run, check, report):
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks")
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args) or 0
    except KeyboardInterrupt:
        print("\ninterrupted: finished stages are saved; rerun with --resume to continue", file=sys.stderr)
        return 130
    except Exception as err:  # every failure ends as one readable line; --debug shows the rest
        from .errors import SlimkitError

        if args.debug:
            traceback.print_exc()
        if isinstance(err, SlimkitError):
            print(f"error: {err.message}", file=sys.stderr)
            if err.hint:
                print(f"  hint: {err.hint}", file=sys.stderr)
            return err.exit_code
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        if not args.debug:
            print("  hint: rerun with --debug for the full traceback", file=sys.stderr)
        return 1


def _dispatch(args):
    if args.command == "models":
        from .models import available_models

        for name, desc in available_models().items():
            print(f"{name:24s} {desc}")
        return 0
    if args.command == "report":
        from .report import ConsoleTable, metric_names, read_reports

        folder = Path(args.folder)
        if args.markdown:
            print((folder / "report.md").read_text() if (folder / "report.md").is_file() else "")
            return 0
        reports = read_reports(folder)
        table = ConsoleTable(metric_names=metric_names(reports))
        table.header()
        for r in reports:
            table.row(r)
        return 0

    from .config import build_pipeline, load_config

    config = load_config(args.config)
    if args.command == "check":
        print(f"{args.config}: ok ({len(config.stages)} stages: "
              f"{', '.join(s.display_name for s in config.stages)})")
        return 0
    if args.quiet:
        config.train.progress = False
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    pipeline = build_pipeline(config, out)
    pipeline.run(resume=args.resume)
    print(f"\nreports: {out / 'report.json'}  {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
