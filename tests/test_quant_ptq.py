"""PTQ end to end on digits: calibrated without training, the export reloads in
paddle.inference close to fp32, only the configured layer types are quantized, resume works."""

import copy

import numpy as np
import paddle
import pytest

import slimkit
from slimkit import PTQ, Pipeline, compat
from slimkit.quant import InferenceModel, quantized_layer_names


@pytest.fixture(scope="module")
def ptq_run(digits, trained_cnn, tmp_path_factory):
    out = tmp_path_factory.mktemp("ptq")
    stages = [PTQ(calibration_batches=4, quantizable_layer_type=["Conv2D"], float_fallback="off")]
    pipeline = Pipeline(trained_cnn, digits, stages=stages, out_dir=out, verbose=False, train={"progress": False})
    return pipeline, pipeline.run(), out


def test_export_reloads_within_two_points_of_fp32(ptq_run, trained_cnn):
    pipeline, reports, out = ptq_run
    fp32 = pipeline.engine.evaluate(trained_cnn)["top1"]
    report = reports[-1]
    exported = InferenceModel(out / "01-ptq" / "inference" / "model", runtime="cpu").evaluate(pipeline.engine)
    assert abs(report.top1 - fp32) <= 0.02, (report.top1, fp32)
    assert abs(exported["top1"] - fp32) <= 0.02, (exported, fp32)
    assert report.extra["calibration_batches"] == 4
    assert report.size_bytes < report.extra["float_export_bytes"]


def test_only_the_configured_layer_types_are_quantized(ptq_run):
    pipeline, _, _ = ptq_run
    assert quantized_layer_names(pipeline.model) == ["features.0", "features.3", "features.7"]


def test_calibration_does_not_train(ptq_run, trained_cnn):
    pipeline, _, _ = ptq_run
    quantized = dict(pipeline.model.named_sublayers())
    for name in ("classifier.1", "classifier.3"):  # not quantized: weights exactly as given
        np.testing.assert_array_equal(quantized[name].weight.numpy(),
                                      dict(trained_cnn.named_sublayers())[name].weight.numpy())


def test_resume_rebuilds_the_quantized_model(ptq_run, digits, trained_cnn):
    pipeline, reports, out = ptq_run
    again = Pipeline(trained_cnn, digits, stages=pipeline.stages, out_dir=out, verbose=False,
                     train={"progress": False})
    again.run(resume=True)
    x = paddle.to_tensor(digits.test.images[:64])
    np.testing.assert_allclose(again.model(x).numpy(), pipeline.model(x).numpy(), rtol=1e-5, atol=1e-5)


def test_forced_error_leaves_session_and_model_unchanged(digits, trained_cnn, tmp_path, monkeypatch):
    def broken_calibrate(observed, batches, **kwargs):
        paddle.enable_static()
        raise RuntimeError("calibration failed")

    monkeypatch.setattr("slimkit.strategies.quantization.calibrate", broken_calibrate)
    model = copy.deepcopy(trained_cnn)
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    engine = slimkit.Engine(digits, {"progress": False})
    ctx = slimkit.Context(data=digits, engine=engine, input_shape=[1, 1, 8, 8], out_dir=tmp_path)
    with pytest.raises(RuntimeError, match="calibration failed"):
        PTQ().apply(model, ctx)
    assert paddle.in_dynamic_mode() and compat.pir_enabled()
    assert quantized_layer_names(model) == []
    assert all(np.array_equal(before[k], v.numpy()) for k, v in model.state_dict().items())
