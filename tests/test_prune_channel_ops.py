"""Per-channel ops and gates of mobile and segmentation networks pass channels through and prune.

Shared-slope PReLU, scalar scales, maximum/minimum of branches, hard-sigmoid/hard-swish,
clip, spatial pad, where, [N, C, 1, 1] gates, every interpolate variant (with and without a
size tensor, 1-D `linear` too) and depthwise convs with a channel multiplier.
"""

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
import pytest

from prune_checks import prune_and_check
from slimkit.pruning import analyze


class MobileOps(nn.Layer):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2D(3, 16, 3, padding=1), nn.Conv2D(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2D(16)
        self.shared = nn.PReLU()  # one slope for every channel
        self.per_channel = nn.PReLU(16)
        self.gate = nn.Conv2D(16, 16, 1)
        self.c = nn.Conv2D(16, 24, 3, padding=1)
        self.fc = nn.Linear(24, 10)

    def forward(self, x):
        y = paddle.maximum(self.a(x), self.b(x))  # a dynamic activation of two branches
        y = self.shared(self.bn(y)) * 0.5
        y = paddle.minimum(F.hardswish(y), F.relu6(y))
        y = self.per_channel(paddle.clip(y, -2.0, 2.0))
        y = y * F.hardsigmoid(self.gate(F.adaptive_avg_pool2d(y, 1)))  # an [N, C, 1, 1] gate
        y = paddle.where(y > 0, y, 0.1 * y)
        y = F.pad(y, [1, 1, 1, 1])
        y = F.interpolate(self.c(y), scale_factor=0.5, mode="bicubic")
        return self.fc(F.adaptive_avg_pool2d(y, 1).flatten(1))


class Interpolations(nn.Layer):
    def __init__(self, with_size):
        super().__init__()
        self.with_size = with_size
        self.a = nn.Conv2D(3, 16, 3, stride=2, padding=1)
        self.b = nn.Conv2D(16, 16, 3, padding=1)
        self.c = nn.Conv1D(16, 12, 3, padding=1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.fc = nn.Linear(12, 10)

    def forward(self, x):
        y = self.a(x)
        if self.with_size:
            y = F.interpolate(y, size=paddle.shape(x)[2:], mode="bilinear", align_corners=True)
        else:
            y = self.up(F.interpolate(y, scale_factor=0.5, mode="bilinear"))
        y = self.b(y).mean(axis=2)  # [N, C, W]
        y = F.interpolate(y, scale_factor=2, mode="linear", data_format="NCW")
        return self.fc(self.c(y).mean(axis=2))


class ChannelMultiplier(nn.Layer):
    """BiSeNetV2's gather-and-expansion: a depthwise conv with out = 3 * in, then a 1x1 projection."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2D(3, 16, 3, padding=1)
        self.expand = nn.Conv2D(16, 48, 3, padding=1, groups=16)
        self.bn = nn.BatchNorm2D(48)
        self.project = nn.Conv2D(48, 24, 1)
        self.fc = nn.Linear(24, 10)

    def forward(self, x):
        y = F.relu(self.bn(self.expand(F.relu(self.stem(x)))))
        return self.fc(F.adaptive_avg_pool2d(self.project(y), 1).flatten(1))


def test_per_channel_ops_and_gates_prune(tmp_path):
    model, graph, result = prune_and_check(MobileOps, [1, 3, 16, 16], tmp_path=tmp_path, round_to=1)
    assert set(graph.group("a").roots) == {"a", "b", "gate"}  # maximum couples the branches, the gate joins
    assert set(result.skipped) == {"fc"}
    assert model.shared._weight.shape == [1] and model.per_channel._weight.shape == [16 - round(16 * 0.3)]


@pytest.mark.parametrize("with_size", [True, False])
def test_interpolate_with_and_without_size_tensor(tmp_path, with_size):
    model, graph, result = prune_and_check(lambda: Interpolations(with_size), [1, 3, 16, 16], tmp_path=tmp_path,
                                           round_to=1)
    assert [g.name for g in graph.prunable()] == ["a", "b", "c"]
    assert result.flops_after < 0.85 * result.flops_before


def test_depthwise_channel_multiplier_prunes_in_steps_of_k(tmp_path):
    model, graph, result = prune_and_check(ChannelMultiplier, [1, 3, 16, 16], tmp_path=tmp_path, round_to=1)
    assert graph.group("expand") is graph.group("stem")
    kept = 16 - round(16 * 0.3)
    assert model.expand.weight.shape == [3 * kept, 1, 3, 3] and model.expand._groups == kept
    assert model.bn.weight.shape == [3 * kept] and model.project.weight.shape[1] == 3 * kept


def test_padding_along_channels_keeps_them_whole():
    class PadChannels(nn.Layer):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2D(3, 8, 3), nn.Conv2D(10, 4, 3)

        def forward(self, x):
            return self.b(F.pad(self.a(x), [0, 0, 1, 1, 0, 0, 0, 0]))

    graph = analyze(PadChannels(), [1, 3, 8, 8])
    assert not graph.group("a").prunable and "channel count" in graph.group("a").reason


def test_scalar_parameters_pass_channels():
    class ScalarScale(nn.Layer):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2D(3, 8, 3), nn.Conv2D(8, 4, 3)
            self.alpha = self.create_parameter([1], default_initializer=nn.initializer.Constant(0.5))
            self.slope = nn.PReLU()

        def forward(self, x):
            return self.b(self.slope(self.a(x) * self.alpha))

    graph = analyze(ScalarScale(), [1, 3, 8, 8])
    assert graph.group("a").prunable and not any(m[0] in ("", "slope") for m in graph.group("a").members)
