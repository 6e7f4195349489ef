"""Grouped convs (ResNeXt): single channels cannot leave a channel group, so both sides are skipped, with why."""

import sys

import paddle
import paddle.nn as nn

from prune_checks import prune_and_check
from slimkit.pruning import analyze

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


def test_grouped_conv_sides_are_skipped_and_the_rest_prunes(tmp_path):
    model, graph, result = prune_and_check(TinyResNeXt, [1, 3, 16, 16], tmp_path=tmp_path)
    assert model.block1.conv2._groups == 4 and model.block1.conv2.weight.shape == [16, 4, 3, 3]  # untouched
    for block in ("block1", "block2"):
        assert "feeds grouped convolution" in result.skipped[f"{block}.conv1"]
        assert "groups=4" in result.skipped[f"{block}.conv2"]
    assert [g.roots for g in graph.prunable()] == [["stem.0"], ["block1.conv3", "block1.downsample.0", "block2.conv3"]]


def test_real_resnext50_skips_every_grouped_conv():
    graph = analyze(paddle.vision.models.resnext50_32x4d(num_classes=10), [1, 3, 32, 32])
    grouped = [f"layer{i}.{j}.conv2" for i, n in zip((1, 2, 3, 4), (3, 4, 6, 3)) for j in range(n)]
    skipped = graph.skipped()
    assert all("groups=32" in skipped[name] for name in grouped)
    assert len(graph.prunable()) == 5  # the stem and the residual stream of each of the 4 stages
