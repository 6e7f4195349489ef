"""A reshape with the channel count written into the forward keeps exactly its group whole; the rest prunes.

`paddle.reshape(x, [-1, 64])` before the classifier (inception_v3 style) and a reshape
computed from `x.shape` trace alike; removal tells them apart by trying.
"""

import warnings

import paddle
import paddle.nn as nn
import pytest
from prune_checks import prune_and_check
from structure_models import FixedWidthHead

from slimkit.pruning import analyze, prune


def test_fixed_reshape_keeps_exactly_its_group_whole(tmp_path):
    model, graph, result = prune_and_check(lambda: FixedWidthHead(False), [1, 3, 8, 8], tmp_path=tmp_path, round_to=1)
    assert [g.name for g in graph.prunable()] == ["stem", "body"]
    reason = result.skipped["last"]
    assert "fixed shape [-1, 64]" in reason and "written in the model's forward" in reason
    assert model.last.weight.shape[0] == 64 and model.body.weight.shape[0] == 32 - round(32 * 0.3)


def test_reshape_computed_from_the_tensor_still_prunes(tmp_path):
    model, graph, result = prune_and_check(lambda: FixedWidthHead(True), [1, 3, 8, 8], tmp_path=tmp_path, round_to=1)
    assert [g.name for g in graph.prunable()] == ["stem", "body", "last"]
    assert model.fc.weight.shape[0] == 64 - round(64 * 0.3)


def test_probe_leaves_the_model_unchanged():
    paddle.seed(0)
    model = FixedWidthHead(False)
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    analyze(model, [1, 3, 8, 8])
    after = model.state_dict()
    assert all((after[k].numpy() == v).all() for k, v in before.items())
    assert model.last._out_channels == 64 and model.fc.weight.shape == [64, 10]


def test_prune_that_removes_nothing_warns_with_the_reasons():
    class OnlyHead(nn.Layer):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2D(3, 16, 3)
            self.fc = nn.Linear(16 * 36, 10)

        def forward(self, x):
            return self.fc(paddle.reshape(self.conv(x), [-1, 16 * 36]))

    with pytest.warns(UserWarning, match=r"removed no channels, no group can be pruned: conv: .*fixed shape"):
        result = prune(OnlyHead(), [1, 3, 8, 8], ratios=0.3, round_to=1)
    assert result.flops_after == result.flops_before and not result.layers
    with pytest.warns(UserWarning, match="the ratios keep every channel of the 3 prunable groups"):
        prune(FixedWidthHead(True), [1, 3, 8, 8], ratios=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prune(FixedWidthHead(True), [1, 3, 8, 8], ratios=0.3, round_to=1)
