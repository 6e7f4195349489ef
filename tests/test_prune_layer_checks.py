"""An invalid removal is caught layer by layer, naming the group, before the forward; unreadable sources."""

import dataclasses

import numpy as np
import paddle
import paddle.nn as nn
import pytest

from slimkit import ModelError
from slimkit.pruning import analyze, prune, remove_channels


class GroupedAfterConv(nn.Layer):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2D(3, 8, 3, padding=1)
        self.b = nn.Conv2D(8, 8, 3, padding=1, groups=4)

    def forward(self, x):
        return self.b(self.a(x))


def test_uneven_removal_through_a_grouped_conv_names_the_group():
    model = GroupedAfterConv()
    graph = analyze(model, [1, 3, 8, 8])
    assert graph.group("a").blocks == 4 and graph.group("a").aligned
    # A graph that forgot the grouped conv's constraint: a keep that breaks `b`.
    loose = dataclasses.replace(graph.group("a"), blocks=1, aligned=False, channel_multiple=1)
    graph.groups = [loose if g.name == "a" else g for g in graph.groups]
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    with pytest.raises(ModelError, match=r"group a leaves `b` invalid: its weight keeps 1 channels on axis 1, "
                                         r"the groups' slices \[2, 2, 2, 1\]"):
        remove_channels(model, graph, {"a": np.arange(7)})
    assert all((model.state_dict()[k].numpy() == v).all() for k, v in before.items())
    assert model.b._in_channels == 8 and model.a.weight.shape[0] == 8


def test_model_without_readable_source_names_the_cause():
    namespace = {}
    exec("import paddle.nn as nn\n"
         "class Net(nn.Layer):\n"
         "    def __init__(self):\n"
         "        super().__init__()\n"
         "        self.a = nn.Conv2D(3, 8, 3)\n"
         "    def forward(self, x):\n"
         "        return self.a(x)\n", namespace)
    with pytest.raises(ModelError, match=r"source code of Net.forward .* cannot be read") as err:
        prune(namespace["Net"](), [1, 3, 8, 8])
    assert ".py file" in err.value.hint
    assert paddle.in_dynamic_mode()
