"""concat along channels: each producer owns an offset slice of its consumers' inputs and stays prunable alone."""

import sys

import paddle
import paddle.nn as nn
import pytest
from prune_checks import prune_and_check

from slimkit.pruning import analyze

V = paddle.vision.models
densenet = sys.modules["paddle.vision.models.densenet"]
googlenet = sys.modules["paddle.vision.models.googlenet"]


class TinyDenseNet(nn.Layer):
    """densenet121's dense blocks and transition (paddle's own layers), 2 blocks of 3 layers, growth 8."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.stem = densenet.BNACConvLayer(3, 16, 3, pad=1)
        self.block1 = densenet.DenseBlock(16, 3, bn_size=2, growth_rate=8, dropout=0.0, name="b1")
        self.trans = densenet.TransitionLayer(16 + 3 * 8, 20)
        self.block2 = densenet.DenseBlock(20, 3, bn_size=2, growth_rate=8, dropout=0.0, name="b2")
        self.bn = densenet.BNACConvLayer(20 + 3 * 8, 32, 1)
        self.pool = nn.AdaptiveAvgPool2D(1)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x):
        x = self.block2(self.trans(self.block1(self.stem(x))))
        return self.fc(paddle.flatten(self.pool(self.bn(x)), 1))


class TinyGoogLeNet(nn.Layer):
    """googlenet's Inception blocks (paddle's own layers) and its flatten -> linear head."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.stem = googlenet.ConvLayer(3, 16, 3)
        self.ince_a = googlenet.Inception(16, 16, 8, 8, 12, 4, 6, 6)
        self.ince_b = googlenet.Inception(32, 32, 8, 8, 12, 4, 6, 6)
        self.pool = nn.AdaptiveAvgPool2D(2)
        self.fc = nn.Linear(32 * 4, num_classes)

    def forward(self, x):
        x = self.ince_b(self.ince_a(self.stem(x)))
        return self.fc(paddle.flatten(self.pool(x), 1))


MODELS = {
    "tiny_densenet": (TinyDenseNet, [1, 3, 16, 16]),
    "tiny_googlenet": (TinyGoogLeNet, [1, 3, 16, 16]),
    "squeezenet1_0": (lambda: V.squeezenet1_0(num_classes=10), [1, 3, 64, 64]),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_concat_producers_prune_exactly(tmp_path, name):
    build, shape = MODELS[name]
    model, graph, result = prune_and_check(build, shape, tmp_path=tmp_path)
    assert all(len(g.roots) == 1 for g in graph.groups)  # concat couples nothing
    assert result.skipped, "the logits layer at least is skipped"


def test_inception_branches_get_consecutive_offsets():
    graph = analyze(TinyGoogLeNet(), [1, 3, 16, 16])
    branches = ["ince_a._conv1._conv", "ince_a._conv3._conv", "ince_a._conv5._conv", "ince_a._convprj._conv"]
    offsets = [[(s.offset, s.count) for s in graph.group(b).slices if s.layer == "ince_b._conv1._conv"]
               for b in branches]
    assert offsets == [[(0, 8)], [(8, 12)], [(20, 6)], [(26, 6)]]  # filter1, filter3, filter5, proj
    assert all(graph.group(b).prunable for b in branches)


def test_dense_block_features_reach_every_later_layer():
    graph = analyze(TinyDenseNet(), [1, 3, 16, 16])
    stem = graph.group("stem._conv")
    consumers = sorted({s.layer for s in stem.slices if s.role == "in"})
    assert consumers == ["block1.b1_1.bn_ac_func1._conv", "block1.b1_2.bn_ac_func1._conv",
                         "block1.b1_3.bn_ac_func1._conv", "trans.conv_ac_func._conv"]


def test_real_googlenet_is_analyzed():
    # googlenet returns 3 logits (2 auxiliary heads); densenet121 is checked in benchmarks/prune_structures.py.
    graph = analyze(V.googlenet(num_classes=10), [1, 3, 224, 224])
    assert len(graph.prunable()) == 61 and graph.output_shapes == [[1, 10]] * 3
    assert sorted(graph.skipped()) == ["_fc_out", "_out1", "_out2"]
    assert all("output" in reason for reason in graph.skipped().values())


class SplitAndSlice(nn.Layer):
    """concat, then fixed-size split and slice along channels (sizes are constants of forward)."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.a = nn.Conv2D(3, 8, 3, padding=1)
        self.b = nn.Conv2D(3, 8, 3, padding=1)
        self.c = nn.Conv2D(4, 6, 1)
        self.d = nn.Conv2D(12, 6, 1)
        self.fc = nn.Linear(12 * 4 * 4, num_classes)

    def forward(self, x):
        y = paddle.concat([self.a(x), self.b(x)], axis=1)
        p, q = paddle.split(y, [4, 12], axis=1)
        out = paddle.concat([self.c(p) + self.c(y[:, 2:6]), self.d(q)], axis=1)
        return self.fc(paddle.flatten(nn.functional.adaptive_avg_pool2d(out, 4), 1))


def test_split_and_slice_block_their_input_but_not_their_consumers(tmp_path):
    model, graph, result = prune_and_check(SplitAndSlice, [1, 3, 8, 8], tmp_path=tmp_path)
    assert "split along channels" in result.skipped["a"] and "split along channels" in result.skipped["b"]
    assert [g.name for g in graph.prunable()] == ["c", "d"]
    # d reads the split's second part: b's channels 0..7 land after a's channels 4..7.
    assert [(s.layer, s.offset, s.start, s.count) for s in graph.group("b").slices if s.role == "in"] == [
        ("d", 4, 0, 8)]


class InputConcat(nn.Layer):
    """A layer's output concatenated with the model input (and again after a pooling slimkit follows)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2D(3, 16, 3, padding=1)
        self.b = nn.Conv2D(16 + 3, 16, 3, padding=1)
        self.fc = nn.Linear(16 + 3, 10)

    def forward(self, x):
        y = self.b(paddle.concat([self.a(x), x], axis=1))
        return self.fc(paddle.flatten(nn.functional.adaptive_avg_pool2d(paddle.concat([x, y], axis=1), 1), 1))


def test_channels_concatenated_with_the_model_input_are_pruned_and_the_input_stays_whole(tmp_path):
    # The input's slices of `b` and `fc` belong to no group: they are kept whole, at shifted offsets.
    graph = analyze(InputConcat(), [1, 3, 8, 8])
    assert {(s.layer, s.offset, s.count) for s in graph.fixed_slices} == {("a", 0, 3), ("b", 16, 3), ("fc", 0, 3)}
    prune_and_check(InputConcat, [2, 3, 8, 8], ratio=0.5, tmp_path=tmp_path, round_to=1)
