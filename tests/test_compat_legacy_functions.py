"""slimkit.compat's legacy-IR functions: models calling paddle.matmul, F.gelu, nn.Tanh, ... export under
the legacy IR and run in Paddle Inference like the eager model; the workaround is still needed."""

import numpy as np
import paddle
import pytest

from slimkit import compat
from slimkit.deploy import InferenceModel, export_float
from compat_functions_model import PirOnlyFunctions

SPEC = [paddle.static.InputSpec([None, 4, 8], "float32", "x")]


def test_the_workaround_is_needed(tmp_path):
    # If this starts to pass, Paddle's own functions append legacy ops again: drop LEGACY_FUNCTIONS.
    model = PirOnlyFunctions()
    with compat.session_guard(), paddle.pir_utils.OldIrGuard():
        with pytest.raises(TypeError, match="must be Value, but got Variable"):
            paddle.jit.save(model, str(tmp_path / "model"), input_spec=SPEC)
    assert compat.pir_enabled() and paddle.in_dynamic_mode()


@pytest.mark.parametrize("runtime", ["cpu", "onednn_int8"])
def test_the_export_computes_what_the_eager_model_does(tmp_path, runtime):
    paddle.seed(0)
    model = PirOnlyFunctions()
    model.eval()
    prefix = export_float(model, tmp_path / runtime, [1, 4, 8])
    x = np.random.RandomState(0).randn(3, 4, 8).astype("float32")
    np.testing.assert_allclose(InferenceModel(prefix, runtime).run(x), model(paddle.to_tensor(x)).numpy(),
                               rtol=1e-4, atol=1e-4)


def test_paddle_is_restored_after_the_export(tmp_path):
    from paddle import _C_ops
    from paddle.base.framework import Variable

    before = {name: getattr(_C_ops, name) for name in compat.LEGACY_FUNCTIONS}
    method = Variable.matmul
    export_float(PirOnlyFunctions(), tmp_path, [1, 4, 8])
    assert all(getattr(_C_ops, name) is function for name, function in before.items())
    assert Variable.matmul is method
    y = paddle.matmul(paddle.ones([2, 3]), paddle.ones([3, 2]))  # eager calls are paddle's own again
    assert y.numpy().tolist() == [[3.0, 3.0], [3.0, 3.0]]


class _BiasedConvs(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.conv = paddle.nn.Conv2D(3, 8, 3, padding=1)                         # the layer's call
        self.weight = self.create_parameter([8, 8, 1, 1])
        self.bias = self.create_parameter([8], is_bias=True,
                                          default_initializer=paddle.nn.initializer.Constant(0.5))

    def forward(self, x):
        return paddle.nn.functional.conv2d(paddle.nn.functional.relu(self.conv(x)), self.weight, self.bias)  # F's


def _conv_bias_ops(prefix):
    from slimkit.deploy.paddle_inference import _op_types

    return _op_types(prefix), InferenceModel(prefix, "onednn_int8").optimized_ops()


def test_a_convolution_bias_fuses_into_the_convolution_in_the_predictor(tmp_path):
    from paddle.nn.functional import conv as conv_module

    paddle.seed(0)
    model = _BiasedConvs()
    model.eval()
    original = conv_module._conv_nd
    prefix = export_float(model, tmp_path / "fused", [1, 3, 16, 16])
    program, optimized = _conv_bias_ops(prefix)
    assert "reshape2" not in program and "elementwise_add" in program  # the 1-D bias added on the channel axis
    assert optimized.get("fused_conv2d") == 2 and "fused_elementwise_add" not in optimized  # both fused
    x = np.random.RandomState(0).randn(2, 3, 16, 16).astype("float32")
    np.testing.assert_allclose(InferenceModel(prefix, "onednn_int8").run(x), model(paddle.to_tensor(x)).numpy(),
                               rtol=1e-4, atol=1e-4)
    assert conv_module._conv_nd is original  # Paddle's own again after the export


def test_the_conv_bias_workaround_is_needed(tmp_path):
    # If this starts to fuse, Paddle's legacy conv adds its bias fusably again: drop _conv_with_fusable_bias.
    model = _BiasedConvs()
    model.eval()
    with compat.session_guard(), paddle.pir_utils.OldIrGuard():
        paddle.jit.save(model, str(tmp_path / "model"), input_spec=[paddle.static.InputSpec([1, 3, 16, 16])])
    program, optimized = _conv_bias_ops(tmp_path / "model")
    assert "reshape2" in program and optimized.get("fused_elementwise_add") == 2
