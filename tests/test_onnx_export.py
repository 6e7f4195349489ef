"""ONNX export: a pruned CNN and its QAT'd int8 twin convert, reload in ONNX Runtime and give
Paddle's answers on the digits test split; mismatches are loud; `slimkit export` ships the files."""

import importlib.util
import json
import shutil

import numpy as np
import onnx
import paddle
import pytest
from onnx import numpy_helper

from slimkit import QAT, ConfigError, FilterPruning, Pipeline, build_model, load_model
from slimkit.deploy import onnx as onnx_export
from slimkit.deploy.formats import ExportConfig, export_formats
from slimkit.deploy.onnx import OnnxModel
from slimkit.quant import InferenceModel
from slimkit.report.rows import StageReport
from slimkit.run.cli import main


@pytest.fixture(scope="module")
def run(digits, trained_cnn, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx_run")
    stages = [FilterPruning(criterion="l1", ratios=0.5), QAT(epochs=1, lr=0.005)]
    pipeline = Pipeline(trained_cnn, digits, stages=stages, out_dir=out, verbose=False,
                        train={"batch_size": 32, "progress": False}, export={"formats": ["paddle", "onnx"]})
    reports = {r.stage: r for r in pipeline.run()}
    return pipeline, reports, out


def eager_logits(model, images):
    model.eval()
    with paddle.no_grad():
        return model(paddle.to_tensor(images)).numpy()


def test_pruned_model_exports_and_matches_the_eager_model(run, digits, trained_cnn):
    _, reports, out = run
    record = reports["filter_pruning"].extra["export"]["onnx"]
    assert record["ok"] and not record["int8"] and record["opset"] == 13
    assert record["max_abs_diff"] <= 1e-4 and record["top1_agreement"] >= 0.99 and record["samples"] == 359
    assert json.loads((out / "01-filter_pruning" / "onnx" / "verification.json").read_text()) == record
    # Independently of the record: ORT's logits are the pruned eager model's, on the whole test split.
    model = load_model(out / "01-filter_pruning", build_model("small_cnn", num_classes=10, in_channels=1,
                                                              input_size=8))
    session = OnnxModel(out / "01-filter_pruning" / "onnx" / "model.onnx")
    ours = session.run(digits.test.images)
    assert session.latency([1, 1, 8, 8], warmup=1, runs=3) > 0  # ORT is timed like the predictor
    reference = eager_logits(model, digits.test.images)
    assert np.abs(ours - reference).max() < 1e-4
    assert (ours.argmax(1) == reference.argmax(1)).mean() >= 0.99
    # The ONNX graph holds the narrower convs, not the original ones.
    graph = onnx.load(str(out / "01-filter_pruning" / "onnx" / "model.onnx")).graph
    weights = {n.output[0]: numpy_helper.to_array(n.attribute[0].t).shape for n in graph.node
               if n.op_type == "Constant"}
    conv = sorted(shape[0] for shape in weights.values() if len(shape) == 4)
    assert conv == sorted(conv_widths(model)) and sum(conv) < sum(conv_widths(trained_cnn))


def conv_widths(model):
    return [layer.weight.shape[0] for layer in model.sublayers() if isinstance(layer, paddle.nn.Conv2D)]


def test_qat_model_exports_as_int8_qdq_with_paddles_answers(run, digits):
    _, reports, out = run
    record = reports["qat"].extra["export"]["onnx"]
    assert record["int8"]
    # The QDQ arithmetic is Paddle's int8 arithmetic: same classes on the test split.
    assert record["qdq_arithmetic"]["top1_agreement"] >= 0.99
    paddle_int8 = InferenceModel(out / "02-qat" / "inference" / "model", runtime="cpu").evaluate(
        run[0].engine, "test")["top1"]
    onnx_qdq = OnnxModel(out / "02-qat" / "onnx" / "model.onnx", optimize=False).evaluate(run[0].engine, "test")
    assert abs(onnx_qdq["top1"] - paddle_int8) <= 0.01
    graph = onnx.load(str(out / "02-qat" / "onnx" / "model.onnx")).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("QuantizeLinear") == 5 and ops.count("DequantizeLinear") == 10  # 5 inputs + 5 weights
    int8 = [i for i in graph.initializer if i.data_type == onnx.TensorProto.INT8 and len(i.dims) >= 2]
    assert len(int8) == 5, "every conv/linear weight is stored as int8"
    # Whether ORT's int8 kernels keep the classes depends on the CPU: recorded, and loud when they do not.
    assert record["ok"] == (record["top1_agreement"] >= 0.99 and record["qdq_arithmetic"]["top1_agreement"] >= 0.99)
    note = [n for n in reports["qat"].notes if "ONNX" in n][-1]
    assert note.startswith("WARNING") != record["ok"]
    assert sum(v for k, v in record["ort_ops"].items() if "Integer" in k or k.startswith("QLinear")) > 0


def test_a_mismatch_is_loud_and_never_shipped(run, tmp_path):
    pipeline, reports, out = run
    stage = tmp_path / "01-filter_pruning"
    shutil.copytree(out / "01-filter_pruning", stage, ignore=shutil.ignore_patterns("onnx"))
    report = StageReport.from_dict(reports["filter_pruning"].to_dict())
    report.notes = []
    strict = ExportConfig(formats=["onnx"], tolerance=1e-12)
    export_formats(None, stage, pipeline.input_shape, strict, report, lambda: pipeline.engine.batches("test"))
    assert not report.extra["export"]["onnx"]["ok"]
    assert report.notes[0].startswith("WARNING: ONNX export does NOT match Paddle")
    (tmp_path / "pipeline.json").write_text((out / "pipeline.json").read_text())
    (stage / "stage.json").write_text((out / "01-filter_pruning" / "stage.json").read_text())
    assert main(["export", str(tmp_path), "--format", "onnx", "--to", str(tmp_path / "ship")]) == 2
    assert not (tmp_path / "ship").exists()


@pytest.mark.parametrize("stage,fmt,files", [
    ("qat", "onnx", ["model.onnx", "verification.json", "outputs.json"]),
    ("filter_pruning", "paddle", ["model.pdmodel", "model.pdiparams", "outputs.json"]),
    (None, "paddle", ["model.pdmodel", "model.pdiparams", "outputs.json"]),
])
def test_slimkit_export_copies_the_stage_files(run, tmp_path, capsys, stage, fmt, files):
    _, _, out = run
    to = tmp_path / "ship"
    argv = ["export", str(out), "--format", fmt, "--to", str(to)] + (["--stage", stage] if stage else [])
    assert main(argv) == 0, capsys.readouterr().err
    assert sorted(p.name for p in to.iterdir()) == sorted(files)
    source = out / ("02-qat" if stage in ("qat", None) else "01-filter_pruning") / \
        ("onnx" if fmt == "onnx" else "inference")
    assert all((to / f).read_bytes() == (source / f).read_bytes() for f in files)
    assert main(argv) == 2, "an existing file is never overwritten"
    assert "already holds" in capsys.readouterr().err


def test_export_converts_a_stage_exported_without_onnx(run, tmp_path, capsys):
    _, _, out = run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / "00-baseline" / "onnx")
    assert main(["export", str(copy), "--stage", "baseline", "--format", "onnx", "--to", str(tmp_path / "s")]) == 0
    record = json.loads((tmp_path / "s" / "verification.json").read_text())
    assert record["ok"] and record["max_abs_diff"] <= 1e-4


def test_bad_format_or_stage_is_exit_2_before_any_work(run, tmp_path, capsys):
    _, _, out = run
    with pytest.raises(SystemExit) as exit_:
        main(["export", str(out), "--format", "onxx", "--to", str(tmp_path / "a")])
    assert exit_.value.code == 2 and "invalid choice: 'onxx'" in capsys.readouterr().err
    assert main(["export", str(out), "--stage", "qta", "--format", "paddle", "--to", str(tmp_path / "b")]) == 2
    assert "did you mean 'qat'?" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    with pytest.raises(ConfigError, match="(?s)'onxx' is not a valid choice.*did you mean 'onnx'"):
        ExportConfig.from_dict({"formats": ["paddle", "onxx"]}, "export")


def test_missing_extra_names_the_install_command(run, tmp_path, capsys, monkeypatch):
    _, _, out = run
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(ConfigError, match="needs onnxruntime") as err:
        ExportConfig(formats=["paddle", "onnx"])
    assert 'pip install -e ".[onnx]"' in err.value.hint
    config = tmp_path / "c.yaml"
    config.write_text("stages: [{type: finetune}]\nexport: {formats: [onnx]}\n")
    assert main(["check", str(config)]) == 2
    assert 'pip install -e ".[onnx]"' in capsys.readouterr().err
    assert main(["export", str(out), "--format", "onnx", "--to", str(tmp_path / "s")]) == 2
    assert "pip install paddle2onnx onnxruntime" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_a_converter_crash_is_contained_and_recorded(run, tmp_path, monkeypatch, capfd):
    pipeline, reports, out = run
    stage = tmp_path / "01-filter_pruning"
    shutil.copytree(out / "01-filter_pruning", stage, ignore=shutil.ignore_patterns("onnx"))
    before = {p.name: p.read_bytes() for p in (stage / "inference").iterdir()}
    # paddle2onnx aborts its process on an operator it cannot map: only the child may die.
    monkeypatch.setattr(onnx_export, "_CONVERT", "import os, sys; print('[ERROR][Paddle2ONNX] no mapper', "
                                                 "file=sys.stderr); sys.stderr.flush(); os.abort()")
    report = StageReport.from_dict(reports["filter_pruning"].to_dict())
    export_formats(None, stage, pipeline.input_shape, ExportConfig(formats=["onnx"]), report,
                   lambda: pipeline.engine.batches("test"))
    record = report.extra["export"]["onnx"]
    assert not record["ok"] and "[ERROR][Paddle2ONNX] no mapper" in record["error"]
    assert report.notes[-1].startswith("WARNING: no ONNX export: paddle2onnx could not convert")
    assert not (stage / "onnx" / "model.onnx").exists()
    assert {p.name: p.read_bytes() for p in (stage / "inference").iterdir()} == before
    assert "Paddle2ONNX" not in capfd.readouterr().err, "the converter's output never reaches the console"


def test_ptq_model_with_depthwise_convs_becomes_qdq(tmp_path):
    from slimkit.deploy.onnx import convert
    from slimkit.models.zoo import mobilenet_v1
    from slimkit.quant import calibrate, export_quantized, prepare_ptq
    from slimkit.quant import convert as convert_quantized

    paddle.seed(0)
    model = mobilenet_v1(num_classes=10, in_channels=1, scale=0.25)
    model.eval()
    x = np.random.RandomState(0).randn(16, 1, 16, 16).astype("float32")
    observed = prepare_ptq(model)
    calibrate(observed, [(paddle.to_tensor(x), None)])
    prefix = export_quantized(convert_quantized(observed), tmp_path / "inference", [1, 1, 16, 16])
    assert convert(prefix, tmp_path / "model.onnx") == 13
    graph = onnx.load(str(tmp_path / "model.onnx")).graph
    assert [n.op_type for n in graph.node].count("QuantizeLinear") == 28  # 13 depthwise + 14 pointwise + fc
    ours = OnnxModel(tmp_path / "model.onnx", optimize=False).run(x)
    theirs = InferenceModel(prefix, runtime="cpu").run(x)
    assert (ours.argmax(1) == theirs.argmax(1)).all()
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
