"""`slimkit bench`: time a finished run's stages again, interleaved, and rewrite its report."""

from pathlib import Path

from ..core import device as devices
from ..core.errors import SlimkitError
from ..deploy.stage_latency import exported, retime_interleaved
from ..report.rows import StageReport, read_report_file, write_reports
from .rundir import folder_names


def bench_run(run_dir, cfg, clock=None, device=None):
    """Re-measure a finished run's stages interleaved (`slimkit bench`); rewrites its report; returns the rows.

    `device`: where to time them; default: the device the run used (its report's `device` record).
    """
    run_dir = Path(run_dir)
    payload = read_report_file(run_dir)
    reports = [StageReport.from_dict(d) for d in payload["stages"]]
    shape = (payload.get("config") or {}).get("input_shape")
    folders = [run_dir / name for name in folder_names(r.stage for r in reports[1:])]
    missing = [str(f) for f in folders if exported(f) is None]
    if not shape or missing:
        raise SlimkitError(f"{run_dir} has no Paddle Inference model in {', '.join(missing) or 'its config'}",
                           "run the pipeline again with this slimkit version (every stage folder then holds "
                           "inference/model.pdmodel)")
    with devices.using(device or (payload.get("device") or {}).get("used", "auto")):
        retime_interleaved(reports, folders, cfg, [cfg.latency_batch, *shape[1:]], clock=clock)
    write_reports(reports, run_dir, {k: v for k, v in payload.items() if k not in ("stages", "environment")})
    return reports
