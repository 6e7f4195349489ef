"""The op-handler registry: a layer whose op slimkit does not know becomes prunable once its handler is registered."""

import paddle
import paddle.nn as nn
import pytest
from prune_checks import prune_and_check

from slimkit import ModelError
from slimkit.pruning import analyze, ops


class Sine(nn.Layer):
    """A user's activation: `pd_op.sin`, which slimkit has no handler for."""

    def forward(self, x):
        return paddle.sin(x)


class ChannelGain(nn.Layer):
    """A user's per-channel layer whose op (`pd_op.lerp` with a [C, 1, 1] weight) slimkit does not know."""

    def __init__(self, channels):
        super().__init__()
        self.gain = self.create_parameter([channels], default_initializer=nn.initializer.Uniform(0.5, 1.5))

    def forward(self, x):
        return paddle.lerp(x, paddle.zeros_like(x), self.gain.reshape([1, -1, 1, 1]))


class Net(nn.Layer):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2D(3, 16, 3, padding=1)
        self.act = Sine()
        self.b = nn.Conv2D(16, 24, 3, padding=1)
        self.fc = nn.Linear(24, 10)

    def forward(self, x):
        y = self.b(self.act(self.a(x)))
        return self.fc(paddle.nn.functional.adaptive_avg_pool2d(y, 1).flatten(1))


@pytest.fixture
def registered():
    previous = {}

    def register(name, handler):
        previous.setdefault(name, ops.handler_for(name))
        return ops.register_op(name, handler)

    yield register
    for name, handler in previous.items():  # slimkit's own handlers come back
        ops.unregister_op(name)
        if handler is not None:
            ops.register_op(name, handler)


def test_unknown_op_keeps_its_channels_whole_and_names_the_registry():
    graph = analyze(Net(), [1, 3, 8, 8])
    assert not graph.group("a").prunable
    assert "pd_op.sin" in graph.group("a").reason and "register_op" in graph.group("a").reason


def test_registered_pass_through_makes_the_layer_prunable(tmp_path, registered):
    registered("sin", ops.PassThrough())
    assert isinstance(ops.handler_for("pd_op.sin"), ops.PassThrough)
    model, graph, result = prune_and_check(Net, [1, 3, 8, 8], tmp_path=tmp_path, round_to=1)
    assert [g.name for g in graph.prunable()] == ["a", "b"]
    assert model.b.weight.shape[1] == 16 - round(16 * 0.3)


class GainNet(nn.Layer):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2D(3, 16, 3, padding=1)
        self.gain = ChannelGain(16)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(paddle.nn.functional.adaptive_avg_pool2d(self.gain(self.a(x)), 1).flatten(1))


class LerpHandler(ops.OpHandler):
    """lerp(x, y, w): x and y are combined channel by channel, w is one value per channel."""

    def visit(self, walk, op):
        segs = walk.channels(op.operand_source(0))
        if segs and walk.per_channel_params(op, segs, [2]):
            walk.set_channels(op.result(0), segs)


def test_user_handler_with_a_per_channel_parameter(tmp_path, registered):
    assert not analyze(GainNet(), [1, 3, 8, 8]).group("a").prunable
    registered("lerp", LerpHandler())
    registered("zeros_like", ops.Ignore())
    model, graph, result = prune_and_check(GainNet, [1, 3, 8, 8], tmp_path=tmp_path, round_to=1)
    assert ("gain", "gain", 0) in graph.group("a").members
    assert model.gain.gain.shape == [16 - round(16 * 0.3)]


def test_block_handler_keeps_channels_whole_with_its_reason(registered):
    registered("relu", ops.Block("relu is special here"))
    graph = analyze(nn.Sequential(nn.Conv2D(3, 8, 3), nn.ReLU(), nn.Conv2D(8, 4, 3)), [1, 3, 8, 8])
    assert graph.group("0").reason == "relu is special here"


def test_registry_rejects_bad_handlers_and_names():
    with pytest.raises(ModelError, match="visit"):
        ops.register_op("foo", object())
    with pytest.raises(ModelError, match="already has a handler"):
        ops.register_op("relu", ops.PassThrough(), replace=False)
    with pytest.raises(ModelError, match="non-empty string"):
        ops.register_op("", ops.PassThrough())
    assert "relu" in ops.registered_ops() and "bilinear_interp" in ops.registered_ops()
