"""An imported inference model in a run: prune -> finetune with resume, drop-in exports, the original as baseline."""

import copy
import importlib.util
import json

import numpy as np
import paddle
import pytest
import yaml
from exported_programs import Unsupported, predictor_outputs, save

import slimkit
from slimkit import FilterPruning, Finetune, Pipeline
from slimkit.deploy import stage_latency
from slimkit.run.cli import main

FAST = {"latency_runs": 2, "latency_warmup": 1, "latency_rounds": 1}


@pytest.fixture(scope="module")
def exported_cnn(trained_cnn, tmp_path_factory):
    """The trained digits CNN as a Paddle 3 program, its input named `image`, any batch."""
    folder = tmp_path_factory.mktemp("cnn")
    save(copy.deepcopy(trained_cnn), folder / "inference", [None, 1, 8, 8], name="image")
    return folder


def _program_shapes(prefix):
    """{name: (shape, dtype)} of the feed and fetch targets of a legacy export."""
    from slimkit import compat

    with compat.legacy_ir():
        paddle.enable_static()
        program, feeds, fetches = paddle.static.load_inference_model(str(prefix), paddle.static.Executor())
        out = {v.name: (list(v.shape), str(v.dtype)) for v in [program.global_block().var(n) for n in feeds] + fetches}
    return out


@pytest.fixture(scope="module")
def run(exported_cnn, digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    model = slimkit.from_inference(exported_cnn)
    stages = [FilterPruning(criterion="l1", ratios=0.5), Finetune(name="recover", epochs=1)]
    pipeline = Pipeline(model, digits, stages, out_dir=out, verbose=False, report=FAST)
    return pipeline, pipeline.run(), out


def test_an_imported_model_is_pruned_and_finetuned_like_any_layer(run, exported_cnn):
    pipeline, reports, out = run
    baseline, pruned, recovered = reports
    assert pruned.flops < 0.5 * baseline.flops and pruned.params < baseline.params
    assert baseline.top1 > 0.9 and recovered.top1 > 0.8  # the trained weights came across, and training works
    # the stage folders rebuild the imported model from the program and load the pruned weights into it
    loaded = slimkit.load_model(out / "02-recover")
    x = paddle.rand([3, 1, 8, 8])
    with paddle.no_grad():
        np.testing.assert_allclose(loaded(x).numpy(), pipeline.model(x).numpy(), atol=1e-5)
    arch = json.loads((out / "02-recover" / "architecture.json").read_text())
    assert arch["spec"] == {"inference": str((exported_cnn / "inference").resolve())}


def test_resuming_the_run_restores_every_stage_of_the_imported_model(run, exported_cnn, digits):
    pipeline, reports, out = run
    again = Pipeline(slimkit.from_inference(exported_cnn), digits,
                     [FilterPruning(criterion="l1", ratios=0.5), Finetune(name="recover", epochs=1)], out_dir=out,
                     verbose=False, report=FAST)
    resumed = again.run(resume=True)
    assert [r.to_dict() for r in resumed] == [r.to_dict() for r in reports]
    x = paddle.rand([2, 1, 8, 8])
    with paddle.no_grad():
        np.testing.assert_allclose(again.model(x).numpy(), pipeline.model(x).numpy(), atol=1e-6)


def test_every_stage_export_keeps_the_programs_input_and_output_names_shapes_and_dtypes(run):
    _, _, out = run
    original = _program_shapes_pir(out / "00-baseline" / "original" / "model")
    for folder in ("00-baseline", "01-filter_pruning", "02-recover"):
        prefix = out / folder / "inference" / "model"
        assert _program_shapes(prefix) == original, folder
        x = np.random.RandomState(0).rand(5, 1, 8, 8).astype("float32")  # any batch, as the original takes
        assert list(predictor_outputs(str(prefix) + ".pdmodel", str(prefix) + ".pdiparams", x)) == ["fetch_name_0"]


def _program_shapes_pir(prefix):
    """{name: (shape, dtype)} of a Paddle 3 program's inputs and outputs, as the importer reads them."""
    signature = slimkit.from_inference(prefix).program_signature
    return {item["name"]: (item["shape"], f"paddle.{item['dtype']}") for item in
            signature["inputs"] + signature["outputs"]}


@pytest.mark.skipif(importlib.util.find_spec("paddle2onnx") is None or importlib.util.find_spec("onnxruntime") is None,
                    reason="needs paddle2onnx and onnxruntime (pip install -e '.[onnx]')")
def test_the_drop_in_export_converts_to_onnx_with_the_programs_names(run, tmp_path):
    import onnxruntime

    from slimkit.deploy import onnx

    _, _, out = run
    onnx.convert(out / "02-recover" / "inference" / "model", tmp_path / "model.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"))
    assert [(i.name, i.shape[1:]) for i in session.get_inputs()] == [("image", [1, 8, 8])]
    assert [o.name for o in session.get_outputs()] == ["fetch_name_0"]


def test_the_baseline_is_the_original_program_timed_beside_its_imported_export(run):
    _, reports, out = run
    baseline = reports[0]
    assert (out / "00-baseline" / "original" / "model.json").is_file()
    assert baseline.extra["latency_program"] == "original"
    assert baseline.extra["inference_model"].endswith("original/model")
    assert baseline.extra["imported_export_latency_ms"] > 0
    assert "latency_program" not in reports[1].extra


def test_an_original_the_predictor_cannot_run_leaves_the_baseline_on_its_imported_export(exported_cnn, tmp_path,
                                                                                         monkeypatch):
    real = stage_latency._predictor

    def refusing(prefix, cfg):
        if "original" in str(prefix):
            raise RuntimeError("(Unimplemented) not supported by oneDNN")
        return real(prefix, cfg)

    monkeypatch.setattr(stage_latency, "_predictor", refusing)
    note = stage_latency.keep_original(slimkit.from_inference(exported_cnn), tmp_path,
                                       slimkit.ReportConfig(**FAST), [1, 1, 8, 8])
    assert "does not run in the stage predictor (RuntimeError" not in note and "not supported by oneDNN" in note
    assert not (tmp_path / "original").exists() and stage_latency.timed_prefix(tmp_path) is None


def _config(tmp_path, inference, **extra):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"data": {"name": "digits"}, "model": {"inference": str(inference)},
                                    "stages": [{"type": "finetune", "epochs": 1}], **extra}))
    return str(path)


def test_a_config_names_the_program_and_check_accepts_it(exported_cnn, tmp_path, capsys):
    assert main(["check", _config(tmp_path, exported_cnn), "--out", str(tmp_path / "out")]) == 0
    assert "ok (1 stages" in capsys.readouterr().out


def test_check_names_a_dynamic_input_without_input_shape_and_every_unsupported_op(tmp_path, capsys):
    save(Unsupported(), tmp_path / "unsupported" / "inference", [None, 3, 8, 8])
    save(copy.deepcopy(slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)),
         tmp_path / "dynamic" / "inference", [None, 1, None, None])
    assert main(["check", _config(tmp_path, tmp_path / "unsupported"), "--out", str(tmp_path / "o1")]) == 2
    err = capsys.readouterr().err
    assert "`cumsum` (2x)" in err and "`flip` (1x)" in err
    assert main(["check", _config(tmp_path, tmp_path / "dynamic"), "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert "input_shape: the program's input x [-1, 1, -1, -1] has dynamic sizes" in err
    assert main(["check", _config(tmp_path, tmp_path / "dynamic", input_shape=[1, 1, 8, 8]),
                 "--out", str(tmp_path / "o3")]) == 0


def test_the_int8_export_of_an_imported_model_keeps_the_programs_names(exported_cnn, tmp_path):
    from slimkit.deploy.paddle_inference import export_stage
    from slimkit.quant import convert, quantize_for_training

    quantized = quantize_for_training(slimkit.from_inference(exported_cnn))
    with paddle.no_grad():
        quantized(paddle.rand([4, 1, 8, 8]))  # scales from one batch
    prefix = export_stage(convert(quantized), tmp_path, [1, 1, 8, 8])
    assert _program_shapes(prefix) == _program_shapes_pir(exported_cnn / "inference")
    x = np.random.RandomState(0).rand(3, 1, 8, 8).astype("float32")
    assert list(predictor_outputs(str(prefix) + ".pdmodel", str(prefix) + ".pdiparams", x)) == ["fetch_name_0"]


def test_a_model_block_with_inference_takes_no_name_or_args():
    from slimkit.core.errors import ConfigError

    assert slimkit.ModelConfig(inference="exported/inference").inference == "exported/inference"
    with pytest.raises(ConfigError, match="args: is not used with `inference`"):
        slimkit.ModelConfig(inference="exported/inference", args={"width": 8})
    with pytest.raises(ConfigError, match="name: is not used with `inference`"):
        slimkit.ModelConfig(name="resnet20", inference="exported/inference")
