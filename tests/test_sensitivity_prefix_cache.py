"""A sensitivity scan replays the layers before each trial's pruned layers, and that never changes a result."""

import numpy as np
import paddle
import pytest

import slimkit
from slimkit.pruning.prefix_cache import PrefixCache
from slimkit.pruning.sensitivity import sensitive

SHAPE = [1, 1, 8, 8]
RATIOS = [0.25, 0.75]


@pytest.fixture(scope="module")
def resnet(digits):
    paddle.seed(0)
    model = slimkit.build_model("resnet20", num_classes=10, in_channels=1)
    # A few steps: the scan's losses must be non-trivial, not the model good.
    slimkit.Engine(digits, {"epochs": 1, "batch_size": 64, "progress": False, "max_steps_per_epoch": 8}).train(model)
    return model


@pytest.fixture()
def conv_calls(monkeypatch):
    """How many times a conv really computes (replayed layers do not)."""
    count = [0]
    forward = paddle.nn.Conv2D.forward

    def counted(self, x):
        count[0] += 1
        return forward(self, x)

    monkeypatch.setattr(paddle.nn.Conv2D, "forward", counted)
    return count


def _evaluate(digits):
    engine = slimkit.Engine(digits, {"progress": False, "eval_batch_size": 64})
    return lambda m: engine.evaluate(m, "val", max_batches=2)["top1"]


def test_replaying_gives_the_same_losses_with_fewer_conv_runs(resnet, digits, conv_calls):
    evaluate = _evaluate(digits)
    full = sensitive(resnet, SHAPE, evaluate, ratios=RATIOS, progress=False, cache_mb=0)
    full_runs = conv_calls[0]
    conv_calls[0] = 0
    cached = sensitive(resnet, SHAPE, evaluate, ratios=RATIOS, progress=False)
    assert cached == full
    assert conv_calls[0] < 0.75 * full_runs, (conv_calls[0], full_runs)


def test_an_eval_fn_that_shuffles_is_computed_in_full(resnet, digits):
    images = np.stack([digits.val[i][0] for i in range(96)]).astype("float32")
    labels = np.array([int(digits.val[i][1]) for i in range(96)])
    calls = [0]

    def shuffled_accuracy(model):
        # A different batch order on every call: replaying by batch position would be wrong.
        calls[0] += 1
        order = np.random.RandomState(calls[0]).permutation(len(images))
        model.eval()
        correct = 0
        with paddle.no_grad():
            for idx in np.array_split(order, 3):
                correct += int((model(paddle.to_tensor(images[idx])).numpy().argmax(1) == labels[idx]).sum())
        return correct / len(images)

    full = sensitive(resnet, SHAPE, shuffled_accuracy, ratios=[0.5], progress=False, cache_mb=0)
    assert sensitive(resnet, SHAPE, shuffled_accuracy, ratios=[0.5], progress=False) == full


def test_units_are_the_outermost_layers_finished_before_the_first_changed_one(resnet):
    cache = PrefixCache(resnet, SHAPE, [])
    # layer2.0's relu runs twice per forward (after bn1 and after the add): never replayed by name.
    assert cache.units({"layer2.0.conv2"}) == ["conv1", "bn1", "relu", "layer1", "layer2.0.conv1", "layer2.0.bn1"]
    assert cache.units({"layer1.0.conv1"}) == ["conv1", "bn1", "relu"]
    assert cache.units({"conv1"}) == []


def test_the_model_is_unwrapped_after_a_scan(resnet, digits):
    sensitive(resnet, SHAPE, _evaluate(digits), ratios=[0.5], progress=False)
    assert all("forward" not in layer.__dict__ for layer in resnet.sublayers(include_self=True))
    assert all(not layer._forward_pre_hooks for layer in resnet.sublayers(include_self=True))
