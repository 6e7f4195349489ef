"""The long tail of CNN structures: GhostNet's concatenation of a layer with its depthwise copy (added to a
shortcut conv), MixNet's split into sections kept as a layer attribute, splits into several equal counts,
ENet's zero padding up to a branch's width (a layer added to several layers' channels in a row)."""

import numpy as np
import paddle
import paddle.nn as nn
from prune_checks import prune_and_check
from structure_models import ENetLike, GhostNetLike, MixNetLike, cbr

from slimkit.pruning import analyze

SHAPE = [1, 3, 16, 16]


def test_ghost_modules_and_their_shortcut_convs_prune_exactly(tmp_path):
    model, graph, result = prune_and_check(GhostNetLike, SHAPE, tmp_path=tmp_path, round_to=1)
    out = graph.group("blocks.0.ghost2.primary.0")
    # The shortcut conv's 24 outputs are the ghost module's [x, cheap(x)]: its two halves keep the same channels.
    assert out.roots == ["blocks.0.ghost2.primary.0", "blocks.0.shortcut.2"] and out.channels == 12
    kept = result.keep["blocks.0.ghost2.primary.0"].size
    assert model.blocks[0].shortcut[2].weight.shape[0] == 2 * kept and set(result.skipped) == {"fc"}
    assert result.flops_after < 0.85 * result.flops_before


def test_mixed_kernel_sections_prune_and_the_sections_attribute_follows(tmp_path):
    model, graph, result = prune_and_check(MixNetLike, SHAPE, tmp_path=tmp_path, round_to=1)
    assert ("mix", None, None) in graph.group("expand.0").members and graph.group("expand.0").blocks == 2
    kept = result.keep["expand.0"].size
    assert model.mix.splitted_in_channels == [kept // 2] * 2 and model.wide[3].splitted_in_channels[0] * 4 == \
        model.wide[0].weight.shape[0]
    assert np.bincount(result.keep["wide.0"] // 16, minlength=4).tolist() == [model.wide[3].splitted_in_channels[0]] * 4


class TwoSplits(nn.Layer):
    """One layer's output split in 2 equal parts by one branch and in 3 by another."""

    def __init__(self):
        super().__init__()
        self.stem = cbr(3, 24)
        self.halves = nn.LayerList([nn.Conv2D(12, 8, 1) for _ in range(2)])
        self.thirds = nn.LayerList([nn.Conv2D(8, 8, 1) for _ in range(3)])
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        y = self.stem(x)
        a = sum(conv(p) for conv, p in zip(self.halves, paddle.chunk(y, 2, axis=1)))
        b = sum(conv(p) for conv, p in zip(self.thirds, paddle.chunk(y, 3, axis=1)))
        return self.fc(nn.functional.adaptive_avg_pool2d(a + b, 1).flatten(1))


def test_splits_into_two_and_three_parts_keep_as_many_in_each_sixth(tmp_path):
    stem = analyze(TwoSplits(), SHAPE).group("stem.0")
    assert (stem.blocks, stem.channel_multiple, stem.prunable) == (6, 6, True)
    model, graph, result = prune_and_check(TwoSplits, SHAPE, ratio=0.5, tmp_path=tmp_path, round_to=1)
    assert np.bincount(result.keep["stem.0"] // 4, minlength=6).tolist() == [2] * 6


def test_enet_zero_padding_and_the_initial_concat_prune_exactly(tmp_path):
    # ext + [pooled 13 conv channels, 3 input channels, 16 zeros]: the conv adding to them is cut in three.
    model, graph, result = prune_and_check(ENetLike, SHAPE, out_dim=None, tmp_path=tmp_path, round_to=1)
    assert graph.group("initial").roots == ["initial"]
    assert ("down.ext.3", "weight", 0) in graph.group("initial").members  # its first 13 filters
    padding = graph.group("down.ext.3")
    assert padding.name == "down.ext.3[16:32]" and padding.roots == ["down.ext.3", "regular.6"]
    assert not graph.group("down.ext.3[13:16]").prunable  # the input's 3 pooled channels
    kept = 13 - round(13 * 0.3) + 3 + 16 - round(16 * 0.3)
    assert model.down.ext[3].weight.shape[0] == kept and model.down.act._weight.shape == [kept]
