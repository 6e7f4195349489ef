"""The console table fits 100 columns (or a narrower terminal), its columns are data-driven, and
`slimkit report` marks an interrupted run with the stages it lacks."""

import dataclasses
import io

import pytest

import slimkit
from slimkit import Finetune, Pipeline, SparsePruning
from slimkit.report.rows import (COLUMNS, Column, ConsoleTable, Note, StageReport, add_column, compact, compact_bytes,
                                 to_markdown)
from slimkit.run.cli import main


def big_report(stage, scale=1.0):
    return StageReport(stage=stage, strategy="filter_pruning", flops=int(4_123_456_789 * scale),
                       params=int(25_557_032 * scale), top1=0.7613, top5=0.9286, size_bytes=int(102_400_000 * scale),
                       latency_ms=123.456 * scale, seconds=4567.8, sparsity=0.5, notes=["x" * 250])


def printed(width=None, reports=()):
    stream = io.StringIO()
    table = ConsoleTable(stream, width=width)
    table.header()
    for r in reports:
        table.row(r)
    return stream.getvalue().splitlines()


def test_table_of_large_numbers_fits_100_columns():
    lines = printed(reports=[big_report("baseline"), big_report("a-very-long-stage-name-indeed", 0.5)])
    assert max(map(len, lines)) <= 100, lines
    header = lines[0]
    for title in ("stage", "FLOPs", "params", "top-1 %", "size", "latency ms", "zeros %"):
        assert title in header
    row = next(line for line in lines if line.startswith("a-very-long-s~"))
    assert "2.06G 0.50x" in row and "12.8M 0.50x" in row and "76.13" in row and "50.0" in row


def test_narrow_terminal_drops_low_priority_columns():
    lines = printed(60, [big_report("baseline")])
    assert max(map(len, lines)) <= 60
    assert "top-1 %" in lines[0] and "FLOPs" in lines[0] and "time s" not in lines[0]


def test_added_column_is_shown_and_the_table_still_fits():
    column = add_column(Column("deployed_ms", "deployed ms", 11, 65, lambda r: r.extra.get("deployed_ms"),
                               "{:.3g}".format, ratio=True), before="seconds")
    try:
        report = big_report("baseline")
        report.extra["deployed_ms"] = 9.5
        lines = printed(reports=[report])
        assert "deployed ms" in lines[0] and "9.5" in lines[2] and max(map(len, lines)) <= 100
        assert "| deployed ms |" in to_markdown([report])
    finally:
        COLUMNS.remove(column)


def test_compact_units():
    assert [compact(n) for n in (999, 645_376, 1_234_567, 4_123_456_789)] == ["999", "645K", "1.23M", "4.12G"]
    assert [compact_bytes(n) for n in (512, 233_779, 3 * 1024 ** 2)] == ["512B", "228K", "3M"]


def test_markdown_keeps_every_column_exact():
    markdown = to_markdown([big_report("baseline"), big_report("b", 0.5)])
    assert "4,123,456,789" in markdown and "(0.50x)" in markdown and "| zeros % |" in markdown


def test_sparsity_is_visible_in_every_row(digits, tmp_path):
    model = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)
    stages = [SparsePruning(sparsity=0.6, epochs=0, strip=False), Finetune(epochs=1, name="after")]
    reports = Pipeline(model, digits, stages, out_dir=tmp_path, verbose=False,
                       train={"progress": False, "max_steps_per_epoch": 3},
                       report={"latency_runs": 2, "latency_warmup": 0}).run()
    assert reports[0].sparsity == pytest.approx(0.0, abs=1e-3)
    # every conv/linear weight is masked: the finetune row shows the same zeros, not a refilled model
    assert reports[1].sparsity == pytest.approx(0.6, abs=0.01)
    assert reports[2].sparsity == pytest.approx(reports[1].sparsity, abs=1e-6)


@dataclasses.dataclass
class Interrupt(Finetune, type_name="interrupt_for_report_tests"):
    def apply(self, model, ctx):
        raise KeyboardInterrupt


def test_report_marks_an_incomplete_run(digits, tmp_path, capsys):
    model = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)
    stages = [Finetune(epochs=1, name="a"), Interrupt(name="b"), Finetune(epochs=1, name="c")]
    with pytest.raises(KeyboardInterrupt):
        Pipeline(model, digits, stages, out_dir=tmp_path, verbose=False,
                 train={"progress": False, "max_steps_per_epoch": 2},
                 report={"latency_runs": 2, "latency_warmup": 0}).run()
    assert main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "incomplete run: 2 stage(s) not finished: b, c" in out and "--resume" in out


def test_notes_read_as_their_text_but_differ_by_stage_and_kind():
    slower = Note("int8 is slower", "qat", "slower")
    assert slower == "int8 is slower" and "int8 is slower" in [slower]
    assert slower == Note("int8 is slower", "qat", "slower")
    assert slower != Note("int8 is slower", "qat", "info") and slower != Note("int8 is slower", "ptq", "slower")
    assert len({slower, Note("int8 is slower", "qat", "slower")}) == 1
    assert Note.from_value(slower.to_dict()) == slower
