"""Sparsity schedules: TF-MOT's formula, pruning steps, validation, round trips, and use in training."""

import copy
import json

import pytest
import yaml

import slimkit
from slimkit import ConfigError, SparsePruning
from slimkit.sparsity import ConstantSparsity, PolynomialDecay, SparsitySchedule, sparse_prunable_layers
from slimkit.strategies.base import Context


def tf_mot_polynomial(s_i, s_f, t0, t1, power, t):
    p = min(1.0, max(0.0, (t - t0) / (t1 - t0)))
    return s_f + (s_i - s_f) * (1 - p) ** power


@pytest.mark.parametrize("step", [0, 5, 10, 37, 100, 255, 499, 500, 700])
def test_polynomial_decay_matches_the_formula(step):
    schedule = PolynomialDecay(initial_sparsity=0.1, final_sparsity=0.85, begin_step=10, end_step=500, power=3)
    assert schedule.sparsity(step) == pytest.approx(tf_mot_polynomial(0.1, 0.85, 10, 500, 3, step), abs=1e-12)


def test_polynomial_values_at_known_points():
    schedule = PolynomialDecay(0.0, 0.8, begin_step=0, end_step=100, power=1)
    assert [schedule.sparsity(t) for t in (0, 50, 100, 200)] == pytest.approx([0.0, 0.4, 0.8, 0.8])
    cubic = PolynomialDecay(0.0, 0.9, 0, 1000)
    assert cubic.sparsity(500) == pytest.approx(0.9 - 0.9 * 0.5 ** 3)


def test_pruning_steps_follow_frequency_and_always_include_end_step():
    schedule = PolynomialDecay(0.0, 0.5, begin_step=20, end_step=250, frequency=100)
    steps = [t for t in range(400) if schedule.should_prune(t)]
    assert steps == [20, 120, 220, 250]
    constant = ConstantSparsity(0.5, begin_step=5, frequency=10)
    assert [t for t in range(40) if constant.should_prune(t)] == [5, 15, 25, 35]
    assert constant.sparsity(0) == constant.sparsity(10_000) == 0.5
    bounded = ConstantSparsity(0.5, begin_step=0, end_step=20, frequency=10)
    assert [t for t in range(60) if bounded.should_prune(t)] == [0, 10, 20]


@pytest.mark.parametrize("schedule", [PolynomialDecay(0.2, 0.9, 3, 700, power=2, frequency=7),
                                      ConstantSparsity(0.6, begin_step=4, end_step=90, frequency=3)])
def test_round_trip_through_dict_json_and_yaml(schedule):
    data = schedule.to_dict()
    assert data["type"] in ("polynomial_decay", "constant")
    assert SparsitySchedule.from_dict(data) == schedule
    assert SparsitySchedule.from_dict(json.loads(json.dumps(data))) == schedule
    assert SparsitySchedule.from_dict(yaml.safe_load(yaml.safe_dump(data))) == schedule
    assert type(schedule).from_dict(data) == schedule


@pytest.mark.parametrize("data, path, text", [
    ({"type": "polynomial_decay", "final_sparsity": 1.0}, "s.final_sparsity", "less than 1"),
    ({"type": "polynomial_decay", "initial_sparsity": 0.5, "final_sparsity": 0.2}, "s.final_sparsity", "below"),
    ({"type": "polynomial_decay", "begin_step": 50, "end_step": 50}, "s.end_step", "after begin_step"),
    ({"type": "constant", "target": -0.1}, "s.target", "below the minimum"),
    ({"type": "constant", "frequency": 0}, "s.frequency", "below the minimum"),
    ({"type": "constant", "targt": 0.3}, "s.targt", "unknown key"),
    ({"type": "polynomial"}, "s.type", "unknown schedule type"),
    ({"final_sparsity": 0.5}, "s", "needs a 'type'"),
])
def test_bad_schedules_name_the_key(data, path, text):
    with pytest.raises(ConfigError) as err:
        SparsitySchedule.from_dict(data, "s")
    assert err.value.path == path and text in str(err.value)


def test_schedule_steps_masks_inside_training(digits, trained_cnn):
    engine = slimkit.Engine(digits, {"batch_size": 64, "max_steps_per_epoch": 10, "progress": False})
    model = copy.deepcopy(trained_cnn)
    schedule = PolynomialDecay(0.0, 0.75, begin_step=0, end_step=25, frequency=10)
    seen = []
    stage = SparsePruning(schedule=schedule, epochs=3, lr=0.01, strip=False)
    original_train = engine.train

    def spying_train(m, epochs, lr, on_step, desc):
        def spy(step, mm):
            on_step(step, mm)
            w = mm.classifier[1].weight.numpy()
            seen.append((step, float((w == 0).mean())))
        return original_train(m, epochs=epochs, lr=lr, on_step=spy, desc=desc)

    engine.train = spying_train
    ctx = Context(data=digits, engine=engine, input_shape=[1, 1, 8, 8], out_dir=None)
    stage.apply(model, ctx)
    by_step = dict(seen)
    n = model.classifier[1].weight.size
    # masks change only on pruning steps and hold the schedule's sparsity in between
    for step in (1, 9, 10, 15, 20, 24, 25, 30):
        last = max(t for t in (0, 10, 20, 25) if t <= step)
        assert by_step[step] == pytest.approx(round(schedule.sparsity(last) * n) / n, abs=1e-9), step
    assert ctx.metrics["mask_updates"] == 4  # steps 0, 10, 20, 25
    for name, layer in sparse_prunable_layers(model).items():
        w = layer.weight.numpy()
        assert int((w == 0).sum()) == round(0.75 * w.size), name
