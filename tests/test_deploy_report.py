"""Deployed latency in every report row: each stage folder holds its Paddle Inference model (the
predictor gives the stage model's answers), rows carry the predictor median, spread and eager
latency, ratios come from one interleaved timing, and a slower stage is never silent."""

import copy
import json
from pathlib import Path

import numpy as np
import paddle
import pytest
from timing_machine import Machine

import slimkit
from slimkit import FilterPruning, Finetune, Pipeline, ReportConfig
from slimkit.core.errors import ConfigError
from slimkit.deploy import InferenceModel, stage_export_prefix, stage_latency
from slimkit.report.rows import to_markdown
from slimkit.run.cli import main

REPORT = {"latency_runs": 6, "latency_warmup": 1, "latency_rounds": 2}


def _stages():
    return [Finetune(name="train", epochs=1), FilterPruning(ratios=0.5)]


@pytest.fixture(scope="module")
def run(digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("deploy")
    paddle.seed(0)
    model = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)
    pipeline = Pipeline(model, digits, _stages(), out_dir=out, train={"progress": False}, report=REPORT,
                        verbose=False)
    return pipeline, pipeline.run(), out


def test_every_row_has_positive_deployed_and_eager_latency(run):
    _, reports, _ = run
    for r in reports:
        assert r.latency_ms > 0 and r.extra["eager_latency_ms"] > 0, r.stage
        assert 0 < r.extra["latency_p10_ms"] <= r.latency_ms <= r.extra["latency_p90_ms"], r.stage
        assert r.extra["runtime"] == "paddle_inference" and r.extra["threads"] == 1
        assert "Paddle Inference predictor" in r.latency_method and "interleaved" in r.latency_method
    saved = json.loads((run[2] / "report.json").read_text())
    assert saved["environment"]["cpu_features"] == slimkit.deploy.cpu_features()


def test_every_stage_folder_holds_the_stage_model_for_paddle_inference(run, digits):
    pipeline, reports, out = run
    x = digits.test.images[:16]
    folders = [out / "00-baseline"] + [pipeline.stage_dir(i) for i in range(len(pipeline.stages))]
    template = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)
    for folder in folders:
        model = slimkit.load_model(folder, copy.deepcopy(template))
        model.eval()
        expected = model(paddle.to_tensor(x)).numpy()
        got = InferenceModel(stage_export_prefix(folder), "cpu").run(x)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4, err_msg=str(folder))
    # the pruned stage's export really is the narrower model
    assert reports[2].params < reports[1].params


def test_slower_stage_gets_a_note_and_ratios_carry_their_interval(run, monkeypatch):
    pipeline, _, _ = run
    machine = Machine(noise=0.02)
    fake = {"00-baseline": 2.0, "01-train": 1.0, "02-filter_pruning": 1.5}  # the pruned stage slower than train

    class Scripted:
        def __init__(self, prefix, cfg):
            self.ms = fake[Path(prefix).parent.parent.name]

        def runner(self, shape):
            return machine.runner(self.ms)

    monkeypatch.setattr(stage_latency, "_predictor", Scripted)
    pipeline.retime(clock=machine.clock())
    notes = [n for r in pipeline.reports for n in r.notes if n.kind == "slower"]
    assert len(notes) == 1 and notes[0].startswith("filter_pruning:")
    assert float(notes[0].rsplit("x", 1)[1].rstrip(")")) == pytest.approx(1.5, abs=0.05)
    assert [round(r.latency_ms, 1) for r in pipeline.reports] == [2.0, 1.0, 1.5]
    to_baseline = pipeline.reports[2].extra["latency_vs_baseline"]
    # this run's rounds give an interval under 3 % wide; the report widens it by the drift between runs
    drift = pipeline.report_config.latency_drift
    assert to_baseline["low"] <= 0.75 <= to_baseline["high"]
    assert to_baseline["high"] / (1 + drift) - to_baseline["low"] * (1 + drift) < 0.03
    assert "0.75x, 0.7" in to_markdown(pipeline.reports)  # the table quotes the measured ratio with its interval
    fake["02-filter_pruning"] = 0.5  # faster again: the note goes away on the next timing
    pipeline.retime(clock=machine.clock())
    assert not [n for r in pipeline.reports for n in r.notes if n.kind == "slower"]


def test_a_ratio_left_wide_by_the_budget_gets_a_noise_note(run, monkeypatch):
    pipeline, _, _ = run
    machine = Machine(noise=0.8)

    class Scripted:
        def __init__(self, prefix, cfg):
            pass

        def runner(self, shape):
            return machine.runner(1.0)

    monkeypatch.setattr(stage_latency, "_predictor", Scripted)
    monkeypatch.setattr(pipeline.report_config, "latency_budget_s", 0.5)
    pipeline.retime(clock=machine.clock())
    noisy = [n for r in pipeline.reports for n in r.notes if n.kind == "noisy"]
    assert noisy and all("is noisy" in n and "wide after" in n for n in noisy)
    assert not any(r.extra["latency_timing"]["converged"] for r in pipeline.reports)


def test_bench_retimes_a_finished_run(run, capsys):
    _, _, out = run
    assert main(["bench", str(out), "--runs", "4", "--warmup", "1", "--rounds", "2"]) == 0
    assert "interleaved" in capsys.readouterr().out
    saved = json.loads((out / "report.json").read_text())
    assert [s["stage"] for s in saved["stages"]] == ["baseline", "train", "filter_pruning"]
    assert all(s["latency_ms"] > 0 for s in saved["stages"]) and saved["config"]["input_shape"] == [1, 1, 8, 8]


def test_bench_with_a_bad_timing_option_exits_2(run, capsys):
    assert main(["bench", str(run[2]), "--width", "1.5"]) == 2
    assert "latency_ci_width" in capsys.readouterr().err


def test_bench_of_a_folder_without_a_run_exits_2(tmp_path, capsys):
    assert main(["bench", str(tmp_path)]) == 2
    assert "report.json" in capsys.readouterr().err


def test_eager_runtime_still_exports(digits, tmp_path):
    model = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)
    reports = Pipeline(model, digits, [], out_dir=tmp_path, report={**REPORT, "runtime": "eager"},
                       verbose=False).run()
    assert "eager" in reports[0].latency_method and reports[0].latency_ms > 0
    assert (stage_export_prefix(tmp_path / "00-baseline").parent / "model.pdmodel").is_file()


@pytest.mark.parametrize("options, key", [({"runtime": "onnx"}, "runtime"), ({"threads": 0}, "threads"),
                                          ({"latency_rounds": 0}, "latency_rounds")])
def test_bad_report_options_are_config_errors(options, key):
    with pytest.raises(ConfigError, match=key):
        ReportConfig.from_dict(options, "report")


def test_bad_report_option_exits_2_before_any_work(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("data: {name: digits}\nmodel: {name: small_cnn}\nreport: {runtime: paddle}\nstages: []\n")
    assert main(["run", str(config), "--out", str(tmp_path / "out")]) == 2
    assert "report.runtime" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_a_model_that_cannot_be_exported_is_measured_eager_with_a_note(digits, tmp_path, monkeypatch):
    import slimkit.run.pipeline

    def fail(*args, **kwargs):
        raise RuntimeError("cannot trace this forward")

    monkeypatch.setattr(slimkit.run.pipeline, "export_stage", fail)
    model = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)
    reports = Pipeline(model, digits, [], out_dir=tmp_path, report=REPORT, verbose=False).run()
    assert reports[0].latency_ms > 0 and "eager" in reports[0].latency_method
    assert any("no Paddle Inference export (RuntimeError: cannot trace" in n for n in reports[0].notes)
    assert not (tmp_path / "00-baseline" / "inference").exists()


def test_slower_means_most_runs_slower():
    from slimkit.report.rows import StageReport

    def row(name, median, p10):
        return StageReport(name, "x", 1, 1, 0.5, None, 1, median, 0.0, extra={"latency_p10_ms": p10})

    noisy = [row("a", 1.0, 0.9), row("b", 1.2, 0.95)]   # median up, but its fast runs match a's median
    slower = [row("a", 1.0, 0.9), row("b", 1.2, 1.1)]
    assert not stage_latency.mark_slower(noisy)[1].notes
    assert stage_latency.SLOWER_NOTE in stage_latency.mark_slower(slower)[1].notes[0]
