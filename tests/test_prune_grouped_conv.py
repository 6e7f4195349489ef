"""Grouped convs (ResNeXt): channels leave evenly, so every conv group keeps its share and the group count stays."""

import sys

import numpy as np
import paddle
import paddle.nn as nn
import pytest
from prune_checks import prune_and_check

from slimkit.core.errors import ModelError
from slimkit.core.surgery import capture, state_shapes_differ
from slimkit.pruning import analyze, prune, remove_channels

resnet = sys.modules["paddle.vision.models.resnet"]


class TinyResNeXt(nn.Layer):
    """Two ResNeXt bottlenecks (paddle's BottleneckBlock, groups=4) on a small stem."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2D(3, 32, 3, padding=1, bias_attr=False), nn.BatchNorm2D(32), nn.ReLU())
        down = nn.Sequential(nn.Conv2D(32, 64, 1, stride=2, bias_attr=False), nn.BatchNorm2D(64))
        self.block1 = resnet.BottleneckBlock(32, 16, stride=2, downsample=down, groups=4, base_width=16)
        self.block2 = resnet.BottleneckBlock(64, 16, groups=4, base_width=16)
        self.pool = nn.AdaptiveAvgPool2D(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        return self.fc(paddle.flatten(self.pool(self.block2(self.block1(self.stem(x)))), 1))


def test_grouped_conv_prunes_evenly_and_exactly(tmp_path):
    model, graph, result = prune_and_check(TinyResNeXt, [1, 3, 16, 16], ratio=0.5, tmp_path=tmp_path)
    for block in ("block1", "block2"):
        conv = getattr(model, block).conv2
        # 16 -> 8 inputs and outputs, still 4 groups: 2 input positions and 2 outputs per group.
        assert conv._groups == 4 and conv.weight.shape == [8, 2, 3, 3]
        assert (conv._in_channels, conv._out_channels) == (8, 8)
        inputs, outputs = graph.group(f"{block}.conv1"), graph.group(f"{block}.conv2")
        assert (inputs.blocks, inputs.aligned, outputs.blocks, outputs.aligned) == (4, True, 4, False)
        kept_in = result.keep[inputs.name].reshape(4, -1) % 4
        assert (kept_in == kept_in[0]).all(), "inputs keep the same positions in every conv group"
        assert np.bincount(result.keep[outputs.name] // 4, minlength=4).tolist() == [2, 2, 2, 2]
    assert set(result.skipped) == {"fc"}


def test_uneven_keep_is_refused_and_the_model_is_unchanged():
    model = TinyResNeXt()
    graph = analyze(model, [1, 3, 16, 16])
    before = capture(model)
    with pytest.raises(ModelError, match="same positions"):
        remove_channels(model, graph, {"block1.conv1": np.array([0, 1, 4, 6, 8, 9, 12, 13])})
    with pytest.raises(ModelError, match="as many channels"):
        remove_channels(model, graph, {"block1.conv2": np.array([0, 1, 2, 4, 8, 9, 12, 13])})
    assert not state_shapes_differ(model, before)


def test_real_resnext50_prunes_every_grouped_conv(tmp_path):
    model = paddle.vision.models.resnext50_32x4d(num_classes=10)
    graph = analyze(model, [1, 3, 32, 32])
    assert set(graph.skipped()) == {"fc"}
    grouped = graph.group("layer1.0.conv2")
    assert (grouped.channels, grouped.blocks) == (128, 32)
    result = prune(model, [1, 3, 32, 32], ratios=0.5, graph=graph)
    conv = model.layer1[0].conv2
    assert conv._groups == 32 and conv.weight.shape == [64, 2, 3, 3]
    assert result.flops_after < 0.4 * result.flops_before
    assert model(paddle.randn([2, 3, 32, 32])).shape == [2, 10]


def test_sensitivity_and_a_flops_target_respect_the_conv_groups():
    from slimkit.pruning import FlopsProbe, select_greedy, sensitive

    paddle.seed(0)
    model = TinyResNeXt()
    shape = [1, 3, 16, 16]
    x = paddle.randn([8, 3, 16, 16])
    model.eval()
    reference = model(x).numpy().argmax(1)

    def agreement(m):
        m.eval()
        return float((m(x).numpy().argmax(1) == reference).mean())

    graph = analyze(model, shape)
    losses = sensitive(model, shape, agreement, ratios=[0.25, 0.5, 0.75], graph=graph, progress=False)
    assert {"block1.conv1", "block1.conv2", "block2.conv1", "block2.conv2"} <= set(losses)
    selection = select_greedy(FlopsProbe(model, graph, shape), graph.prunable(), losses, 0.4)
    assert selection.flops_reduction >= 0.4
    for name in ("block1.conv1", "block1.conv2", "block2.conv1", "block2.conv2"):
        assert selection.keep[name] % 4 == 0, (name, selection.keep[name])
