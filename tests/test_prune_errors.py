"""Bad input to prune/remove_channels: a clear error, and the model and Paddle session exactly as before."""

import numpy as np
import paddle
import paddle.nn as nn
import pytest

import slimkit
from slimkit import ConfigError, ModelError
from slimkit.pruning import analyze, prune, remove_channels

SHAPE = [1, 1, 8, 8]


@pytest.fixture
def model():
    paddle.seed(0)
    return slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)


def fingerprint(model, shape=SHAPE):
    model.eval()
    x = paddle.to_tensor(np.random.RandomState(0).randn(*shape).astype("float32"))
    with paddle.no_grad():
        out = model(x).numpy()
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}, out


def assert_unchanged(model, before, shape=SHAPE):
    state, out = fingerprint(model, shape)
    assert state.keys() == before[0].keys()
    for key in state:
        np.testing.assert_array_equal(state[key], before[0][key], err_msg=key)
    np.testing.assert_array_equal(out, before[1])
    assert getattr(model.forward, "__func__", None) is type(model).forward  # not a to_static wrapper
    assert paddle.in_dynamic_mode() and slimkit.compat.pir_enabled()


@pytest.mark.parametrize("ratios", [-0.1, 1.0, {"features.0": 1.0}, {"features.3": -0.1}, "0.3"])
def test_bad_ratio_is_a_config_error(model, ratios):
    before = fingerprint(model)
    with pytest.raises(ConfigError, match=r"ratios.*\[0, 1\)"):
        prune(model, SHAPE, ratios=ratios)
    assert_unchanged(model, before)


def test_unknown_layer_names_a_close_valid_one(model):
    before = fingerprint(model)
    with pytest.raises(ModelError, match="did you mean 'features.3'"):
        prune(model, SHAPE, ratios={"feature.3": 0.3})
    with pytest.raises(ModelError, match="did you mean 'classifier.1'"):
        prune(model, SHAPE, skip=["classifer.1"])
    assert_unchanged(model, before)


def test_unprunable_layer_says_why(model):
    with pytest.raises(ModelError, match="classifier.3.*model's output"):
        prune(model, SHAPE, ratios={"classifier.3": 0.5})


@pytest.mark.parametrize("shape", [[1, 1, 16, 16], [1, 3, 8, 8]])
def test_forward_failing_on_input_shape_is_a_model_error(model, shape):
    before = fingerprint(model)
    with pytest.raises(ModelError, match="input_shape"):
        prune(model, shape, ratios=0.3)
    assert_unchanged(model, before)


def test_bad_keep_indices_are_rejected(model):
    graph = analyze(model, SHAPE)
    before = fingerprint(model)
    bad = [({"features.0": np.array([0, 16])}, "outside"), ({"features.0": np.array([3, 1])}, "sorted"),
           ({"features.0": np.array([], dtype=np.int64)}, "at least 1"),
           ({"classifier.3": np.arange(5)}, "cannot be pruned"), ({"feature.0": np.arange(5)}, "did you mean")]
    for keep, message in bad:
        with pytest.raises(ModelError, match=message):
            remove_channels(model, graph, keep)
    assert_unchanged(model, before)


def test_stale_graph_is_refused(model):
    graph = analyze(model, SHAPE)
    remove_channels(model, graph, {"features.0": np.arange(8)})
    before = fingerprint(model)
    with pytest.raises(ModelError, match="does not match the model"):
        remove_channels(model, graph, {"features.3": np.arange(8)})
    assert_unchanged(model, before)


class ChecksWidth(nn.Layer):
    """Its forward insists on 16 channels, so it breaks once channels are removed."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2D(1, 16, 3, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        y = self.conv(x)
        if y.shape[1] != 16:
            raise ValueError(f"expected 16 channels, got {y.shape[1]}")
        return self.fc(y.mean(axis=[2, 3]))


def test_failed_removal_restores_the_model_exactly():
    model = ChecksWidth()
    before = fingerprint(model)
    with pytest.raises(ModelError, match="restored unchanged.*expected 16 channels"):
        prune(model, SHAPE, ratios=0.5)
    assert_unchanged(model, before)
    assert model.conv._out_channels == 16


@pytest.mark.parametrize("criterion,message", [("l3", "did you mean"), ("taylor", "activations and gradients")])
def test_bad_criterion_is_a_config_error(model, criterion, message):
    before = fingerprint(model)
    with pytest.raises(ConfigError, match=message):
        prune(model, SHAPE, criterion=criterion)
    assert_unchanged(model, before)
