"""Channel shuffles and equal splits along channels prune exactly; sizes written in the forward keep their group whole.

A shuffle (reshape to [N, g, C/g, H, W], transpose(0, 2, 1, 3, 4), reshape back) is a known
permutation: the channels after it are followed. Removing channels keeps its order only if
its g sub-blocks keep the same positions, so sub-blocks from different layers are pruned with
the same indices and one layer spanning all of them keeps the same positions in each.
`paddle.chunk` / an equal `paddle.split` makes its input lose as many channels from each part.
"""

import numpy as np
import paddle
import pytest
from prune_checks import prune_and_check
from structure_models import EqualSplit, ShuffleBasicUnit, ShuffleUnits

from slimkit.pruning import analyze

SHAPE = [1, 3, 16, 16]


def test_shuffles_of_two_branches_and_of_one_layer_prune_exactly(tmp_path):
    model, graph, result = prune_and_check(ShuffleUnits, SHAPE, tmp_path=tmp_path, round_to=1)
    assert set(result.skipped) == {"fc"}
    branches = graph.group("left")
    assert branches.roots == ["left", "right"] and branches.blocks == 1  # two sub-blocks: one set of indices
    mid = graph.group("mid")
    assert (mid.blocks, mid.aligned, mid.channel_multiple) == (4, True, 4)
    kept = result.keep["mid"].reshape(4, -1) % 8
    assert (kept == kept[0]).all(), "every sub-block of the shuffle keeps the same positions"
    assert model.left.weight.shape[0] == model.right.weight.shape[0] == 12 - round(12 * 0.3)
    assert model.mid.weight.shape[0] == 24 and model.mid_dw[0]._groups == 24  # 22 rounded to a multiple of 4
    assert model.last.weight.shape[1] == 24 and model.stem[0].weight.shape[0] == 16 - round(16 * 0.3)


def test_shuffle_with_the_channels_written_in_the_forward_keeps_its_group_whole():
    graph = analyze(ShuffleUnits(literal=True), SHAPE)
    reason = graph.skipped()["left"]
    assert "fixed shape [1, 2, 12, 8, 8]" in reason and "written in the model's forward" in reason
    assert sorted(graph.skipped()) == ["fc", "left"]
    assert graph.group("mid").prunable


def test_shufflenet_v2_basic_unit_keeps_the_shuffled_half_whole_and_says_why():
    # The kept half x1 and the branch output meet in one shuffle: the same positions in both
    # would tie the branch's channels to parts of the stem's, which no set of groups expresses.
    graph = analyze(ShuffleBasicUnit(), SHAPE)
    assert [g.name for g in graph.prunable()] == ["pw"]
    for name in ("stem.0", "linear"):
        assert "channel shuffle of 2 sub-blocks that cannot keep the same positions" in graph.skipped()[name]


@pytest.mark.parametrize("sections", ["chunk", "computed"])
def test_equal_split_loses_as_many_channels_from_each_part(tmp_path, sections):
    model, graph, result = prune_and_check(lambda: EqualSplit(sections), SHAPE, tmp_path=tmp_path, round_to=1,
                                           export=sections == "chunk")
    stem = graph.group("stem.0")
    assert (stem.blocks, stem.aligned, stem.channel_multiple) == (2, False, 2)
    assert np.bincount(result.keep["stem.0"] // 8, minlength=2).tolist() == [6, 6]  # 16 - 5 = 11, rounded to 12
    assert model.p.weight.shape == [8, 6, 3, 3] and model.q.weight.shape == [8, 6, 3, 3]
    assert set(result.skipped) == {"fc"}


def test_split_sections_written_in_the_forward_keep_their_group_whole():
    graph = analyze(EqualSplit("literal"), SHAPE)
    assert "`pd_op.split` into the sections [8, 8] written in the model's forward" in graph.skipped()["stem.0"]
    assert [g.name for g in graph.prunable()] == ["p", "q", "out"]


def test_real_shufflenet_v2_prunes_its_branches_and_down_sampling_units(tmp_path):
    build = lambda: paddle.vision.models.shufflenet_v2_x0_25(num_classes=10)
    model, graph, result = prune_and_check(build, [1, 3, 32, 32], tmp_path=tmp_path, export=False)
    ds = graph.group("2_1._conv_linear_1.0")
    assert ds.roots == ["2_1._conv_linear_1.0", "2_1._conv_linear_2.0"]  # the shuffle couples both branches
    assert "channel shuffle of 2 sub-blocks" in ds.reason  # ... and the next unit's kept half holds them whole
    assert graph.group("2_2._conv_pw.0").prunable
    assert result.flops_after < 0.85 * result.flops_before


class RegroupedSum(paddle.nn.Layer):
    """[N, 16, H, W] -> [N, 2, 8, H, W] summed (or cumulated) over the groups: not a shuffle."""

    def __init__(self, cumulate=False):
        super().__init__()
        self.cumulate = cumulate
        self.a, self.b = paddle.nn.Conv2D(3, 16, 3), paddle.nn.Conv2D(8, 10, 1)

    def forward(self, x):
        y = self.a(x)
        n, c, h, w = y.shape
        y = paddle.reshape(y, [n, 2, c // 2, h, w])
        y = paddle.cumsum(y, axis=1)[:, 1] if self.cumulate else y.sum(axis=1)
        return self.b(y).mean(axis=[2, 3])


class ChunkOfConcat(paddle.nn.Layer):
    """chunk(concat([a, b]), 2) gives a and b back: the parts stay equal if a and b lose the same channels."""

    def __init__(self):
        super().__init__()
        self.a, self.b = paddle.nn.Conv2D(3, 8, 3), paddle.nn.Conv2D(3, 8, 3)
        self.p, self.q = paddle.nn.Conv2D(8, 4, 1), paddle.nn.Conv2D(8, 4, 1)

    def forward(self, x):
        left, right = paddle.chunk(paddle.concat([self.a(x), self.b(x)], axis=1), 2, axis=1)
        return self.p(left) + self.q(right)


def test_a_sum_over_equal_parts_removes_the_same_position_from_each_part(tmp_path):
    # y[j] = a[j] + a[8 + j]: removing y's channel j removes a's channels j and 8 + j.
    model, graph, result = prune_and_check(RegroupedSum, [1, 3, 8, 8], ratio=0.25, tmp_path=tmp_path, round_to=1)
    kept = result.keep["a"]
    assert model.a.weight.shape[0] == 2 * kept.size and model.b.weight.shape[1] == kept.size
    assert graph.group("a").channels == 8 and set(result.skipped) == {"b"}


def test_regrouped_channels_used_by_an_op_slimkit_does_not_follow_stay_whole():
    graph = analyze(RegroupedSum(cumulate=True), [1, 3, 8, 8])
    assert "its channels reach `pd_op.cumsum`, which slimkit does not follow" in graph.skipped()["a"]


def test_equal_parts_from_different_layers_are_pruned_with_the_same_indices():
    graph = analyze(ChunkOfConcat(), [1, 3, 8, 8])
    assert graph.group("a").roots == ["a", "b"] and graph.group("a").prunable
