"""One pruning plan: slimkit.prune and the filter_pruning stage resolve layers, skips and counts the same way."""

import copy

import pytest

import slimkit
from slimkit import FilterPruning
from slimkit.pruning import analyze, plan
from slimkit.strategies.base import Context

SHAPE = [1, 1, 8, 8]


@pytest.fixture
def model():
    return slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)


def test_prune_and_the_stage_keep_the_same_channels(model, digits, tmp_path):
    ratios = {"features.0": 0.5, "features.3": 0.25}
    direct = copy.deepcopy(model)
    result = slimkit.prune(direct, SHAPE, ratios=ratios, skip=["features.7"], round_to=1)
    staged = copy.deepcopy(model)
    ctx = Context(data=digits, engine=slimkit.Engine(digits, {"progress": False}), input_shape=SHAPE,
                  out_dir=tmp_path, stage_name="prune")
    FilterPruning(ratios=ratios, skip=["features.7"], round_to=1).apply(staged, ctx)
    kept = {name: after for name, (_, after) in ctx.metrics["channels"].items() if name in ratios}
    assert kept == {root: after for root, _, after in result.layers} == {"features.0": 8, "features.3": 24}
    assert ctx.metrics["channels"]["features.7"] == [64, 64]
    assert "features.7" in result.skipped and any("features.7 not pruned: in `skip`" in n for n in ctx.notes)


def test_resolve_names_the_groups_ratios_and_skips(model):
    graph = analyze(model, SHAPE)
    targets = plan.resolve(graph, 0.3, ["features.3"])
    assert [g.name for g in targets.groups] == ["features.0", "features.7", "classifier.1"]
    assert targets.ratios is None and targets.skipped["features.3"] == plan.SKIP_REASON
    assert "model's output" in targets.skipped["classifier.3"]
    counts = plan.explicit_counts(targets, 0.5, round_to=1)
    assert counts == {"features.0": 8, "features.7": 32, "classifier.1": 64}
    # round 1 of 2 on the schedule removes half of the final cut
    assert plan.explicit_counts(targets, 0.5, round_to=1, share=0.5)["features.7"] == 48


def test_resolve_refuses_what_cannot_be_done(model):
    graph = analyze(model, SHAPE)
    with pytest.raises(slimkit.ModelError, match="(?s)cannot be pruned.*remove it from `ratios`"):
        plan.resolve(graph, {"classifier.3": 0.5})
    with pytest.raises(slimkit.ModelError, match="did you mean 'features.3'"):
        plan.resolve(graph, 0.3, ["features.33"])


def test_choose_dispatches_on_the_method(model):
    graph = analyze(model, SHAPE)
    groups = graph.prunable()
    probe = slimkit.pruning.FlopsProbe(model, graph, SHAPE)
    losses = {g.name: {0.5: 0.1, 0.9: 0.5} for g in groups}
    for method in ("uniform", "greedy", "threshold"):
        chosen = plan.choose(plan.Request(method=method, round_to=1), probe, groups, 0.3, losses)
        assert chosen.method == method and chosen.reduction >= 0.3 and chosen.unit == "FLOPs"
    with pytest.raises(slimkit.ConfigError, match="selects no target"):
        plan.choose(plan.Request(method="explicit"), probe, groups, 0.3)
