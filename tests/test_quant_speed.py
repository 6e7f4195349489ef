"""Never slower than float: the search's decisions under an injected timer, the candidate groups of a
recogniser-like model, and layers kept float really running float in the predictor (structure, not speed)."""

import json

import numpy as np
import paddle
import pytest

from slimkit import PTQ, Pipeline
from slimkit.quant import calibrate, export_quantized, keep_float, prepare_ptq, quantized_layer_names
from slimkit.quant.speed import FLOAT, Group, candidate_groups, keep_float_search
from slimkit.report.timing import Timing
from slimkit.deploy import InferenceModel
from text_recognizer import text_recognizer

STEM = Group("convolutions reading the input image", "few input channels", ["stem"])
DW = Group("depthwise convolutions", "memory-bound", ["dw1", "dw2"])
FC = Group("Linear layers on token sequences", "quantize/dequantize around float ops", ["fc"])


def timing(ms):
    return Timing(ms, ms * 0.9, ms * 1.1, 10)


def cost_timer(float_ms, int8_ms, float_gain, calls=None):
    """timings() of a model whose int8 export takes `int8_ms`, minus `float_gain[layer]` per layer kept float."""
    def timings(variants):
        if calls is not None:
            calls.append(dict(variants))
        return {name: timing(float_ms if v == FLOAT else int8_ms - sum(float_gain.get(n, 0) for n in v))
                for name, v in variants.items()}
    return timings


def test_a_faster_int8_export_is_kept_as_it_is():
    calls = []
    decision = keep_float_search([STEM, DW], cost_timer(10.0, 6.0, {"stem": 1.0}, calls))
    assert decision.kept_float == [] and not decision.searched and not decision.slower
    assert len(calls) == 1  # one interleaved timing of int8 against float, no search
    assert "int8 is faster" in decision.note() and "6.000 ms" in decision.note()


def test_a_slower_int8_export_keeps_float_the_groups_that_measure_faster():
    gains = {"stem": 3.0, "dw1": 0.05, "dw2": 0.05, "fc": 1.5}  # the depthwise gain is below the margin
    decision = keep_float_search([STEM, DW, FC], cost_timer(10.0, 12.0, gains))
    assert decision.kept_float == ["stem", "fc"]
    assert [(t.group.label, t.kept_float) for t in decision.trials] == [
        (STEM.label, True), (DW.label, False), (FC.label, True)]
    assert decision.int8.median == pytest.approx(7.5) and not decision.slower
    note = decision.note()
    assert "convolutions reading the input image (1: stem) kept float: few input channels" in note
    assert "measured 12.000 -> 9.000 ms" in note and "put back (no gain): depthwise convolutions" in note
    assert "int8 12.000 ms before the search" in note


def test_still_slower_says_so_with_the_numbers():
    decision = keep_float_search([STEM], cost_timer(10.0, 14.0, {"stem": 1.0}))
    assert decision.slower and decision.kept_float == ["stem"]
    assert "still slower than float by 1.30x after keeping 1 layer(s) float" in decision.note()
    assert "13.000 ms" in decision.note() and "10.000 ms" in decision.note()


def test_always_searches_a_faster_export_and_off_only_times():
    assert keep_float_search([STEM], cost_timer(10.0, 6.0, {"stem": 1.0}), mode="always").kept_float == ["stem"]
    calls = []
    off = keep_float_search([STEM], cost_timer(10.0, 14.0, {"stem": 1.0}, calls), mode="off")
    assert off.kept_float == [] and off.slower and len(calls) == 1


def test_a_group_already_float_is_not_tried_again():
    calls = []
    overlapping = Group("convolutions on 1x1 maps", "little work", ["stem"])
    keep_float_search([STEM, overlapping], cost_timer(10.0, 12.0, {"stem": 3.0}, calls))
    assert len(calls) == 3  # first timing, the stem trial, the final re-check


@pytest.fixture(scope="module")
def recognizer():
    return text_recognizer(num_classes=12, scale=0.25, hidden=32, depth=1)


SHAPE = [1, 3, 48, 64]


def test_candidate_groups_of_a_recognizer(recognizer):
    names = [n for n, l in recognizer.named_sublayers() if isinstance(l, (paddle.nn.Conv2D, paddle.nn.Linear))]
    groups = {g.label: g.layers for g in candidate_groups(recognizer, names, SHAPE)}
    assert groups["convolutions reading the input image"] == ["backbone.stem.0"]
    depthwise = groups["depthwise convolutions"]
    assert all(n.endswith(".dw.0") for n in depthwise) and len(depthwise) == 11
    assert sorted(groups["convolutions on 1x1 maps"]) == sorted(n for n in names if ".se." in n)
    assert set(groups["Linear layers on token sequences"]) == {
        "neck.blocks.0.attn.qkv", "neck.blocks.0.attn.proj", "neck.blocks.0.mlp.0", "neck.blocks.0.mlp.2", "head"}
    assert "Linear layers on flat features" not in groups


def conv_and_fc_kinds(prefix):
    """{op type: {data type: count}} of the convolutions and fc ops the predictor runs."""
    kinds = {}
    for op in InferenceModel(prefix, "onednn_int8").optimized_program().global_block().ops:
        if op.type in ("fused_conv2d", "conv2d", "depthwise_conv2d", "fc"):
            kind = op.attr("mkldnn_data_type") if op.has_attr("mkldnn_data_type") else "float32"
            kinds.setdefault(op.type, {}).setdefault(kind, 0)
            kinds[op.type][kind] += 1
    return kinds


def test_layers_kept_float_run_float_in_the_predictor(recognizer, tmp_path):
    observed = prepare_ptq(recognizer, input_shape=SHAPE)
    rng = np.random.RandomState(0)
    calibrate(observed, [rng.randn(*SHAPE).astype("float32") for _ in range(2)], progress=False)
    linears = [n for n in quantized_layer_names(observed) if isinstance(dict(recognizer.named_sublayers())[n],
                                                                         paddle.nn.Linear)]
    every = conv_and_fc_kinds(export_quantized(observed, tmp_path / "all", SHAPE))
    assert every["fc"] == {"int8": 5} and "float32" not in every["fused_conv2d"]
    partial = keep_float(observed, linears + ["backbone.stem.0"])
    kinds = conv_and_fc_kinds(export_quantized(partial, tmp_path / "kept", SHAPE))
    assert kinds["fc"] == {"float32": 5}
    assert kinds["fused_conv2d"]["float32"] == 1 and kinds["fused_conv2d"]["int8"] == every["fused_conv2d"]["int8"] - 1
    assert len(quantized_layer_names(observed)) == len(quantized_layer_names(partial)) + 6  # the original kept


class StemFloatIsFaster:
    """A VariantTimer stand-in: the export is 'faster' once features.0 is float (the digits CNN's first conv)."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, variants):
        return {name: timing(2.0 if v == FLOAT else (1.5 if "features.0" in v else 3.0))
                for name, v in variants.items()}


def test_the_stage_keeps_float_what_the_timer_finds_slower_and_resumes_it(digits, trained_cnn, tmp_path, monkeypatch):
    monkeypatch.setattr("slimkit.strategies.quantization.VariantTimer", StemFloatIsFaster)
    stages = [PTQ(calibration_batches=2)]
    pipeline = Pipeline(trained_cnn, digits, stages=stages, out_dir=tmp_path, verbose=False, train={"progress": False})
    report = pipeline.run()[-1]
    assert report.extra["kept_float"] == ["features.0"]
    assert "features.0" not in quantized_layer_names(pipeline.model)
    note = next(n for n in report.notes if n.kind == "float_fallback")
    assert "convolutions reading the input image (1: features.0) kept float" in note and "3.000 -> 1.500 ms" in note
    assert json.loads((tmp_path / "01-ptq" / "kept_float.json").read_text()) == {"kept_float": ["features.0"]}
    kinds = conv_and_fc_kinds(tmp_path / "01-ptq" / "inference" / "model")
    assert kinds["fused_conv2d"] == {"float32": 1, "int8": 2}
    again = Pipeline(trained_cnn, digits, stages=stages, out_dir=tmp_path, verbose=False, train={"progress": False})
    again.run(resume=True)
    x = paddle.to_tensor(digits.test.images[:32])
    np.testing.assert_allclose(again.model(x).numpy(), pipeline.model(x).numpy(), rtol=1e-5, atol=1e-5)
    assert "features.0" not in quantized_layer_names(again.model)
