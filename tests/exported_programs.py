"""Small models the exported-program tests save themselves, and a check against Paddle Inference."""

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from slimkit import compat


class EveryKind(nn.Layer):
    """Every parameterised op kind the importer turns into a layer, with a batch norm folded into a conv."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2D(3, 8, 3, padding=1)                    # conv2d + its bias add
        self.bn = nn.BatchNorm2D(8)
        self.depthwise = nn.Conv2D(8, 8, 3, padding=1, groups=8, bias_attr=False)
        self.grouped = nn.Conv2D(8, 8, 3, stride=2, padding=[1, 1, 0, 0], groups=2, bias_attr=False)
        # a batch norm folded into a conv: a per-channel multiply and add of parameters
        self.scale = self.create_parameter([1, 8, 1, 1], default_initializer=nn.initializer.Uniform(0.5, 1.5))
        self.shift = self.create_parameter([1, 8, 1, 1], default_initializer=nn.initializer.Uniform(-0.5, 0.5))
        self.gain = self.create_parameter([1], default_initializer=nn.initializer.Constant(1.25))  # one value
        self.up = nn.Conv2DTranspose(8, 4, 2, stride=2)
        self.head = nn.Conv2D(4, 6, 1, dilation=1)
        self.norm = nn.LayerNorm(6)
        self.fc = nn.Linear(6, 5)
        self.fc_plain = nn.Linear(5, 4, bias_attr=False)
        self.bn1d = nn.BatchNorm1D(4)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        x = F.hardswish(self.depthwise(x))
        x = self.grouped(x) * self.scale + self.shift
        x = F.relu6(x * self.gain)
        x = compat.any_ir.sigmoid(self.up(x))  # F.sigmoid cannot be saved under the legacy IR
        x = self.head(x)
        x = paddle.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        x = self.fc(self.norm(x))
        return F.softmax(self.bn1d(self.fc_plain(compat.any_ir.gelu(x))), axis=-1)


class TwoHeads(nn.Layer):
    """A program with two outputs: class scores and a feature map."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2D(3, 8, 3, padding=1), nn.BatchNorm2D(8), nn.ReLU(), nn.MaxPool2D(2))
        self.seg = nn.Conv2D(8, 2, 1)
        self.cls = nn.Linear(8, 3)

    def forward(self, x):
        f = self.body(x)
        scores = self.cls(paddle.mean(f, axis=[2, 3]))
        return scores, F.interpolate(self.seg(f), scale_factor=2, mode="nearest")


class Unsupported(nn.Layer):
    """A program with two op kinds slimkit has no translator for (cumsum twice, flip once)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2D(3, 4, 3)

    def forward(self, x):
        x = paddle.cumsum(self.conv(x), axis=1)
        return paddle.flip(paddle.cumsum(x, axis=2), axis=[3])


def save(model, prefix, shape, legacy=False, name="x"):
    """paddle.jit.save `model` (eval mode) with input `name` of `shape` (None: dynamic), as .json or .pdmodel."""
    model.eval()
    spec = [paddle.static.InputSpec(shape, "float32", name)]
    if legacy:
        with compat.legacy_ir():
            paddle.jit.save(model, str(prefix), input_spec=spec)
    else:
        paddle.jit.save(model, str(prefix), input_spec=spec)
    return prefix


def predictor_outputs(program, params, x):
    """Every output of the program files in the Paddle Inference predictor (plain CPU kernels), by name."""
    config = paddle.inference.Config(str(program), str(params))
    config.disable_glog_info()
    config.disable_mkldnn()
    predictor = paddle.inference.create_predictor(config)
    handle = predictor.get_input_handle(predictor.get_input_names()[0])
    handle.reshape(list(x.shape))
    handle.copy_from_cpu(x)
    predictor.run()
    return {n: predictor.get_output_handle(n).copy_to_cpu() for n in predictor.get_output_names()}


def max_difference(model, x):
    """Largest |imported model - Paddle Inference on its program| over all outputs."""
    sig = model.program_signature
    expected = predictor_outputs(sig["program"], sig["params"], x)
    model.eval()
    with paddle.no_grad():
        got = model(paddle.to_tensor(x))
    got = list(got) if isinstance(got, (list, tuple)) else [got]
    assert len(got) == len(expected)
    return max(float(np.abs(g.numpy() - e).max()) for g, e in zip(got, expected.values()))


def batch(shape, seed=0):
    return np.random.RandomState(seed).rand(*shape).astype("float32")
