"""`target_latency_reduction`: validated like the other targets (exclusive, in (0, 1), exit 2
before any work), a per-group latency table from the exports, a selection on it, and a final
measurement that refines the selection or says the target was missed. The timer is injected
(latency = size of the exported parameters) so results are exact; one test uses the real predictor."""

import copy
import os

import numpy as np
import pytest

import slimkit
from slimkit import FilterPruning, Finetune, Pipeline
from slimkit.core.errors import ConfigError
from slimkit.core.surgery import capture
from slimkit.pruning import analyze, latency, prune
from slimkit.run.cli import main

SHAPE = [1, 1, 8, 8]


def size_timer(prefixes, shape):
    """Deterministic stand-in for the predictor: 'ms' proportional to the exported parameters' bytes."""
    return {name: os.path.getsize(f"{prefix}.pdiparams") / 1e4 for name, prefix in prefixes.items()}


def small_cnn():
    return slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)


@pytest.mark.parametrize("options, key", [
    ({"target_latency_reduction": 0.5, "ratios": 0.3}, "target_latency_reduction"),
    ({"target_latency_reduction": 0.5, "target_flops_reduction": 0.5}, "target_latency_reduction"),
    ({"target_latency_reduction": 1.5}, "target_latency_reduction"),
    ({"target_latency_reduction": 0.0}, "target_latency_reduction"),
    ({"target_latency_reduction": 0.5, "steps": 2}, "steps")])
def test_bad_latency_targets_are_config_errors(options, key):
    with pytest.raises(ConfigError, match=key):
        FilterPruning.from_dict(options, "stages[0]")


def test_prune_rejects_ratios_with_a_latency_target_and_leaves_the_model():
    model = small_cnn()
    before = capture(model)
    with pytest.raises(ConfigError, match="exclude each other"):
        prune(model, SHAPE, ratios=0.3, target_latency_reduction=0.5)
    after = capture(model)
    assert all(np.array_equal(before["tensors"][k], after["tensors"][k]) for k in before["tensors"])


def test_cli_exits_2_before_any_work(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("data: {name: digits}\nmodel: {name: small_cnn}\nstages:\n"
                      "  - {type: filter_pruning, target_latency_reduction: 0.5, target_flops_reduction: 0.3}\n")
    assert main(["run", str(config), "--out", str(tmp_path / "out")]) == 2
    assert "target_latency_reduction" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_probe_table_and_prediction_follow_the_measurements():
    model = small_cnn()
    graph = analyze(model, SHAPE)
    groups = graph.prunable()
    probe = latency.LatencyProbe(model, graph, SHAPE, groups, size_timer)
    saving = probe.per_channel(groups)
    assert probe.probes == len(groups) and all(v > 0 for v in saving.values())
    one = groups[1]
    # Exact for one group alone: the prediction is the measured export of that pruning.
    counts = {one.name: one.channels // 2}
    pruned = copy.deepcopy(model)
    slimkit.prune(pruned, SHAPE, ratios={one.roots[0]: 0.5}, round_to=1)
    timer = latency.ExportTimer(SHAPE, size_timer)
    timer.add("m", pruned)
    assert probe.flops(counts) == pytest.approx(timer.times()["m"], rel=1e-9)


def test_prune_reaches_the_measured_target():
    model = small_cnn()
    graph = analyze(model, SHAPE)
    groups = graph.prunable()
    from slimkit.pruning import selection as sel

    chosen = latency.prune_to_latency(
        model, graph, SHAPE, groups, 0.4, lambda probe, goal: sel.select_uniform(probe, groups, goal),
        lambda s: slimkit.remove_channels(model, graph, {g.name: np.arange(s.keep[g.name]) for g in groups
                                                         if s.keep[g.name] < g.channels}),
        time_prefixes=size_timer)
    assert chosen.reached and chosen.reduction >= 0.4 - latency.TOLERANCE
    timer = latency.ExportTimer(SHAPE, size_timer)
    timer.add("final", model)
    assert timer.times()["final"] == pytest.approx(chosen.latency_after)


def test_pipeline_stage_with_the_latency_target(digits, tmp_path, monkeypatch):
    monkeypatch.setattr(latency, "time_exports", size_timer)
    stages = [Finetune(name="train", epochs=1),
              FilterPruning(target_latency_reduction=0.3, sensitivity={"ratios": [0.3, 0.6], "eval_batches": 1})]
    reports = Pipeline(small_cnn(), digits, stages, out_dir=tmp_path, train={"progress": False},
                       report={"latency_runs": 3, "latency_warmup": 1}, verbose=False).run()
    reached = reports[-1].extra["latency_target"]
    assert reached["target"] == 0.3 and reached["latency_after_ms"] < reached["latency_before_ms"]
    missed = [n for n in reports[-1].notes if "below the target" in n]
    assert reached["reached"] != bool(missed)
    assert reports[-1].extra["selection"] == "greedy" and reports[-1].top1 > 0


def test_prune_with_the_real_predictor_reports_what_it_measured():
    model = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=32)
    result = prune(model, [1, 1, 32, 32], target_latency_reduction=0.1)
    measured = result.latency
    assert measured["latency_before_ms"] > 0 and measured["latency_after_ms"] > 0 and measured["attempts"] >= 1
    assert result.flops_after < result.flops_before


def test_probe_in_chunks_measures_the_same_table(monkeypatch):
    model = small_cnn()
    graph = analyze(model, SHAPE)
    groups = graph.prunable()
    whole = latency.LatencyProbe(model, graph, SHAPE, groups, size_timer)
    monkeypatch.setattr(latency, "PROBE_CHUNK", 2)
    chunked = latency.LatencyProbe(model, graph, SHAPE, groups, size_timer)
    assert chunked.per_channel(groups) == pytest.approx(whole.per_channel(groups))
    assert chunked.base == pytest.approx(whole.base)


@pytest.mark.parametrize("tried, goal", [
    ([(0.5, 0.4)], 0.625),                      # one pair: measured taken as proportional to what was asked
    ([(0.5, 0.4), (0.6, 0.45)], 0.5 * 0.61 / 0.47),    # the line through the origin fitted to both
    ([(0.5, 0.4), (0.6, 0.38)], 0.5 * 0.61 / 0.428),   # a falling pair (noise) barely moves the fit
    ([(0.5, 0.25)], 0.99),                      # never past 0.99
    ([(0.5, 0.62)], 0.5 - 0.12 / 1.24),         # past the target: back down along the same line
    ([(0.5, 0.4), (0.6, 0.62)], 0.5 + 0.1 * 0.1 / 0.22),   # one below, one above: between them
    ([(0.5, 0.52), (0.6, 0.45)], 0.55)])        # below and above out of order (noise): the midpoint
def test_refinement_follows_the_measurements(tried, goal):
    assert latency._next_goal(tried, 0.5) == pytest.approx(goal)


def _prune_small_cnn_to(target, goals):
    """prune_to_latency on small_cnn whose selection asks the probe for goals[i] on call i (not the goal given)."""
    from slimkit.pruning import selection as sel

    model = small_cnn()
    graph = analyze(model, SHAPE)
    groups = graph.prunable()
    asked, measured = iter(goals), []

    def select(probe, goal):
        return sel.select_uniform(probe, groups, next(asked), round_to=1)

    def apply(s):
        slimkit.remove_channels(model, graph, {g.name: np.arange(s.keep[g.name]) for g in groups
                                               if s.keep[g.name] < g.channels})
        timer = latency.ExportTimer(SHAPE, size_timer)
        timer.add("m", model)
        measured.append(timer.times()["m"])

    chosen = latency.prune_to_latency(model, graph, SHAPE, groups, target, select, apply, time_prefixes=size_timer)
    final = latency.ExportTimer(SHAPE, size_timer)
    final.add("final", model)
    return chosen, measured, final.times()["final"]


def test_an_overshoot_is_refined_and_the_model_keeps_the_least_cut_that_reached_the_target():
    # Every selection passes a 0.2 target by far; the first cuts least, so the model ends with it.
    tries = latency.REFINEMENTS + 1
    chosen, measured, final = _prune_small_cnn_to(0.2, [0.5] + [0.8] * (tries - 1))
    assert chosen.attempts == len(chosen.history) == tries and chosen.reached
    assert chosen.reduction > 0.2 + latency.OVERSHOOT
    assert final == pytest.approx(chosen.latency_after) == pytest.approx(measured[0])
    assert len(measured) == tries + 1  # every selection measured, then the best one applied again


def test_a_miss_keeps_the_largest_cut_measured():
    tries = latency.REFINEMENTS + 1
    chosen, measured, final = _prune_small_cnn_to(0.9, [0.3] + [0.1] * (tries - 1))
    assert not chosen.reached and chosen.attempts == tries
    assert final == pytest.approx(chosen.latency_after) == pytest.approx(measured[0])
