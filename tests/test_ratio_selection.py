"""Choosing per-group ratios for a FLOPs target measured with count_flops on the pruned model."""

import numpy as np
import pytest

import slimkit
from slimkit.core.surgery import capture
from slimkit.pruning import selection as sel
from slimkit.pruning import analyze
from slimkit.pruning.remove import remove_channels

SHAPE = [1, 1, 28, 28]


@pytest.fixture(scope="module")
def resnet():
    model = slimkit.build_model("resnet20", num_classes=10, in_channels=1)
    return model, analyze(model, SHAPE)


def _fake_scan(groups, sensitive_name):
    """Synthetic loss curves: every group cheap to prune except one."""
    ratios = [0.2, 0.4, 0.6, 0.8]
    return {g.name: {r: (0.5 * r if g.name == sensitive_name else 0.02 * r) for r in ratios} for g in groups}


def _apply(model, graph, selection):
    keep = {g: np.arange(n) for g, n in selection.keep.items() if n < graph.group(g).channels}
    remove_channels(model, graph, keep)
    return slimkit.count_flops(model, SHAPE)[0]


@pytest.mark.parametrize("method", ["uniform", "threshold", "greedy"])
def test_target_is_reached_as_measured_by_count_flops(resnet, method):
    model, graph = resnet
    snapshot = capture(model)
    groups = graph.prunable()
    probe = sel.FlopsProbe(model, graph, SHAPE)
    base = slimkit.count_flops(model, SHAPE)[0]
    if method == "uniform":
        chosen = sel.select_uniform(probe, groups, 0.5, round_to=2, min_channels=4)
    else:
        scan = _fake_scan(groups, groups[1].name)
        pick = sel.select_greedy if method == "greedy" else sel.select_by_threshold
        chosen = pick(probe, groups, scan, 0.5, round_to=2, min_channels=4)
    assert slimkit.count_flops(model, SHAPE)[0] == base  # probing left the model as it was
    for g in groups:
        kept = chosen.keep[g.name]
        assert 4 <= kept <= g.channels and kept % 2 == 0
    pruned = slimkit.build_model("resnet20", num_classes=10, in_channels=1)
    slimkit.core.surgery.restore(pruned, snapshot)
    measured = 1 - _apply(pruned, graph, chosen) / base
    assert measured == pytest.approx(chosen.flops_reduction)
    assert 0.5 <= measured < 0.56


def test_greedy_spares_the_sensitive_group(resnet):
    model, graph = resnet
    groups = graph.prunable()
    fragile = groups[1]
    scan = _fake_scan(groups, fragile.name)
    probe = sel.FlopsProbe(model, graph, SHAPE)
    greedy = sel.select_greedy(probe, groups, scan, 0.4)
    threshold = sel.select_by_threshold(probe, groups, scan, 0.4)
    assert greedy.keep[fragile.name] == fragile.channels
    assert sum(greedy.predicted_loss.values()) <= sum(threshold.predicted_loss.values())


def test_unreachable_target_names_the_maximum_and_changes_nothing(resnet):
    model, graph = resnet
    before = capture(model)
    probe = sel.FlopsProbe(model, graph, SHAPE)
    with pytest.raises(slimkit.ModelError, match=r"cannot be reached: at most \d+\.\d%") as err:
        sel.select_uniform(probe, graph.prunable(), 0.9, max_ratio=0.3)
    assert "the model is unchanged" in str(err.value)
    with pytest.raises(slimkit.ModelError, match="no prunable layer"):
        sel.select_uniform(probe, [], 0.5)
    for key, value in before["tensors"].items():
        layer = dict(model.named_sublayers(include_self=True))[key[0]]
        t = layer._parameters.get(key[1]) if key[1] in layer._parameters else layer._buffers.get(key[1])
        assert list(t.shape) == list(value.shape)


def test_explicit_ratios_and_rounding_never_empty_a_layer(resnet):
    model, graph = resnet
    probe = sel.FlopsProbe(model, graph, SHAPE)
    g = graph.prunable()[0]
    chosen = sel.explicit_ratios(probe, [g], {g.name: 0.95}, round_to=8, min_channels=1)
    assert chosen.keep[g.name] == 8 and chosen.flops_after < probe.base
    assert sel.channels_to_keep(16, 0.99) == 1
    assert sel.channels_to_keep(16, 0.99, min_channels=4) == 4
    assert sel.channels_to_keep(64, 0.3, round_to=8) == 48   # 45 -> nearest multiple of 8
    assert sel.channels_to_keep(10, 0.0, round_to=8) == 10   # never more than the layer has
    assert list(sel.keep_indices([0.3, 0.1, 0.9, 0.1], 2)) == [0, 2]


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5])
def test_bad_ratio_is_a_config_error(ratio):
    with pytest.raises(slimkit.ConfigError, match=r"outside \[0, 1\)"):
        sel.check_ratio("conv1", ratio)
