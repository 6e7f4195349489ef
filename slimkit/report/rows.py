"""Stage reports: what was measured after each stage, as a console table, JSON and Markdown."""

import dataclasses
import json
import platform
import sys
import textwrap
from pathlib import Path
from typing import Callable, Literal, Optional

from ..core.schema import Options, option
from ..core.files import atomic_write_text, read_json
from .timing import DRIFT

REPORT = "report.json"


@dataclasses.dataclass
class ReportConfig(Options):
    """How stages are measured (config block `report`)."""

    latency_warmup: int = option(10, "forward passes before timing", ge=0)
    latency_runs: int = option(20, "timed runs of every model before the latency intervals are first judged (more "
                                   "rounds follow until they are narrow enough)", ge=1)
    latency_batch: int = option(1, "batch size of the latency measurement", ge=1)
    runtime: Literal["paddle_inference", "eager"] = option(
        "paddle_inference", "what `latency_ms` times: the stage's Paddle Inference export in the predictor "
                            "on the run's `device` (oneDNN on the CPU), or the eager (dygraph) forward")
    threads: int = option(1, "CPU math threads of the Paddle Inference predictor", ge=1)
    tensorrt: bool = option(False, "run the GPU predictor through TensorRT (int8 for int8 exports); needs "
                                   "device: gpu and a Paddle compiled with TensorRT")
    latency_rounds: int = option(20, "round-robin rounds latency_runs are split over (every model's turn in a round: "
                                     "one untimed run, then latency_runs / latency_rounds timed ones); many short "
                                     "rounds give the most precise ratios between models", ge=1)
    latency_ci_width: float = option(0.04, "time until the 95 % interval of every latency, and of every ratio between "
                                           "two stages' latencies, is narrower than this fraction of its value",
                                     gt=0, lt=1)
    latency_drift: float = option(DRIFT, "how far a latency ratio moves between two runs of the same comparison on "
                                         "this machine, beyond one run's rounds: every reported ratio's interval "
                                         "is widened by it, and the latency target judges that interval (measured "
                                         "on a shared 2-core VM: docs/benchmarks.md); 0 = one run's rounds only",
                                  ge=0, lt=1)
    latency_budget_s: float = option(60.0, "seconds one latency measurement may take to narrow its intervals; when "
                                           "they run out, the report says how noisy the figures are", gt=0)
    latency_clock: Literal["auto", "cpu", "wall"] = option(
        "auto", "what a run's latency is read on: the process's CPU time (leaves out the time other work held the "
                "core; a one-thread run's wall time on an idle core), or the wall clock; auto = cpu for the "
                "one-thread CPU predictor, wall for several threads, a GPU and the eager forward")
    eval_split: str = option("test", "split whose accuracy is reported: test or val")

    def check(self):
        if self.eval_split not in ("test", "val"):
            from ..core.errors import ConfigError

            raise ConfigError("eval_split", f"{self.eval_split!r} is not a split", "use test or val")


class Note(str):
    """One note of a stage report: its text, plus the stage it belongs to and a `kind` to select it by.

    A note reads as its message (so it prints and joins like text); code that needs to
    pick notes out (e.g. replace the FLOPs note of a quantized stage) selects by `kind`,
    never by matching the text. Kinds used: info, skipped, target, flops_zero_types, export, export_failed, onnx,
    slower, noisy, int8_speed, float_fallback.
    """

    def __new__(cls, message, stage="", kind="info"):
        note = super().__new__(cls, message)
        note.stage, note.kind = stage, kind
        return note

    @property
    def message(self):
        return str(self)

    def __eq__(self, other):
        # Equal to its text; to another note only with the same stage and kind (a `slower` note is not an `info`).
        if isinstance(other, Note):
            return str.__eq__(self, other) and (self.stage, self.kind) == (other.stage, other.kind)
        return str.__eq__(self, other)

    def __ne__(self, other):
        return not self == other

    __hash__ = str.__hash__

    def to_dict(self):
        return {"stage": self.stage, "kind": self.kind, "message": self.message}

    @classmethod
    def from_value(cls, value, stage=""):
        """A Note from a saved dict, a Note, or plain text (reports written before notes had kinds)."""
        if isinstance(value, Note):
            return value
        if isinstance(value, dict):
            return cls(value["message"], value.get("stage", stage), value.get("kind", "info"))
        return cls(str(value), stage)


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
    sparsity: Optional[float] = None  # share of zero weights in conv/linear weights
    notes: list = dataclasses.field(default_factory=list)
    extra: dict = dataclasses.field(default_factory=dict)
    metrics: dict = dataclasses.field(default_factory=dict)  # the task's metric values, primary first

    def __post_init__(self):
        self.notes = [Note.from_value(n, self.stage) for n in self.notes]

    def to_dict(self):
        out = dataclasses.asdict(dataclasses.replace(self, notes=[]))
        out["notes"] = [Note.from_value(n, self.stage).to_dict() for n in self.notes]
        return out

    @classmethod
    def from_dict(cls, data):
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def add_note(self, message, kind="info"):
        self.notes.append(Note(message, self.stage, kind))

    def drop_notes(self, kind):
        """Remove the notes of one kind (a stage's `measure` replacing what the default measurement said)."""
        self.notes = [n for n in self.notes if n.kind != kind]


@dataclasses.dataclass
class Column:
    """One column of the console table and report.md, drawn from a StageReport.

    `value(report)` gives the number (None shows as `-`); `text(value)` the compact console
    form, `exact(value)` the report.md form. `ratio` adds `0.52x` against the baseline.
    Columns that do not fit the console width are left out lowest `priority` first (they
    stay in report.md and report.json). Other modules add theirs with `add_column`.
    """

    key: str
    title: str
    width: int
    priority: int
    value: Callable
    text: Callable = str
    exact: Optional[Callable] = None
    ratio: bool = False
    ratio_interval: Optional[Callable] = None  # report -> {value, low, high} of its measured ratio to the baseline

    def cell(self, report, baseline=None, exact=False):
        value = self.value(report)
        if value is None:
            return "-"
        text = (self.exact or self.text)(value) if exact else self.text(value)
        base = self.value(baseline) if baseline is not None else None
        measured = self.ratio_interval(report) if self.ratio_interval and base else None
        if measured:  # the ratio timed in the same rounds as the baseline, with its interval
            text += (f" ({measured['value']:.2f}x, {measured['low']:.2f}-{measured['high']:.2f})" if exact
                     else f" {measured['value']:.2f}x")
        elif self.ratio and base:
            text += f" ({value / base:.2f}x)" if exact else f" {value / base:.2f}x"
        return text


def _attr(name):
    return lambda report: getattr(report, name, None)


def compact(n):
    """645376 -> 645K, 1234567 -> 1.23M: short enough for a 100-column table."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            scaled = n / size
            return f"{scaled:.3g}{unit}" if scaled < 100 else f"{scaled:.0f}{unit}"
    return f"{n:.0f}"


def _percent(v):
    return f"{100 * v:.2f}"


COLUMNS = [
    Column("stage", "stage", 14, 100, _attr("stage")),
    Column("strategy", "strategy", 14, 40, _attr("strategy")),
    Column("flops", "FLOPs", 11, 90, _attr("flops"), compact, "{:,}".format, ratio=True),
    Column("params", "params", 11, 80, _attr("params"), compact, "{:,}".format, ratio=True),
    Column("top1", "top-1 %", 7, 95, _attr("top1"), _percent),
    Column("top5", "top-5 %", 7, 30, _attr("top5"), _percent),
    Column("size_bytes", "size", 11, 70, _attr("size_bytes"), lambda v: compact_bytes(v), lambda v: human_bytes(v),
           ratio=True),
    Column("latency_ms", "latency ms", 11, 60, _attr("latency_ms"), "{:.3g}".format, "{:.3f}".format, ratio=True,
           ratio_interval=lambda report: report.extra.get("latency_vs_baseline")),
    Column("sparsity", "zeros %", 7, 50, _attr("sparsity"), lambda v: f"{100 * v:.1f}", lambda v: f"{100 * v:.2f}"),
    Column("seconds", "time s", 6, 20, _attr("seconds"), "{:.0f}".format, "{:.1f}".format),
]


def add_column(column, before=None):
    """Add a Column to every table (before the column keyed `before`, or last); replaces one of the same key."""
    COLUMNS[:] = [c for c in COLUMNS if c.key != column.key]
    keys = [c.key for c in COLUMNS]
    COLUMNS.insert(keys.index(before) if before in keys else len(COLUMNS), column)
    return column


def fitting_columns(width, columns=None):
    """The columns that fit in `width` characters (2-space gaps), dropping the lowest priority first."""
    chosen = list(columns if columns is not None else COLUMNS)
    while len(chosen) > 1 and sum(c.width for c in chosen) + 2 * (len(chosen) - 1) > width:
        chosen.remove(min(chosen, key=lambda c: c.priority))
    return chosen


# Column titles of known metrics; a user metric's column is titled with its own name.
METRIC_TITLES = {"top1": "top-1 %", "top5": "top-5 %", "miou": "mIoU %", "pixel_acc": "pixel acc %",
                 "top1_agreement": "top-1 agree %", "pixel_agreement": "pixel agree %"}
PERCENT_METRICS = {"top1", "top5", "miou", "pixel_acc", "top1_agreement", "pixel_agreement"}


def _metric_value(name):
    return lambda report: getattr(report, "metrics", {}).get(name, getattr(report, name, None))


def metric_column(name, priority):
    """The accuracy column of metric `name`, titled after it (a percentage for the built-in ones)."""
    title = METRIC_TITLES.get(name, name)
    text = _percent if name in PERCENT_METRICS else "{:.4f}".format
    return Column(name, title, max(7, len(title)), priority, _metric_value(name), text)


def columns(metric_names=("top1", "top5")):
    """COLUMNS with the accuracy columns named after the task's metrics (the first one kept first)."""
    out, metrics = [], [metric_column(n, 95 if i == 0 else 30) for i, n in enumerate(metric_names)]
    for c in COLUMNS:
        if c.key in ("top1", "top5"):
            out += metrics if c.key == "top1" else []
        else:
            out.append(c)
    return out


def metric_names(reports):
    """The metric columns of a run: those of its first report, top-1/top-5 when it has none."""
    return tuple(reports[0].metrics) if reports and reports[0].metrics else ("top1", "top5")


def human_bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def compact_bytes(n):
    """233,779 bytes -> 228K (binary units, one letter, three digits)."""
    for unit in ("B", "K", "M", "G"):
        if n < 1000 or unit == "G":
            return f"{n:.3g}{unit}" if n < 100 else f"{n:.0f}{unit}"
        n /= 1024


MAX_WIDTH = 100


def table_width(stream):
    """100 columns, or the terminal's width when it is narrower."""
    import shutil

    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        return min(MAX_WIDTH, shutil.get_terminal_size((MAX_WIDTH, 24)).columns)
    return MAX_WIDTH


class ConsoleTable:
    """Prints one row per stage as stages finish, with ratios to the baseline row, within 100 columns."""

    def __init__(self, stream=None, width=None, metric_names=("top1", "top5")):
        """`metric_names`: the accuracy columns; None = those of the first row (a user metric)."""
        self.stream = stream or sys.stdout
        self.baseline = None
        self.width = width or table_width(self.stream)
        self._set_columns(metric_names)
        self._header_due = False

    def _set_columns(self, metric_names):
        self.columns = fitting_columns(self.width, columns(metric_names)) if metric_names is not None else None

    def header(self):
        if self.columns is None:  # printed with the first row, once its metrics are known
            self._header_due = True
            return
        self._line([c.title for c in self.columns])
        self._line(["-" * c.width for c in self.columns])

    def row(self, report, notes=True):
        """Print `report`'s row (and its notes, unless `notes` is False)."""
        if self.columns is None:
            self._set_columns(metric_names([report]))
            if self._header_due:
                self.header()
        if self.baseline is None:
            self.baseline = report
        base = None if report is self.baseline else self.baseline
        self._line([c.cell(report, base) for c in self.columns])
        for note in report.notes if notes else ():
            self.note(note)
        self.stream.flush()

    def note(self, text):
        """A note under the table, wrapped to the table's width."""
        print(textwrap.fill(str(text), self.width, initial_indent="    note: ", subsequent_indent="          "),
              file=self.stream)

    def _line(self, cells):
        fitted = [_fit(str(text), c.width) for text, c in zip(cells, self.columns)]
        print("  ".join(t.ljust(c.width) for t, c in zip(fitted, self.columns)).rstrip(), file=self.stream)


def _fit(text, width):
    return text if len(text) <= width else text[:width - 1] + "~"


def to_markdown(reports, title="slimkit report", device=None):
    """report.md: the table, how it was measured and the notes; `device` (a description) heads it."""
    cols = columns(metric_names(reports))
    lines = [f"# {title}", "", *([f"Device: {device}.", ""] if device else []),
             "| " + " | ".join(c.title for c in cols) + " |", "|" + "---|" * len(cols)]
    for r in reports:
        base = reports[0] if r is not reports[0] else None
        lines.append("| " + " | ".join(c.cell(r, base, exact=True) for c in cols) + " |")
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

    from ..core.cpu import cpu_features

    return {"python": platform.python_version(), "paddle": paddle.__version__, "numpy": numpy.__version__,
            "machine": platform.machine(), "system": platform.system(), "cpu_features": cpu_features()}


def write_reports(reports, folder, extra=None):
    """Write report.json and report.md into `folder`; returns their paths.

    `extra` goes into report.json as it is; its `device` record (`slimkit.core.device.record`) also heads report.md.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"stages": [r.to_dict() for r in reports], "environment": environment(), **(extra or {})}
    atomic_write_text(folder / REPORT, json.dumps(payload, indent=2))
    device = (payload.get("device") or {}).get("name")
    atomic_write_text(folder / "report.md", to_markdown(reports, device=device))
    return folder / REPORT, folder / "report.md"


def read_report_file(folder):
    """The report.json of a run folder as written; SlimkitError when missing, CorruptFileError when damaged."""
    from ..core.errors import CorruptFileError, SlimkitError

    path = Path(folder) / REPORT
    if not path.is_file():
        raise SlimkitError(f"no {REPORT} in {folder}", "run a pipeline with --out pointing there first")
    fix = f"delete it and rerun the run with --resume: {REPORT} is written again from the stage records"
    payload = read_json(path, fix)
    if not (isinstance(payload, dict) and isinstance(payload.get("stages"), list)):
        raise CorruptFileError(f"{path} is damaged: not a slimkit report", fix)
    return payload


def read_reports(folder):
    """The stage reports of a finished run folder (its report.json)."""
    return [StageReport.from_dict(d) for d in read_report_file(folder)["stages"]]


def print_retimed(reports):
    """Print the rows again with the latency all stages' exports got timed interleaved, and their slower notes."""
    print("\nlatency re-timed with all stages' exports interleaved (as in report.md):")
    final = ConsoleTable(metric_names=metric_names(reports))
    final.header()
    for report in reports:
        final.row(report, notes=False)
    for note in (n for r in reports for n in r.notes if getattr(n, "kind", "") in ("slower", "noisy")):
        final.note(note)
