"""The int8 export: weights stored as int8 on disk, depthwise convs and pruned (narrower)
models quantize and export, and Paddle Inference gives the in-memory model's answers."""

import copy

import numpy as np
import paddle

from slimkit import compat
from slimkit.core.surgery import replace_tensor
from slimkit.models.zoo import mobilenet_v1
from slimkit.quant import (InferenceModel, calibrate, convert, export_float, export_quantized, exported_size,
                           prepare_ptq, quantized_layer_names)


def saved_weights(prefix):
    """name -> (dtype, shape) of the persistable tensors an export holds."""
    with compat.legacy_ir():
        paddle.enable_static()
        executor = paddle.static.Executor(paddle.CPUPlace())
        scope = paddle.static.Scope()
        with paddle.static.scope_guard(scope):
            program, _, _ = paddle.static.load_inference_model(str(prefix), executor)
            return {v.name: (np.array(scope.find_var(v.name).get_tensor()).dtype, tuple(v.shape))
                    for v in program.list_vars() if v.persistable and v.name not in ("feed", "fetch")}


def ptq_export(model, batches, folder, input_shape, **options):
    observed = prepare_ptq(model, **options)
    calibrate(observed, batches)
    converted = convert(observed)
    return converted, export_quantized(converted, folder, input_shape)


def test_int8_weights_on_disk_and_same_answers(digits, trained_cnn, tmp_path):
    batches = [(paddle.to_tensor(digits.train.images[i:i + 64]), None) for i in range(0, 256, 64)]
    converted, prefix = ptq_export(trained_cnn, batches, tmp_path / "int8", [1, 1, 8, 8])
    weights = saved_weights(prefix)
    int8 = sorted(shape for dtype, shape in weights.values() if dtype == np.int8)
    float_shapes = sorted(tuple(l.weight.shape) for l in trained_cnn.sublayers()
                          if isinstance(l, (paddle.nn.Conv2D, paddle.nn.Linear)))
    assert int8 == float_shapes  # every conv/linear weight, and nothing else, is int8
    float_prefix = export_float(trained_cnn, tmp_path / "fp32", [1, 1, 8, 8])
    params_ratio = ((prefix.parent / "model.pdiparams").stat().st_size
                    / (float_prefix.parent / "model.pdiparams").stat().st_size)
    assert params_ratio < 0.3
    assert exported_size(prefix) < exported_size(float_prefix)
    x = digits.test.images[:128]
    eager = converted(paddle.to_tensor(x)).numpy().argmax(1)
    for runtime in ("cpu", "onednn_int8"):
        reloaded = InferenceModel(prefix, runtime).run(x).argmax(1)
        assert (reloaded == eager).mean() >= 0.97, runtime


def test_depthwise_conv_quantizes_and_exports(tmp_path):
    paddle.seed(0)
    model = mobilenet_v1(num_classes=10, in_channels=1, scale=0.25)
    model.eval()
    x = np.random.RandomState(0).randn(8, 1, 16, 16).astype("float32")
    converted, prefix = ptq_export(model, [(paddle.to_tensor(x), None)], tmp_path, [1, 1, 16, 16])
    layers = dict(converted.named_sublayers())
    depthwise = [n for n in quantized_layer_names(converted) if getattr(layers[n], "_groups", 1) > 1]
    assert len(depthwise) == 13 and len(quantized_layer_names(converted)) == 28
    np.testing.assert_allclose(InferenceModel(prefix, "cpu").run(x), converted(paddle.to_tensor(x)).numpy(),
                               rtol=1e-3, atol=1e-3)


def test_pruned_model_quantizes_and_exports(digits, trained_cnn, tmp_path):
    model = copy.deepcopy(trained_cnn)
    layers = dict(model.named_sublayers())
    keep = np.arange(10)  # 16 -> 10 channels after the first conv
    conv0, bn0, conv1 = layers["features.0"], layers["features.1"], layers["features.3"]
    replace_tensor(conv0, "weight", conv0.weight.numpy()[keep])
    replace_tensor(conv0, "bias", conv0.bias.numpy()[keep])
    for name in ("weight", "bias", "_mean", "_variance"):
        replace_tensor(bn0, name, getattr(bn0, name).numpy()[keep])
    replace_tensor(conv1, "weight", conv1.weight.numpy()[:, keep])
    conv0._out_channels, bn0._num_features, conv1._in_channels = 10, 10, 10
    batches = [(paddle.to_tensor(digits.train.images[:128]), None)]
    converted, prefix = ptq_export(model, batches, tmp_path, [1, 1, 8, 8])
    shapes = {shape for dtype, shape in saved_weights(prefix).values() if dtype == np.int8}
    assert (10, 1, 3, 3) in shapes and (32, 10, 3, 3) in shapes
    x = digits.test.images[:64]
    np.testing.assert_allclose(InferenceModel(prefix, "cpu").run(x), converted(paddle.to_tensor(x)).numpy(),
                               rtol=1e-3, atol=1e-3)
