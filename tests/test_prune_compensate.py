"""Removed channels' means folded into the readers' biases (pruning.compensate) and the `variance` criterion.

The hazard: a near-constant channel (a bias through an activation) scores low by its weights,
but removing it shifts every reader by that constant. With `compensate` the readers' biases
absorb it: a channel that is exactly constant then goes without changing the outputs at all.
"""

import numpy as np
import paddle
import pytest

from slimkit import ConfigError, prune
from slimkit.pruning import analyze
from slimkit.pruning.plan import prune_to_counts
from slimkit.pruning.compensate import input_statistics

CONSTANT = [1, 4, 6]  # channels of the first layer whose output is the same for every input
ROOT = {"conv": "conv", "mlp": "fc1"}  # the layer whose channels are removed


class ConvReaders(paddle.nn.Layer):
    """conv -> relu -> 1x1 conv (unpadded) and, flattened, a linear layer: both read the first conv's channels."""

    def __init__(self):
        super().__init__()
        self.conv = paddle.nn.Conv2D(3, 8, 3, padding=1)
        self.reader = paddle.nn.Conv2D(8, 3, 1)
        self.fc = paddle.nn.Linear(8 * 4 * 4, 3)

    def forward(self, x):
        y = paddle.nn.functional.relu(self.conv(x))
        return self.reader(y).mean(axis=[2, 3]) + self.fc(paddle.flatten(y, 1))


class MLP(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.fc1 = paddle.nn.Linear(6, 8)
        self.fc2 = paddle.nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(paddle.nn.functional.relu(self.fc1(x)))


def _with_constant_channels(model, layer, axis):
    """Zero the weights of CONSTANT channels of `layer` and give them positive biases: relu passes a constant."""
    paddle.seed(0)
    weight = layer.weight.numpy()
    index = [slice(None)] * weight.ndim
    index[axis] = CONSTANT
    weight[tuple(index)] = 0
    layer.weight.set_value(weight)
    bias = layer.bias.numpy()
    bias[CONSTANT] = [0.7, 1.3, 2.1]
    layer.bias.set_value(bias)
    return model


def _build(kind):
    paddle.seed(0)
    if kind == "conv":
        model = ConvReaders()
        return _with_constant_channels(model, model.conv, 0), [2, 3, 4, 4]
    model = MLP()
    return _with_constant_channels(model, model.fc1, 1), [2, 6]


def _batches(shape, count=3):
    rng = np.random.RandomState(0)
    return [paddle.to_tensor(rng.randn(*shape).astype("float32")) for _ in range(count)]


def _run(model, x):
    model.eval()
    with paddle.no_grad():
        return model(x).numpy()


@pytest.mark.parametrize("kind", ["conv", "mlp"])
def test_constant_channels_go_without_changing_outputs(kind):
    model, shape = _build(kind)
    x = _batches(shape, 1)[0]
    before = _run(model, x)
    result = prune(model, shape, ratios={ROOT[kind]: 3 / 8}, criterion="variance", compensate=True,
                   batches=_batches(shape), round_to=1)
    kept = next(iter(result.keep.values()))
    assert len(kept) == 5 and not set(CONSTANT) & set(kept.tolist())  # the variance criterion chose them
    np.testing.assert_allclose(_run(model, x), before, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["conv", "mlp"])
def test_without_compensation_the_same_removal_shifts_outputs(kind):
    model, shape = _build(kind)
    x = _batches(shape, 1)[0]
    before = _run(model, x)
    prune(model, shape, ratios={ROOT[kind]: 3 / 8}, criterion="variance", batches=_batches(shape), round_to=1)
    assert np.abs(_run(model, x) - before).max() > 0.1


def test_undo_puts_the_readers_biases_back():
    model, shape = _build("conv")
    state = {name: value.numpy().copy() for name, value in model.state_dict().items()}
    graph = analyze(model, shape)
    group = graph.group("conv")
    _, _, undo = prune_to_counts(model, graph, {group.name: 5}, "variance", batches=_batches(shape),
                                 compensate=True)
    assert not np.array_equal(model.reader.bias.numpy(), state["reader.bias"])
    undo()
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), state[name], err_msg=name)


def test_statistics_read_the_channel_axis_of_each_reader():
    model, shape = _build("conv")
    batches = _batches(shape)
    stats = input_statistics(model, ["reader", "fc"], batches)
    relu = [paddle.nn.functional.relu(model.conv(b)).numpy() for b in batches]
    y = np.concatenate(relu)
    np.testing.assert_allclose(stats["reader"][0], y.mean(axis=(0, 2, 3)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats["reader"][1], y.var(axis=(0, 2, 3)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(stats["fc"][0], y.reshape(len(y), -1).mean(axis=0), rtol=1e-5, atol=1e-6)


def test_compensate_without_batches_is_rejected_before_any_work():
    model, shape = _build("mlp")
    state = {name: value.numpy().copy() for name, value in model.state_dict().items()}
    with pytest.raises(ConfigError, match="compensate"):
        prune(model, shape, ratios=0.3, compensate=True)
    with pytest.raises(ConfigError, match="variance"):
        prune(model, shape, ratios=0.3, criterion="variance")
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), state[name])


class _Batches:
    """The one engine method the statistics read (EngineProtocol.batches)."""

    def __init__(self, shape):
        self.shape = shape

    def batches(self, split, batch_size=None, shuffle=False, seed=0, max_batches=None):
        return iter(_batches(self.shape))


@pytest.mark.parametrize("compensate", [True, False])
def test_the_scan_trials_compensate_as_the_stage_does(compensate):
    from slimkit.pruning import sensitive

    model, shape = _build("conv")
    x = _batches(shape, 1)[0]
    reference = _run(model, x)

    def closeness(m):  # 1 when the outputs are the unpruned model's
        return 1 / (1 + float(np.abs(_run(m, x) - reference).max()))

    losses = sensitive(model, shape, closeness, ratios=[3 / 8], criterion="variance", layers=["conv"],
                       engine=_Batches(shape), round_to=1, progress=False, compensate=compensate)
    loss = losses["conv"][3 / 8]
    assert loss < 1e-5 if compensate else loss > 0.05
    np.testing.assert_array_equal(_run(model, x), reference)  # the scan left the model as it was
