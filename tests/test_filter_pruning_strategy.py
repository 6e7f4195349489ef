"""The filter_pruning stage: option checks, measured FLOPs target inside a Pipeline, resume, errors."""

import copy
import json

import numpy as np
import pytest
from report_checks import untimed

import slimkit
from slimkit import FilterPruning, Finetune, Pipeline
from slimkit.core.surgery import capture
from slimkit.strategies.base import Context, strategy_from_config

SHAPE = [1, 1, 8, 8]
TRAIN = {"progress": False, "batch_size": 32, "epochs": 2}


def _stages():
    return [Finetune(epochs=3, name="train"),
            FilterPruning(target_flops_reduction=0.5, sensitivity={"ratios": [0.25, 0.5, 0.75], "eval_batches": 1}),
            Finetune(epochs=2, name="recover")]


@pytest.fixture(scope="module")
def run(digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("prune_run")
    model = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)
    pipeline = Pipeline(model, digits, stages=_stages(), train=TRAIN, out_dir=out, verbose=False)
    return pipeline, pipeline.run(), out


def test_pipeline_reaches_the_measured_flops_target(run):
    pipeline, reports, out = run
    baseline, pruned, final = reports[0], reports[2], reports[3]
    assert 1 - pruned.flops / baseline.flops >= 0.5
    flops_now = slimkit.count_flops(pipeline.model, SHAPE)[0]
    assert final.flops == pruned.flops == flops_now
    extra = pruned.extra
    assert extra["flops_after"] == pruned.flops and extra["flops_before"] == baseline.flops
    assert extra["flops_reduction"] == pytest.approx(1 - pruned.flops / baseline.flops, abs=1e-5)
    assert extra["selection"] == "greedy"
    layers = dict(pipeline.model.named_sublayers())
    for name, (before, after) in extra["channels"].items():
        assert 1 <= after <= before
        assert layers[name].weight.shape[0 if "features" in name else 1] == after
    # Unprunable layers are reported, never dropped silently.
    assert any("classifier.3 not pruned" in n for n in pruned.notes)
    assert (out / "02-filter_pruning" / "sensitivity.json").is_file()
    assert (out / "02-filter_pruning" / "sensitivity.png").is_file()
    assert final.top1 > 0.85


def test_resume_restores_the_pruned_model_and_gives_the_same_report(run, digits):
    pipeline, reports, out = run
    # Forget the last stage: resume must rebuild the pruned model from its checkpoint and retrain it.
    (out / "03-recover" / "stage.json").unlink()
    fresh = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)
    again = Pipeline(fresh, digits, stages=_stages(), train=TRAIN, out_dir=out, verbose=False).run(resume=True)
    keys = ("flops", "params", "top1", "top5")  # size_bytes varies with paddle's auto parameter names
    for old, new in zip(reports, again):
        assert {k: getattr(old, k) for k in keys} == {k: getattr(new, k) for k in keys}
    assert untimed(again[2])["extra"] == untimed(reports[2])["extra"]


def _ctx(digits, tmp_path):
    engine = slimkit.Engine(digits, TRAIN)
    return Context(data=digits, engine=engine, input_shape=SHAPE, out_dir=tmp_path, stage_name="prune")


def test_rounds_with_training_between_them(digits, trained_cnn, tmp_path):
    model = copy.deepcopy(trained_cnn)
    ctx = _ctx(digits, tmp_path)
    stage = FilterPruning(ratios=0.5, steps=2, finetune_epochs=1, criterion="fpgm", skip=["classifier.1"])
    stage.apply(model, ctx)
    channels = ctx.metrics["channels"]
    assert channels["features.3"] == [32, 16] and channels["features.7"] == [64, 32]
    assert channels["classifier.1"] == [128, 128]
    assert len(ctx.metrics["ratios"]) == 2
    assert any("classifier.1 not pruned: in `skip`" in n for n in ctx.notes)
    assert ctx.metrics["flops_after"] == slimkit.count_flops(model, SHAPE)[0]


def test_errors_at_apply_leave_the_model_unchanged(digits, trained_cnn, tmp_path):
    model = copy.deepcopy(trained_cnn)
    before = capture(model)
    unknown = FilterPruning(ratios={"features.33": 0.5})
    with pytest.raises(slimkit.ModelError, match="did you mean 'features.3'"):
        unknown.apply(model, _ctx(digits, tmp_path))
    unreachable = FilterPruning(target_flops_reduction=0.95, max_ratio=0.5)
    with pytest.raises(slimkit.ModelError, match=r"at most \d+\.\d%"):
        unreachable.apply(model, _ctx(digits, tmp_path))
    everything = FilterPruning(target_flops_reduction=0.3, skip=["features.0", "features.3", "features.7",
                                                                  "classifier.1"])
    with pytest.raises(slimkit.ModelError, match="no prunable layer"):
        everything.apply(model, _ctx(digits, tmp_path))
    for (prefix, name), value in before["tensors"].items():
        layer = dict(model.named_sublayers(include_self=True))[prefix]
        t = layer._parameters.get(name) if name in layer._parameters else layer._buffers.get(name)
        np.testing.assert_array_equal(t.numpy(), value)


@pytest.mark.parametrize("options, path, text", [
    ({}, "ratios", "give `ratios`, `target_flops_reduction` or `target_latency_reduction`"),
    ({"ratios": 0.3, "target_flops_reduction": 0.5}, "target_flops_reduction", "exclude each other"),
    ({"ratios": 1.0}, "ratios", "must be less than 1"),
    ({"ratios": {"conv1": -0.2}}, "ratios.conv1", "below the minimum 0"),
    ({"target_flops_reduction": 1.2}, "target_flops_reduction", "must be less than 1"),
    ({"ratios": 0.3, "sensitivity": {"ratios": [0.5]}}, "sensitivity", "only serves target_flops_reduction"),
    ({"target_flops_reduction": 0.5, "selection": "threshold"}, "selection", "needs a sensitivity scan"),
    ({"target_flops_reduction": 0.5, "finetune_epochs": 2}, "finetune_epochs", "steps is 1"),
    ({"target_flops_reduction": 0.5, "sensitivity": {"ratios": [0.5, 1.0]}}, "sensitivity.ratios[1]",
     "must be less than 1"),
    ({"target_flops_reduction": 0.5, "sensitivty": {}}, "sensitivty", "did you mean 'sensitivity'"),
])
def test_option_checks_name_the_fix(options, path, text):
    with pytest.raises(slimkit.ConfigError) as err:
        strategy_from_config({"type": "filter_pruning", **options}, "stages[1]")
    assert err.value.path == f"stages[1].{path}"
    assert text in str(err.value)


def test_config_round_trip():
    stage = strategy_from_config({"type": "filter_pruning", "target_flops_reduction": 0.5,
                                  "sensitivity": {"ratios": [0.2, 0.4]}, "skip": ["conv1"]}, "stages[0]")
    assert json.loads(json.dumps(stage.to_config()))["sensitivity"]["ratios"] == [0.2, 0.4]
    assert stage.method == "greedy"
