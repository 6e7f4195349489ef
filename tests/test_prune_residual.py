"""Residual adds: every conv whose output is added to the same stream is pruned with the same indices."""

import paddle
import pytest
from prune_checks import prune_and_check

import slimkit

MODELS = {
    "resnet20": lambda: slimkit.build_model("resnet20", num_classes=10),
    "resnet18": lambda: paddle.vision.models.resnet18(num_classes=10),
    "resnet50": lambda: paddle.vision.models.resnet50(num_classes=10),
}
# The first stage's residual stream: the stem conv (identity shortcuts) and each block's last conv.
STREAMS = {
    "resnet20": ["conv1", "layer1.0.conv2", "layer1.1.conv2", "layer1.2.conv2"],
    "resnet18": ["conv1", "layer1.0.conv2", "layer1.1.conv2"],
    "resnet50": ["layer1.0.conv3", "layer1.0.downsample.0", "layer1.1.conv3", "layer1.2.conv3"],
}


@pytest.mark.parametrize("name", list(MODELS))
def test_residual_partners_are_pruned_together(tmp_path, name):
    model, graph, result = prune_and_check(MODELS[name], [1, 3, 32, 32], tmp_path=tmp_path)
    stream = graph.group(STREAMS[name][0])
    assert stream.roots == STREAMS[name] and stream.prunable
    assert all(graph.group(root) is stream for root in stream.roots)
    pruned = {n: after for n, _, after in result.layers}
    assert len({pruned[root] for root in stream.roots}) == 1
    assert list(result.skipped) == ["fc"]
