"""Stage reports: what was measured after each stage, as a console table, JSON and Markdown."""

import dataclasses
import json
import platform
import sys
from pathlib import Path
from typing import Optional

from .schema import Options, option


@dataclasses.dataclass
class ReportConfig(Options):
    """How stages are measured (config block `report`)."""

    latency_warmup: int = option(10, "forward passes before timing", ge=0)
    latency_runs: int = option(50, "timed forward passes (the median is reported)", ge=1)
    latency_batch: int = option(1, "batch size of the latency measurement", ge=1)
    eval_split: str = option("test", "split whose accuracy is reported: test or val")

    def check(self):
        if self.eval_split not in ("test", "val"):
            from .errors import ConfigError

            raise ConfigError("eval_split", f"{self.eval_split!r} is not a split", "use test or val")


@dataclasses.dataclass
class StageReport:
    """Everything measured on the model after one stage (the first row is the baseline)."""

    stage: str
    strategy: str
    flops: int
    params: int
    top1: Optional[float]  # classification; other tasks leave these None and fill `metrics`
    top5: Optional[float]
    size_bytes: int
    latency_ms: float
    seconds: float
    latency_method: str = ""
    notes: list = dataclasses.field(default_factory=list)
    extra: dict = dataclasses.field(default_factory=dict)
    metrics: dict = dataclasses.field(default_factory=dict)  # the task's metric values, primary first

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data):
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


COLUMNS = [("stage", "stage", "{}"), ("strategy", "strategy", "{}"), ("flops", "FLOPs", "{:,}"),
           ("params", "params", "{:,}"), ("top1", "top-1 %", "{:.2%}"), ("top5", "top-5 %", "{:.2%}"),
           ("size_bytes", "size", None), ("latency_ms", "latency ms", "{:.3f}"), ("seconds", "time s", "{:.1f}")]


# Column titles of known metrics; a user metric's column is titled with its own name.
METRIC_TITLES = {"top1": "top-1 %", "top5": "top-5 %", "miou": "mIoU %", "pixel_acc": "pixel acc %"}
PERCENT_METRICS = {"top1", "top5", "miou", "pixel_acc"}


def columns(metric_names=("top1", "top5")):
    """COLUMNS with the accuracy columns named after the task's metrics."""
    metric_cols = [(name, METRIC_TITLES.get(name, name), "{:.2%}" if name in PERCENT_METRICS else "{:.4f}")
                   for name in metric_names]
    return [c for c in COLUMNS if c[0] not in ("top1", "top5")][:4] + metric_cols + COLUMNS[6:]


def metric_names(reports):
    """The metric columns of a run: those of its first report, top-1/top-5 when it has none."""
    return tuple(reports[0].metrics) if reports and reports[0].metrics else ("top1", "top5")


def _cell(report, key, fmt, baseline=None):
    value = getattr(report, key) if hasattr(report, key) else report.metrics.get(key)
    if value is None:
        return "-"
    if key == "size_bytes":
        text = human_bytes(value)
    else:
        text = fmt.format(value).replace("%", "") if key in PERCENT_METRICS else fmt.format(value)
    if baseline is not None and key in ("flops", "params", "size_bytes", "latency_ms") and getattr(baseline, key):
        text += f" ({value / getattr(baseline, key):.2f}x)"
    return text


def human_bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


class ConsoleTable:
    """Prints one row per stage as stages finish, with ratios to the baseline row."""

    def __init__(self, stream=None, metric_names=("top1", "top5")):
        """`metric_names`: the accuracy columns; None = those of the first row (a user metric)."""
        self.stream = stream or sys.stdout
        self.baseline = None
        self._set_columns(metric_names)
        self._header_due = False

    def _set_columns(self, metric_names):
        self.columns = columns(metric_names) if metric_names is not None else None
        if self.columns:
            self.widths = [16, 14, 22, 20] + [max(8, len(t)) for _, t, _ in self.columns[4:-3]] + [18, 18, 7]

    def header(self):
        if self.columns is None:  # printed with the first row, once its metrics are known
            self._header_due = True
            return
        self._line([title for _, title, _ in self.columns])
        self._line(["-" * w for w in self.widths])

    def row(self, report):
        if self.columns is None:
            self._set_columns(metric_names([report]))
            if self._header_due:
                self.header()
        if self.baseline is None:
            self.baseline = report
        base = None if report is self.baseline else self.baseline
        self._line([_cell(report, key, fmt, base) for key, _, fmt in self.columns])
        for note in report.notes:
            print(f"    note: {note}", file=self.stream)
        self.stream.flush()

    def _line(self, cells):
        print("  ".join(str(c).ljust(w) for c, w in zip(cells, self.widths)).rstrip(), file=self.stream)


def to_markdown(reports, title="slimkit report"):
    cols = columns(metric_names(reports))
    lines = [f"# {title}", "", "| " + " | ".join(t for _, t, _ in cols) + " |",
             "|" + "---|" * len(cols)]
    for r in reports:
        lines.append("| " + " | ".join(_cell(r, k, f, reports[0] if r is not reports[0] else None)
                                       for k, _, f in cols) + " |")
    if reports:
        lines += ["", f"FLOPs: multiply-accumulates counted by `paddle.flops`. params: elements of every "
                      f"parameter. size: saved parameters on disk. latency: {reports[0].latency_method}."]
    notes = [(r.stage, n) for r in reports for n in r.notes]
    if notes:
        lines += ["", "## Notes", ""] + [f"- **{stage}**: {note}" for stage, note in notes]
    return "\n".join(lines) + "\n"


def environment():
    import numpy
    import paddle

    return {"python": platform.python_version(), "paddle": paddle.__version__, "numpy": numpy.__version__,
            "machine": platform.machine(), "system": platform.system()}


def write_reports(reports, folder, extra=None):
    """Write report.json and report.md into `folder`; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"stages": [r.to_dict() for r in reports], "environment": environment(), **(extra or {})}
    (folder / "report.json").write_text(json.dumps(payload, indent=2))
    (folder / "report.md").write_text(to_markdown(reports))
    return folder / "report.json", folder / "report.md"


def read_reports(folder):
    """The stage reports of a finished run folder (its report.json)."""
    path = Path(folder) / "report.json"
    if not path.is_file():
        from .errors import SlimkitError

        raise SlimkitError(f"no report.json in {folder}", "run a pipeline with --out pointing there first")
    return [StageReport.from_dict(d) for d in json.loads(path.read_text())["stages"]]
