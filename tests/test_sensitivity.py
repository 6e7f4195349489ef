"""Sensitivity scans: PaddleSlim semantics, incremental JSON, resume, interrupt safety."""

import copy
import json

import numpy as np
import pytest

import slimkit
from slimkit.core.surgery import capture, state_shapes_differ
from slimkit.pruning import analyze
from slimkit.pruning.sensitivity import format_sensitivity, load_sensitivity, sensitive

SHAPE = [1, 1, 8, 8]
RATIOS = [0.3, 0.6]


class CountingEval:
    """eval_fn that counts its calls (and can be told to interrupt the scan at a given call)."""

    def __init__(self, engine, interrupt_at=None):
        self.engine, self.calls, self.interrupt_at = engine, 0, interrupt_at

    def __call__(self, model):
        self.calls += 1
        if self.interrupt_at is not None and self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        return self.engine.evaluate(model, "val", max_batches=1)["top1"]


@pytest.fixture()
def setup(digits, trained_cnn):
    model = copy.deepcopy(trained_cnn)
    engine = slimkit.Engine(digits, {"progress": False})
    return model, engine, analyze(model, SHAPE)


def _same_model(model, snapshot):
    assert not state_shapes_differ(model, snapshot)
    for (prefix, name), value in snapshot["tensors"].items():
        layer = dict(model.named_sublayers(include_self=True))[prefix]
        t = layer._parameters.get(name) if name in layer._parameters else layer._buffers.get(name)
        np.testing.assert_array_equal(t.numpy(), value)


def test_scan_records_relative_losses_and_restores_the_model(setup, tmp_path):
    model, engine, graph = setup
    before = capture(model)
    ev = CountingEval(engine)
    result = sensitive(model, SHAPE, ev, RATIOS, "l1", file=tmp_path / "s.json", graph=graph, progress=False)
    groups = [g.name for g in graph.prunable()]
    assert list(result) == groups and all(sorted(result[g]) == RATIOS for g in groups)
    assert ev.calls == 1 + len(groups) * len(RATIOS)  # the base, then one trial per (group, ratio)
    _same_model(model, before)
    # A loss is (base - acc) / base of the model with that many channels really removed.
    saved = json.loads((tmp_path / "s.json").read_text())
    g = graph.group("features.3")
    kept = saved["layers"][g.name]["kept"]["0.6"]
    assert kept == 16  # 32 - round(32 * 0.6) = 13 channels, rounded to the default multiple of 8
    from slimkit.pruning.criteria import score_groups
    from slimkit.pruning.remove import remove_channels
    from slimkit.pruning.selection import keep_indices

    pruned = copy.deepcopy(model)
    remove_channels(pruned, graph, {g.name: keep_indices(score_groups(pruned, [g], "l1")[g.name], kept)})
    acc = engine.evaluate(pruned, "val", max_batches=1)["top1"]
    assert result[g.name][0.6] == pytest.approx((saved["base"] - acc) / saved["base"])
    assert (tmp_path / "s.png").stat().st_size > 1000
    assert load_sensitivity(tmp_path / "s.json") == result
    assert "features.3" in format_sensitivity(result)


def test_rerun_resumes_and_skips_finished_layers(setup, tmp_path):
    model, engine, graph = setup
    file = tmp_path / "s.json"
    first = sensitive(model, SHAPE, CountingEval(engine), RATIOS, file=file, graph=graph, progress=False)

    again = CountingEval(engine)
    assert sensitive(model, SHAPE, again, RATIOS, file=file, graph=graph, progress=False) == first
    assert again.calls == 0  # base accuracy and every layer come from the file

    saved = json.loads(file.read_text())
    del saved["layers"]["features.3"]
    file.write_text(json.dumps(saved))
    partial = CountingEval(engine)
    assert sensitive(model, SHAPE, partial, RATIOS, file=file, graph=graph, progress=False) == first
    assert partial.calls == len(RATIOS)  # only the missing layer is evaluated again


def test_a_file_of_other_weights_is_not_reused(setup, tmp_path):
    model, engine, graph = setup
    file = tmp_path / "s.json"
    sensitive(model, SHAPE, CountingEval(engine), RATIOS, file=file, graph=graph, progress=False)
    model.features[0].weight.set_value(model.features[0].weight.numpy() * 0.5)
    ev = CountingEval(engine)
    with pytest.warns(UserWarning, match="different model_digest"):
        sensitive(model, SHAPE, ev, RATIOS, file=file, graph=graph, progress=False)
    assert ev.calls == 1 + len(graph.prunable()) * len(RATIOS)


def test_keyboard_interrupt_leaves_valid_json_and_the_model_restored(setup, tmp_path):
    model, engine, graph = setup
    before = capture(model)
    file = tmp_path / "s.json"
    n_groups = len(graph.prunable())
    # call 1 is the base; calls 2-3 finish the first layer; call 5 is the second layer's second ratio.
    with pytest.raises(KeyboardInterrupt):
        sensitive(model, SHAPE, CountingEval(engine, interrupt_at=5), RATIOS, file=file, graph=graph, progress=False)
    _same_model(model, before)
    saved = json.loads(file.read_text())
    done = [g for g, e in saved["layers"].items() if len(e["losses"]) == len(RATIOS)]
    assert len(done) == 1 and saved["base"] is not None
    resumed = CountingEval(engine)
    sensitive(model, SHAPE, resumed, RATIOS, file=file, graph=graph, progress=False)
    # The finished layer and the half-finished layer's first ratio are not evaluated again.
    assert resumed.calls == n_groups * len(RATIOS) - len(RATIOS) - 1
    _same_model(model, before)


def test_ratios_that_remove_nothing_are_not_evaluated(setup):
    model, engine, graph = setup
    ev = CountingEval(engine)
    # round_to=16 keeps 16 of features.0's 16 channels at ratio 0.1: nothing to evaluate.
    result = sensitive(model, SHAPE, ev, [0.1], layers=["features.0"], graph=graph, round_to=16, progress=False)
    assert result == {"features.0": {0.1: 0.0}} and ev.calls == 1


def test_bad_arguments_are_clear_errors(setup):
    model, engine, graph = setup
    with pytest.raises(slimkit.ConfigError, match=r"outside \[0, 1\)"):
        sensitive(model, SHAPE, CountingEval(engine), [0.5, 1.0], graph=graph, progress=False)
    with pytest.raises(slimkit.ModelError, match="features.3"):
        sensitive(model, SHAPE, CountingEval(engine), [0.5], layers=["features.30"], graph=graph, progress=False)
