"""Per-channel ops and gates of mobile and segmentation networks pass channels through and prune.

Shared-slope PReLU, scalar scales, maximum/minimum of branches, hard-sigmoid/hard-swish,
clip, spatial pad, where, [N, C, 1, 1] gates, every interpolate variant (with and without a
size tensor, 1-D `linear` too) and depthwise convs with a channel multiplier.
"""

import paddle.nn as nn
import paddle.nn.functional as F
import pytest
from prune_checks import prune_and_check
from structure_models import ChannelMultiplier, Interpolations, MobileOps

from slimkit.pruning import analyze


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
