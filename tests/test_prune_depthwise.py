"""Depthwise/separable convs: a depthwise conv carries its input's channels (weight and groups shrink with them)."""

import paddle
import pytest
from prune_checks import prune_and_check

import slimkit
from slimkit.pruning.selection import channels_to_keep

MODELS = {
    "mobilenet_v1": lambda: slimkit.build_model("mobilenet_v1", num_classes=10, scale=0.5),
    "mobilenet_v2": lambda: paddle.vision.models.mobilenet_v2(num_classes=10),
    "mobilenet_v3_small": lambda: paddle.vision.models.mobilenet_v3_small(num_classes=10),
}
# One depthwise conv per model and the layer whose output channels it carries.
FOLLOWS = {
    "mobilenet_v1": ("features.3", "features.0"),
    "mobilenet_v2": ("features.2.conv.1.0", "features.2.conv.0.0"),
    "mobilenet_v3_small": ("blocks.3.bottleneck_conv.0", "blocks.3.expand_conv.0"),
}


def depthwise(model):
    return {n: l for n, l in model.named_sublayers()
            if isinstance(l, paddle.nn.Conv2D) and l._groups > 1 and l._groups == l._in_channels}


@pytest.mark.parametrize("name", list(MODELS))
def test_depthwise_convs_follow_their_producers(tmp_path, name):
    model, graph, result = prune_and_check(MODELS[name], [1, 3, 32, 32], tmp_path=tmp_path)
    convs = depthwise(model)
    assert convs and not set(convs) & set(graph.skipped())
    for dw, layer in convs.items():
        assert dw not in [r for g in graph.groups for r in g.roots]  # never a group of its own
        assert (dw, "weight", 0) in graph.group(dw).members
        assert layer._groups == layer._in_channels == layer._out_channels == layer.weight.shape[0]
        assert layer._groups == result.graph.group(dw).channels
    dw, producer = FOLLOWS[name]
    assert graph.group(dw) is graph.group(producer)
    before = graph.group(producer).channels
    assert convs[dw]._groups == channels_to_keep(before, 0.3, round_to=None)  # the default alignment
    assert len(result.skipped) == 1  # only the logits layer


def test_squeeze_excitation_gate_is_coupled_with_the_gated_channels():
    graph = slimkit.pruning.analyze(MODELS["mobilenet_v3_small"](), [1, 3, 32, 32])
    gate = graph.group("blocks.3.mid_se.fc2")
    assert gate.roots == ["blocks.3.expand_conv.0", "blocks.3.mid_se.fc2"] and gate.prunable
    squeeze = graph.group("blocks.3.mid_se.fc1")
    assert squeeze.roots == ["blocks.3.mid_se.fc1"] and squeeze.prunable
