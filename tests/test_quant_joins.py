"""Observers where branches join: the residual tensors and fused outputs that Paddle Inference's
oneDNN int8 pass needs scales for, so a ResNet's residual convolutions run in int8 too."""

import numpy as np
import paddle
import pytest

import slimkit
from slimkit.deploy import InferenceModel
from slimkit.quant import calibrate, convert, export_quantized, prepare_ptq, quantize_for_training
from slimkit.quant.joins import INPUT_OBSERVER, OUTPUT_OBSERVER, join_layers

SHAPE = [1, 3, 32, 32]


def resnet18():
    paddle.seed(0)
    model = slimkit.build_model("resnet18", num_classes=10, in_channels=3, input_size=32)
    model.eval()
    return model


def int8_of(model, input_shape):
    observed = prepare_ptq(model, input_shape=input_shape)
    rng = np.random.RandomState(0)
    calibrate(observed, [(paddle.to_tensor(rng.randn(*SHAPE).astype("float32")), None) for _ in range(2)])
    return convert(observed)


def conv_kernels(prefix):
    """{data type: count} of the convolutions in the program the predictor runs."""
    program = InferenceModel(prefix, "onednn_int8", 1).optimized_program()
    kinds = {}
    for op in program.global_block().ops:
        if op.type == "fused_conv2d":
            kind = op.attr("mkldnn_data_type")
            kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def test_join_layers_are_the_batch_norms_feeding_residual_adds():
    joins = join_layers(resnet18(), SHAPE)
    # Every block's last BN meets the shortcut; a downsampling block's shortcut BN is the other operand.
    assert {"layer1.0.bn2", "layer1.1.bn2", "layer4.1.bn2"} <= set(joins)
    assert {"layer2.0.downsample.1", "layer3.0.downsample.1", "layer4.0.downsample.1"} <= set(joins)
    assert not any(name.endswith("bn1") or name == "conv1" for name in joins)  # followed by ReLU, not an add


def test_every_convolution_runs_in_int8_only_with_the_join_observers(tmp_path):
    model = resnet18()
    without = conv_kernels(export_quantized(int8_of(model, None), tmp_path / "inputs_only", SHAPE))
    with_joins = conv_kernels(export_quantized(int8_of(model, SHAPE), tmp_path / "joins", SHAPE))
    assert without.get("float32", 0) > 0  # the shortcut blocks and the last block stay float
    assert with_joins == {"int8": sum(without.values())}


def test_the_users_model_gets_no_observer_and_keeps_its_names():
    model = resnet18()
    names = [n for n, _ in model.named_sublayers()]
    qat = quantize_for_training(model, input_shape=SHAPE)
    assert [n for n, _ in model.named_sublayers()] == names
    assert not any(layer._forward_post_hooks or layer._forward_pre_hooks for _, layer in model.named_sublayers())
    quantized_names = {n for n, _ in qat.named_sublayers()}
    assert f"layer2.0.downsample.1.{OUTPUT_OBSERVER}" in quantized_names
    assert f"avgpool.{INPUT_OBSERVER}" in quantized_names
    assert {n for n in names if "." not in n} <= quantized_names


def test_a_model_that_cannot_be_traced_is_quantized_with_input_observers():
    class Untraceable(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.conv = paddle.nn.Conv2D(3, 4, 3)
            self.bn = paddle.nn.BatchNorm2D(4)

        def forward(self, x):
            y = self.bn(self.conv(x))
            return y + y if float(y.mean()) > -1e9 else y  # data-dependent Python branch

    observed = prepare_ptq(Untraceable(), input_shape=SHAPE)
    assert not any(OUTPUT_OBSERVER in n for n, _ in observed.named_sublayers())
    observed(paddle.randn(SHAPE))


@pytest.mark.parametrize("shape", [None, SHAPE])
def test_qat_model_trains_a_step_with_and_without_joins(shape):
    qat = quantize_for_training(resnet18(), input_shape=shape)
    loss = qat(paddle.randn([2, 3, 32, 32])).mean()
    loss.backward()
    assert all(p.grad is not None for p in qat.parameters() if not p.stop_gradient and p.name.endswith("w_0"))
