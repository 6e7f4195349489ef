"""QAT end to end on digits: the export reloads in paddle.inference close to fp32, the right
layers are quantized, resume rebuilds the same model, and the session survives errors."""

import copy

import numpy as np
import paddle
import pytest
from report_checks import untimed

import slimkit
from slimkit import QAT, Pipeline, compat
from slimkit.quant import InferenceModel, quantized_layer_names


@pytest.fixture(scope="module")
def qat_run(digits, trained_cnn, tmp_path_factory):
    out = tmp_path_factory.mktemp("qat")
    stages = [QAT(epochs=1, lr=0.005, skip_layers=["classifier.3"])]
    pipeline = Pipeline(trained_cnn, digits, stages=stages, out_dir=out, verbose=False,
                        train={"batch_size": 32, "progress": False})
    return pipeline, pipeline.run(), out


def test_export_reloads_within_two_points_of_fp32(qat_run, digits, trained_cnn):
    pipeline, reports, out = qat_run
    fp32 = pipeline.engine.evaluate(trained_cnn)["top1"]
    report = reports[-1]
    reloaded = InferenceModel(out / "01-qat" / "inference" / "model").evaluate(pipeline.engine)
    assert reloaded["top1"] == report.top1  # the report describes the reloaded files
    assert reloaded["samples"] == len(digits.test)
    assert abs(report.top1 - fp32) <= 0.02, (report.top1, fp32)
    assert report.extra["cpu_execution"] in ("int8 kernels", "simulated")
    assert "int8 kernels" in " ".join(report.notes) or "simulated" in " ".join(report.notes)
    assert report.flops == reports[0].flops  # float structure, not the zero-counted quant layers


def test_quantized_layers_are_the_configured_ones(qat_run):
    pipeline, _, _ = qat_run
    # Conv2D and Linear, minus the skipped last Linear.
    assert quantized_layer_names(pipeline.model) == ["features.0", "features.3", "features.7", "classifier.1"]


def test_resume_rebuilds_the_quantized_model(qat_run, digits, trained_cnn):
    pipeline, reports, out = qat_run
    again = Pipeline(trained_cnn, digits, stages=pipeline.stages, out_dir=out, verbose=False,
                     train={"batch_size": 32, "progress": False})
    resumed = again.run(resume=True)
    assert untimed(resumed[-1]) == untimed(reports[-1])
    x = paddle.to_tensor(digits.test.images[:64])
    pipeline.model.eval()
    again.model.eval()
    assert quantized_layer_names(again.model) == quantized_layer_names(pipeline.model)
    np.testing.assert_allclose(again.model(x).numpy(), pipeline.model(x).numpy(), rtol=1e-5, atol=1e-5)


def test_forced_error_leaves_session_and_model_unchanged(digits, trained_cnn, tmp_path, monkeypatch):
    def broken_export(*args, **kwargs):
        # Fail the way a half-done static export would: static mode and legacy IR left on.
        paddle.enable_static()
        paddle.framework.set_flags({"FLAGS_enable_pir_api": False})
        raise RuntimeError("export failed")

    monkeypatch.setattr("slimkit.strategies.quantization.export_quantized", broken_export)
    model = copy.deepcopy(trained_cnn)
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    engine = slimkit.Engine(digits, {"progress": False, "max_steps_per_epoch": 2})
    ctx = slimkit.Context(data=digits, engine=engine, input_shape=[1, 1, 8, 8], out_dir=tmp_path)
    with pytest.raises(RuntimeError, match="export failed"):
        QAT(epochs=1).apply(model, ctx)
    assert paddle.in_dynamic_mode() and compat.pir_enabled()
    assert quantized_layer_names(model) == []
    assert all(np.array_equal(before[k], v.numpy()) for k, v in model.state_dict().items())
