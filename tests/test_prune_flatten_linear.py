"""conv -> flatten -> linear (slimkit small_cnn): a conv channel owns H*W consecutive linear inputs."""

import pytest
from prune_checks import prune_and_check

import slimkit


@pytest.mark.parametrize("input_size", [8, 16])
def test_small_cnn_flatten_maps_channels_to_features(tmp_path, input_size):
    def build():
        return slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=input_size)

    model, graph, result = prune_and_check(build, [1, 1, input_size, input_size], tmp_path=tmp_path)
    side = input_size // 4
    feeding = [s for s in graph.group("features.7").slices if s.role == "in"]
    assert [(s.layer, s.tensor, s.axis, s.repeat, s.count) for s in feeding] == [
        ("classifier.1", "weight", 0, side * side, 64)]
    assert [g.name for g in graph.prunable()] == ["features.0", "features.3", "features.7", "classifier.1"]
    assert "classifier.3" in result.skipped and "output" in result.skipped["classifier.3"]
    kept = {name: after for name, _, after in result.layers}
    after = result.graph.group("features.7")  # the pruned model's graph
    assert after.channels == kept["features.7"] == 48  # 64 - round(64 * 0.3) = 45, aligned to 8
    assert [s.count for s in after.slices if s.role == "in"] == [after.channels]
