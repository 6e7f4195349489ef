"""`target_latency_reduction`: validated like the other targets (exclusive, in (0, 1), exit 2 before any
work), a per-group latency table from the exports, a selection on it, and a decision by the measured
ratio's interval: reached only when its upper end is within the target, refined otherwise, the last
selection measured again. The exports run on a scripted machine (timing_machine: latency proportional
to the exported parameters, seeded noise, a fake clock); one test uses the real predictor."""

import copy

import numpy as np
import pytest
from timing_machine import Machine, export_ms

import slimkit
from slimkit import FilterPruning, Finetune, Pipeline
from slimkit.core.errors import ConfigError
from slimkit.core.surgery import capture
from slimkit.pruning import analyze, latency, prune
from slimkit.pruning import selection as sel
from slimkit.report.timing import Precision
from slimkit.run.cli import main

SHAPE = [1, 1, 8, 8]
QUICK = Precision(warmup=1, min_rounds=10, width=0.04, budget=30.0)


def small_cnn():
    return slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=8)


def bench(machine, precision=QUICK):
    return latency.ExportBench(SHAPE, precision, machine.export_runner, machine.clock())


@pytest.mark.parametrize("options, key", [
    ({"target_latency_reduction": 0.5, "ratios": 0.3}, "target_latency_reduction"),
    ({"target_latency_reduction": 0.5, "target_flops_reduction": 0.5}, "target_latency_reduction"),
    ({"target_latency_reduction": 1.5}, "target_latency_reduction"),
    ({"target_latency_reduction": 0.0}, "target_latency_reduction"),
    ({"target_latency_reduction": 0.5, "steps": 2}, "steps"),
    ({"target_flops_reduction": 0.5, "latency_ci_width": 0.02}, "latency_ci_width"),
    ({"target_latency_reduction": 0.5, "latency_ci_width": 1.5}, "latency_ci_width"),
    ({"target_latency_reduction": 0.5, "latency_budget_s": 0}, "latency_budget_s")])
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


def test_the_probe_predicts_a_single_group_cut_as_measured():
    model = small_cnn()
    graph = analyze(model, SHAPE)
    groups = graph.prunable()
    machine = Machine()
    timer = bench(machine)
    timer.add(latency.ORIGINAL, model)
    probe = latency.LatencyProbe(model, graph, SHAPE, groups, timer)
    assert probe.probes == len(groups) and all(v > 0 for v in probe.per_channel(groups).values())
    one = groups[1]
    pruned = copy.deepcopy(model)
    slimkit.prune(pruned, SHAPE, ratios={one.roots[0]: 0.5}, round_to=1)
    timer.add("pruned", pruned)
    assert probe.cost({one.name: one.channels // 2}) == pytest.approx(export_ms(timer.prefixes["pruned"]), rel=1e-9)
    assert probe.reduction({}) == 0.0 and probe.summary()["converged"]
    timer.close()


def test_the_probe_in_chunks_measures_the_same_table(monkeypatch):
    model = small_cnn()
    graph = analyze(model, SHAPE)
    groups = graph.prunable()
    tables = []
    for chunk in (latency.PROBE_CHUNK, 2):
        monkeypatch.setattr(latency, "PROBE_CHUNK", chunk)
        timer = bench(Machine())
        timer.add(latency.ORIGINAL, model)
        tables.append(latency.LatencyProbe(model, graph, SHAPE, groups, timer))
        timer.close()
    assert tables[1].per_channel(groups) == pytest.approx(tables[0].per_channel(groups))
    assert len(tables[1].measurements) == -(-len(groups) // 2) > len(tables[0].measurements) == 1


def _search(target, goals=None, machine=None, precision=QUICK):
    """prune_to_latency on small_cnn, uniform selection (or the goals given, one per selection)."""
    model = small_cnn()
    graph = analyze(model, SHAPE)
    groups = graph.prunable()
    asked = iter(goals) if goals else None
    timer = bench(machine or Machine(), precision)

    def select(probe, goal):
        return sel.select_uniform(probe, groups, next(asked) if asked else goal, round_to=1)

    def apply(s):
        slimkit.remove_channels(model, graph, {g.name: np.arange(s.keep[g.name]) for g in groups
                                               if s.keep[g.name] < g.channels})

    chosen = latency.prune_to_latency(model, graph, SHAPE, groups, target, select, apply, timer)
    timer.add("check", model)
    truth = export_ms(timer.prefixes["check"]) / export_ms(timer.prefixes[latency.ORIGINAL])
    timer.close()
    return chosen, truth, timer.measured


def test_a_noisy_search_ends_with_the_upper_end_within_the_target_and_measures_the_result_again():
    chosen, truth, measured = _search(0.4, machine=Machine(noise=0.08, seed=3))
    assert chosen.reached and chosen.ratio.high <= 1 - 0.4 + latency.TOLERANCE
    assert chosen.ratio.contains(truth)  # the model as it leaves is what was measured last
    # probe chunk(s), one measurement per selection, and the model measured once more at the end
    assert len(measured) == 1 + chosen.attempts + 1 and chosen.timing == measured[-1]
    assert chosen.to_dict()["latency_ratio"]["high"] == pytest.approx(chosen.ratio.high, abs=1e-4)


def test_a_point_estimate_within_the_target_is_not_enough(monkeypatch):
    # One selection, no refinement: a target whose limit lies between that cut's measured ratio and the
    # upper end of its interval is not reached, and the summary quotes the interval.
    monkeypatch.setattr(latency, "REFINEMENTS", 0)
    noisy = Precision(warmup=1, min_rounds=10, width=0.5, budget=30.0)
    dry, _, _ = _search(0.3, [0.3], Machine(noise=0.15, seed=5), noisy)
    limit = (dry.ratio.value + dry.ratio.high) / 2
    chosen, _, _ = _search(1 - limit + latency.TOLERANCE, [0.3], Machine(noise=0.15, seed=5), noisy)
    assert chosen.ratio == dry.ratio and chosen.ratio.value < limit < chosen.ratio.high
    assert not chosen.reached and "NOT reached" in chosen.summary() and chosen.ratio.text(3, "x") in chosen.summary()


def test_an_overshoot_is_refined_and_the_model_keeps_the_least_cut_that_reached_the_target():
    # Every selection passes a 0.2 target by far; the first cuts least, so the model ends with it.
    tries = latency.REFINEMENTS + 1
    chosen, truth, measured = _search(0.2, [0.5] + [0.8] * (tries - 1))
    assert chosen.attempts == len(chosen.history) == tries and chosen.reached
    first = chosen.history[0][1]
    assert chosen.reduction == pytest.approx(first) and chosen.reduction > 0.2 + latency.OVERSHOOT
    assert 1 - truth == pytest.approx(first) and all(h[1] > first for h in chosen.history[1:])


def test_a_miss_keeps_the_largest_cut_measured_and_says_so():
    tries = latency.REFINEMENTS + 1
    chosen, truth, _ = _search(0.9, [0.3] + [0.1] * (tries - 1))
    assert not chosen.reached and chosen.attempts == tries
    assert 1 - truth == pytest.approx(chosen.history[0][1]) == pytest.approx(chosen.reduction)
    assert "NOT reached" in chosen.summary()


@pytest.mark.parametrize("tried", [[(0.5, 0.4)], [(0.5, 0.4), (0.6, 0.45)], [(0.5, 0.4), (0.6, 0.38)],
                                   [(0.5, 0.25)], [(0.9, 0.3)]])
def test_after_a_shortfall_the_next_goal_asks_for_more(tried):
    goal = latency._next_goal(tried, 0.5)
    assert tried[-1][0] < goal <= 0.99


@pytest.mark.parametrize("tried", [[(0.5, 0.62)], [(0.4, 0.7)], [(0.5, 0.4), (0.7, 0.66)]])
def test_after_an_overshoot_the_next_goal_asks_for_less(tried):
    assert 0.01 <= latency._next_goal(tried, 0.5) < tried[-1][0]


@pytest.mark.parametrize("tried", [[(0.5, 0.4), (0.6, 0.62)], [(0.5, 0.52), (0.6, 0.45)]])
def test_a_bracketed_target_is_looked_for_between_the_two_asks(tried):
    low, high = sorted(a for a, _ in tried)
    assert low < latency._next_goal(tried, 0.5) < high


def test_pipeline_stage_with_the_latency_target(digits, tmp_path, monkeypatch):
    machine = Machine(noise=0.03)
    monkeypatch.setattr(latency, "predictor_runner", machine.export_runner)
    monkeypatch.setattr(latency, "default_clock", machine.clock)
    stages = [Finetune(name="train", epochs=1),
              FilterPruning(target_latency_reduction=0.3, sensitivity={"ratios": [0.3, 0.6], "eval_batches": 1},
                            latency_ci_width=0.05)]
    reports = Pipeline(small_cnn(), digits, stages, out_dir=tmp_path, train={"progress": False},
                       report={"latency_runs": 3, "latency_warmup": 1}, verbose=False).run()
    reached = reports[-1].extra["latency_target"]
    assert reached["target"] == 0.3 and reached["latency_after_ms"] < reached["latency_before_ms"]
    assert reached["reached"] == (reached["latency_ratio"]["high"] <= 1 - 0.3 + latency.TOLERANCE)
    assert reached["timing"]["width_asked"] == 0.05 and reached["probe"]["groups"] > 0
    missed = [n for n in reports[-1].notes if n.kind == "target"]
    assert reached["reached"] != bool(missed) or "noisy" in missed[0]
    assert reports[-1].extra["selection"] == "greedy"


def test_prune_with_the_real_predictor_reports_what_it_measured():
    model = slimkit.build_model("small_cnn", num_classes=10, in_channels=1, input_size=32)
    result = prune(model, [1, 1, 32, 32], target_latency_reduction=0.1,
                   timing=Precision(warmup=2, min_rounds=5, width=0.1, budget=3.0))
    measured = result.latency
    assert measured["latency_before_ms"] > 0 and measured["latency_after_ms"] > 0 and measured["attempts"] >= 1
    ratio = measured["latency_ratio"]
    assert ratio["low"] <= ratio["value"] <= ratio["high"] and measured["timing"]["clock"] == "cpu"
    assert result.flops_after < result.flops_before
