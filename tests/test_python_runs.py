"""A Python run behaves like `slimkit run`: run.log, native lines off the console, the final table, what to deploy.

Native output is simulated by a stage writing to file descriptor 1 directly, as Paddle's
C++ core does; latencies are injected (a fake timer), never measured.
"""

import dataclasses
import json
import os

import numpy as np
import pytest

import slimkit
from slimkit import Finetune, Pipeline, Strategy
from slimkit.deploy import stage_latency
from timing_machine import Machine

QUICK = {"epochs": 1, "batch_size": 64, "max_steps_per_epoch": 2, "progress": False}
FAST = {"latency_runs": 2, "latency_warmup": 0, "latency_rounds": 1}


@dataclasses.dataclass
class NativeChatter(Strategy, type_name="native_chatter_for_tests"):
    """Writes a line to file descriptor 1 as native code would (Python's sys.stdout never sees it)."""

    compresses = False

    def apply(self, model, ctx):
        os.write(1, b"I1207 native.cc:42] a native line\n")
        return model


def small():
    return slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)


def test_a_python_run_keeps_native_lines_in_run_log(digits, tmp_path, capfd):
    Pipeline(small(), digits, [NativeChatter()], train=QUICK, report={"runtime": "eager", **FAST},
             out_dir=tmp_path).run()
    console = capfd.readouterr()
    assert "a native line" not in console.out + console.err
    assert "baseline" in console.out, "slimkit's own table still reaches the console"
    log = (tmp_path / "run.log").read_text()
    assert "a native line" in log and "baseline" in log


def test_the_console_ends_with_the_table_report_md_holds(digits, tmp_path, capsys, monkeypatch):
    machine, real = Machine(), stage_latency.measure

    def scripted(runners, pairs, precision, clock=None):  # each stage's own timing 1 ms; the re-timing 7.77 ms
        ms = 7.77 if len(runners) > 1 else 1.0
        return real({key: machine.runner(ms) for key in runners}, pairs, precision, machine.clock())

    monkeypatch.setattr(stage_latency, "measure", scripted)
    Pipeline(small(), digits, [Finetune(name="train")], train=QUICK, report=FAST, out_dir=tmp_path).run()
    lines = capsys.readouterr().out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("latency re-timed"))
    final = [line for line in lines[start + 3:] if line and not line.startswith(" ")]
    assert [line.split()[0] for line in final] == ["baseline", "train"]
    assert all("7.77" in line for line in final), final
    assert "| 7.770 |" in (tmp_path / "report.md").read_text()


def test_report_json_says_how_inputs_were_normalised(digits, tmp_path):
    Pipeline(small(), digits, [Finetune(epochs=0)], train=QUICK, report={"runtime": "eager", **FAST},
             out_dir=tmp_path, verbose=False).run()
    recorded = json.loads((tmp_path / "report.json").read_text())["input_normalisation"]
    assert recorded["scale"] == 16.0 and len(recorded["mean"]) == len(recorded["std"]) == 1
    # The recipe turns the stored pixels into what the model was trained on.
    from sklearn.datasets import load_digits

    raw = load_digits().images.astype(np.float32)
    normalised = (raw / recorded["scale"] - recorded["mean"][0]) / recorded["std"][0]
    assert np.isin(digits.test.images[0, 0].round(4), normalised.round(4)).all()
    assert np.isclose(digits.train.images.mean(), 0, atol=1e-4) and np.isclose(digits.train.images.std(), 1, atol=1e-3)


def test_own_arrays_are_recorded_as_used_as_given(tmp_path):
    x = np.random.RandomState(0).randn(40, 1, 8, 8).astype("float32")
    y = np.arange(40) % 10
    Pipeline(small(), (x, y), [Finetune(epochs=0)], train=QUICK, report={"runtime": "eager", **FAST},
             out_dir=tmp_path, verbose=False).run()
    assert json.loads((tmp_path / "report.json").read_text())["input_normalisation"] is None


@pytest.fixture(autouse=True)
def _no_table_width_surprises(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
