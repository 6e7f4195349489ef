"""Channels-last blocks (ConvNeXt), token flatten + Linear (transformer-style segmenters), GroupNorm.

A transpose moves the channel axis and the walk follows it: LayerNorm over the last axis,
Linear layers on the last axis and per-channel `gamma * x` are sliced with the channels,
so both the hidden 4C width and the residual stream prune.
"""

import paddle.nn as nn
from prune_checks import prune_and_check
from structure_models import ConvNeXtTiny, TokenBlock

from slimkit.pruning import analyze


def test_convnext_hidden_width_prunes_exactly(tmp_path):
    ratios = {"stage.0.pw1": 0.3, "stage.1.pw1": 0.5}
    model, graph, result = prune_and_check(ConvNeXtTiny, [1, 3, 16, 16], ratio=ratios, tmp_path=tmp_path, round_to=1)
    assert model.stage[0].pw1.weight.shape == [16, 64 - 19] and model.stage[1].pw2.weight.shape == [32, 16]


def test_convnext_block_prunes_hidden_width_and_residual_stream(tmp_path):
    # The residual stream passes LayerNorms over the channels: an embedding width, pruned when asked,
    # but not equal to the masked model.
    model, graph, result = prune_and_check(ConvNeXtTiny, [1, 3, 16, 16], tmp_path=tmp_path, round_to=1, exact=False,
                                           prune_embed=True)
    stream = graph.group("stem")
    assert stream.kind == "embed" and {"stem", "stage.0.pw2", "stage.1.pw2"} <= set(stream.roots)
    assert ("stage.0.norm", "weight", 0) in stream.members and ("stage.0", "gamma", 0) in stream.members
    assert graph.group("stage.0.pw1").prunable
    assert set(result.skipped) == {"fc"}
    kept = 16 - round(16 * 0.3)
    assert model.stage[0].norm.weight.shape == [kept] and model.stage[0].pw1.weight.shape == [kept, 64 - 19]
    assert result.flops_after < 0.85 * result.flops_before


def test_convnext_by_default_prunes_its_hidden_widths_exactly_and_keeps_the_stream(tmp_path):
    model, graph, result = prune_and_check(ConvNeXtTiny, [1, 3, 16, 16], tmp_path=tmp_path, round_to=1)
    assert result.skipped["stem"] == "embedding width (LayerNorms normalize it) not pruned (prune_embed is false)"
    assert {name for name, _, _ in result.layers} == {"stage.0.pw1", "stage.1.pw1"}


def test_token_flatten_linear_prunes_exactly(tmp_path):
    model, graph, result = prune_and_check(TokenBlock, [1, 3, 16, 16], ratio={"q": 0.3, "proj": 0.5},
                                           out_dim=None, tmp_path=tmp_path, round_to=1)
    assert model.q.weight.shape == [16, 32 - 10] and model.out.weight.shape[1] == 12


def test_token_flatten_block_with_group_norm_prunes(tmp_path):
    # GroupNorm's statistics change with the channels: pruned evenly per group, not equal to the masked model.
    model, graph, result = prune_and_check(TokenBlock, [1, 3, 16, 16], out_dim=None, tmp_path=tmp_path, round_to=1,
                                           exact=False)
    assert [g.name for g in graph.prunable()] == ["conv", "q", "proj"]
    assert graph.group("conv").blocks == 4 and graph.group("conv").channel_multiple == 4
    assert model.gn.weight.shape[0] == 12 and model.gn._num_groups == 4
    assert result.flops_after < 0.85 * result.flops_before


def test_layer_norm_over_channels_and_space_keeps_them_whole():
    class WideNorm(nn.Layer):
        def __init__(self):
            super().__init__()
            self.conv, self.norm, self.fc = nn.Conv2D(3, 8, 3), nn.LayerNorm([8, 6, 6]), nn.Conv2D(8, 4, 1)

        def forward(self, x):
            return self.fc(self.norm(self.conv(x)))

    graph = analyze(WideNorm(), [1, 3, 8, 8])
    assert not graph.group("conv").prunable and "more than the channel axis" in graph.group("conv").reason
