"""Where PTQ's observers sit in a PP-OCR-like recogniser, oneDNN fuses and runs int8 what it should:
conv+BN+activation as one int8 convolution, Linear as int8 fc, attention matmuls and softmax in float,
and the int8 export computes what the float model does (structure and values, never speed)."""

import collections

import numpy as np
import paddle
import pytest

from slimkit.deploy import InferenceModel
from slimkit.quant import calibrate, export_float, export_quantized, prepare_ptq
from text_recognizer import text_recognizer

SHAPE = [1, 3, 48, 64]


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    folder = tmp_path_factory.mktemp("recognizer")
    model = text_recognizer(num_classes=12, scale=0.25, hidden=32, depth=1)
    observed = prepare_ptq(model, algo="hist", input_shape=SHAPE)
    rng = np.random.RandomState(0)
    calibrate(observed, [rng.randn(2, *SHAPE[1:]).astype("float32") for _ in range(3)], progress=False)
    return model, export_quantized(observed, folder / "int8", SHAPE), export_float(model, folder / "float", SHAPE)


def optimized_ops(prefix):
    return InferenceModel(prefix, "onednn_int8").optimized_program().global_block().ops


def test_every_convolution_and_fc_runs_int8_with_its_activation_fused(exports):
    model, int8, _ = exports
    ops = optimized_ops(int8)
    kinds = collections.Counter((op.type, op.attr("mkldnn_data_type")) for op in ops
                                if op.type in ("fused_conv2d", "fc"))
    convs = sum(isinstance(layer, paddle.nn.Conv2D) for layer in model.sublayers())
    assert kinds == {("fused_conv2d", "int8"): convs, ("fc", "int8"): 5}
    activations = collections.Counter(op.attr("fuse_activation") for op in ops if op.type == "fused_conv2d")
    assert activations["hard_swish"] == 23 and activations["swish"] == 5  # every conv-BN-act block is one kernel
    assert not {"hard_swish", "swish", "gelu", "batch_norm"} & {op.type for op in ops}


def test_attention_stays_float_and_the_backbone_chains_int8(exports):
    _, int8, _ = exports
    ops = optimized_ops(int8)
    matmuls = [op for op in ops if op.type == "fused_matmul"]
    assert len(matmuls) == 2 and all(op.attr("mkldnn_data_type") == "float32" for op in matmuls)
    # Convolutions hand int8 to the next one: far fewer quantize ops than quantized layers.
    assert sum(op.type == "quantize" for op in ops) < 12


def test_the_int8_export_computes_close_to_the_float_one(exports):
    _, int8, floating = exports
    x = np.random.RandomState(1).randn(4, *SHAPE[1:]).astype("float32")
    got, want = InferenceModel(int8, "onednn_int8").run(x), InferenceModel(floating, "onednn_int8").run(x)
    assert np.abs(got - want).max() < 0.1 * np.abs(want).max()
