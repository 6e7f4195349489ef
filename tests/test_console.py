"""Clean output: native Paddle lines stay off the console (kept in run.log), the table fits 100 columns,
`--quiet` prints only the final table."""

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

from slimkit.report.console import captured_console
from slimkit.run.cli import main

ROOT = Path(__file__).resolve().parents[1]
# Lines slimkit itself prints during a run: the table, its notes, the closing line.
OWN_LINE = re.compile(r"^(stage |-{6}|(baseline|train|qat) |    note: |          \S|reports: |  \S+ epoch \d+/\d+: |"
                      r"latency re-timed |$)")
FOREIGN = re.compile(r"^[IWEF]\d{4} |New Executor|PIR not support|UserWarning|distutils|Traceback")


def test_native_output_goes_to_the_log_not_the_console(capfd):
    with captured_console(title="slimkit test") as log:
        print("slimkit line")
        os.write(1, b"I1201 native info line\n")
        os.write(2, b"W1201 native warning line\n")
        warnings.warn("a library's warning", stacklevel=1)
    out, err = capfd.readouterr()
    assert out == "slimkit line\n" and err == ""
    text = log()
    assert text.startswith("--- slimkit test")
    for line in ("slimkit line", "I1201 native info line", "W1201 native warning line", "a library's warning"):
        assert line in text


def test_debug_leaves_native_output_on_the_console(capfd):
    with captured_console(debug=True):
        os.write(2, b"W1201 native warning line\n")
    assert "W1201 native warning line" in capfd.readouterr().err


def test_quiet_prints_only_the_final_table(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text("data: {name: digits}\nmodel: {name: small_cnn}\n"
                      "train: {epochs: 1, max_steps_per_epoch: 2}\nreport: {latency_runs: 2, latency_warmup: 0}\n"
                      "stages:\n  - {type: finetune, name: train}\n")
    assert main(["run", str(config), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("stage ") and lines[1].startswith("-----")
    assert [line.split()[0] for line in lines[2:] if not line.startswith(" ")] == ["baseline", "train"]
    assert not any(line.startswith("reports:") for line in lines)
    log = (tmp_path / "out" / "run.log").read_text()
    assert "baseline" in log and "train" in log


def test_digits_qat_prints_a_clean_table(tmp_path):
    """The QAT run, whose export makes Paddle print native lines, as a user runs it: stdout and stderr."""
    out = tmp_path / "qat"
    result = subprocess.run([sys.executable, "-m", "slimkit", "run", str(ROOT / "configs" / "digits_qat.yaml"),
                             "--out", str(out)], capture_output=True, text=True, cwd=tmp_path, timeout=600,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    foreign = [line for line in lines if FOREIGN.search(line) or not OWN_LINE.match(line)]
    assert not foreign, foreign
    assert max(len(line) for line in lines if not line.startswith("reports:")) <= 100  # paths are not cut
    rows = [line.split()[0] for line in lines[2:] if line and not line.startswith((" ", "reports:", "stage", "---"))]
    assert rows == ["baseline", "train", "qat", "latency", "baseline", "train", "qat"], \
        "the rows as stages finish, then the re-timed table report.md holds"
    log = (out / "run.log").read_text()
    assert "qat" in log and "New Executor" in log, "the native lines are kept in the run's log"
