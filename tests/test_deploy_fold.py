"""The export folds constant multiplies and adds into the convolutions beside them (slimkit.deploy.fold):
fewer ops, the same answers in Paddle Inference, float and int8; where a fold would not be exact, none."""

import collections

import numpy as np
import paddle
import pytest

from slimkit import compat
from slimkit.deploy import InferenceModel, export_float
from slimkit.deploy import paddle_inference
from slimkit.exported import Affine
from slimkit.quant import calibrate, convert, export_quantized, prepare_ptq

SHAPE = [1, 3, 12, 12]


def _affine(weight, bias, channels=None):
    if channels is None:  # one value each, as PP-LCNet's learnable affine blocks
        return Affine([weight], [bias])
    return Affine(np.linspace(0.5, 1.5, channels) * weight, np.linspace(-0.2, 0.2, channels) + bias, [1, -1, 1, 1])


class AffineConvs(paddle.nn.Layer):
    """conv -> affine -> hardswish -> affine -> 1x1 conv -> per-channel affine -> relu -> affine -> padded conv."""

    def __init__(self):
        super().__init__()
        self.conv1 = paddle.nn.Conv2D(3, 8, 3, padding=1)
        self.lab1 = _affine(-1.3, 0.25)  # a negative scale: int8 weights change sign
        self.act1 = paddle.nn.Hardswish()
        self.lab2 = _affine(0.7, -0.1)
        self.pointwise = paddle.nn.Conv2D(8, 16, 1, bias_attr=False)
        self.channels = _affine(1.1, 0.05, channels=16)
        self.lab3 = _affine(1.4, 0.3)
        self.padded = paddle.nn.Conv2D(16, 4, 3, padding=1)

    def forward(self, x):
        y = self.lab2(self.act1(self.lab1(self.conv1(x))))
        y = paddle.nn.functional.relu(self.channels(self.pointwise(y)))
        return self.padded(self.lab3(y))


class SharedOutput(paddle.nn.Layer):
    """The conv's output is read twice (the affine and a residual add) and the affine ends the model."""

    def __init__(self):
        super().__init__()
        self.conv = paddle.nn.Conv2D(3, 3, 3, padding=1)
        self.lab = _affine(2.0, 0.5)
        self.head = paddle.nn.Conv2D(3, 5, 1)
        self.last = _affine(0.5, 1.0, channels=5)

    def forward(self, x):
        y = self.conv(x)
        y = self.lab(y) + y
        return self.last(self.head(y))


def _ops(prefix):
    with compat.legacy_ir():
        paddle.enable_static()
        executor = paddle.static.Executor(paddle.CPUPlace())
        with paddle.static.scope_guard(paddle.static.Scope()):
            program, _, _ = paddle.static.load_inference_model(str(prefix), executor)
            return collections.Counter(op.type for op in program.global_block().ops)


def _model(cls):
    paddle.seed(0)
    model = cls()
    model.eval()
    return model


def _inputs(n=4):
    return np.random.RandomState(1).uniform(-2, 2, [n, *SHAPE[1:]]).astype("float32")


@pytest.mark.parametrize("runtime", ["cpu", "onednn_int8"])
def test_the_affines_fold_into_the_convs_and_the_export_computes_the_eager_model(tmp_path, runtime):
    model = _model(AffineConvs)
    ops = _ops(export_float(model, tmp_path, SHAPE))
    # lab1 and the per-channel affine into the conv before them, lab2 into the 1x1 conv after it; lab3
    # sits before a padded conv (its borders would see the constant), so it stays, as one scale op
    assert ops["elementwise_mul"] == 0 and ops["scale"] == 1
    assert ops["elementwise_add"] == 3  # one bias add per conv
    x = _inputs()
    expected = model(paddle.to_tensor(x)).numpy()
    np.testing.assert_allclose(InferenceModel(tmp_path / "model", runtime).run(x), expected, rtol=1e-4, atol=1e-4)


def test_a_tensor_read_twice_is_not_folded_and_an_output_keeps_its_name(tmp_path):
    model = _model(SharedOutput)
    prefix = export_float(model, tmp_path, SHAPE)
    ops = _ops(prefix)
    assert ops["scale"] == 1  # lab: its input is also the residual's, so only merged into one op
    assert ops["elementwise_mul"] == 0  # `last` ends the model: folded into the head, the output is the same
    x = _inputs()
    got = InferenceModel(prefix, "cpu").run(x)
    np.testing.assert_allclose(got, model(paddle.to_tensor(x)).numpy(), rtol=1e-4, atol=1e-4)


def test_the_int8_export_folds_into_the_int8_weights_with_the_same_answers(tmp_path, monkeypatch):
    model = _model(AffineConvs)
    observed = prepare_ptq(model)
    calibrate(observed, [_inputs(8)])
    converted = convert(observed)
    folded = export_quantized(converted, tmp_path / "folded", SHAPE)
    monkeypatch.setattr(paddle_inference, "fold_constants", lambda program, scope, place: 0)
    unfolded = export_quantized(converted, tmp_path / "unfolded", SHAPE)
    assert _ops(folded)["elementwise_mul"] == 0 and _ops(unfolded)["elementwise_mul"] == 4
    x = _inputs()
    for runtime in ("cpu", "onednn_int8"):
        np.testing.assert_allclose(InferenceModel(folded, runtime).run(x), InferenceModel(unfolded, runtime).run(x),
                                   rtol=1e-3, atol=1e-3)
