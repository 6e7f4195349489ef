"""Reduce -> branches -> hierarchical add -> concat -> grouped expand (ESPNetV2's EESP block) prunes.

Each dilated depthwise branch carries the reduced channels, the hierarchical sums couple
them with themselves, and the grouped expand conv reads one branch per conv group through
the same weights: the reduced channels, the expand conv and the residual stream all prune.
"""

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from prune_checks import prune_and_check


class EESP(nn.Layer):
    def __init__(self, channels=32, branches=4):
        super().__init__()
        width = channels // branches
        self.reduce = nn.Conv2D(channels, width, 1, groups=branches)
        self.reduce_bn = nn.BatchNorm2D(width)
        self.branches = nn.LayerList([nn.Conv2D(width, width, 3, padding=d, dilation=d, groups=width)
                                      for d in range(1, branches + 1)])
        self.cat_bn = nn.BatchNorm2D(channels)
        self.cat_act = nn.PReLU(channels)
        self.expand = nn.Conv2D(channels, channels, 1, groups=branches)
        self.expand_bn = nn.BatchNorm2D(channels)
        self.act = nn.PReLU()

    def forward(self, x):
        reduced = F.relu(self.reduce_bn(self.reduce(x)))
        outs = [self.branches[0](reduced)]
        for branch in self.branches[1:]:
            outs.append(branch(reduced) + outs[-1])  # hierarchical feature fusion
        y = self.expand_bn(self.expand(self.cat_act(self.cat_bn(paddle.concat(outs, axis=1)))))
        return self.act(x + y)


class ESPNetLike(nn.Layer):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2D(3, 64, 3, stride=2, padding=1), nn.BatchNorm2D(64), nn.PReLU())
        self.blocks = nn.Sequential(EESP(64), EESP(64))
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1).flatten(1))


def test_reduce_branch_merge_block_prunes(tmp_path):
    model, graph, result = prune_and_check(ESPNetLike, [1, 3, 16, 16], tmp_path=tmp_path)
    assert set(result.skipped) == {"fc"}
    assert {"stem.0", "blocks.0.expand", "blocks.1.expand"} <= set(graph.group("stem.0").roots)
    reduced = graph.group("blocks.0.reduce")
    assert reduced.prunable and reduced.channel_multiple == 4
    block = model.blocks[0]
    kept = block.reduce.weight.shape[0]
    assert kept < 16 and block.cat_bn.weight.shape == [4 * kept] and block.expand.weight.shape[1] == kept
    assert result.flops_after < 0.85 * result.flops_before
