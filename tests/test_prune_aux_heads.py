"""Auxiliary heads only the training forward calls (PSPNet, BiSeNet, PP-LiteSeg) prune with the features they read.

Such a network returns `[logits]` in eval mode and `[logits, aux1, aux2]` in training mode.
A trace of the eval forward alone never meets the heads: their input channels would keep
the unpruned width, and the first training step after pruning would fail on a shape.
"""

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
import pytest
from prune_checks import _randomize_bn, check_attributes, check_jit_roundtrip, masked_reference, run

from slimkit.core.surgery import capture, train_mode
from slimkit.pruning import analyze, prune
from slimkit.pruning.dependency import flat_outputs
from slimkit.train.objective import build_task

SHAPE = [2, 3, 16, 16]


def cbr(c_in, c_out, stride=1):
    return nn.Sequential(nn.Conv2D(c_in, c_out, 3, stride=stride, padding=1), nn.BatchNorm2D(c_out), nn.ReLU())


class AuxSegmenter(nn.Layer):
    """Three backbone stages and a decoder; two aux heads (conv-BN-ReLU, 1x1) on stages 2 and 3 in training."""

    def __init__(self, classes=4):
        super().__init__()
        self.s1, self.s2, self.s3 = cbr(3, 16), cbr(16, 24, 2), cbr(24, 32, 2)
        self.fuse = cbr(32 + 16, 16)
        self.head = nn.Conv2D(16, classes, 1)
        self.aux2 = nn.Sequential(cbr(24, 12), nn.Conv2D(12, classes, 1))
        self.aux3 = nn.Sequential(cbr(32, 12), nn.Conv2D(12, classes, 1))

    def forward(self, x):
        f1 = self.s1(x)
        f2 = self.s2(f1)
        f3 = self.s3(f2)
        logits = self.head(self.fuse(paddle.concat([F.interpolate(f3, scale_factor=4, mode="bilinear"), f1], 1)))
        if not self.training:
            return [logits]
        return [logits, F.interpolate(self.aux2(f2), scale_factor=2, mode="bilinear"),
                F.interpolate(self.aux3(f3), scale_factor=4, mode="bilinear")]


def build():
    paddle.seed(0)
    return AuxSegmenter()


def run_training(model, x):
    """Every output of the training-mode forward (numpy); the model's flags and BN statistics come back."""
    with train_mode(model), paddle.no_grad():
        return [o.numpy() for o in flat_outputs(model(x))]


def test_aux_heads_shrink_with_the_backbone_and_prune_their_own_channels(tmp_path):
    model = build()
    _randomize_bn(model)
    model.train()
    model.s1[1].eval()  # the user's flags (a frozen BN inside a training model) survive the prune
    graph = analyze(model, SHAPE)
    assert graph.output_structure == ("list", [[2, 4, 16, 16]])
    assert graph.train_structure == ("list", [[2, 4, 16, 16]] * 3)
    assert not graph.unused, "the training trace calls every layer"
    assert ("aux2.0.0", "weight", 1) in graph.group("s2.0").members  # the head reads stage 2's channels
    original = capture(model)
    x = paddle.to_tensor(np.random.RandomState(0).randn(*SHAPE).astype("float32"))

    result = prune(model, SHAPE, ratios=0.5, graph=graph, round_to=1)

    assert set(result.skipped) == {"head", "aux2.1", "aux3.1"}, "only the class outputs stay whole"
    assert all("output" in reason for reason in result.skipped.values())
    assert model.training and not model.s1[1].training and model.aux2.training
    assert model.aux2[0][0].weight.shape == [6, 12, 3, 3] and model.aux3[0][0].weight.shape == [6, 16, 3, 3]
    assert model.aux2[1].weight.shape == [4, 6, 1, 1]
    check_attributes(model)
    reference = masked_reference(build, original, graph, result.keep)
    for mode in (run, run_training):  # the pruned model computes what the masked one does, in both modes
        for ref, got in zip(mode(reference, x), mode(model, x)):
            np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-4)

    # one training step with the auxiliary losses trains the heads
    task = build_task({"loss": "segmentation", "aux_weights": [0.4, 0.4]}, None)
    labels = paddle.to_tensor(np.random.RandomState(1).randint(0, 4, (2, 16, 16)))
    model.train()
    outs = model(x)
    expected = sum(w * float(task.eval_loss(o, labels)) for w, o in zip([1, 0.4, 0.4], outs))
    before = [model.aux2[0][0].weight.numpy().copy(), model.aux3[1].weight.numpy().copy()]
    loss, main = task.loss_fn(model, x, labels)
    assert float(loss) == pytest.approx(expected, rel=1e-5) and main.shape == [2, 4, 16, 16]
    optimizer = paddle.optimizer.SGD(learning_rate=0.1, parameters=model.parameters())
    loss.backward()
    optimizer.step()
    after = [model.aux2[0][0].weight.numpy(), model.aux3[1].weight.numpy()]
    assert all(not np.allclose(a, b) for a, b in zip(before, after))

    check_jit_roundtrip(model, SHAPE, x, run(model, x), tmp_path)  # the eval forward ships


def test_a_model_calling_the_same_layers_in_both_modes_is_traced_once():
    model = nn.Sequential(cbr(3, 8), nn.Dropout(0.5), nn.Conv2D(8, 4, 1))
    graph = analyze(model, [1, 3, 8, 8])
    assert graph.train_structure is None and graph.group("0.0").prunable
