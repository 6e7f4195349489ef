"""Plain conv chain (VGG-11 with BN): each conv is its own group, the logits layer is never pruned."""

import paddle
import paddle.nn as nn
from prune_checks import prune_and_check

from slimkit.pruning import analyze


def tiny_vgg11_bn():
    # vgg11_bn's layout (conv-BN-ReLU, max pools, flatten -> 3 linear) at 1/16 width; the real
    # model (120 M parameters, 25088x4096 classifier) is checked in benchmarks/prune_structures.py.
    features = paddle.vision.models.vgg.make_layers([4, "M", 8, "M", 16, 16, "M", 32, 32, "M", 32, 32, "M"],
                                                    batch_norm=True)
    return nn.Sequential(features, nn.AdaptiveAvgPool2D(7), nn.Flatten(), nn.Linear(32 * 49, 64), nn.ReLU(),
                         nn.Dropout(), nn.Linear(64, 64), nn.ReLU(), nn.Dropout(), nn.Linear(64, 10))


def test_chain_prunes_every_conv_and_hidden_linear(tmp_path):
    model, graph, result = prune_and_check(tiny_vgg11_bn, [1, 3, 32, 32], tmp_path=tmp_path)
    assert all(len(g.roots) == 1 for g in graph.groups)
    assert len(graph.prunable()) == 8 + 2  # 8 convs, 2 hidden linears
    assert graph.skipped() == {"9": "its channels are the model's output"}
    last_conv = graph.group("0.25")
    # 7x7 adaptive pool then flatten: each channel owns 49 consecutive inputs of the first linear.
    assert [(s.layer, s.axis, s.repeat) for s in last_conv.slices if s.role == "in"] == [("3", 0, 49)]


def test_real_vgg11_bn_groups():
    model = paddle.vision.models.vgg11(batch_norm=True, num_classes=10)
    graph = analyze(model, [1, 3, 32, 32])
    convs = [n for n, l in model.named_sublayers() if isinstance(l, nn.Conv2D)]
    assert [g.name for g in graph.prunable()] == convs + ["classifier.0", "classifier.3"]
    assert list(graph.skipped()) == ["classifier.6"]


class SharedLayers(nn.Layer):
    """A conv applied twice and a BN shared by two branches: each call must see the same channels."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.a = nn.Conv2D(3, 8, 3, padding=1)
        self.b = nn.Conv2D(8, 8, 3, padding=1)
        self.c = nn.Conv2D(3, 8, 1)
        self.bn = nn.BatchNorm2D(8)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        y = self.bn(self.b(self.b(self.a(x))))
        z = self.bn(self.c(x))
        return self.fc(paddle.flatten(nn.functional.adaptive_avg_pool2d(y + z, 1), 1))


def test_layers_called_twice_couple_their_inputs(tmp_path):
    model, graph, result = prune_and_check(SharedLayers, [1, 3, 8, 8], tmp_path=tmp_path)
    assert graph.group("a").roots == ["a", "b", "c"]
    assert model.b.weight.shape[:2] == [6, 6] and model.bn._num_features == 6
